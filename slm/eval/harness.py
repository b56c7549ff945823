"""What every benchmark shares: the `Benchmark` it is registered as, the `Result` it returns,
putting its questions to a model, and the files every evaluation writes.

A benchmark (one module in slm/eval, one line in slm.eval.registry) is a `Benchmark`:
its name, an options dataclass (keyword-only, each default written once, a `Config`, so
YAML recipes and the CLI are checked the same way), `load` (read and validate the data,
before any model work), `run` (put it to any `LocalLM`) and optionally `score` (read
the data and published prediction files, and score them without a model). `run` and
`score` return a `Result`.

A benchmark turns each question into an `Item`: its prompts from the richest (all
few-shot examples) to the leanest, and for log-likelihood answering the labelled
continuations to rank. `answer_items` fits each prompt into the model's context
(dropping few-shot examples, counted, when the full prompt is too long), then
either generates greedily in batches of similar length, or ranks the choices by
the model's log-likelihood and picks as many as the question asks (report §2.5:
base models cannot follow the instruction format, so they are ranked instead).
A question that cannot be put to the model (its prompt is longer than the
context even without examples) gets an empty output and an `error`: it counts as
wrong and is listed, it never stops the run.

Every run writes `predictions.jsonl` (one row per question, for error analysis),
`metrics.json` and `table.md` (`write_results`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from slm.checkpoint import atomic_write
from slm.config import Config
from slm.lm import LocalLM, Prompt, load_lm

Method = Literal["generate", "loglik"]
PROBLEMS = {"unparsed": "no readable answer", "not_answered": "prompt too long for the model",
            "missing": "no prediction"}


class BenchmarkError(ValueError):
    """Unusable benchmark data or predictions; the message names the file, line or row, and field."""


@dataclass
class Problem:
    """Items of one group (a year, a task) that count as wrong for a reason worth listing."""

    kind: str  # a key of PROBLEMS
    ids: list[str]
    group: str = ""


@dataclass
class Result:
    """What every benchmark returns: per-item rows (predictions.jsonl), every metric (metrics.json),
    the headline numbers a sweep plots and a recipe tabulates, a Markdown table, and the problems."""

    rows: list[dict]
    metrics: dict
    headline: dict[str, float]
    table: str
    problems: list[Problem] = field(default_factory=list)
    unit: str = "questions"  # what an item is called in messages
    notes: list[str] = field(default_factory=list)  # what else the user should see (records skipped, ...)

    def summary(self) -> str:
        """The table, a line per problem (counted wrong) naming the first ids, then the notes."""
        lines = [f"{p.group + ': ' if p.group else ''}{PROBLEMS[p.kind]} (counted wrong) for {len(p.ids)} of the "
                 f"{self.unit}: {p.ids[:10]}" for p in self.problems if p.ids]
        return self.table + "".join(line + "\n" for line in lines + self.notes)


def problems_of(groups: dict[str, dict], kinds: Sequence[str] = tuple(PROBLEMS)) -> list[Problem]:
    """The problems listed in per-group metrics ({"unparsed": [...], "not_answered": [...], ...})."""
    return [Problem(kind, [str(i) for i in g[kind]], name) for name, g in groups.items() for kind in kinds
            if g.get(kind)]


@dataclass(kw_only=True)
class Context:
    """How a benchmark is run, beside its options: batching, progress, and how to open another
    model its options name (the kNN embedder of multiple choice)."""

    batch_size: int = 8
    progress: bool = True
    load_lm: Callable[[str], LocalLM] = load_lm


def option(default: Any = None, help: str = "", factory: Callable[[], Any] | None = None) -> Any:
    """A field of a benchmark's options, with the help text its command-line flag shows."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Benchmark:
    name: str
    options: type[Config]  # a keyword-only dataclass of the benchmark's settings
    load: Callable[[Sequence[str], Any], Any]  # (data files or folder, options) -> validated data
    run: Callable[[LocalLM, Any, Any, Context], Result]  # (model, data, options, context)
    score: Callable[[Sequence[str], Sequence[str], Any], Result] | None = None  # (data, prediction files, options)
    data_help: str = ""
    many_files: bool = False  # --data takes several files (else one folder or file)
    predictions_help: str = ""


@dataclass
class Item:
    id: str
    prompts: list[Prompt]  # richest first: prompts[k] has k fewer few-shot examples than prompts[0]
    choices: list[tuple[str, str]] | None = None  # (label, continuation) to rank; None: always generated
    pick: int = 1  # how many labels a ranked answer takes
    normalize: bool = False  # rank by log-likelihood per character of the continuation (choice texts of unequal length)


