from pathlib import Path

import pytest
import torch

from slm.config import ModelConfig
from slm.lm import Completion
from slm.model import SLM


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def small_config(**overrides) -> ModelConfig:
    """The tiny preset with a small vocabulary, no dropout, and an init wide enough that
    greedy choices are not near-ties (so numerically equal paths pick equal tokens)."""
    fields = dict(vocab_size=256, attn_dropout=0.0, resid_dropout=0.0, init_std=0.08, eos_token_id=1, pad_token_id=0)
    return ModelConfig.from_preset("tiny", **{**fields, **overrides})


def small_model(**overrides) -> SLM:
    return SLM(small_config(**overrides)).eval()


SAMPLE_CORPUS = Path(__file__).resolve().parents[1] / "data" / "sample" / "corpus"


def fake_run(run: Path, model_dir: Path, tok, steps) -> Path:
    """A run folder whose complete checkpoints at `steps` all hold the model of `model_dir`."""
    for step in steps:
        ckpt = run / "checkpoints" / f"step-{step:07d}"
        SLM.from_pretrained(model_dir).save_pretrained(ckpt)
        tok.save(ckpt / "tokenizer")
        (ckpt / "trainer_state").mkdir()
        (ckpt / "trainer_state" / "trainer.json").write_text(f'{{"step": {step}}}')
    return run


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    """A tokenizer trained once on the shipped sample corpus (small vocabulary, one process)."""
    from tokenizer.unigram import train_tokenizer

    out = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer([SAMPLE_CORPUS], out, vocab_size=3000, num_workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def tok(tokenizer_dir):
    from tokenizer import JapaneseTokenizer

    return JapaneseTokenizer.load(tokenizer_dir)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory, tokenizer_dir):
    """The sample corpus prepared into shards: "clinical" (four files) and "heldout" (the fifth)."""
    from slm.data.prepare import DataConfig, prepare

    out = tmp_path_factory.mktemp("data")
    files = sorted(SAMPLE_CORPUS.glob("*.txt"))
    prepare(DataConfig.from_dict({
        "out": str(out), "tokenizer": str(tokenizer_dir), "docs_per_shard": 50, "num_workers": 1,
        "sources": [{"name": "clinical", "paths": [str(f) for f in files[:-1]]},
                    {"name": "heldout", "paths": [str(files[-1])]}],
        "dedup": {"capacity": 100000, "sentence_capacity": 1000000}}), progress=False)
    return out


@pytest.fixture(scope="session")
def slm_dir(tmp_path_factory, tok):
    """A tiny untrained SLM saved with its tokenizer, as a checkpoint folder holds them."""
    d = tmp_path_factory.mktemp("slm")
    SLM(small_config(vocab_size=tok.vocab_size, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)).save_pretrained(d)
    tok.save(d / "tokenizer")
    return d


@pytest.fixture(scope="session")
def hf_dir(tmp_path_factory):
    """A tiny Llama with a byte-level tokenizer (256 byte pieces, no merges, no pad token), built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("hf")
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<eos>"] = eos = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>").save_pretrained(d)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         eos_token_id=eos, initializer_range=0.2)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(d)
    return d


SAMPLE_BENCHMARKS = Path(__file__).resolve().parents[1] / "data" / "sample" / "benchmarks"


class ScriptedLM:
    """A stand-in for slm.lm.LocalLM with known answers: `outputs` maps a substring of the last
    user turn to what the model writes, `scores` maps (substring, continuation) to its
    log-likelihood; a prompt "costs" one token per character. Records what it was asked."""

    name, chat = "scripted", True

    def __init__(self, outputs=None, scores=None, max_length=None):
        self.outputs, self.scores, self.max_length = outputs or {}, scores or {}, max_length
        self.generated, self.budgets, self.penalties = [], [], []

    @staticmethod
    def _last_user(prompt):
        return prompt if isinstance(prompt, str) else prompt[-1]["content"]

    def prompt_length(self, prompt):
        return len(prompt) if isinstance(prompt, str) else sum(len(m["content"]) for m in prompt)

    def encode_continuation(self, text):
        return list(text)

    def generate(self, prompts, max_new_tokens=256, batch_size=8, stop_at_newline=False, **kwargs):
        self.generated += prompts
        self.budgets.append(max_new_tokens)
        self.penalties.append(kwargs.get("repetition_penalty", 1.0))
        return [Completion(next((v for k, v in self.outputs.items() if k in self._last_user(p)), ""), True) for p in prompts]

    def loglik(self, requests, batch_size=8):
        return [next((v for (k, c), v in self.scores.items() if k in self._last_user(p) and c == cont), -10.0)
                for p, cont in requests]
