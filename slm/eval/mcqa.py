"""English medical multiple-choice QA: MedQA (USMLE), MedMCQA, PubMedQA (yes/no/maybe) and MMLU's
medical subjects, from local files in their published schemas (read by slm.finetune.converters,
so a model is asked exactly what instruction tuning on the same converters taught it).

Prompting, as the clinical continued-pretraining work compares it (shared/reference/001):
- zero-shot, or k few-shot examples from a training split: `fixed` (the first k) or `knn` (the
  k training questions nearest to each test question by embedding cosine, from `embedder`, any
  slm.lm model, by default the model under test);
- chain-of-thought: the model reasons, then states "The answer is X", read by `extract_choice`;
- self-consistency: `samples` chains sampled at `temperature`, the majority answer wins;
- log-likelihood ranking of the answer labels instead of generation (base models).
Accuracy comes with a 95% Wilson confidence interval: on a few hundred questions it is wide.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
from tokenizer.progress import progress as progress_bar

from slm.config import Config, ConfigError
from slm.eval.harness import (Benchmark, BenchmarkError, Context, Item, Method, Problem, Result, answer_items, fit, option,
                              read_text)
from slm.finetune import converters
from slm.lm import LocalLM
from tokenizer.corpus import CorpusError

NAMES = ("medqa", "medmcqa", "pubmedqa", "mmlu")
COT_INSTRUCTION = "Think step by step, then end with \"The answer is X\", X being {choices}."


class MCQAError(BenchmarkError):
    """Unusable multiple-choice files; the message names the files and why their records were skipped."""


@dataclass
class MCQ:
    id: str
    system: str
    question: str  # the question with its lettered options (or its context), as the converters write it
    labels: list[str]  # "A", "B", ... or "yes", "no", "maybe"
    answer: str


def load(benchmark: str, paths: Sequence[str | Path], cop_base: int = 1) -> tuple[list[MCQ], list[str]]:
    """(questions, skipped records with file, line and reason) of a benchmark's files."""
    if benchmark not in NAMES:
        raise ValueError(f"benchmark must be one of {list(NAMES)}, not {benchmark!r}")
    if benchmark == "pubmedqa":
        converted = converters.Converted()
        for path in paths:
            part = converters.convert_pubmedqa(path)
            converted.conversations += part.conversations
            converted.skipped += part.skipped
    elif benchmark == "medmcqa":
        converted = converters.convert_medmcqa(list(paths), cop_base)
    else:
        converted = converters.CONVERTERS[benchmark](list(paths))
    questions = []
    for n, (system, user, assistant) in enumerate(converted.conversations):
        labels = ["yes", "no", "maybe"] if benchmark == "pubmedqa" else re.findall(r"^([A-H])\. ", user["content"], re.M)
        questions.append(MCQ(f"{benchmark}-{n}", system["content"], user["content"].rstrip("\n"), labels,
                             assistant["content"]))
    return questions, converted.skipped


def extract_choice(text: str, labels: Sequence[str]) -> str | None:
    """The answer a (chain-of-thought) output gives, or None. In order: the last explicit statement
    ("the answer is (B)", "Answer: B", "correct option is B"); an output that is just a label ("B",
    "(B).", "Yes"); a single label mentioned on its own. Several labels without a statement: None."""
    options = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    letters = all(len(label) == 1 for label in labels)
    flags = 0 if letters else re.IGNORECASE
    # letters match in their case only, so the article in "the answer is a beta blocker" is no answer A
    label = rf"\(?({'(?-i:' + options + ')' if letters else options})\)?(?![A-Za-z])"
    statements = re.findall(rf"(?:answer\s*(?:is|:)|correct (?:option|answer|choice) is)\s*[:\-]?\s*{label}",
                            text or "", re.IGNORECASE)
    canonical = {item.lower(): item for item in labels}
    pick = [canonical.get(s.lower()) for s in statements if s.lower() in canonical]
    pick = [p for p in pick if p in labels]
    if pick:
        return pick[-1]
    whole = re.fullmatch(rf"\s*{label}[\s.]*", text or "", flags)
    if whole:
        return canonical[whole.group(1).lower()]
    alone = {canonical[m.lower()] for m in re.findall(rf"(?<![A-Za-z]){label}", text or "", flags)}
    return alone.pop() if len(alone) == 1 else None


