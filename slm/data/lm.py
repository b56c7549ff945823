"""Any local causal LM behind one small interface, for the data stages that need one.

The quality classifier (slm.data.quality) asks an LM to rate documents and
embeds them; the synthetic textbooks (slm.data.synth) ask one to write. Both
only need `LocalLM`: `generate` (continuations of text prompts) and `embed` (the
last hidden state at each text's last token, report §2.1). Two adapters:

- `SLMAdapter`: our own checkpoints (slm.checkpoint folders with the tokenizer
  in `tokenizer/`);
- `HFAdapter`: a transformers causal LM in a local folder (never downloaded),
  such as the instruction-tuned models the report labelled and wrote with.

`load_lm(path)` picks the adapter from the folder's config.json. Tests and
users can pass any other object with the same two methods (and a `name`).

Prompts of different lengths are batched by padding on the left, so every
row's last real token is at the last position: that is where generation
continues and where the embedding is read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from slm.generate import left_pad
from slm.model import SLM
from tokenizer import JapaneseTokenizer


class LocalLM(Protocol):
    name: str  # recorded with what it produced (e.g. meta["model"] of synthetic documents)

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 256, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = None, batch_size: int = 8) -> list[str]:
        """The continuation of each prompt (the prompt itself left out); temperature 0 is greedy."""
        ...

    def embed(self, texts: Sequence[str], batch_size: int = 8) -> np.ndarray:
        """(len(texts), d) float32: the final hidden state (after the last norm) at each text's last token."""
        ...


class _TorchLM:
    """Batching shared by the adapters: subclasses turn one batch into strings or vectors.

    Each batch of a sampled `generate` gets its own seed (seed, seed + 1, ...), so the
    same prompts, seed and batch size give the same texts without touching global RNGs.
    """

    name: str
    dim: int  # the hidden size, the width of `embed`'s output

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 256, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = None, batch_size: int = 8) -> list[str]:
        if temperature < 0 or not 0 < top_p <= 1:
            raise ValueError(f"need temperature >= 0 (0: greedy) and 0 < top_p <= 1, got {temperature}, {top_p}")
        out: list[str] = []
        for k, start in enumerate(range(0, len(prompts), batch_size)):
            batch_seed = None if seed is None else seed + k
            out += self._generate_batch(list(prompts[start : start + batch_size]), max_new_tokens, temperature, top_p, batch_seed)
        return out

    @torch.no_grad()
    def embed(self, texts: Sequence[str], batch_size: int = 8) -> np.ndarray:
        parts = [self._embed_batch(list(texts[i : i + batch_size])).float().cpu().numpy()
                 for i in range(0, len(texts), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), dtype=np.float32)

    def _generate_batch(self, prompts: list[str], max_new_tokens: int, temperature: float, top_p: float,
                        seed: int | None) -> list[str]:
        raise NotImplementedError

    def _embed_batch(self, texts: list[str]) -> torch.Tensor:
        """(len(texts), d) hidden states at the last real token."""
        raise NotImplementedError


