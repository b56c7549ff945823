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
`metrics.json` and `table.md` (`write_results`): into a temporary folder beside the
destination, moved into place once complete, so a failed run changes nothing and a reader
never sees half of a run. Who may replace a folder that already holds results is the
caller's decision (`check_out`: evaluate.py refuses without --overwrite); a folder holding
anything else is never written into.

A benchmark that runs in parts taking hours (JMED-LLM's eight tasks) saves each part as soon as
it is finished into `<out>/partial/` (`Partial`), with the fingerprint of the model, options and
data that produced it; a rerun into the same folder reads the finished parts back instead of
putting them to the model again. partial/ is not results: a folder holding only it is resumed
without --overwrite, and the final results replace it, so they are the same files an
uninterrupted run writes.

Data files are read by the readers here (`read_text`, `read_jsonl`, `read_csv`, over
tokenizer.corpus's): UTF-8 (a byte-order mark is allowed), and a file that is not (Shift_JIS /
cp932 from Excel) or is binary is an `EncodingError` of the benchmark's own error class,
naming the file, the line and byte, the encoding it looks like and how to re-save it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tokenizer.progress import progress as progress_bar

from slm.checkpoint import atomic_write
from slm.config import Config
from slm.data.readers import ReadErrors
from slm.lm import LocalLM, Prompt, load_lm
from tokenizer import corpus
from tokenizer.corpus import CorpusError, UndecodableError, list_files, read_jsonl_records, utf8_fix
from tokenizer.folders import FolderExistsError, StagedFolder

Method = Literal["generate", "loglik"]
PROBLEMS = {"unparsed": "no readable answer", "not_answered": "prompt too long for the model",
            "missing": "no prediction"}


class BenchmarkError(ValueError):
    """Unusable benchmark data or predictions; the message names the file, line or row, and field."""


class EncodingError(BenchmarkError):
    """A data or prediction file that is not UTF-8; the message names where decoding failed."""


class OutputError(BenchmarkError):
    """An output folder that holds another run's results (or files that are not results)."""


# ------------------------------------------------------------------ reading data files

_ENCODING_CLASSES: dict[type, type] = {}


def _encoding_class(error: type[BenchmarkError]) -> type[BenchmarkError]:
    """An error class that is both `error` (a benchmark's own) and an EncodingError."""
    if issubclass(error, EncodingError) or not issubclass(error, BenchmarkError) or error is BenchmarkError:
        return error if issubclass(error, EncodingError) else EncodingError
    if error not in _ENCODING_CLASSES:
        _ENCODING_CLASSES[error] = type(f"{error.__name__}Encoding", (error, EncodingError),
                                        {"__module__": error.__module__, "__doc__": EncodingError.__doc__})
    return _ENCODING_CLASSES[error]


ENCODING = "utf-8"  # of every data and prediction file (a byte-order mark is allowed)
BINARY_FIX = "benchmark files are UTF-8 text (a compressed file? decompress it first)"


def _read(path: str | Path, error: type[BenchmarkError], read: Callable[[Path], Any], empty: Any) -> Any:
    """`read(path)`, a tokenizer.corpus reader, with its errors as `error`s: a missing file or a folder is
    named, an empty file gives `empty`, one that does not decode as UTF-8 (or is binary) is an
    EncodingError of `error`, with the place, the encoding it looks like and how to re-save it."""
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: no such file")
    if path.is_dir():
        raise error(f"{path}: a folder, not a file")
    try:
        return empty if path.stat().st_size == 0 else read(path)
    except UndecodableError as e:
        raise _encoding_class(error)(str(e)) from None
    except CorpusError as e:
        raise error(str(e)) from None
    except OSError as e:
        raise error(f"{path}: cannot be read ({e.strerror or e})") from None


def read_text(path: str | Path, error: type[BenchmarkError] = BenchmarkError) -> str:
    """The text of a UTF-8 file (without a byte-order mark). A missing or unreadable file, or
    one that is not UTF-8, is an `error` (an EncodingError) naming it."""
    return _read(path, error, lambda p: corpus.read_text(p, ENCODING, utf8_fix, BINARY_FIX), "")


def read_each(data: Sequence[str | Path], what: str, read: Callable[[Path, ReadErrors], list]) -> tuple[list, int]:
    """(every item, records skipped) of the files or folders in `data`, each file read by `read(path,
    errors)`: a damaged record is skipped and counted, a file that gives no item at all (not UTF-8,
    empty, binary, every record malformed) is an error naming it and why."""
    try:
        files = list_files([str(f) for f in data])
    except CorpusError as e:
        raise BenchmarkError(str(e)) from None
    items, skipped = [], 0
    for path in files:
        errors = ReadErrors()
        try:
            found = read(path, errors)
        except CorpusError as e:
            raise nothing_readable(path, what, [str(e)]) from None
        if not found:
            raise nothing_readable(path, what, errors.examples)
        items += found
        skipped += errors.total
    return items, skipped


def nothing_readable(path: str | Path, what: str, reasons: Sequence[str] = (),
                     error: type[BenchmarkError] = BenchmarkError) -> BenchmarkError:
    """The error for a file that gave no usable record: not UTF-8 (or missing) is said so, with
    where decoding failed and the fix; else the first reason its records were skipped."""
    try:
        read_text(path, error)
    except BenchmarkError as e:
        return e
    return error(f"{path}: no usable {what}" + (f" ({reasons[0]})" if reasons else ""))


def read_jsonl(path: str | Path, error: type[BenchmarkError] = BenchmarkError) -> list[tuple[int, dict]]:
    """(line number, object) of every non-blank line of a UTF-8 JSONL file; a line that is not
    a JSON object is an `error` naming the file and line."""
    return _read(path, error, lambda p: list(read_jsonl_records(p, None, ENCODING, None, utf8_fix, BINARY_FIX)), [])


def read_csv(path: str | Path, error: type[BenchmarkError] = BenchmarkError) -> tuple[list[str], list[tuple[int, dict]]]:
    """(header, [(row, {column: cell})]) of a UTF-8 CSV file with a header. Rows are numbered as
    a spreadsheet shows them: the header is row 1, and a quoted cell spanning lines stays in
    its row. Blank rows are skipped (their numbers kept); a file without a header or without
    a row below it, a malformed CSV and a row with more cells than the header are `error`s."""
    text = read_text(path, error)
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    try:
        header = next(reader, None)
        for number, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue
            if header is not None and len(cells) > len(header) and any(c.strip() for c in cells[len(header):]):
                raise error(f"{path} row {number}: {len(cells)} cells, more than the {len(header)} columns of the "
                            f"header (a comma in an unquoted cell?)")
            rows.append((number, cells))
    except csv.Error as e:
        raise error(f"{path} line {reader.line_num}: not a readable CSV ({e})") from None
    if header is None or not any(c.strip() for c in header):
        raise error(f"{path}: empty (no header row)")
    header = [c.strip() for c in header]
    if not rows:
        raise error(f"{path}: no rows below the header (row 1)")
    return header, [(n, {h: (cells[i] if i < len(cells) else "") for i, h in enumerate(header)}) for n, cells in rows]


@dataclass
class Problem:
    """Items of one group (a year, a task) that count as wrong for a reason worth listing."""

    kind: str  # a key of PROBLEMS
    ids: list  # as the benchmark names its items: question ids, or row numbers
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
    return [Problem(kind, list(g[kind]), name) for name, g in groups.items() for kind in kinds if g.get(kind)]


# ------------------------------------------------------------------ finished parts of an interrupted run

PARTIAL_DIR = "partial"  # <out>/partial/<part>.json: the parts a run finished so far, not results
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # a part is a file of partial/


def file_stats(paths: Sequence[str | Path]) -> list[list]:
    """[path, size, mtime_ns] of every file of `paths` (a folder: every file below it, hidden ones
    such as .git/ left out): what tells one version of a data set or model folder from another
    without reading it. A missing path is listed with None."""
    stats = []
    for path in map(Path, paths):
        files = sorted(p for p in path.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(path).parts)) if path.is_dir() else [path]
        for file in files:
            try:
                stat = file.stat()
            except OSError:
                stats.append([str(file.absolute()), None, None])
                continue
            stats.append([str(file.resolve()), stat.st_size, stat.st_mtime_ns])
    return stats


