"""Any local causal LM behind one small interface: for the data stages and for evaluation.

The quality classifier (slm.data.quality) asks an LM to rate documents and
embeds them; the synthetic textbooks (slm.data.synth) ask one to write; the
benchmarks (slm.eval) ask it questions and compare the likelihoods of answers.
They only need `LocalLM`:

- `generate`: continuations of prompts (greedy or sampled), each a `Completion` that says
  whether it finished on its own;
- `loglik`: the log-probability of given continuations of prompts;
- `embed`: the last hidden state at each text's last token (report §2.1).

A prompt is either text, or a conversation (a list of {"role", "content"} messages
ending with a user turn). A chat model (`chat` true) reads a conversation through
its chat template and a text as one user turn; a model without one (a base model)
reads a conversation as plain text (`plain_text`), so few-shot prompts stay usable.

Two adapters:
- `SLMAdapter`: one of our models with its tokenizer, in memory or from a checkpoint
  folder (`SLMAdapter.from_folder`), including a LoRA adapter on its base;
- `HFAdapter`: a transformers causal LM in a local folder (never downloaded), so
  baselines go through the same code.

`load_lm(path)` picks the adapter from the folder, after `slm.runs.resolve_model_dir` has
turned a run folder or a `best`/`latest` pointer into a checkpoint folder. Tests
and users can pass any other object with the same methods (and a `name`).

Prompts of different lengths are batched by padding on the left, so every row's
last real token is at the last position: that is where generation continues,
where the embedding is read, and where the continuations scored by `loglik` end.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Union

import numpy as np
import torch

from slm import runs
from slm.chat import CHAT_TOKENS, encode_chat
from slm.checkpoint import CheckpointError
from slm.generate import left_pad
from slm.hf import load_model_folder
from slm.lora import ADAPTER_CONFIG, load_adapter, merge_lora
from slm.model import SLM
from tokenizer.hf import export_config, load_tokenizer

Prompt = Union[str, list[dict]]
PROMPT_CACHE_SIZE = 4096  # encoded prompts kept (a benchmark's questions, each asked more than once)


@dataclass(frozen=True)
class Completion:
    """What `generate` gives for one prompt."""

    text: str  # the continuation, the prompt left out
    finished: bool  # it ended on its own (a stop token), not at the token limit


class LocalLM(Protocol):
    name: str  # recorded with what it produced (e.g. meta["model"] of synthetic documents)
    chat: bool  # prompts go through a chat template
    max_length: int | None  # the longest sequence (prompt + continuation) the model takes

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int = 256, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = None, batch_size: int = 8,
                 stop_at_newline: bool = False, repetition_penalty: float = 1.0) -> list[Completion]:
        """The continuation of each prompt and whether it finished; temperature 0 is greedy."""
        ...

    def loglik(self, requests: Sequence[tuple[Prompt, str]], batch_size: int = 8) -> list[float]:
        """Sum of the log-probabilities of each continuation's tokens after its prompt."""
        ...

    def prompt_length(self, prompt: Prompt) -> int:
        """Tokens the prompt takes (to fit few-shot prompts into the context)."""
        ...

    def encode_continuation(self, text: str) -> list[int]:
        """The tokens `loglik` scores for a continuation."""
        ...

    def embed(self, texts: Sequence[str], batch_size: int = 8) -> np.ndarray:
        """(len(texts), d) float32: the final hidden state (after the last norm) at each text's last token."""
        ...

    def document_nll(self, text: str) -> tuple[float, int]:
        """(negative log-likelihood in nats, tokens predicted) of a whole document, framed by the
        model's own begin/end tokens, in windows of its context (perplexity, bits per character).
        A model without a begin token (Qwen2) cannot predict a document's first token: it is left out."""
        ...


