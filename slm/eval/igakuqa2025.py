"""IgakuQA 2025: the 119th Japanese national medical licensing examination (February 2025), in
the layout its maintainers publish (IgakuQA119), scored by their grader's rules.

The data folder holds
    questions/119A_json.json ... 119F_json.json   a JSON list of {"number": "119A1", "question",
                                                  "choices": ["a. ...", ...], "has_image"} per block
                                                  (numeric-entry questions: no choices)
    results/correct_answers.csv                   問題番号,解答 ("ce", "600"); or `answers_file`
    prompts/prompt.jsonl                          IgakuQA's few-shot examples; or `shots_file`

Scoring, as the published grader does it:
- a prediction and the answer are normalised alike (`normalize`): full-width to half-width
  (NFKC), lower case, brackets, commas and spaces dropped, letters sorted ("E, C", "(c)(e)",
  "ｃｅ" all read "ce"); then exact match; an empty prediction is wrong;
- 119E28 accepts a or c (and nothing else);
- blocks B and E are the required section (必修): its questions 26-50 are worth 3 points, the
  rest 1; every general question (A, C, D, F) 1 point: 500 points over the exam's 400 questions;
- reported: overall, the required and the general section, and the questions without images.
Two readings are wider or narrower than the grader's code, on purpose: 、 counts as a comma and
every bracket pair as a bracket (the grader drops only [ ]), and only an answer made of letters
alone is sorted (the grader sorts digits too, so "006" would match "600").

Published prediction files ({"results": [{"question_number", "answers": [{"answer", "model",
...}]}]}, one per block or merged) may hold several models' answers: one model is scored at a
time (`prediction_model`). A run's predictions.jsonl has the same entries, one per line, and
scores the same way.

Putting the exam to a model uses IgakuQA's published prompt, answer extraction and log-likelihood
ranking (slm.eval.igakuqa): the choices are shown as "a: ..." without their "a. " prefix. A
question whose published choice letters are not a, b, c, ... in order (a choice lost when the
booklet was read) is shown lettered in order, and the model's letters are mapped back.
"""

from __future__ import annotations

import dataclasses
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from slm.eval import igakuqa
from slm.eval.harness import (Benchmark, BenchmarkError, Context, Result, answer_items, option, problems_of, read_csv,
                              read_jsonl, read_text)
from slm.lm import LocalLM

ACCEPTED = {"119E28": {"a", "c"}}  # the grader's special rule: either letter, and only these
REQUIRED_BLOCKS = igakuqa.REQUIRED_BLOCKS
THREE_POINTS = range(26, 51)  # required questions 26-50
QUESTIONS_DIR = "questions"
ANSWERS_FILE = Path("results") / "correct_answers.csv"
_FILE = re.compile(r"^(\d+)([A-Z])_json\.json$")
_NUMBER = re.compile(r"^(\d+)([A-Z])(\d+)$")
_PREFIX = re.compile(r"^\s*([A-Za-z])\s*[.．]\s*")
_DROP = set("()[]{}<>〈〉《》「」『』【】〔〕,、")
_LETTERS = re.compile(r"^[a-z]+$")
NUMBER_FIELD, ANSWER_FIELD = "問題番号", "解答"


class IgakuQA2025Error(BenchmarkError):
    """Malformed questions, answers or prediction files; the message names the file, the line,
    row or question number, and the field."""


@dataclass
class Question:
    number: str  # "119A1"
    block: str
    index: int  # the number within its block
    text: str
    choices: list[str]  # without their letter prefix; empty: numeric entry
    labels: str  # the published letter of each choice ("abde" when c was lost)
    answer: str  # normalised
    points: int
    has_image: bool

    @property
    def section(self) -> str:
        return "required" if self.block in REQUIRED_BLOCKS else "general"

    @property
    def pick(self) -> int:
        """How many letters an answer has (119E28: one of its accepted letters)."""
        accepted = ACCEPTED.get(self.number)
        return len(next(iter(accepted))) if accepted else len(self.answer)

    def prompted(self) -> igakuqa.Question:
        """The question as IgakuQA's prompt writes it (choices lettered a, b, c, ... in order)."""
        answer = list(self.answer[: self.pick]) if self.choices else [self.answer]
        return igakuqa.Question(self.number, "2025", self.block, self.text, self.choices, answer, self.points,
                                not self.has_image)