@dataclass
class Answer:
    output: str  # what the model wrote, or the picked labels joined by ","
    dropped_shots: int = 0
    error: str | None = None  # the question was not put to the model (counts as wrong)
    note: str | None = None  # it was, under a constraint worth knowing (a shortened generation budget)
    finished: bool | None = None  # generated: ended on its own rather than at the token limit
    scores: dict[str, float] | None = None  # loglik: the score of every label


def fit(lm: LocalLM, item: Item, reserve: int, shrinkable: bool) -> tuple[int, Prompt | None, int]:
    """(examples dropped, the first prompt that leaves `reserve` tokens free, its length). When
    none does: the leanest prompt if the reserve may shrink (a generation budget) and a token
    still fits, else None."""
    if lm.max_length is None:
        return 0, item.prompts[0], lm.prompt_length(item.prompts[0])
    for dropped, prompt in enumerate(item.prompts):
        n = lm.prompt_length(prompt)
        if n + reserve <= lm.max_length:
            return dropped, prompt, n
    dropped = len(item.prompts) - 1
    return (dropped, item.prompts[-1], n) if shrinkable and n < lm.max_length else (dropped, None, n)


def answer_items(lm: LocalLM, items: Sequence[Item], method: Method = "generate", max_new_tokens: int = 32,
                 batch_size: int = 8, stop_at_newline: bool = False, progress: bool = True,
                 repetition_penalty: float = 1.0) -> dict[str, Answer]:
    """Every item's answer. Items without choices are generated in either method."""
    if method not in ("generate", "loglik"):
        raise ValueError(f"method must be 'generate' or 'loglik', not {method!r}")
    answers: dict[str, Answer] = {}
    to_generate: list[tuple[int, Item, Prompt]] = []
    to_rank: list[tuple[Item, Prompt]] = []
    for item in items:
        ranked = method == "loglik" and item.choices
        reserve = max(len(lm.encode_continuation(c)) for _, c in item.choices) if ranked else max_new_tokens
        dropped, prompt, n = fit(lm, item, reserve, shrinkable=not ranked)
        if prompt is None:
            answers[item.id] = Answer("", dropped, f"prompt of {n} tokens and {reserve} for the answer do not fit "
                                                   f"the model's {lm.max_length}")
            continue
        answers[item.id] = Answer("", dropped)
        if ranked:
            to_rank.append((item, prompt))
        else:
            to_generate.append((n, item, prompt))

    bar = tqdm(total=len(to_generate) + len(to_rank), desc=f"answering ({method})", unit="q", disable=not progress,
               leave=False)
    to_generate.sort(key=lambda x: x[0], reverse=True)  # similar lengths share a batch: less padding
    for start in range(0, len(to_generate), batch_size):
        batch = to_generate[start : start + batch_size]
        budget = max_new_tokens if lm.max_length is None else min(max_new_tokens, lm.max_length - batch[0][0])
        completions = lm.generate([p for _, _, p in batch], max_new_tokens=budget, batch_size=len(batch),
                                  stop_at_newline=stop_at_newline, repetition_penalty=repetition_penalty)
        for (_, item, _), completion in zip(batch, completions):
            answers[item.id].output = completion.text.strip()
            answers[item.id].finished = completion.finished
            if budget < max_new_tokens:
                answers[item.id].note = f"only {budget} new tokens fit the context (asked {max_new_tokens})"
        bar.update(len(batch))
    for start in range(0, len(to_rank), batch_size):  # a batch of questions a call: their choices share batches
        batch = to_rank[start : start + batch_size]
        requests = [(prompt, text) for item, prompt in batch for _, text in item.choices]
        values = iter(lm.loglik(requests, batch_size=batch_size))
        for item, _ in batch:
            scores = {}
            for label, text in item.choices:
                value = next(values)
                scores[label] = value / max(len(text), 1) if item.normalize else value
            best = sorted(scores, key=scores.get, reverse=True)[: item.pick]
            answers[item.id].output = ",".join(sorted(best))
            answers[item.id].scores = scores
        bar.update(len(batch))
    bar.close()
    return answers


def write_results(out_dir: str | Path, result: Result) -> Path:
    """predictions.jsonl, metrics.json and table.md in `out_dir` (each written atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in result.rows)
    metrics = json.dumps(result.metrics, indent=2, ensure_ascii=False) + "\n"
    atomic_write(out_dir / "predictions.jsonl", lambda p: p.write_text(lines, encoding="utf-8"))
    atomic_write(out_dir / "metrics.json", lambda p: p.write_text(metrics, encoding="utf-8"))
    atomic_write(out_dir / "table.md", lambda p: p.write_text(result.table, encoding="utf-8"))
    return out_dir
