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
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from tokenizer.corpus import read_jsonl_records

ALWAYS_CORRECT = {"116A71"}
ALSO_ACCEPTED = {"112B30": [{"a"}, {"d"}]}
REQUIRED_BLOCKS = {"B", "E"}
_FILE = re.compile(r"^(\d+)-([A-Z])\.jsonl$")


class IgakuQAError(ValueError):
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


def _jsonl(path: Path):
    """(line, object) of a JSONL file; bad JSON raises CorpusError naming file and line."""
    return read_jsonl_records(path, text_field=None)


def _letters(raw) -> set[str]:
    """Prohibited choices as written in the metadata: "cde", ["ｃ"], " a" ... -> {"c", "d", "e"}."""
    text = "".join(raw) if isinstance(raw, list) else str(raw or "")
    return {c for c in unicodedata.normalize("NFKC", text).lower() if "a" <= c <= "z"}


def load_questions(data_dir: str | Path) -> dict[str, Question]:
    """Every year of the official layout: data/<year>/<exam>-<block>.jsonl (+ _metadata.jsonl)."""
    data_dir = Path(data_dir)
    root = data_dir / "data" if (data_dir / "data").is_dir() else data_dir
    questions: dict[str, Question] = {}
    files = sorted(p for p in root.glob("*/*.jsonl") if _FILE.match(p.name))
    if not files:
        raise IgakuQAError(f"{data_dir}: no <year>/<exam>-<block>.jsonl files (the official IgakuQA layout)")
    for path in files:
        block = _FILE.match(path.name).group(2)
        meta = {}
        meta_path = path.with_name(path.stem + "_metadata.jsonl")
        if meta_path.is_file():
            meta = {r.get("problem_id"): r for _, r in _jsonl(meta_path)}
        for number, r in _jsonl(path):
            where = f"{path} line {number}"
            try:
                pid, answer, points = r["problem_id"], r["answer"], int(r["points"])
            except (KeyError, ValueError, TypeError) as e:
                raise IgakuQAError(f"{where}: needs problem_id, answer and integer points ({e})") from None
            if not isinstance(answer, list) or not answer:
                raise IgakuQAError(f"{where}: answer must be a non-empty list")
            questions[pid] = Question(pid, path.parent.name, block, r.get("problem_text", ""), r.get("choices") or [],
                                      [str(a).lower() for a in answer], points, bool(r.get("text_only", True)),
                                      _letters(meta.get(pid, {}).get("kinki")))
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
    for number, r in _jsonl(Path(path)):
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
    return {"years": dict(sorted(years.items())), "questions": rows}


def table(result: dict) -> str:
    """The report's Table 2 row as Markdown: points/total (accuracy) per year, then the extra views."""
    lines = ["| year | score | accuracy | text-only accuracy | required (B+E) | prohibited picked |",
             "|---|---|---|---|---|---|"]
    for year, y in result["years"].items():
        lines.append(f"| {year} | {y['points']}/{y['total']} | {y['accuracy']:.1%} | {y['text_only_accuracy']:.1%} | "
                     f"{y['required_points']}/{y['required_total']} | {y['kinki_picked']} |")
    return "\n".join(lines) + "\n"