def normalize(text) -> str:
    """The grader's reading of an answer or a prediction: NFKC, lower case, no brackets, commas or
    whitespace, letters sorted ("E, C" -> "ce"); a number stays as written ("６００" -> "600")."""
    s = unicodedata.normalize("NFKC", "" if text is None else str(text)).lower()
    s = "".join(c for c in s if c not in _DROP and not c.isspace())
    return "".join(sorted(s)) if _LETTERS.match(s) else s


def is_correct(question: Question, prediction: str) -> bool:
    """Exact match of the normalised prediction; empty is wrong; 119E28 accepts a or c."""
    prediction = normalize(prediction)
    if not prediction:
        return False
    if question.number in ACCEPTED:
        return prediction in ACCEPTED[question.number]
    return prediction == question.answer


def points_of(block: str, index: int) -> int:
    return 3 if block in REQUIRED_BLOCKS and index in THREE_POINTS else 1


# ------------------------------------------------------------------ reading and checking the data

def _read_json(path: Path):
    try:
        return json.loads(read_text(path, IgakuQA2025Error))
    except json.JSONDecodeError as e:
        raise IgakuQA2025Error(f"{path} line {e.lineno}: not valid JSON ({e.msg})") from None


def _choices(raw, where: str) -> tuple[list[str], str]:
    """(texts without their "a. " prefix, the letter of each): the published letters when every
    choice has a distinct one, else a, b, c, ... in order."""
    if raw is None:
        raw = []
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise IgakuQA2025Error(f"{where}: field 'choices' must be a list of strings")
    if len(raw) > len(igakuqa.LETTERS):
        raise IgakuQA2025Error(f"{where}: field 'choices' has {len(raw)} choices, at most {len(igakuqa.LETTERS)}")
    matches = [_PREFIX.match(c) for c in raw]
    texts = [c[m.end():] if m else c for c, m in zip(raw, matches)]
    letters = "".join(m.group(1).lower() for m in matches if m)
    if len(letters) != len(raw) or len(set(letters)) != len(letters):
        letters = igakuqa.LETTERS[: len(raw)]
    return texts, letters


def _question(r, where: str, exam: str, block: str) -> tuple[str, dict]:
    if not isinstance(r, dict):
        raise IgakuQA2025Error(f"{where}: not a JSON object")
    number = r.get("number")
    if not isinstance(number, str):
        raise IgakuQA2025Error(f"{where}: field 'number' is missing or not a string")
    where = f"{where} ({number})"
    match = _NUMBER.match(number)
    if not match or match.group(1) != exam or match.group(2) != block:
        raise IgakuQA2025Error(f"{where}: field 'number' must be {exam}{block}<n>, the file's exam and block")
    if not isinstance(r.get("question"), str):
        raise IgakuQA2025Error(f"{where}: field 'question' is missing or not a string")
    has_image = r.get("has_image", False)
    if not isinstance(has_image, bool):
        raise IgakuQA2025Error(f"{where}: field 'has_image' must be true or false")
    texts, labels = _choices(r.get("choices"), where)
    index = int(match.group(3))
    return number, {"block": block, "index": index, "text": r["question"].strip(), "choices": texts,
                    "labels": labels, "points": points_of(block, index), "has_image": has_image}


def load_answers(path: str | Path) -> dict[str, tuple[int, str]]:
    """{question number: (row, normalised answer)} of the answers CSV (header 問題番号,解答; rows
    numbered as a spreadsheet shows them, the header row 1)."""
    path = Path(path)
    if not path.exists():
        raise IgakuQA2025Error(f"{path}: missing (the answers: a CSV with the header {NUMBER_FIELD},{ANSWER_FIELD})")
    header, rows = read_csv(path, IgakuQA2025Error)
    missing = [c for c in (NUMBER_FIELD, ANSWER_FIELD) if c not in header]
    if missing:
        raise IgakuQA2025Error(f"{path} row 1: the header needs {NUMBER_FIELD} and {ANSWER_FIELD}; "
                               f"column(s) {missing} missing (header: {header})")
    answers: dict[str, tuple[int, str]] = {}
    for row_number, row in rows:
        number = row[NUMBER_FIELD].strip()
        if not number:
            raise IgakuQA2025Error(f"{path} row {row_number}: field {NUMBER_FIELD} is empty")
        answer = normalize(row[ANSWER_FIELD])
        if not answer:
            raise IgakuQA2025Error(f"{path} row {row_number} ({number}): field {ANSWER_FIELD} is empty")
        if number in answers:
            raise IgakuQA2025Error(f"{path} row {row_number}: field {NUMBER_FIELD} repeats {number} "
                                   f"(row {answers[number][0]})")
        answers[number] = (row_number, answer)
    return answers


