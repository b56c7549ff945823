"""JMED-LLM scoring (report §2.5, Tables 3 and 4), in two modes.

`upstream` reproduces the published evaluator (sociocom/JMED-LLM) number for number:
- choice tasks: the prediction is the first character of the output that is one of A-F
  ("Answer: B" reads as A), else the label "None"; accuracy, and Cohen's kappa over the
  sorted union of gold and predicted labels ("None" included, sorting after "F"),
  unweighted for jmmlu_med, rrtnm, smdis and linear-weighted for crade, jcsts;
- NER tasks: the whole output must be a Python list literal, else [] (read with
  ast.literal_eval: never eval); exact F1 per document on sets of strings (precision 0 for
  an empty prediction), averaged; and the published "partial F1", which tests set
  membership instead of substrings: a document with at least one exact match scores recall
  1 and precision |answer| / |prediction| (which can exceed 1), otherwise 0.

`corrected` reads the first option letter standing on its own ("Answer: B" reads as B),
among the row's own options only, and makes partial F1 a real substring match. Headline cells: "kappa (accuracy)" and "partial F1 (exact F1)".

Putting the tasks to a model (`evaluate`) uses the official prompts (`conversation`) and
up to 512 new tokens, greedy (NER answers may be given their own budget); log-likelihood mode
ranks a choice task's option letters, and generates the NER tasks (free-text answers), which
metrics.json says per task and the summary once. A task takes hours on a big model: each is
saved in the output's partial/ as soon as it is finished (slm.eval.harness.Partial), so a
killed run, rerun, starts at the first unfinished task and writes the same files.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from slm.config import Config, ConfigError
from slm.eval.harness import (Benchmark, BenchmarkError, Context, Item, Method, Problem, Result, answer_items,
                              method_used, option, problems_of, read_csv, read_jsonl)
from slm.jmed import conversation, option_letters
from slm.lm import LocalLM
from slm.metrics import (JMED_CHOICE_TASKS, JMED_NER_TASKS, NO_LETTER, cohen_kappa, exact_f1, f1, first_letter,
                         parse_list, standalone_letter)

CHOICE_TASKS, NER_TASKS = JMED_CHOICE_TASKS, JMED_NER_TASKS  # owned by slm.metrics: fine-tuning selects by them too
TASKS = (*CHOICE_TASKS, *NER_TASKS)
NER_ANSWERS = "free-text answers"  # why log-likelihood ranking does not apply to the NER tasks


class JmedLLMError(BenchmarkError):
    """Malformed data or prediction files; the message names the file, line and field."""


OPTION_COLUMNS = tuple(f"option{L}" for L in "ABCDEF")


def load_task(data_dir: str | Path, task: str) -> list[dict]:
    """The rows of datasets/<task>.csv, checked against the task's schema: every reader of task
    files (running, scoring, reading predictions back) goes through here. Choice tasks need the
    columns question, answer and at least two of optionA..optionF, and per row a question, at
    least two non-empty options and an answer letter among them; NER tasks need question and
    answer, a Python list literal of strings. Errors name the file, the row (as a spreadsheet
    numbers it: the header is row 1) and the field."""
    folder = Path(data_dir)
    if not folder.is_dir():
        raise JmedLLMError(f"{folder}: no such folder (the JMED-LLM datasets folder, holding <task>.csv)"
                           if not folder.exists() else f"{folder}: a file, not the JMED-LLM datasets folder")
    path = folder / f"{task}.csv"
    if not path.exists():
        raise JmedLLMError(f"{path}: missing (JMED-LLM keeps each task as datasets/<task>.csv)")
    header, rows = read_csv(path, JmedLLMError)
    choice = task in CHOICE_TASKS
    missing = [c for c in ("question", "answer") if c not in header]
    options = [c for c in OPTION_COLUMNS if c in header]
    if missing or (choice and len(options) < 2):
        needs = "question, answer and the options optionA, optionB, ..." if choice else "question and answer"
        what = missing + ([f"option columns (found {options or 'none'})"] if choice and len(options) < 2 else [])
        raise JmedLLMError(f"{path} row 1: the {task} header needs {needs}; missing: {', '.join(what)} "
                           f"(header: {header})")
    checked = []
    for number, row in rows:
        where = f"{path} row {number}"
        if not row["question"].strip():
            raise JmedLLMError(f"{where}: field 'question' is empty")
        answer = row["answer"].strip()
        if choice:
            letters = option_letters(row)
            if len(letters) < 2:
                raise JmedLLMError(f"{where}: fields {options[0]}..{options[-1]}: {len(letters)} non-empty option(s), "
                                   f"a choice row needs at least 2")
            if len(answer) != 1 or answer not in letters:
                raise JmedLLMError(f"{where}: field 'answer' {answer!r} is not one of the row's options "
                                   f"{', '.join(letters)}")
        else:
            try:
                value = ast.literal_eval(answer)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                value = None
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                raise JmedLLMError(f"{where}: field 'answer' must be a Python list literal of strings such as "
                                   f"\"['胃癌', '走行異常']\", not {answer[:60]!r}")
        checked.append({**row, "answer": answer})
    return checked


def partial_f1(gold: list[list], pred: list[list], mode: str) -> float:
    total = 0.0
    for a, p in zip(gold, pred):
        a, p = set(a), set(p)
        if mode == "upstream":  # membership, not substrings: every answer counts once one matches exactly
            hit_a = len(a) if (a & p and p) else 0
            hit_p = hit_a
        else:
            hit_a = sum(any(x in y or y in x for y in p) for x in a)
            hit_p = sum(any(x in y or y in x for y in a) for x in p)
        total += f1(hit_p / len(p) if p else 0.0, hit_a / len(a) if a else 0.0)
    return total / len(gold)


def score_task(task: str, rows: list[dict], outputs: list[str], mode: str = "upstream") -> dict:
    """Metrics of one task, and the parsed prediction and gold answer of every row."""
    if task in CHOICE_TASKS:
        gold = [r["answer"] for r in rows]
        if mode == "upstream":
            pred = [first_letter(o) for o in outputs]
        else:
            pred = [standalone_letter(o, option_letters(r)) for o, r in zip(outputs, rows)]
        accuracy = sum(g == p for g, p in zip(gold, pred)) / len(gold)
        return {"accuracy": accuracy, "kappa": cohen_kappa(gold, pred, CHOICE_TASKS[task]), "predictions": pred,
                "gold": gold}
    gold = [parse_list(r["answer"]) for r in rows]
    pred = [parse_list(o) for o in outputs]
    return {"exact_f1": exact_f1(gold, pred), "partial_f1": partial_f1(gold, pred, mode), "predictions": pred,
            "gold": gold}


def read_outputs(path: str | Path) -> dict[str, dict[int, str]]:
    """{task: {index: output}} of a predictions file ({"task", "index", "output"} per line)."""
    path = Path(path)
    found: dict[str, dict[int, str]] = {}
    lines: dict[tuple[str, int], int] = {}
    for number, r in read_jsonl(path, JmedLLMError):
        task, index = r.get("task"), r.get("index")
        if task not in TASKS or not isinstance(index, int) or isinstance(index, bool) \
                or not isinstance(r.get("output"), str):
            raise JmedLLMError(f"{path} line {number}: needs task (one of {list(TASKS)}), integer index and "
                               f"string output")
        if (task, index) in lines:
            raise JmedLLMError(f"{path} line {number}: task {task} index {index} repeats line {lines[task, index]}")
        lines[task, index] = number
        found.setdefault(task, {})[index] = r["output"]
    if not found:
        raise JmedLLMError(f"{path}: no predictions (an empty file)")
    return found


def align_outputs(path: str | Path, found: dict[str, dict[int, str]],
                  tasks: dict[str, list[dict]]) -> dict[str, list[str]]:
    """{task: outputs in row order} against the tasks' rows (loaded once, by `load_task`); a
    missing row is an empty output (wrong, listed under "<task>:missing"), an index beyond the
    task's rows an error."""
    outputs = {}
    for task, by_index in found.items():
        n = len(tasks[task])
        missing = sorted(set(range(n)) - set(by_index))
        extra = sorted(set(by_index) - set(range(n)))
        if extra:
            raise JmedLLMError(f"{path}: task {task} has {n} rows, but predictions name index {extra[:5]}")
        outputs[task] = [by_index.get(i, "") for i in range(n)]
        if missing:
            outputs[task + ":missing"] = [str(i) for i in missing]
    return outputs


