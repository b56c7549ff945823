"""Perplexity and bits per character on held-out text (how domain continued pretraining is judged).

Perplexity compares checkpoints of one model (same tokenizer); bits per character compares
models with different tokenizers, ours or transformers': it divides the same kind of total
negative log-likelihood by the characters of the text as given (the same denominator for
every model), rather than by a tokenizer-dependent token count.
Each document is framed by the model's begin/end tokens and scored in windows of its
context, every token predicted once (slm.lm `document_nll`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tokenizer.progress import progress as progress_bar

from slm.config import Config
from slm.data.readers import SourceConfig, read_documents
from slm.eval.harness import Benchmark, Context, Result, read_each
from slm.lm import LocalLM


def perplexity(lm: LocalLM, documents: Iterable[str], progress: bool = False) -> dict:
    """{"documents", "tokens", "characters", "nll", "perplexity", "bits_per_character"} over the documents."""
    nll, tokens, chars, n = 0.0, 0, 0, 0
    for text in progress_bar(documents, desc="perplexity", unit="doc", enabled=progress, leave=False):
        doc_nll, doc_tokens = lm.document_nll(text)
        nll, tokens, chars, n = nll + doc_nll, tokens + doc_tokens, chars + len(text), n + 1
    return {"documents": n, "tokens": tokens, "characters": chars, "nll": nll,
            "perplexity": math.exp(nll / max(tokens, 1)), "bits_per_character": nll / math.log(2) / max(chars, 1)}


# ------------------------------------------------------------------ the registered benchmark

@dataclasses.dataclass(kw_only=True)
class Options(Config):
    """Perplexity has nothing to choose: every token of every document is scored."""


@dataclass
class Heldout:
    documents: list[str]
    skipped: int  # unreadable lines of the inputs


def load(data: Sequence[str], options: Options) -> Heldout:
    """Held-out text files (documents apart by blank lines) or JSONL (UTF-8), or folders of them.
    A damaged line drops its document (counted); a file that gives no readable document at all
    (not UTF-8, empty, binary, no text field) is an error naming it and why."""
    def documents(path, errors):
        return [d.text for d in read_documents(SourceConfig(name="heldout", paths=[str(path)]), errors)]

    return Heldout(*read_each(data, "document", documents))


def run(lm: LocalLM, heldout: Heldout, options: Options, context: Context) -> Result:
    result = {**perplexity(lm, heldout.documents, context.progress), "model": lm.name,
              "unreadable_lines_skipped": heldout.skipped}
    table = ("| documents | tokens | characters | perplexity | bits/character |\n|---|---|---|---|---|\n"
             f"| {result['documents']:,} | {result['tokens']:,} | {result['characters']:,} | "
             f"{result['perplexity']:.2f} | {result['bits_per_character']:.3f} |\n")
    headline = {"perplexity": result["perplexity"], "bits_per_character": result["bits_per_character"]}
    return Result([], result, headline, table, unit="documents", notes=[f"{heldout.skipped} unreadable lines skipped"])


BENCHMARK = Benchmark(name="perplexity", options=Options, load=load, run=run, many_files=True,
                      data_help="text files (documents separated by blank lines) or JSONL")
