"""IgakuQA (the Japanese national medical licensing examination) with the official scoring
(report §2.5, Table 2).

Official rules, reproduced exactly and reported by default:
- a prediction string is split on "," and compared with the answer as a set: exact match or
  wrong, no partial credit; numeric answers compare as strings;
- 116A71 counts as correct for every prediction; 112B30 accepts "a" or "d";
- every question counts in accuracy (image questions and 0-point ones too); the score is
  the sum of the points of correct questions, out of the sum of all points;
- model output is normalised from full-width to half-width and lower-cased before scoring.
Extra views, never replacing the official one: the text-only subset, the required section
(blocks B and E) alone, and the number of prohibited choices (kinki) picked.

Putting the exam to a model (`evaluate`) uses the published baseline prompt: the system
message 医師国家試験を解きます。, the three few-shot examples of the repository's
scripts/prompts/prompt.jsonl (or prompts/prompt.jsonl) as user/assistant turns, then the
question (`format_question`). Greedy generation is read by `extract_answer`; log-likelihood
mode ranks the choice letters (or texts) and picks as many as the question has answers, and
generates the numeric-entry questions (no choices to rank), which the settings and the
summary say.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from slm.config import Config, ConfigError
from slm.eval.harness import (Benchmark, BenchmarkError, Context, Item, Method, Problem, Result, answer_items,
                              method_used, option, problems_of, read_jsonl)
from slm.lm import LocalLM

ALWAYS_CORRECT = {"116A71"}
ALSO_ACCEPTED = {"112B30": [{"a"}, {"d"}]}
REQUIRED_BLOCKS = {"B", "E"}
_FILE = re.compile(r"^(\d+)-([A-Z])\.jsonl$")


class IgakuQAError(BenchmarkError):
    """Malformed benchmark or prediction files; the message names the file, line and field."""


@dataclass
class Question:
    problem_id: str
    year: str
    block: str
    text: str
    choices: list[str]
    answer: list[str]
    points: int
    text_only: bool
    kinki: set[str] = field(default_factory=set)  # prohibited choices


def _jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line, object) of a UTF-8 JSONL file; a missing file, a file that is not UTF-8 and a line
    that is not a JSON object are IgakuQAErrors naming the file and line."""
    return read_jsonl(path, IgakuQAError)


def _letters(raw) -> set[str]:
    """Prohibited choices as written in the metadata: "cde", ["ｃ"], " a" ... -> {"c", "d", "e"}."""
    text = "".join(raw) if isinstance(raw, list) else str(raw or "")
    return {c for c in unicodedata.normalize("NFKC", text).lower() if "a" <= c <= "z"}


_INTEGER = re.compile(r"^\s*\d+\s*$")


def _question(r: dict, where: str, year: str, block: str, points_required: bool = True) -> Question:
    """A question of the official schema: problem_id and problem_text strings, choices a list of
    strings (empty for numeric entry), answer a non-empty list of strings, points an integer or
    an integer string ("1"; the few-shot examples have none), text_only true or false."""
    pid = r.get("problem_id")
    if not isinstance(pid, str) or not pid.strip():
        raise IgakuQAError(f"{where}: field 'problem_id' is missing or not a string")
    where = f"{where} ({pid})"
    if not isinstance(r.get("problem_text"), str):
        raise IgakuQAError(f"{where}: field 'problem_text' is missing or not a string")
    choices = r.get("choices")
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise IgakuQAError(f"{where}: field 'choices' must be a list of strings (empty for a numeric-entry question)")
    if len(choices) > len(LETTERS):
        raise IgakuQAError(f"{where}: field 'choices' has {len(choices)} choices, at most {len(LETTERS)}")
    answer = r.get("answer")
    if not isinstance(answer, list) or not answer or not all(isinstance(a, str) and a.strip() for a in answer):
        raise IgakuQAError(f"{where}: field 'answer' must be a non-empty list of strings such as [\"a\", \"c\"], "
                           f"not {answer!r}")
    points = 0
    if points_required or "points" in r:
        raw = r.get("points")
        if isinstance(raw, bool) or not (isinstance(raw, int) and raw >= 0 or isinstance(raw, str) and _INTEGER.match(raw)):
            raise IgakuQAError(f"{where}: field 'points' must be an integer or an integer string such as \"1\", "
                               f"not {raw!r}")
        points = int(raw)
    text_only = r.get("text_only", True)
    if not isinstance(text_only, bool):
        raise IgakuQAError(f"{where}: field 'text_only' must be true or false, not {text_only!r}")
    return Question(pid, year, block, r["problem_text"], choices, [a.lower() for a in answer], points, text_only)


