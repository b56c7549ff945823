"""Free-text answers to held-out conversations: each conversation's last assistant turn is the
reference, and the model answers the turns before it. Scored by exact match, token F1,
ROUGE-L, BLEU and the degeneration statistics (slm.metrics); `unit: chars` for Japanese,
which has no spaces between words.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from slm.config import Config
from slm.eval.harness import Benchmark, Context, Item, Problem, Result, answer_items, option, read_each
from slm.finetune.instructions import load_conversations
from slm.lm import LocalLM
from slm.metrics import free_text_report

KEYS = ("exact_match", "token_f1", "rouge_l", "bleu", "distinct_2", "longest_repeat_max", "never_stopped")


@dataclasses.dataclass(kw_only=True)
class Options(Config):
    unit: Literal["words", "chars"] = option("words", "what the metrics count: chars for Japanese")
    max_new_tokens: int = option(256, "new tokens of an answer")
    repetition_penalty: float = option(1.0, "CTRL-style penalty on tokens already written")


@dataclass
class Conversations:
    conversations: list[list[dict]]
    skipped: int  # malformed records


def _conversations(path, errors) -> list[list[dict]]:
    return load_conversations([str(path)], errors)


def load(data: Sequence[str], options: Options) -> Conversations:
    """The conversations of UTF-8 JSONL files (or folders of them). A malformed record is skipped
    (counted); a file that gives no usable conversation (not UTF-8, empty, every record
    malformed) is an error naming it and why."""
    return Conversations(*read_each(data, "conversation", _conversations))


def run(lm: LocalLM, data: Conversations, options: Options, context: Context) -> Result:
    conversations = data.conversations
    references = [c[-1]["content"] for c in conversations]
    items = [Item(str(i), [c[:-1]]) for i, c in enumerate(conversations)]
    replies = answer_items(lm, items, "generate", options.max_new_tokens, context.batch_size, progress=False,
                           repetition_penalty=options.repetition_penalty)
    replies = [replies[str(i)] for i in range(len(conversations))]
    answers = [r.output for r in replies]
    # a prompt too long for the model is an empty answer that never stopped: counted, listed
    finished = [bool(r.finished) for r in replies]
    not_answered = [i for i, r in enumerate(replies) if r.error]
    report = {**free_text_report(answers, references, finished, options.unit), "malformed_records_skipped": data.skipped,
              "not_answered": not_answered,
              "settings": {"model": lm.name, **dataclasses.asdict(options)}}
    table = ("| " + " | ".join(KEYS) + " |\n|" + "---|" * len(KEYS) + "\n| "
             + " | ".join(f"{report[k]:.3f}" if k in report else "n/a" for k in KEYS) + " |\n")
    rows = [{"answer": a, "reference": r, "finished": f, "error": x.error}
            for a, r, f, x in zip(answers, references, finished, replies)]
    return Result(rows, report, {k: report[k] for k in KEYS if k in report}, table,
                  [Problem("not_answered", not_answered)], unit="conversations",
                  notes=[f"{len(answers)} answers; {data.skipped} malformed records skipped"])


BENCHMARK = Benchmark(name="qa", options=Options, load=load, run=run, many_files=True,
                      data_help="conversation JSONL; the last assistant turn is the reference")