def plain_text(messages: list[dict]) -> str:
    """A conversation as text for a model without a chat format: the system message, then each
    user turn directly followed by its answer, turns apart by a blank line. A few-shot prompt
    reads as the model saw such text in pretraining: "...答え:e\\n\\n問題: ...答え:"."""
    parts, turn = [], ""
    for m in messages:
        if m["role"] == "system":
            parts.append(m["content"])
        elif m["role"] == "user":
            if turn:
                parts.append(turn)
            turn = m["content"]
        else:
            parts.append(turn + m["content"])
            turn = ""
    if turn:
        parts.append(turn)
    return "\n\n".join(parts)


class _TorchLM:
    """What the adapters share: batching, the loglik bookkeeping, embedding batches.

    Subclasses say how to encode prompts and continuations and run the model on a padded
    batch. Each batch of a sampled `generate` gets its own seed (seed, seed + 1, ...), so the
    same prompts, seed and batch size give the same texts without touching global RNGs.
    """

    def __init__(self, *, name: str, chat: bool, max_length: int | None, pad_id: int, dim: int,
                 device: torch.device):
        self.name = name
        self.chat = chat
        self.max_length = max_length
        self.pad_id = pad_id
        self.dim = dim  # the hidden size, the width of `embed`'s output
        self.device = torch.device(device)
        self._encoded: OrderedDict = OrderedDict()  # see _prompt_ids

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        raise NotImplementedError

    def encode_continuation(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode_document(self, text: str) -> list[int]:
        raise NotImplementedError

    def prompt_length(self, prompt: Prompt) -> int:
        return len(self._prompt_ids(prompt))

    def _prompt_ids(self, prompt: Prompt) -> list[int]:
        """encode_prompt, remembered for the last prompts: the harness measures a prompt to fit it
        into the context and then generates from it, and a question's choices share one prompt."""
        cache = self._encoded
        key = prompt if isinstance(prompt, str) else tuple((m["role"], m["content"]) for m in prompt)
        if key in cache:
            cache.move_to_end(key)
        else:
            cache[key] = self.encode_prompt(prompt)
            if len(cache) > PROMPT_CACHE_SIZE:
                cache.popitem(last=False)
        return cache[key]

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int = 256, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = None, batch_size: int = 8,
                 stop_at_newline: bool = False, repetition_penalty: float = 1.0) -> list[Completion]:
        if temperature < 0 or not 0 < top_p <= 1:
            raise ValueError(f"need temperature >= 0 (0: greedy) and 0 < top_p <= 1, got {temperature}, {top_p}")
        ids = [self._prompt_ids(p) for p in prompts]
        out: list[Completion] = []
        sampling = dict(temperature=temperature, top_p=top_p, repetition_penalty=repetition_penalty)
        for k, start in enumerate(range(0, len(ids), batch_size)):
            batch_seed = None if seed is None else seed + k
            texts, finished = self._generate_batch(ids[start : start + batch_size], max_new_tokens, sampling, batch_seed,
                                                   stop_at_newline)
            texts = [t.split("\n", 1)[0] for t in texts] if stop_at_newline else texts
            out += [Completion(t, f) for t, f in zip(texts, finished)]
        return out

    @torch.no_grad()
    def loglik(self, requests: Sequence[tuple[Prompt, str]], batch_size: int = 8) -> list[float]:
        """Prompt and continuation are encoded apart and joined, so a chat model scores exactly the
        tokens it would write after its turn marker (and a continuation is always its own tokens).

        The model reads prompt + continuation without its last token, and the last len(continuation)
        positions predict the continuation. One-token continuations of one prompt (answer letters)
        share that input: one forward pass scores all of a question's choices.
        """
        jobs: dict[tuple[int, ...], int] = {}  # model input -> positions to keep
        needs = []
        for prompt, continuation in requests:
            context, target = self._prompt_ids(prompt), self.encode_continuation(continuation)
            if not target:
                raise ValueError(f"continuation {continuation!r} encodes to no tokens")
            key = tuple(context + target[:-1])
            if self.max_length is not None and len(key) > self.max_length:
                raise ValueError(f"prompt + continuation take {len(key) + 1} tokens, more than the model's {self.max_length}")
            jobs[key] = max(jobs.get(key, 0), len(target))
            needs.append((key, target))
        keys = sorted(jobs, key=len, reverse=True)  # similar lengths share a batch: less padding
        logprobs: dict[tuple[int, ...], torch.Tensor] = {}
        for start in range(0, len(keys), batch_size):
            batch = keys[start : start + batch_size]
            keep = max(jobs[k] for k in batch)
            input_ids, mask = left_pad([list(k) for k in batch], self.pad_id, self.device)
            logits = self._logits(input_ids, mask, keep).float().log_softmax(dim=-1).cpu()
            logprobs.update(zip(batch, logits))
        return [float(logprobs[key][-len(target) :].gather(1, torch.tensor(target)[:, None]).sum())
                for key, target in needs]

    @torch.no_grad()
    def document_nll(self, text: str) -> tuple[float, int]:
        ids = self.encode_document(text)
        width = max(self.max_length or len(ids), 2)
        nll, predicted = 0.0, 0
        # windows overlap by one token, so every token after the first is predicted exactly once
        for start in range(0, max(len(ids) - 1, 1), width - 1):
            window = ids[start : start + width]
            if len(window) < 2:
                break
            input_ids = torch.tensor([window], device=self.device)
            logits = self._logits(input_ids, torch.ones_like(input_ids), len(window))[0, :-1].float()
            nll += torch.nn.functional.cross_entropy(logits, input_ids[0, 1:], reduction="sum").item()
            predicted += len(window) - 1
        return nll, predicted

    @torch.no_grad()
    def embed(self, texts: Sequence[str], batch_size: int = 8) -> np.ndarray:
        parts = [self._embed_batch(list(texts[i : i + batch_size])).float().cpu().numpy()
                 for i in range(0, len(texts), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), dtype=np.float32)

    def _generate_batch(self, ids: list[list[int]], max_new_tokens: int, sampling: dict, seed: int | None,
                        stop_at_newline: bool) -> tuple[list[str], list[bool]]:
        """(texts, whether each ended on a stop token)."""
        raise NotImplementedError

    def _logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, keep: int) -> torch.Tensor:
        """(B, keep, vocab): the logits of the last `keep` positions of a left-padded batch."""
        raise NotImplementedError

    def _embed_batch(self, texts: list[str]) -> torch.Tensor:
        """(len(texts), d) hidden states at the last real token."""
        raise NotImplementedError


