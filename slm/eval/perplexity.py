"""Perplexity and bits per character on held-out text (how domain continued pretraining is judged).

Perplexity compares checkpoints of one model (same tokenizer); bits per character compares
models with different tokenizers, ours or transformers': it divides the same kind of total
negative log-likelihood by the characters of the text as given (the same denominator for
every model), rather than by a tokenizer-dependent token count.
Each document is framed by the model's begin/end tokens and scored in windows of its
context, every token predicted once (slm.lm `document_nll`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from tqdm import tqdm

from slm.lm import LocalLM


def perplexity(lm: LocalLM, documents: Iterable[str], progress: bool = False) -> dict:
    """{"documents", "tokens", "characters", "nll", "perplexity", "bits_per_character"} over the documents."""
    nll, tokens, chars, n = 0.0, 0, 0, 0
    for text in tqdm(documents, desc="perplexity", unit="doc", disable=not progress, leave=False):
        doc_nll, doc_tokens = lm.document_nll(text)
        nll, tokens, chars, n = nll + doc_nll, tokens + doc_tokens, chars + len(text), n + 1
    return {"documents": n, "tokens": tokens, "characters": chars, "nll": nll,
            "perplexity": math.exp(nll / max(tokens, 1)), "bits_per_character": nll / math.log(2) / max(chars, 1)}