def conversation(q: MCQ, shots: Sequence[MCQ], cot: bool, plain: bool = False) -> list[dict]:
    """The prompt: system, the examples as user/assistant turns, the question (ending in "Answer:").
    `plain` (a model without a chat format reads it as text): answers follow the cue after a space."""
    system = q.system
    if cot:
        choices = "yes, no or maybe" if q.labels == ["yes", "no", "maybe"] else "the letter of the correct option"
        system = system.split(". ")[0].rstrip(".") + ". " + COT_INSTRUCTION.format(choices=choices)
    messages = [{"role": "system", "content": system}]
    for shot in shots:
        answer = (" " if plain else "") + (f"The answer is {shot.answer}." if cot else shot.answer)
        messages += [{"role": "user", "content": shot.question}, {"role": "assistant", "content": answer}]
    return messages + [{"role": "user", "content": q.question}]


def knn_shots(questions: Sequence[MCQ], train: Sequence[MCQ], k: int, embedder: LocalLM,
              batch_size: int = 8) -> list[list[MCQ]]:
    """For each question, the k training questions nearest by cosine of `embedder`'s embeddings,
    nearest last (closest to the question), an identical question never among them."""
    vectors = embedder.embed([q.question for q in questions] + [t.question for t in train], batch_size=batch_size)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    similarity = vectors[: len(questions)] @ vectors[len(questions) :].T
    shots = []
    for row, q in zip(similarity, questions):
        order = [j for j in np.argsort(-row) if train[j].question != q.question][:k]
        shots.append([train[j] for j in reversed(order)])
    return shots


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of an accuracy (sound at small n and near 0 or 1)."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


@dataclasses.dataclass(kw_only=True)
class Options(Config):
    train: list[str] = option(factory=list, help="the training split few-shot examples come from")
    shots: int = option(0, "few-shot examples")
    selection: Literal["fixed", "knn"] = option("fixed", "the first k examples, or the k nearest")
    embedder: str | None = option(None, "the model whose embeddings choose kNN examples (default: the model itself)")
    cot: bool = option(False, "chain of thought, then 'The answer is X'")
    samples: int = option(1, "self-consistency: sampled chains voting")
    temperature: float = option(0.7, "sampling temperature of the chains")
    method: Method = option("generate", "generate, or rank the labels by log-likelihood (base models)")
    max_new_tokens: int | None = option(None, "default: 16, or 512 with chain of thought")
    cop_base: int = option(1, "MedMCQA: cop counts from 1 (original) or 0")

    def validate(self) -> None:
        if self.method == "loglik" and (self.cot or self.samples > 1):
            raise ConfigError("log-likelihood ranking has no chain of thought and no sampling: use method generate")

    def new_tokens(self) -> int:
        return self.max_new_tokens or (512 if self.cot else 16)


def evaluate(lm: LocalLM, questions: Sequence[MCQ], train: Sequence[MCQ] = (), options: Options = Options(),
             context: Context = Context(), embedder: LocalLM | None = None, seed: int = 0) -> dict:
    """Accuracy (with its interval) and per-question rows: prompt shots, outputs, votes, answer."""
    shots, cot, samples, method = options.shots, options.cot, options.samples, options.method
    if shots and not train:
        raise ValueError("few-shot prompting needs a training split to take the examples from")
    max_new_tokens, batch_size, progress = options.new_tokens(), context.batch_size, context.progress
    per_question = (knn_shots(questions, train, shots, embedder or lm, batch_size) if shots and options.selection == "knn"
                    else [list(train[:shots])] * len(questions))
    space = "" if lm.chat else " "  # "Answer: B" as text; a chat model's turn starts with the letter itself
    items = [Item(q.id, [conversation(q, s[d:], cot, plain=not lm.chat) for d in range(len(s) + 1)],
                  [(label, space + label) for label in q.labels]) for q, s in zip(questions, per_question)]
    votes: dict[str, list[str | None]] = {q.id: [] for q in questions}
    outputs: dict[str, list[str]] = {q.id: [] for q in questions}
    errors: dict[str, str | None] = {}
    dropped: dict[str, int] = {}
    if samples == 1:
        answers = answer_items(lm, items, method, max_new_tokens, batch_size, progress=progress)
        for q in questions:
            a = answers[q.id]
            outputs[q.id].append(a.output)
            votes[q.id].append(None if a.error else extract_choice(a.output, q.labels))
            errors[q.id], dropped[q.id] = a.error, a.dropped_shots
    else:  # self-consistency: sampled chains, majority vote
        fitted = {item.id: fit(lm, item, max_new_tokens, shrinkable=True) for item in items}
        live = [(q, fitted[q.id][1]) for q in questions if fitted[q.id][1] is not None]
        for q in questions:
            dropped[q.id] = fitted[q.id][0]
            errors[q.id] = None if fitted[q.id][1] is not None else "prompt does not fit the model's context"
        for s in progress_bar(range(samples), desc="self-consistency samples", enabled=progress, leave=False):
            texts = lm.generate([p for _, p in live], max_new_tokens=max_new_tokens, temperature=options.temperature,
                                seed=seed + 1000 * s, batch_size=batch_size)
            for (q, _), completion in zip(live, texts):
                outputs[q.id].append(completion.text)
                votes[q.id].append(extract_choice(completion.text, q.labels))
    rows, correct, unparsed = [], 0, []
    for q, given in zip(questions, per_question):
        counted = Counter(v for v in votes[q.id] if v is not None)
        # the most votes wins; a tie goes to the answer that reached that count first
        prediction = max(counted, key=lambda v: (counted[v], -votes[q.id].index(v))) if counted else None
        correct += prediction == q.answer
        if prediction is None and not errors[q.id]:
            unparsed.append(q.id)
        rows.append({"id": q.id, "answer": q.answer, "prediction": prediction, "correct": prediction == q.answer,
                     "votes": votes[q.id], "outputs": outputs[q.id], "shots": len(given) - dropped[q.id],
                     "error": errors[q.id]})
    n = len(questions)
    low, high = wilson(correct, n)
    return {"questions": n, "correct": correct, "accuracy": correct / max(n, 1), "ci95": [low, high],
            "unparsed": unparsed, "not_answered": [q.id for q in questions if errors[q.id]], "rows": rows,
            "settings": {"model": lm.name, "chat": lm.chat, "method": method, "shots": shots,
                         "selection": options.selection, "cot": cot, "samples": samples,
                         "temperature": options.temperature if samples > 1 else None, "max_new_tokens": max_new_tokens}}