def load_questions(folder: str | Path, answers_file: str | Path | None = None) -> dict[str, Question]:
    """Every question of questions/<exam><block>_json.json with its answer; a question without an
    answer, or an answer without a question, is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise IgakuQA2025Error(f"{folder}: no such folder (the IgakuQA 2025 folder, holding {QUESTIONS_DIR}/)"
                               if not folder.exists() else f"{folder}: a file, not the IgakuQA 2025 folder")
    qdir = folder / QUESTIONS_DIR
    files = sorted((p for p in qdir.glob("*_json.json") if _FILE.match(p.name)),
                   key=lambda p: _FILE.match(p.name).groups()) if qdir.is_dir() else []
    if not files:
        raise IgakuQA2025Error(f"{folder}: no {QUESTIONS_DIR}/<exam><block>_json.json files (the IgakuQA 2025 layout)")
    found: dict[str, tuple[str, dict]] = {}  # number -> (where, fields)
    for path in files:
        exam, block = _FILE.match(path.name).groups()
        records = _read_json(path)
        if not isinstance(records, list):
            raise IgakuQA2025Error(f"{path}: expected a JSON list of questions, got {type(records).__name__}")
        for i, r in enumerate(records, start=1):
            where = f"{path} question {i}"
            number, fields = _question(r, where, exam, block)
            where = f"{where} ({number})"
            if number in found:
                raise IgakuQA2025Error(f"{where}: field 'number' repeats {number} ({found[number][0]})")
            found[number] = (where, fields)
    if not found:
        raise IgakuQA2025Error(f"{qdir}: no questions in {[p.name for p in files]}")
    answers_path = Path(answers_file) if answers_file else folder / ANSWERS_FILE
    answers = load_answers(answers_path)
    unanswered = [n for n in found if n not in answers]
    if unanswered:
        more = f" (and {len(unanswered) - 1} more: {unanswered[1:6]})" if len(unanswered) > 1 else ""
        raise IgakuQA2025Error(f"{found[unanswered[0]][0]}: no answer in {answers_path}{more}")
    for number, (row, _) in answers.items():
        if number not in found:
            raise IgakuQA2025Error(f"{answers_path} row {row}: {NUMBER_FIELD} {number} is not a question in {qdir}")
    return {number: Question(number, answer=answers[number][1], **fields) for number, (_, fields) in found.items()}


def data_notes(questions: dict[str, Question]) -> list[str]:
    """What the user should know about the data: relettered choices, answers no choice can give."""
    relettered = [q.number for q in questions.values() if q.labels != igakuqa.LETTERS[: len(q.labels)]]
    impossible = [q.number for q in questions.values() if q.number not in ACCEPTED and _LETTERS.match(q.answer)
                  and not set(q.answer) <= set(q.labels)]
    notes = []
    if relettered:
        notes.append(f"choices not lettered a, b, c, ... in order (prompted in order, answers mapped back) for "
                     f"{len(relettered)} questions: {relettered[:10]}")
    if impossible:
        notes.append(f"answers that are not among the choices (counted wrong) for {len(impossible)} questions: "
                     f"{impossible[:10]}")
    return notes


# ------------------------------------------------------------------ published prediction files

def _entries(path: Path):
    """(where, entry) of a published answers file ({"results": [...]}) or of a run's predictions.jsonl."""
    if path.suffix == ".jsonl":
        for number, record in read_jsonl(path, IgakuQA2025Error):
            yield f"{path} line {number}", record
        return
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise IgakuQA2025Error(f"{path}: field 'results' (a list) missing: expected the published answer format "
                               '{"results": [{"question_number", "answers": [{"answer", "model"}]}]}')
    for i, entry in enumerate(data["results"]):
        yield f"{path} results[{i}]", entry