def load_predictions(path: str | Path, data_dir: str | Path) -> dict[str, list[str]]:
    """{"task", "index", "output"} per line -> {task: outputs in row order}; every row must be there."""
    found = read_outputs(path)
    return align_outputs(path, found, {task: load_task(data_dir, task) for task in found})


def table(metrics: dict) -> str:
    """The report's Tables 3-4 cells, kappa (accuracy) and partial F1 (exact F1), from `report`'s
    metrics, with the rows whose output has no readable answer and those whose output is empty
    (a 0.00 of a model that wrote nothing says so). Both count the outputs as predictions.jsonl
    holds them, rows not put to the model (empty) too, so `score` gives the same table back."""
    lines = ["| task | metric | score | unparsed | empty |", "|---|---|---|---|---|"]
    for task in TASKS:
        if task in metrics:
            m = metrics[task]
            metric, cell = ("kappa (accuracy)", f"{m['kappa']:.2f} ({m['accuracy']:.2f})") if task in CHOICE_TASKS \
                else ("partial F1 (exact F1)", f"{m['partial_f1']:.2f} ({m['exact_f1']:.2f})")
            unread = len(m["unparsed"]) + len(m["not_answered"])  # listed apart, but no answer either
            lines.append(f"| {task} | {metric} | {cell} | {unread}/{m['rows']} | {len(m['empty'])}/{m['rows']} |")
    penalty = metrics.get("settings", {}).get("repetition_penalty", 1.0)
    if penalty != 1.0:  # under the table, so wherever the table goes (a model card) the decoding goes too
        lines += ["", f"Generated answers with repetition penalty {penalty:g} (the official evaluator's decoding "
                      "has none)."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ putting the tasks to a model

def _unparsed(task: str, outputs: list[str], result: dict) -> list[int]:
    """Rows whose output has no answer the evaluator can read (scored as wrong)."""
    if task in CHOICE_TASKS:
        return [i for i, p in enumerate(result["predictions"]) if p == NO_LETTER]
    return [i for i, o in enumerate(outputs) if not parse_list(o) and (o or "").strip() != "[]"]


def report(results: dict[str, dict], outputs: dict[str, list[str]], mode: str, *, settings: dict | None = None,
           errors: dict[str, list[int]] | None = None,
           methods: dict[str, str] | None = None) -> tuple[list[dict], dict]:
    """Per-row records ({"task", "index", "output"}: `evaluate.py score jmed-llm` reads them back)
    and the metrics of every task: its scores, the rows unparsed and not answered (not put to the
    model: listed apart), the rows whose output is empty (either), and how it was answered
    (`methods`, of a model run)."""
    rows, metrics = [], {"mode": mode, **({"settings": settings} if settings else {})}
    for task, r in results.items():
        not_answered = (errors or {}).get(task, [])
        unparsed = [i for i in _unparsed(task, outputs[task], r) if i not in not_answered]
        empty = [i for i, o in enumerate(outputs[task]) if not (o or "").strip()]
        metrics[task] = {**{k: v for k, v in r.items() if k not in ("predictions", "gold")}, "rows": len(outputs[task]),
                         "unparsed": unparsed, "empty": empty, "not_answered": not_answered,
                         **({"method": methods[task]} if methods else {})}
        for i, (output, parsed) in enumerate(zip(outputs[task], r["predictions"])):
            rows.append({"task": task, "index": i, "output": output, "parsed": parsed,
                         "answer": r["gold"][i]})
    return rows, metrics


@dataclasses.dataclass(kw_only=True)
class Options(Config):
    """How the tasks are put to a model; the defaults are the official evaluator's."""

    tasks: list[str] = option(factory=lambda: list(TASKS), help=f"the tasks to put, of {', '.join(TASKS)}")
    method: Method = option("generate", "generate, or rank a choice task's option letters by log-likelihood "
                                        f"(NER tasks are generated either way: {NER_ANSWERS})")
    mode: Literal["upstream", "corrected"] = option("upstream", "scoring: the published evaluator's, or corrected")
    max_new_tokens: int = option(512, "new tokens of a generated answer (official: 512)")
    ner_max_new_tokens: int | None = option(None, "new tokens of a generated NER answer, a list, generated with "
                                                  "--method loglik too (default: max_new_tokens)")
    repetition_penalty: float = option(1.0, "CTRL-style penalty on tokens already written, in generated answers "
                                            "(official: none, 1.0); above 1 breaks a small model's loops, a "
                                            "decoding choice to report beside the official one")

    def validate(self) -> None:
        if not self.tasks:
            raise ConfigError(f"tasks: choose at least one of {list(TASKS)}")
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown:
            raise ConfigError(f"unknown JMED-LLM tasks {unknown}; the tasks are {list(TASKS)}")
        for name in ("max_new_tokens", "ner_max_new_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        if self.repetition_penalty <= 0:
            raise ConfigError(f"repetition_penalty must be above 0 (1: none), got {self.repetition_penalty}")

    def new_tokens(self, ner: bool) -> int:
        """The generation budget of a choice task's answers, or of a NER task's (its own if given)."""
        return self.ner_max_new_tokens if ner and self.ner_max_new_tokens is not None else self.max_new_tokens


def load(data: Sequence[str], options: Options) -> dict[str, list[dict]]:
    """{task: rows} of the chosen tasks in the datasets folder, each checked by `load_task`."""
    (folder,) = data
    return {task: load_task(folder, task) for task in options.tasks}


def evaluate(lm: LocalLM, tasks: dict[str, list[dict]], options: Options = Options(),
             context: Context = Context()) -> tuple[dict[str, dict], dict[str, list[str]], dict[str, list[int]]]:
    """(metrics per task as `score_task` gives them, the raw outputs, rows not put to the model)."""
    results, outputs, errors = {}, {}, {}
    for task, rows in tasks.items():
        answered = _answered(lm, task, rows, options, context)
        outputs[task], errors[task] = answered["outputs"], answered["not_answered"]
        results[task] = score_task(task, rows, outputs[task], options.mode)
    return results, outputs, errors


def _answered(lm: LocalLM, task: str, rows: list[dict], options: Options, context: Context) -> dict:
    """{"outputs", "not_answered"} of one task: read back from `context.partial` when an
    interrupted run finished it, else put to the model and saved there at once."""
    def valid(saved) -> bool:
        return (isinstance(saved, dict) and isinstance(saved.get("outputs"), list)
                and len(saved["outputs"]) == len(rows) and all(isinstance(o, str) for o in saved["outputs"])
                and isinstance(saved.get("not_answered"), list))

    saved = context.partial.get(task, valid) if context.partial is not None else None
    if saved is not None:
        return saved
    items = [Item(str(i), [conversation(r)],
                  [(L, L) for L in option_letters(r)] if task in CHOICE_TASKS else None) for i, r in enumerate(rows)]
    answers = answer_items(lm, items, method=options.method, max_new_tokens=options.new_tokens(ner=task in NER_TASKS),
                           batch_size=context.batch_size, progress=context.progress,
                           repetition_penalty=options.repetition_penalty)
    answered = {"outputs": [answers[str(i)].output for i in range(len(rows))],
                "not_answered": [i for i in range(len(rows)) if answers[str(i)].error]}
    if context.partial is not None:
        context.partial.put(task, answered)
    return answered


def headline(metrics: dict) -> dict[str, float]:
    """The numbers a checkpoint sweep plots: kappa per choice task, partial F1 per NER task."""
    return {task: metrics[task]["kappa" if task in CHOICE_TASKS else "partial_f1"] for task in TASKS if task in metrics}


# ------------------------------------------------------------------ the registered benchmark

def run(lm: LocalLM, tasks: dict[str, list[dict]], options: Options, context: Context) -> Result:
    results, outputs, errors = evaluate(lm, tasks, options, context)
    settings = {"model": lm.name, "chat": lm.chat, "method": options.method, "max_new_tokens": options.max_new_tokens,
                "ner_max_new_tokens": options.new_tokens(ner=True), "repetition_penalty": options.repetition_penalty}
    methods = {task: method_used(options.method, rankable=task in CHOICE_TASKS, why=NER_ANSWERS) for task in results}
    rows, metrics = report(results, outputs, options.mode, settings=settings, errors=errors, methods=methods)
    other = [task for task in results if methods[task] != options.method]  # said once, not per task
    notes = [f"{', '.join(other)}: {methods[other[0]]}, up to {options.new_tokens(ner=True)} new tokens "
             f"(ner_max_new_tokens)"] if other else []
    return Result(rows, metrics, headline(metrics), table(metrics), problems_of({t: metrics[t] for t in results}),
                  unit="rows", notes=notes)


def score_files(data: Sequence[str], predictions: Sequence[str], options: Options) -> Result:
    """A published outputs file ({"task", "index", "output"} per line); only its tasks are scored."""
    (folder,) = data
    if len(predictions) != 1:
        raise JmedLLMError(f"jmed-llm scores one predictions file (all tasks in it), got {len(predictions)}: "
                           f"{list(predictions)}")
    path = predictions[0]
    found = read_outputs(path)  # the predictions first: only their tasks' files are read, each once
    rows = {task: load_task(folder, task) for task in TASKS if task in found}
    outputs = align_outputs(path, found, rows)
    results = {task: score_task(task, rows[task], outputs[task], options.mode) for task in rows}
    rows, metrics = report(results, outputs, options.mode)
    missing = [Problem("missing", outputs[task + ":missing"], task) for task in results if outputs.get(task + ":missing")]
    return Result(rows, metrics, headline(metrics), table(metrics), missing, unit="rows")


BENCHMARK = Benchmark(name="jmed-llm", options=Options, load=load, run=run, score=score_files,
                      data_help="the JMED-LLM datasets folder (<task>.csv)",
                      predictions_help='JSONL of {"task", "index", "output"}')