def check_tokenizer(model_config, tokenizer, source: str | Path, chat: bool = False) -> None:
    """A checkpoint's parts against each other: every token id fits the model's embedding, the
    begin/end/padding ids agree, and a chat model's tokenizer has the chat tokens. Raises
    CheckpointError naming the folder and each mismatch."""
    problems = []
    if tokenizer.vocab_size > model_config.vocab_size:
        problems.append(f"the tokenizer has {tokenizer.vocab_size} tokens, the model's embedding only "
                        f"{model_config.vocab_size} rows")
    for name in ("bos", "eos", "pad"):
        ours, model = getattr(tokenizer, f"{name}_id"), getattr(model_config, f"{name}_token_id", None)
        if ours is not None and model is not None and ours != model:
            problems.append(f"{name} id {ours} in the tokenizer, {model} in the model's config")
    for token in CHAT_TOKENS if chat else ():
        try:
            tokenizer.token_id(token)
        except KeyError:
            problems.append(f"marked as a chat model ({runs.CHAT_MARKER}) but the tokenizer has no {token}")
    if problems:
        raise CheckpointError(f"{source}: the tokenizer does not match the model: " + "; ".join(problems))


def lora_base(model_dir: Path) -> Path:
    """The base a LoRA checkpoint was trained on: the `init_from` of its run's config."""
    run = runs.run_of(model_dir)
    base = runs.run_config(run).get("init_from") if run is not None else None
    if not base:
        raise FileNotFoundError(f"{model_dir} is a LoRA adapter and its run's {runs.CONFIG_FILE} names no base "
                                "model; pass its base")
    return Path(base)


