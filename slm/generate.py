"""Text generation with a KV cache: greedy, temperature, top-k, top-p, repetition penalty.

The arguments follow transformers' `generate` (do_sample, temperature, top_k,
top_p, repetition_penalty, eos_token_id, pad_token_id) so that settings carry
over, and so does the output: the (left-padded) prompt followed by the new
tokens, finished rows filled with the pad id.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # slm.model imports this module for SLM.generate
    from slm.model import SLM


# The decoding we recommend for free text from slm models: nucleus sampling at a moderate
# temperature, with a mild repetition penalty against the loops small models fall into.
# Benchmarks decode greedily (report §2.5).
RECOMMENDED = {"do_sample": True, "temperature": 0.8, "top_p": 0.9, "repetition_penalty": 1.1}


def left_pad(prompts: Sequence[Sequence[int]], pad_token_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists of different lengths: (input_ids, attention_mask)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    T = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), T), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), T), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, T - len(p) :] = torch.tensor(list(p), dtype=torch.long)
        mask[i, T - len(p) :] = 1
    return ids.to(device), mask.to(device)


def _apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style penalty (Keskar et al. 2019) on every token already in the sequence: positive
    logits divided by it, negative ones multiplied."""
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def _filter_top_k_top_p(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p; the top one always stays.
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


@torch.no_grad()
def generate(
    model: SLM,
    input_ids: torch.Tensor | Sequence[Sequence[int]],
    attention_mask: torch.Tensor | None = None,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    seed: int | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Continue each prompt by up to `max_new_tokens` tokens.

    input_ids: a (B, T) tensor, left-padded with `attention_mask` (1 = real token)
      when prompts differ in length, or a list of token lists (padded here).
    eos_token_id: one id or several stop ids (default: the model config's eos);
      a row stops after producing one of them.
    seed: sampling uses its own generator seeded with it, so the same seed gives
      the same output and the global RNG is left alone.
    use_cache=False recomputes the whole sequence each step (slow; a reference).

    Returns (B, T + n_new): the prompt, then the new tokens, rows that stopped
    early padded with `pad_token_id`.
    """
    config = model.config
    device = next(model.parameters()).device
    eos = eos_token_id if eos_token_id is not None else config.eos_token_id
    eos_ids = torch.tensor([] if eos is None else [eos] if isinstance(eos, int) else list(eos), dtype=torch.long, device=device)
    if pad_token_id is None:
        pad_token_id = config.pad_token_id if config.pad_token_id is not None else (int(eos_ids[0]) if len(eos_ids) else 0)
    if isinstance(input_ids, torch.Tensor):
        input_ids = input_ids.to(device)
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(device)
    else:
        input_ids, attention_mask = left_pad(input_ids, pad_token_id, device)
    if do_sample and temperature <= 0:
        raise ValueError("temperature must be positive when sampling (use do_sample=False for greedy)")
    if repetition_penalty <= 0:
        raise ValueError("repetition_penalty must be positive")
    B, T = input_ids.shape
    if T >= config.max_seq_len:
        raise ValueError(f"prompt of {T} tokens leaves no room within max_seq_len={config.max_seq_len}")
    if T + max_new_tokens > config.max_seq_len:
        warnings.warn(f"max_new_tokens={max_new_tokens} cut to {config.max_seq_len - T} by max_seq_len={config.max_seq_len}",
                      stacklevel=2)
        max_new_tokens = config.max_seq_len - T

    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    seen = None
    if repetition_penalty != 1.0:  # tokens present per row, padding excluded
        seen = torch.zeros(B, config.vocab_size + 1, dtype=torch.bool, device=device)
        seen.scatter_(1, torch.where(attention_mask.bool(), input_ids, config.vocab_size), True)
        seen = seen[:, : config.vocab_size]

    cache = model.new_kv_cache(B, T + max_new_tokens) if use_cache else None
    padded = not bool(attention_mask.all())  # without padding, attention takes the fast causal path
    was_training = model.training
    model.eval()  # no dropout while generating
    try:
        out, step_ids = input_ids, input_ids
        finished = torch.zeros(B, dtype=torch.bool, device=device)
        for _ in range(max_new_tokens):
            mask = attention_mask if padded else None
            if cache is not None:
                logits = model(step_ids, attention_mask=mask, kv_cache=cache, logits_to_keep=1).logits[:, -1].float()
                cache.advance(step_ids.shape[1])
            else:
                logits = model(out, attention_mask=mask, logits_to_keep=1).logits[:, -1].float()
            if seen is not None:
                logits = _apply_repetition_penalty(logits, seen, repetition_penalty)
            if do_sample:
                logits = _filter_top_k_top_p(logits / temperature, top_k, top_p)
                next_ids = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(1)
            else:
                next_ids = logits.argmax(dim=-1)
            next_ids = torch.where(finished, pad_token_id, next_ids)
            if seen is not None:
                seen[torch.arange(B, device=device), next_ids] |= ~finished
            out = torch.cat([out, next_ids[:, None]], dim=1)
            attention_mask = torch.cat([attention_mask, torch.ones_like(next_ids)[:, None]], dim=1)
            finished |= torch.isin(next_ids, eos_ids)
            step_ids = next_ids[:, None]
            if finished.all():
                break
    finally:
        model.train(was_training)
    return out