def _metadata(path: Path) -> dict[str, dict]:
    """{problem_id: row} of a block's _metadata.jsonl: each row an object with a string problem_id,
    and kinki (the prohibited choices), if there, a string or a list of strings."""
    meta = {}
    for number, r in _jsonl(path):
        pid = r.get("problem_id")
        if not isinstance(pid, str) or not pid.strip():
            raise IgakuQAError(f"{path} line {number}: field 'problem_id' is missing or not a string")
        kinki = r.get("kinki")
        if not (kinki is None or isinstance(kinki, str) or isinstance(kinki, list) and all(isinstance(k, str) for k in kinki)):
            raise IgakuQAError(f"{path} line {number} ({pid}): field 'kinki' must be a string or a list of strings, "
                               f"not {kinki!r}")
        meta[pid] = r
    return meta


def _root(data_dir: Path) -> Path:
    """The folder of the year folders: DIR/data when DIR is the IgakuQA repository, else DIR."""
    return data_dir / "data" if (data_dir / "data").is_dir() else data_dir


def load_questions(data_dir: str | Path) -> dict[str, Question]:
    """Every year of the official layout: data/<year>/<exam>-<block>.jsonl (+ _metadata.jsonl)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise IgakuQAError(f"{data_dir}: no such folder (the IgakuQA folder, holding data/<year>/<exam>-<block>.jsonl)"
                           if not data_dir.exists() else f"{data_dir}: a file, not the IgakuQA folder")
    root = _root(data_dir)
    questions: dict[str, Question] = {}
    where: dict[str, str] = {}
    files = sorted(p for p in root.glob("*/*.jsonl") if _FILE.match(p.name))
    if not files:
        raise IgakuQAError(f"{data_dir}: no <year>/<exam>-<block>.jsonl files (the official IgakuQA layout)")
    for path in files:
        block = _FILE.match(path.name).group(2)
        meta_path = path.with_name(path.stem + "_metadata.jsonl")
        meta = _metadata(meta_path) if meta_path.exists() else {}
        records = _jsonl(path)
        if not records:
            raise IgakuQAError(f"{path}: no questions (an empty file)")
        for number, r in records:
            at = f"{path} line {number}"
            q = _question(r, at, path.parent.name, block)
            if q.problem_id in questions:
                raise IgakuQAError(f"{at}: field 'problem_id' repeats {q.problem_id} ({where[q.problem_id]})")
            q.kinki = _letters(meta.get(q.problem_id, {}).get("kinki"))
            questions[q.problem_id], where[q.problem_id] = q, at
    return questions


def parse_prediction(text: str) -> set[str]:
    """The official reading of a prediction: full-width to half-width, lower case, split on ",",
    and nothing else. Spaces are not stripped: GPT-4's "a, b" for 112C23 is officially wrong,
    which is why its published score is 382, not 383. (Turning free model output into a clean
    "a,b" string is the answer extractor's job, before scoring.)"""
    return set(unicodedata.normalize("NFKC", text or "").lower().split(","))


def is_correct(question: Question, prediction: set[str]) -> bool:
    if question.problem_id in ALWAYS_CORRECT:
        return True
    if prediction in ALSO_ACCEPTED.get(question.problem_id, []):
        return True
    return prediction == set(question.answer)


def load_predictions(path: str | Path, questions: dict[str, Question]) -> dict[str, str]:
    """The published format: {"problem_id", "prediction"} per line; unknown ids are errors."""
    predictions = {}
    records = _jsonl(Path(path))
    if not records:
        raise IgakuQAError(f"{path}: no predictions (an empty file)")
    for number, r in records:
        pid, pred = r.get("problem_id"), r.get("prediction")
        if not isinstance(pid, str) or not isinstance(pred, str):
            raise IgakuQAError(f"{path} line {number}: needs string fields problem_id and prediction")
        if pid not in questions:
            raise IgakuQAError(f"{path} line {number}: unknown problem_id {pid!r}")
        predictions[pid] = pred
    return predictions


def score(questions: dict[str, Question], predictions: dict[str, str]) -> dict:
    """Per year: points/total and accuracy (official), plus the extra views and the per-question rows.
    A question without a prediction counts as wrong and is listed."""
    years: dict[str, dict] = {}
    rows = []
    for q in questions.values():
        pred_text = predictions.get(q.problem_id)
        pred = parse_prediction(pred_text) if pred_text is not None else set()
        correct = pred_text is not None and is_correct(q, pred)
        y = years.setdefault(q.year, {"points": 0, "total": 0, "correct": 0, "questions": 0, "missing": [],
                                      "text_only_correct": 0, "text_only": 0, "required_points": 0,
                                      "required_total": 0, "kinki_picked": 0})
        y["questions"] += 1
        y["total"] += q.points
        y["correct"] += correct
        y["points"] += q.points * correct
        if pred_text is None:
            y["missing"].append(q.problem_id)
        if q.text_only:
            y["text_only"] += 1
            y["text_only_correct"] += correct
        if q.block in REQUIRED_BLOCKS:
            y["required_total"] += q.points
            y["required_points"] += q.points * correct
        y["kinki_picked"] += len(pred & q.kinki)
        rows.append({"problem_id": q.problem_id, "prediction": pred_text, "parsed": sorted(pred),
                     "answer": q.answer, "correct": correct, "points": q.points})
    for y in years.values():
        y["accuracy"] = y["correct"] / y["questions"]
        y["text_only_accuracy"] = y["text_only_correct"] / max(y["text_only"], 1)
    return {"years": dict(sorted(years.items())), "overall": overall(years), "questions": rows}


def overall(years: dict[str, dict]) -> dict:
    """All years pooled: points/total and accuracy."""
    keys = ("points", "total", "correct", "questions")
    pooled = {k: sum(y[k] for y in years.values()) for k in keys}
    return {**pooled, "accuracy": pooled["correct"] / max(pooled["questions"], 1)}


def table(result: dict, counted: Sequence[str] = ()) -> str:
    """The report's Table 2 row as Markdown: points/total (accuracy) per year, then the extra
    views, then how many questions were of each `counted` kind of problem (a model run's
    unparsed and not_answered: a low score of a model that wrote nothing readable says so)."""
    counts = [kind.replace("_", " ") for kind in counted]
    lines = ["| year | score | accuracy | text-only accuracy | required (B+E) | prohibited picked |"
             + "".join(f" {c} |" for c in counts), "|---|---|---|---|---|---|" + "---|" * len(counts)]
    for year, y in result["years"].items():
        lines.append(f"| {year} | {y['points']}/{y['total']} | {y['accuracy']:.1%} | {y['text_only_accuracy']:.1%} | "
                     f"{y['required_points']}/{y['required_total']} | {y['kinki_picked']} |"
                     + "".join(f" {len(y[kind])}/{y['questions']} |" for kind in counted))
    if len(result["years"]) > 1:
        o = result["overall"]
        pooled = [sum(len(y[kind]) for y in result["years"].values()) for kind in counted]
        lines.append(f"| all | {o['points']}/{o['total']} | {o['accuracy']:.1%} | | | |"
                     + "".join(f" {n}/{o['questions']} |" for n in pooled))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ putting the exam to a model

SYSTEM = "医師国家試験を解きます。"
LETTERS = "abcdefghijklmnopqrstuvwxyz"
# where the repository keeps its few-shot examples: scripts/prompts/ in the official IgakuQA
# repository, prompts/ in copies that keep only the data and the prompts (the sample)
SHOTS_FILES = (Path("scripts") / "prompts" / "prompt.jsonl", Path("prompts") / "prompt.jsonl")
NUMERIC_ANSWERS = "numeric-entry answers, no choices to rank"  # why loglik generates those questions


def format_question(q: Question) -> str:
    """The published question format. A numeric-entry question (no choices) keeps 問題 and 答え:
    only: its stem says how to write the number (解答：①②Torr)."""
    text = f"問題: {q.text}\n"
    if q.choices:
        letters = LETTERS[: len(q.choices)]
        text += "".join(f"{letter}: {choice}\n" for letter, choice in zip(letters, q.choices))
        text += f"必ず{','.join(letters)}の中からちょうど{len(q.answer)}個選んでください。\n"
    return text + "答え:"


def conversation(q: Question, shots: list[Question]) -> list[dict]:
    messages = [{"role": "system", "content": SYSTEM}]
    for shot in shots:
        messages += [{"role": "user", "content": format_question(shot)},
                     {"role": "assistant", "content": ",".join(shot.answer)}]
    return messages + [{"role": "user", "content": format_question(q)}]


def shots_places(data_dir: str | Path) -> list[Path]:
    """Where the few-shot examples of the IgakuQA repository that `data_dir` is (or whose data/
    it is) may be, in the order they are looked for."""
    data_dir = Path(data_dir)
    return [root / file for root in (data_dir, data_dir.parent) for file in SHOTS_FILES]


def find_shots(data_dir: str | Path) -> Path | None:
    """The first of `shots_places` that is a file, or None."""
    return next((path for path in shots_places(data_dir) if path.is_file()), None)


def load_shots(path: str | Path) -> list[Question]:
    """The few-shot examples: questions in the data schema (points not needed)."""
    records = _jsonl(Path(path))
    if not records:
        raise IgakuQAError(f"{path}: no few-shot examples (an empty file)")
    return [_question(r, f"{path} line {n}", "shots", "-", points_required=False) for n, r in records]


def extract_answer(output: str, q: Question) -> str | None:
    """The answer in the first line of a model's output, as the official scorer reads it
    ("a,c"), or None when there is none. Full-width to half-width and lower case; a letter
    counts only standing alone and among the question's choices ("answer: c" reads as c);
    a numeric-entry question takes the first number."""
    line = (unicodedata.normalize("NFKC", output or "").lower().strip().split("\n") or [""])[0]
    if not q.choices:
        match = re.search(r"-?\d+(?:\.\d+)?", line)
        return match.group(0) if match else None
    found = set(re.findall(rf"(?<![a-z])([{LETTERS[: len(q.choices)]}])(?![a-z])", line))
    return ",".join(sorted(found)) if found else None


@dataclasses.dataclass(kw_only=True)
class PromptOptions(Config):
    """How an exam is put to a model; the defaults are the published baseline's (also IgakuQA 2025's)."""

    method: Method = option("generate", "generate greedily, or rank the choices by log-likelihood (base models)")
    shots: int = option(3, "few-shot examples (published: 3)")
    shots_file: str | None = option(None, "the few-shot examples (default: the repository's "
                                          "scripts/prompts/prompt.jsonl or prompts/prompt.jsonl)")
    loglik_target: Literal["letter", "text"] = option(
        "letter", "loglik ranks the choice letters after 答え:, or the choice texts (per character) for models "
                  "that do not map letters to choices")
    max_new_tokens: int = option(32, "new tokens of a generated answer")

    def validate(self) -> None:
        if self.shots < 0:
            raise ConfigError(f"shots must be 0 or more, got {self.shots}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")


@dataclasses.dataclass(kw_only=True)
class Options(PromptOptions):
    years: list[str] | None = option(None, "the years to put (default: every year found)")


def item(q: Question, shots: list[Question], loglik_target: str, labels: str | None = None) -> Item:
    """The question as the harness asks it: its prompts with fewer and fewer examples, and its choices
    to rank, shown lettered a, b, c, ...; `labels` are the letters the answer is read in (default: those)."""
    prompts = [conversation(q, shots[: len(shots) - k]) for k in range(len(shots) + 1)]
    shown = LETTERS[: len(q.choices)]
    continuations = shown if loglik_target == "letter" else q.choices
    return Item(q.problem_id, prompts, list(zip(labels or shown, continuations)) or None, pick=len(q.answer),
                normalize=loglik_target == "text")


RUN_PROBLEMS = ("unparsed", "not_answered")  # what a model run lists per year (and its table counts)


def evaluate(lm: LocalLM, questions: dict[str, Question], shots: list[Question], options: Options = Options(),
             context: Context = Context()) -> dict:
    """Put every question to the model and score the answers by the official rules.

    Numeric-entry questions are generated in either method. The result is `score`'s, its
    per-question rows carrying the model's output; per year, `unparsed` lists the questions
    whose output had no readable answer and `not_answered` those whose prompt did not fit.
    """
    method, loglik_target = options.method, options.loglik_target
    items = [item(q, shots, loglik_target) for q in questions.values()]
    answers = answer_items(lm, items, method=method, max_new_tokens=options.max_new_tokens,
                           batch_size=context.batch_size, stop_at_newline=True, progress=context.progress)
    extracted = {pid: extract_answer(a.output, questions[pid]) for pid, a in answers.items()}
    result = score(questions, {pid: e or "" for pid, e in extracted.items()})
    for y in result["years"].values():
        y.update({kind: [] for kind in RUN_PROBLEMS}, shots_dropped=0)
    for row in result["questions"]:
        a, q = answers[row["problem_id"]], questions[row["problem_id"]]
        y = result["years"][q.year]
        row.update(output=a.output, shots=len(shots) - a.dropped_shots, error=a.error, note=a.note, scores=a.scores)
        y["shots_dropped"] += a.dropped_shots > 0
        if a.error:
            y["not_answered"].append(q.problem_id)
        elif extracted[q.problem_id] is None:
            y["unparsed"].append(q.problem_id)
    result["settings"] = {"model": lm.name, "chat": lm.chat, "method": method, "shots": len(shots),
                          "loglik_target": loglik_target if method == "loglik" else None,
                          "max_new_tokens": options.max_new_tokens}
    numeric = sum(not q.choices for q in questions.values())
    if numeric:
        result["settings"]["numeric_entry"] = {"questions": numeric,
                                               "method": method_used(method, rankable=False, why=NUMERIC_ANSWERS)}
    return result


def headline(result: dict) -> dict[str, float]:
    """The numbers a checkpoint sweep plots: pooled accuracy and points, and per year when there are several."""
    out = {"accuracy": result["overall"]["accuracy"], "points": result["overall"]["points"]}
    for year, y in result["years"].items() if len(result["years"]) > 1 else []:
        out[f"{year} accuracy"] = y["accuracy"]
        out[f"{year} points"] = y["points"]
    return out


# ------------------------------------------------------------------ the registered benchmark

@dataclass
class Exam:
    questions: dict[str, Question]
    shots: list[Question]
    shots_file: Path | None = None  # where the shots were read (None: no shots)


def load(data: Sequence[str], options: Options) -> Exam:
    """The questions of the chosen years and the few-shot examples, validated."""
    (folder,) = data
    questions = load_questions(folder)
    if options.years:
        missing = set(options.years) - {q.year for q in questions.values()}
        if missing:
            raise IgakuQAError(f"{folder}: no questions for year(s) {sorted(missing)}")
        questions = {pid: q for pid, q in questions.items() if q.year in options.years}
    shots_file, shots = shots_source(folder, options)
    return Exam(questions, shots, shots_file)


def shots_source(folder: str | Path, options: PromptOptions) -> tuple[Path | None, list[Question]]:
    """(the file, the few-shot examples) the options ask for: from `shots_file`, else the first of
    `shots_places` there is; (None, []) for 0 shots."""
    if not options.shots:
        return None, []
    path = Path(options.shots_file) if options.shots_file else find_shots(folder)
    if path is None:
        places = ", ".join(str(p) for p in shots_places(folder))
        raise IgakuQAError(f"{folder}: no {SHOTS_FILES[1]} beside the data, nor {SHOTS_FILES[0]}, for the "
                           f"{options.shots} few-shot examples (looked for {places}); name the file (shots_file), "
                           f"or ask for 0 shots")
    shots = load_shots(path)[: options.shots]
    if len(shots) < options.shots:
        raise IgakuQAError(f"{path}: {len(shots)} examples, {options.shots} asked for")
    return path, shots


def shots_for(folder: str | Path, options: PromptOptions) -> list[Question]:
    """The few-shot examples the options ask for (`shots_source` without the file)."""
    return shots_source(folder, options)[1]


def run(lm: LocalLM, exam: Exam, options: Options, context: Context) -> Result:
    result = evaluate(lm, exam.questions, exam.shots, options, context)
    settings = {**result["settings"], "shots_file": str(exam.shots_file) if exam.shots_file else None}
    notes = [f"few-shot examples: {len(exam.shots)} from {exam.shots_file}"] if exam.shots_file else []
    numeric = settings.get("numeric_entry")
    if numeric and numeric["method"] != options.method:  # said once, not per question
        notes.append(f"{numeric['questions']} numeric-entry question(s): {numeric['method']}, up to "
                     f"{options.max_new_tokens} new tokens")
    metrics = {"settings": settings, "overall": result["overall"], "years": result["years"]}
    return Result(result["questions"], metrics, headline(result), table(result, counted=RUN_PROBLEMS),
                  problems_of(result["years"]), notes=notes)


def score_files(data: Sequence[str], predictions: Sequence[str], options: Options) -> Result:
    """Published prediction files ({"problem_id", "prediction"} per line), several files merged."""
    (folder,) = data
    questions = load_questions(folder)
    preds: dict[str, str] = {}
    for path in predictions:
        preds.update(load_predictions(path, questions))
    result = score(questions, preds)
    return Result(result["questions"], {"overall": result["overall"], "years": result["years"]}, headline(result),
                  table(result), [Problem("missing", y["missing"], year) for year, y in result["years"].items()])


BENCHMARK = Benchmark(name="igakuqa", options=Options, load=load, run=run, score=score_files,
                      data_help="the IgakuQA repository as published (data/<year>/<exam>-<block>.jsonl, "
                                "scripts/prompts/prompt.jsonl) or its data/ folder",
                      predictions_help='JSONL of {"problem_id", "prediction"}')