class SLMAdapter(_TorchLM):
    """One of our models with its tokenizer: in memory (a trainer judging its checkpoints by their
    answers), or from a checkpoint folder (`from_folder`).

    chat: prompts go through the chat template; a base model reads conversations as plain text.
    Texts are encoded with <begin_of_text> first, as generation prompts are, which also
    gives an empty text one token to embed. Embedding inputs are cut to `max_length`
    tokens (default: the model's max_seq_len), keeping the start of the text.
    """

    def __init__(self, model: SLM, tokenizer, *, chat: bool, name: str = "in-memory", max_length: int | None = None):
        super().__init__(name=name, chat=chat, max_length=max_length or model.config.max_seq_len,
                         pad_id=tokenizer.pad_id, dim=model.config.d_model, device=next(model.parameters()).device)
        self.model, self.tokenizer = model, tokenizer

    @classmethod
    def from_folder(cls, model_dir: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                    max_length: int | None = None, base: str | Path | None = None,
                    chat: bool | None = None) -> SLMAdapter:
        """A checkpoint folder (`<model_dir>/config.json`, the weights, `<model_dir>/tokenizer/`), or a
        LoRA adapter folder put on its base (`base`, else its run's `init_from`) and merged.
        chat: None reads it from the checkpoint (instruction tuning marks its checkpoints)."""
        model_dir = Path(model_dir)
        exported = export_config(model_dir)  # slm's model exported for transformers (slm.export), read back
        if (model_dir / ADAPTER_CONFIG).is_file():
            base_model = load_model_folder(base or lora_base(model_dir), dtype=torch.float32)
            model = merge_lora(load_adapter(base_model, model_dir)).to(device=device, dtype=dtype).eval()
        else:
            model = load_model_folder(model_dir, device=device, dtype=dtype).eval()
        # ours, the transformers one it was tuned with, or an export's (the folder itself)
        tokenizer = load_tokenizer(model_dir if exported else model_dir / runs.TOKENIZER_DIR)
        if chat is None:
            chat = "chat_template" in exported if exported else runs.is_chat(model_dir)
        check_tokenizer(model.config, tokenizer, model_dir, chat)
        return cls(model, tokenizer, chat=chat, name=model_dir.resolve().name, max_length=max_length)

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        if self.chat:
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            return encode_chat(self.tokenizer, messages, add_generation_prompt=True).input_ids
        return self.tokenizer.encode(prompt if isinstance(prompt, str) else plain_text(prompt), add_bos=True)

    def encode_continuation(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def encode_document(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_bos=True, add_eos=True)

    def _generate_batch(self, ids, max_new_tokens, sampling, seed, stop_at_newline):
        eos = [self.tokenizer.eos_id] + (self.tokenizer.newline_ids if stop_at_newline else [])
        out = self.model.generate(ids, max_new_tokens=max_new_tokens, do_sample=sampling["temperature"] > 0, seed=seed,
                                  eos_token_id=eos, pad_token_id=self.pad_id, **sampling)
        new = out[:, max(map(len, ids)) :]
        finished = torch.isin(new, torch.tensor(eos, device=new.device)).any(dim=1).tolist()
        # Finished rows are filled with padding (<end_of_text>), a special token that decoding drops.
        return self.tokenizer.decode_batch(new.tolist(), skip_special_tokens=True), finished

    def _logits(self, input_ids, attention_mask, keep):
        mask = None if attention_mask.all() else attention_mask
        return self.model(input_ids, attention_mask=mask, logits_to_keep=keep).logits

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

    chat: use the tokenizer's chat template (a text prompt becomes one user turn), as
    instruction-tuned models expect; None uses it whenever the tokenizer has one.
    A tokenizer without a pad token pads with its eos token (padding is masked anyway).
    Embedding inputs are cut to `max_length` tokens (default: the model's
    max_position_embeddings when its config has one).
    """

    def __init__(self, model_dir: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                 max_length: int | None = None, chat: bool | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer  # optional heavy dependency: transformers

        model_dir = Path(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ValueError(f"{model_dir}: the tokenizer has neither a pad nor an eos token to pad batches with")
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=dtype or "auto")
        super().__init__(name=model_dir.resolve().name,
                         chat=tokenizer.chat_template is not None if chat is None else chat,
                         max_length=max_length or getattr(model.config, "max_position_embeddings", None),
                         pad_id=tokenizer.pad_token_id, dim=model.config.get_text_config().hidden_size, device=device)
        self.tokenizer, self.model = tokenizer, model.to(device).eval()

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        if self.chat:
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            # the template writes the special tokens (bos) itself
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.tokenizer(prompt if isinstance(prompt, str) else plain_text(prompt))["input_ids"]

    def encode_continuation(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode_document(self, text: str) -> list[int]:
        ids = self.tokenizer(text)["input_ids"]
        eos = self.tokenizer.eos_token_id
        return ids + [eos] if eos is not None and ids[-1:] != [eos] else ids

    def _positions(self, mask: torch.Tensor) -> torch.Tensor:
        """Positions counting real tokens only, so a left-padded row is read as it is alone."""
        return (mask.cumsum(dim=-1) - 1).clamp(min=0)

    def _generate_batch(self, ids, max_new_tokens, sampling, seed, stop_at_newline):
        input_ids, mask = left_pad(ids, self.pad_id, self.device)
        temperature, top_p = sampling["temperature"], sampling["top_p"]
        # top_k=0: no top-k cut (transformers' default is 50), so both adapters sample alike
        options = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if temperature > 0 else dict(do_sample=False)
        options["repetition_penalty"] = sampling["repetition_penalty"]
        if stop_at_newline:
            options.update(stop_strings=["\n"], tokenizer=self.tokenizer)
        # transformers samples from the global RNG: seed it inside a fork, so the caller's state is kept.
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                      pad_token_id=self.pad_id, **options)
        new = out[:, input_ids.shape[1] :]
        # A row that stopped (an eos id of the tokenizer or the generation config, a stop string) is
        # padded after it; one that ran out of tokens has neither.
        configured = self.model.generation_config.eos_token_id
        stops = {self.pad_id, self.tokenizer.eos_token_id, *(configured if isinstance(configured, list) else [configured])}
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        finished = [new.shape[1] < max_new_tokens or bool(stops & set(row.tolist())) or (stop_at_newline and "\n" in t)
                    for row, t in zip(new, texts)]
        return texts, finished

    def _logits(self, input_ids, attention_mask, keep):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=self._positions(attention_mask),
                          logits_to_keep=keep).logits

    def _embed_batch(self, texts):
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=self.max_length is not None,
                             max_length=self.max_length).to(self.device)
        empty = (enc["attention_mask"].sum(dim=1) == 0).nonzero().flatten().tolist()
        if empty:  # a row of padding only has no last token (tokenizers that add no bos, given "")
            raise ValueError(f"{len(empty)} text(s) encode to no tokens and cannot be embedded: {[texts[i][:30] for i in empty]}")
        # The last entry of output_hidden_states is the final (normed) layer output; only the
        # last position is kept, which left padding makes every row's last real token.
        return self.model(**enc, position_ids=self._positions(enc["attention_mask"]), output_hidden_states=True,
                          logits_to_keep=1).hidden_states[-1][:, -1]


def load_lm(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
            base: str | Path | None = None, chat: bool | None = None) -> LocalLM:
    """The adapter for a local model: transformers configs name a "model_type"; ours
    (slm.config.ModelConfig) have "d_model" and never a "model_type"; a LoRA adapter folder
    has adapter_config.json and goes onto `base` (default: its run's init_from)."""
    path = runs.resolve_model_dir(path)
    if (path / ADAPTER_CONFIG).is_file():
        return SLMAdapter.from_folder(path, device=device, dtype=dtype, base=base, chat=chat)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{path} is not a model folder: config.json is missing")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if "model_type" in config and export_config(path) is None:
        return HFAdapter(path, device=device, dtype=dtype, chat=chat)
    if "model_type" in config or "d_model" in config:  # ours, or ours exported (slm.export): read back as slm
        return SLMAdapter.from_folder(path, device=device, dtype=dtype, chat=chat)
    raise ValueError(f"{config_path}: neither a transformers config (model_type) nor an slm ModelConfig (d_model)")