def load_predictions(paths: Sequence[str | Path], questions: dict[str, Question]) -> dict[str, dict[str, list[str]]]:
    """{model: {question number: its answers, in file order}} of every file; unknown question
    numbers and malformed entries are errors."""
    by_model: dict[str, dict[str, list[str]]] = {}
    for path in paths:
        for where, entry in _entries(Path(path)):
            if not isinstance(entry, dict):
                raise IgakuQA2025Error(f"{where}: not a JSON object")
            number = entry.get("question_number")
            if not isinstance(number, str):
                raise IgakuQA2025Error(f"{where}: field 'question_number' is missing or not a string")
            if number not in questions:
                raise IgakuQA2025Error(f"{where}: field 'question_number': unknown question {number!r}")
            answers = entry.get("answers")
            if not isinstance(answers, list):
                raise IgakuQA2025Error(f"{where} ({number}): field 'answers' is missing or not a list")
            for j, a in enumerate(answers):
                at = f"{where} ({number}) answers[{j}]"
                if not isinstance(a, dict) or not isinstance(a.get("model"), str):
                    raise IgakuQA2025Error(f"{at}: field 'model' is missing or not a string")
                if "answer" not in a or isinstance(a["answer"], bool) or \
                        not isinstance(a["answer"], (str, int, float, type(None))):
                    raise IgakuQA2025Error(f"{at}: field 'answer' is missing or not a string")
                value = "" if a["answer"] is None else str(a["answer"])
                by_model.setdefault(a["model"], {}).setdefault(number, []).append(value)
    return by_model


def choose_model(by_model: dict[str, dict[str, list[str]]], chosen: str | None, paths: Sequence[str]) -> str:
    if chosen is not None:
        if chosen not in by_model:
            raise IgakuQA2025Error(f"{', '.join(map(str, paths))}: no answers by model {chosen!r}; "
                                   f"the models are {sorted(by_model)}")
        return chosen
    if not by_model:
        raise IgakuQA2025Error(f"{', '.join(map(str, paths))}: no answers")
    if len(by_model) > 1:
        raise IgakuQA2025Error(f"{', '.join(map(str, paths))}: answers of {len(by_model)} models "
                               f"{sorted(by_model)}; choose one with prediction_model")
    return next(iter(by_model))


# ------------------------------------------------------------------ scoring

def _view(rows: list[dict]) -> dict:
    correct = sum(r["correct"] for r in rows)
    return {"points": sum(r["points"] for r in rows if r["correct"]), "total": sum(r["points"] for r in rows),
            "correct": correct, "questions": len(rows), "accuracy": correct / len(rows) if rows else None}


def score(questions: dict[str, Question], predictions: dict[str, str | None]) -> tuple[list[dict], dict]:
    """Per-question rows and the four views (overall, required, general, text_only). A question
    without a prediction (None or absent) counts as wrong."""
    rows = []
    for q in questions.values():
        output = predictions.get(q.number)
        rows.append({"question_number": q.number, "output": output, "prediction": normalize(output),
                     "answer": q.answer, "correct": output is not None and is_correct(q, output), "points": q.points,
                     "section": q.section, "has_image": q.has_image})
    views = {"overall": _view(rows), "required": _view([r for r in rows if r["section"] == "required"]),
             "general": _view([r for r in rows if r["section"] == "general"]),
             "text_only": _view([r for r in rows if not r["has_image"]])}
    return rows, views


def headline(views: dict) -> dict[str, float]:
    return {"accuracy": views["overall"]["accuracy"], "points": views["overall"]["points"],
            "required points": views["required"]["points"], "general points": views["general"]["points"]}


VIEWS = {"overall": "all", "required": "required (B, E)", "general": "general (A, C, D, F)",
         "text_only": "without images"}


