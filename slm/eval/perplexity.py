"""Perplexity and bits per character on held-out text (how domain continued pretraining is judged).

Perplexity compares checkpoints of one model (same tokenizer); bits per character compares
models with different tokenizers, since it divides the same total negative log-likelihood
by the characters of the text rather than by a tokenizer-dependent token count.
Each document is scored in windows of the model's context, every token predicted once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from slm.model import SLM


@torch.no_grad()
def perplexity(model: SLM, tokenizer, documents: Iterable[str], max_len: int | None = None) -> dict:
    """{"tokens", "characters", "nll", "perplexity", "bits_per_character"} over the documents."""
    model.eval()
    device = next(model.parameters()).device
    max_len = max_len or model.config.max_seq_len
    nll, tokens, chars = 0.0, 0, 0
    for text in documents:
        ids = tokenizer.encode(text, add_bos=True, add_eos=True)
        chars += len(tokenizer.normalize(text))
        # windows overlap by one token, so every token after the first is predicted exactly once
        for start in range(0, max(len(ids) - 1, 1), max_len - 1):
            window = torch.tensor([ids[start : start + max_len]], device=device)
            if window.shape[1] < 2:
                break
            logits = model(window).logits[0, :-1].float()
            nll += torch.nn.functional.cross_entropy(logits, window[0, 1:], reduction="sum").item()
            tokens += window.shape[1] - 1
    return {"tokens": tokens, "characters": chars, "nll": nll, "perplexity": math.exp(nll / max(tokens, 1)),
            "bits_per_character": nll / math.log(2) / max(chars, 1)}