def saved_parts(out_dir: str | Path) -> list[str]:
    """The parts an interrupted run left in `out_dir`/partial/ (whatever produced them)."""
    folder = Path(out_dir) / PARTIAL_DIR
    return sorted(p.stem for p in folder.glob("*.json") if _NAME.match(p.stem)) if folder.is_dir() else []


class Partial:
    """The parts of a run finished so far, each written to `<out>/partial/<part>.json` as soon as
    it is done (atomically: a kill leaves a part whole or absent) with the fingerprint of what
    produced it. `get` gives back a part saved under the same fingerprint (None otherwise: the
    part is run again and `put` replaces it). The fingerprint is computed at the first use,
    so a benchmark that never saves parts costs nothing."""

    def __init__(self, out_dir: str | Path, fingerprint: Callable[[], dict]):
        self.folder = Path(out_dir) / PARTIAL_DIR
        self._fingerprint, self._value = fingerprint, None
        self.reused: list[str] = []
        self.changed: set[str] = set()  # what differs (model, options, data) from the interrupted run's

    @property
    def fingerprint(self) -> dict:
        if self._value is None:
            self._value = json.loads(json.dumps(self._fingerprint(), default=str))  # as it reads back from a file
        return self._value

    def _path(self, part: str) -> Path:
        if not _NAME.match(part):
            raise ValueError(f"{part!r}: a part's name is a file name (letters, digits, _ and -)")
        return self.folder / f"{part}.json"

    def get(self, part: str, valid: Callable[[Any], bool] = lambda value: True) -> Any:
        """What `put` saved for `part` under this fingerprint, if `valid`; else None."""
        try:
            saved = json.loads(self._path(part).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # not there (or not readable): run the part
        if not isinstance(saved, dict) or not isinstance(saved.get("fingerprint"), dict):
            return None
        if saved["fingerprint"] != self.fingerprint:
            old, new = saved["fingerprint"], self.fingerprint
            self.changed |= {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}
            return None
        if "value" not in saved or not valid(saved["value"]):
            return None
        self.reused.append(part)
        return saved["value"]

    def put(self, part: str, value: Any) -> None:
        path = self._path(part)
        text = json.dumps({"fingerprint": self.fingerprint, "value": value}, ensure_ascii=False) + "\n"
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def notes(self) -> list[str]:
        """What the summary says of the interrupted run: the parts read back, or why none were."""
        lines = [f"{', '.join(self.reused)}: read back from {self.folder} (finished by an interrupted run with "
                 f"the same model, options and data)"] if self.reused else []
        if self.changed:
            lines.append(f"{self.folder}: parts of an interrupted run were run again (different "
                         f"{', '.join(sorted(self.changed))})")
        return lines


@dataclass(kw_only=True)
class Context:
    """How a benchmark is run, beside its options: batching, progress, how to open another
    model its options name (the kNN embedder of multiple choice), and where finished parts
    are saved and read back (None: nowhere)."""

    batch_size: int = 8
    progress: bool = True
    load_lm: Callable[[str], LocalLM] = load_lm
    partial: Partial | None = None


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


def method_used(method: Method, rankable: bool, why: str) -> str:
    """How items were answered under `method`, in words where it does not apply: items with no
    choices to rank are generated in loglik mode too (`answer_items`)."""
    return f"generate (loglik does not apply: {why})" if method == "loglik" and not rankable else method


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

    bar = progress_bar(total=len(to_generate) + len(to_rank), desc=f"answering ({method})", unit="q",
                       enabled=progress, leave=False)
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


RESULT_FILES = ("predictions.jsonl", "metrics.json", "table.md")
HEADLINE_FILE = "headline.json"  # a checkpoint sweep's cache mark, written into the folder once it is in place
REPLACEABLE = (*RESULT_FILES, HEADLINE_FILE)  # what a results folder may hold, replaced with it


def _results_in(out_dir: str | Path) -> list[str]:
    """What `out_dir` holds besides the finished parts of an interrupted run."""
    folder = Path(out_dir)
    return [p.name for p in folder.iterdir() if p.name != PARTIAL_DIR] if folder.is_dir() else []


def _staged(out_dir: str | Path, overwrite: bool) -> StagedFolder:
    """The results folder, to be built beside `out_dir` and moved into place (tokenizer.folders):
    results there are replaced only with `overwrite`, a folder holding anything else never. A
    folder holding only partial/ is the run being resumed: replaced without `overwrite`."""
    try:
        return StagedFolder(out_dir, replace=overwrite or not _results_in(out_dir), owned=(*REPLACEABLE, PARTIAL_DIR),
                            what="results", option="--overwrite")
    except FolderExistsError as e:
        raise OutputError(str(e)) from None


def check_out(out_dir: str | Path, overwrite: bool) -> bool:
    """Whether the results to be written to `out_dir` replace others: an OutputError when it holds
    results and `overwrite` is False, or holds anything else. Called before any model work. The
    finished parts of an interrupted run (partial/) are not results: they are resumed."""
    return _staged(out_dir, overwrite).check() and bool(_results_in(out_dir))


def write_results(out_dir: str | Path, result: Result, overwrite: bool = True) -> Path:
    """predictions.jsonl, metrics.json and table.md in `out_dir`, written into a temporary folder
    beside it and moved into place when complete: an error or a kill part way leaves `out_dir`
    as it was (leftovers are cleaned by the next write)."""
    if Path(out_dir).name in ("", ".", ".."):
        raise OutputError(f"{out_dir}: name a folder for the results")
    files = {"predictions.jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in result.rows),
             "metrics.json": json.dumps(result.metrics, indent=2, ensure_ascii=False) + "\n",
             "table.md": result.table}
    staged = _staged(out_dir, overwrite)
    with staged as tmp:
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
    return staged.dest