def table(results: dict[str, dict]) -> str:
    lines = ["| benchmark | accuracy | 95% CI | questions | unparsed |", "|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['accuracy']:.1%} | {r['ci95'][0]:.1%}–{r['ci95'][1]:.1%} | {r['questions']} | "
                     f"{len(r['unparsed'])} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ the registered benchmarks

@dataclass
class Split:
    questions: list[MCQ]
    train: list[MCQ]  # few-shot examples
    skipped: list[str]  # records skipped, with file, line and reason


def _usable(benchmark: str, paths: Sequence[str], cop_base: int, what: str) -> tuple[list[MCQ], list[str]]:
    """(questions, skipped records) of files that must exist, be UTF-8 and hold a usable question."""
    for path in paths:
        read_text(path, MCQAError)  # missing, a folder, not UTF-8: named before the converter reads it
    try:
        questions, skipped = load(benchmark, paths, cop_base)
    except CorpusError as e:  # the converters' own: a file that does not decode, or nothing usable in them
        raise MCQAError(str(e)) from None
    if not questions:
        reasons = "; ".join(skipped[:3]) or "no records"
        raise MCQAError(f"{', '.join(map(str, paths))}: no usable {benchmark} {what} ({len(skipped)} records skipped: "
                        f"{reasons}{'; ...' if len(skipped) > 3 else ''})")
    return questions, skipped


def load_split(benchmark: str, data: Sequence[str], options: Options) -> Split:
    """The test questions and the few-shot training split, each with a usable question at least."""
    questions, skipped = _usable(benchmark, data, options.cop_base, "questions")
    train, train_skipped = _usable(benchmark, options.train, options.cop_base, "training questions") \
        if options.train else ([], [])
    if options.shots and len(train) < options.shots:
        raise MCQAError(f"{options.shots} few-shot examples asked for, but the training split (train) has "
                        f"{len(train)}" + ("" if options.train else ": name its files with train"))
    return Split(questions, train, skipped + train_skipped)


def run(benchmark: str, lm: LocalLM, split: Split, options: Options, context: Context) -> Result:
    embedder = context.load_lm(options.embedder) if options.embedder else None
    result = evaluate(lm, split.questions, split.train, options, context, embedder)
    rows = result.pop("rows")
    notes = [f"{len(split.skipped)} records skipped: {split.skipped[:5]}"] if split.skipped else []
    problems = [Problem(kind, result[kind], benchmark) for kind in ("unparsed", "not_answered") if result[kind]]
    return Result(rows, {benchmark: result, "skipped_records": split.skipped}, {"accuracy": result["accuracy"]},
                  table({benchmark: result}), problems, notes=notes)


BENCHMARKS = [Benchmark(name=name, options=Options, load=partial(load_split, name), run=partial(run, name),
                        data_help="the test files in the benchmark's published schema", many_files=True)
              for name in NAMES]