def table(views: dict) -> str:
    """Points and accuracy of every view, as Markdown."""
    lines = ["| IgakuQA 2025 | points | accuracy |", "|---|---|---|"]
    for key, label in VIEWS.items():
        v = views[key]
        accuracy = f"{v['accuracy']:.1%} ({v['correct']}/{v['questions']})" if v["questions"] else "n/a"
        lines.append(f"| {label} | {v['points']}/{v['total']} | {accuracy} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ the registered benchmark

@dataclasses.dataclass(kw_only=True)
class Options(igakuqa.PromptOptions):
    """How the exam is put to a model (IgakuQA's) and which answers of a prediction file are scored."""

    answers_file: str | None = option(None, "IgakuQA 2025's answers CSV (default: results/correct_answers.csv "
                                            "in the data folder)")
    prediction_model: str | None = option(None, "score: the model whose answers are scored (default: the only "
                                                "model in the files)")


@dataclass
class Exam:
    questions: dict[str, Question]
    shots: list[igakuqa.Question]
    notes: list[str]


def load(data: Sequence[str], options: Options) -> Exam:
    """The questions with their answers and the few-shot examples, validated."""
    (folder,) = data
    questions = load_questions(folder, options.answers_file)
    return Exam(questions, igakuqa.shots_for(folder, options), data_notes(questions))


def _read(q: Question, output: str, ranked: bool) -> str | None:
    """The answer in the model's output with the question's own letters ("c,e"), or None."""
    if ranked:
        return output  # the picked labels, already the question's letters
    found = igakuqa.extract_answer(output, q.prompted())
    if found is None or not q.choices:
        return found
    return ",".join(sorted(q.labels[igakuqa.LETTERS.index(c)] for c in found.split(",")))


def run(lm: LocalLM, exam: Exam, options: Options, context: Context) -> Result:
    questions, shots = exam.questions, exam.shots
    items = [igakuqa.item(q.prompted(), shots, options.loglik_target, q.labels) for q in questions.values()]
    answers = answer_items(lm, items, options.method, options.max_new_tokens, context.batch_size,
                           stop_at_newline=True, progress=context.progress)
    ranked = options.method == "loglik"
    read = {n: None if a.error else _read(questions[n], a.output, ranked and bool(questions[n].choices))
            for n, a in answers.items()}
    rows, views = score(questions, {n: r or "" for n, r in read.items()})
    for row in rows:
        a, n = answers[row["question_number"]], row["question_number"]
        row.update(output=a.output, shots=len(shots) - a.dropped_shots, error=a.error, note=a.note, scores=a.scores,
                   answers=[{"model": lm.name, "answer": read[n] or ""}])  # the published format: score reads it back
    overall = views["overall"]
    overall.update(not_answered=[n for n, a in answers.items() if a.error],
                   unparsed=[n for n, a in answers.items() if not a.error and read[n] is None],
                   shots_dropped=sum(a.dropped_shots > 0 for a in answers.values()))
    settings = {"model": lm.name, "chat": lm.chat, "method": options.method, "shots": len(shots),
                "loglik_target": options.loglik_target if options.method == "loglik" else None,
                "max_new_tokens": options.max_new_tokens}
    return Result(rows, {"settings": settings, **views}, headline(views), table(views),
                  problems_of({"": overall}, ("not_answered", "unparsed")), notes=list(exam.notes))


def score_files(data: Sequence[str], predictions: Sequence[str], options: Options) -> Result:
    """Published answer files (several merged: one per block, say), one model's answers scored.
    A question the model did not answer counts as wrong and is listed."""
    (folder,) = data
    questions = load_questions(folder, options.answers_file)
    by_model = load_predictions(predictions, questions)
    model = choose_model(by_model, options.prediction_model, predictions)
    answers = by_model[model]
    rows, views = score(questions, {n: a[0] for n, a in answers.items()})  # the first, as the grader takes
    views["overall"]["missing"] = [n for n in questions if n not in answers]
    for row in rows:
        row.update(model=model, error=None, note=None)
    repeated = [n for n, a in answers.items() if len(a) > 1]
    notes = data_notes(questions)
    if repeated:
        notes.append(f"several answers by {model} (the first scored) for {len(repeated)} questions: {repeated[:10]}")
    settings = {"prediction_model": model, "predictions": [str(p) for p in predictions]}
    return Result(rows, {"settings": settings, **views}, headline(views), table(views),
                  problems_of({"": views["overall"]}, ("missing",)), notes=notes)


BENCHMARK = Benchmark(name="igakuqa2025", options=Options, load=load, run=run, score=score_files,
                      data_help="the IgakuQA 2025 folder (questions/119<block>_json.json, "
                                "results/correct_answers.csv, prompts/)",
                      predictions_help='the published answer files ({"results": [{"question_number", "answers": '
                                       '[{"answer", "model"}]}]}) or a run\'s predictions.jsonl')