class SLMAdapter(_TorchLM):
    """One of our checkpoints: `<model_dir>/config.json`, the weights, and `<model_dir>/tokenizer/`.

    Texts are encoded with <begin_of_text> first, as generation prompts are, which also
    gives an empty text one token to embed. Embedding inputs are cut to `max_length`
    tokens (default: the model's max_seq_len), keeping the start of the text.
    """

    def __init__(self, model_dir: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                 max_length: int | None = None):
        model_dir = Path(model_dir)
        self.name = model_dir.resolve().name
        self.model = SLM.from_pretrained(model_dir, device=device, dtype=dtype).eval()
        self.tokenizer = JapaneseTokenizer.load(model_dir / "tokenizer")
        self.device = torch.device(device)
        self.dim = self.model.config.d_model
        self.max_length = max_length or self.model.config.max_seq_len

    def _generate_batch(self, prompts, max_new_tokens, temperature, top_p, seed):
        ids = [self.tokenizer.encode(p, add_bos=True) for p in prompts]
        out = self.model.generate(ids, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                                  temperature=temperature, top_p=top_p, seed=seed,
                                  pad_token_id=self.tokenizer.pad_id)
        prompt_len = max(map(len, ids))
        # Finished rows are filled with padding (<end_of_text>), a special token that decoding drops.
        return self.tokenizer.decode_batch(out[:, prompt_len:].tolist(), skip_special_tokens=True)

    def _embed_batch(self, texts):
        ids = [self.tokenizer.encode(t, add_bos=True)[: self.max_length] for t in texts]
        input_ids, mask = left_pad(ids, self.tokenizer.pad_id, self.device)
        captured = []
        # model.norm's output is what the LM head reads. With logits_to_keep=1 the model
        # normalises only the last position, which left padding makes every row's last token.
        hook = self.model.norm.register_forward_hook(lambda module, args, output: captured.append(output[:, -1]))
        try:
            self.model(input_ids, attention_mask=None if mask.all() else mask, logits_to_keep=1)
        finally:
            hook.remove()
        return captured[0]


class HFAdapter(_TorchLM):
    """A transformers causal LM in a local folder (AutoTokenizer + AutoModelForCausalLM, nothing downloaded).

    chat_template: wrap each prompt as a user turn with the tokenizer's chat template, as
    instruction-tuned models expect; None uses it whenever the tokenizer has one.
    A tokenizer without a pad token pads with its eos token (padding is masked anyway).
    Embedding inputs are cut to `max_length` tokens (default: the model's
    max_position_embeddings when its config has one).
    """

    def __init__(self, model_dir: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                 max_length: int | None = None, chat_template: bool | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_dir = Path(model_dir)
        self.name = model_dir.resolve().name
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise ValueError(f"{model_dir}: the tokenizer has neither a pad nor an eos token to pad batches with")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=dtype or "auto")
        self.model.to(device).eval()
        self.device = torch.device(device)
        self.dim = self.model.config.get_text_config().hidden_size
        self.max_length = max_length or getattr(self.model.config, "max_position_embeddings", None)
        self.chat_template = self.tokenizer.chat_template is not None if chat_template is None else chat_template

    def _generate_batch(self, prompts, max_new_tokens, temperature, top_p, seed):
        if self.chat_template:
            prompts = [self.tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                          add_generation_prompt=True) for p in prompts]
        # A chat template writes the special tokens (bos) itself.
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True,
                             add_special_tokens=not self.chat_template).to(self.device)
        sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else dict(do_sample=False)
        # transformers samples from the global RNG: seed it inside a fork, so the caller's state is kept.
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
                                      **sampling)
        return self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)

    def _embed_batch(self, texts):
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=self.max_length is not None,
                             max_length=self.max_length).to(self.device)
        empty = (enc["attention_mask"].sum(dim=1) == 0).nonzero().flatten().tolist()
        if empty:  # a row of padding only has no last token (tokenizers that add no bos, given "")
            raise ValueError(f"{len(empty)} text(s) encode to no tokens and cannot be embedded: {[texts[i][:30] for i in empty]}")
        # The last entry of output_hidden_states is the final (normed) layer output; only the
        # last position is kept, which left padding makes every row's last real token.
        return self.model(**enc, output_hidden_states=True, logits_to_keep=1).hidden_states[-1][:, -1]


def load_lm(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> LocalLM:
    """The adapter for a local model folder: transformers configs name a "model_type",
    ours (slm.config.ModelConfig) have "d_model" and never a "model_type"."""
    config_path = Path(path) / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{path} is not a model folder: config.json is missing")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if "model_type" in config:
        return HFAdapter(path, device=device, dtype=dtype)
    if "d_model" in config:
        return SLMAdapter(path, device=device, dtype=dtype)
    raise ValueError(f"{config_path}: neither a transformers config (model_type) nor an slm ModelConfig (d_model)")
