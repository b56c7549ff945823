"""Converters from published medical QA schemas to chat conversations (report §2.4.2).

Each reads local files and returns `Converted`: the conversations, and every
record it skipped with file, line (or key) and reason. Multiple-choice data is
messy in practice (options as a dict or a list, answers as a letter or as the
option text, more than four options, blanks), so each converter states what it
accepts and counts what it cannot use.

JMED-LLM and IgakuQA use the benchmarks' own system prompts and question formats,
so training looks exactly like evaluation. `jmed_llm_split` keeps out every pool
row that shares a document with an evaluation row, across all tasks: the case
report, radiology report, nursing record, tweet or question stem a row asks about,
never its template or options (or, at row level, the report's protocol, only the
evaluation rows themselves, which leaks). Converted JMED-LLM rows carry their task
and label, and every JMED-LLM conversion saves its task x label table of rows in,
kept and removed beside the output.

Files are UTF-8 (a byte-order mark is allowed). A file that is not (a Shift_JIS
CSV saved by a spreadsheet, say) or is not text at all raises a CorpusError naming
the file, the line and byte where decoding failed, and the fix; so does a converter
that finds no usable record in its files, with the count and the first reasons.
The command line ends any such failure with one `error: ...` line and status 2
(`--debug` shows the traceback).
"""

from __future__ import annotations

import argparse
import ast
import csv
import io
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from slm import jmed
from slm.checkpoint import atomic_write
from slm.config import ConfigError
from slm.data.decontam import canonical
from slm.finetune.instructions import ENCODING, nothing_usable
from slm.metrics import JMED_CHOICE_TASKS, JMED_NER_TASKS
from tokenizer.corpus import CorpusError, UndecodableError, read_jsonl_records, read_text, utf8_fix

BINARY_FIX = "the converters read UTF-8 CSV, JSONL or JSON files (a compressed file? decompress it first)"

LETTERS = "ABCDEFGH"

IGAKU_SYSTEM = "医師国家試験を解きます。"
ENGLISH_SYSTEM = "Answer the medical question. Reply with the letter of the correct option only."


@dataclass
class Converted:
    conversations: list[list[dict]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "file line N: reason"

    def add(self, system: str, user: str, answer: str) -> None:
        self.conversations.append([{"role": "system", "content": system}, {"role": "user", "content": user},
                                   {"role": "assistant", "content": answer}])


def _skip_or_raise(out: Converted):
    """The reader's error callback: a file that does not decode raises, a bad record is listed."""
    def on_error(error: CorpusError) -> None:
        if isinstance(error, UndecodableError):
            raise error
        out.skipped.append(str(error))
    return on_error


def _text(path: Path, out: Converted) -> str | None:
    """A whole (small) file as UTF-8 text, with its line ends as they are; None for an empty file
    (listed as skipped). Not UTF-8, or binary: UndecodableError naming line and byte."""
    try:
        return read_text(path, ENCODING, utf8_fix, BINARY_FIX)
    except UndecodableError:
        raise
    except CorpusError as e:
        if not path.is_file():
            raise
        out.skipped.append(str(e))  # empty
        return None


def _csv(path: Path, out: Converted, header: bool = True):
    """(the line a row starts on, the row) of a CSV file: quoted cells span lines, so line_num alone
    is the end. Rows are dicts by the header, or lists without one."""
    text = _text(path, out)
    if text is None:
        return
    f = io.StringIO(text, newline="")
    reader = csv.DictReader(f) if header else csv.reader(f)
    start = 2 if header else 1
    try:
        for row in reader:
            yield start, row
            start = reader.line_num + 1
    except csv.Error as e:
        raise CorpusError(f"{path} line {reader.line_num}: malformed CSV ({e})", path) from None


def _rows_jsonl(path: Path, out: Converted):
    """(line, object); bad lines are skipped and listed with their reason."""
    if not path.is_file():
        raise CorpusError(f"{path}: no such file", path)
    return read_jsonl_records(path, None, ENCODING, _skip_or_raise(out), utf8_fix, BINARY_FIX)


def _checked(out: Converted, paths: list[Path], what: str) -> Converted:
    """`out`, unless it holds no conversation: then a CorpusError with the files and the reasons."""
    if not out.conversations:
        raise nothing_usable(paths, f"{what} record", len(out.skipped), out.skipped)
    return out


# ------------------------------------------------------------------ JMED-LLM rows and their split

JMED_TASKS = (*JMED_CHOICE_TASKS, *JMED_NER_TASKS)  # the order and spelling of slm.eval.jmed_llm.TASKS

# datasets/all/ names its pools after their source corpora, datasets/ the evaluation sets after the
# tasks. Each pool is one task, except MRNER: the benchmark builds it from the NER rows of MedTxt-CR
# (CRNER, case reports) and MedTxt-RR (RRNER, radiology reports) by entity type, so the disease rows
# (tag "d") of both are mrner_disease and the medicine rows of CRNER (tags "m-key", drug names, and
# "m-val", doses) mrner_medicine; NRNER (nursing records, all three tags) is nrner as a whole.
JMED_POOLS = {"crade": "crade", "jmmlu-med": "jmmlu_med", "rrtnm": "rrtnm", "smdis": "smdis", "nrner": "nrner"}
MRNER_POOLS = ("crner", "rrner")
NO_TASK = "(unknown)"  # how the table names rows from a file that is no JMED-LLM task or pool

# Every task but jmmlu_med (a bare question stem) and jcsts (a sentence pair) asks in one instruction
# line and quotes its document after it in 「」, to the end of the cell: a case report, a radiology
# report, a nursing record, a tweet. The instruction line is the task's template with the target.
_QUOTED = re.compile(r"[^\n]*\n「(.*)」\s*", re.S)
_SENTENCE_LABEL = re.compile(r"S\d+:\s*")  # jcsts: "S1: ...", "S2: ..." after the instruction line


def jmed_llm_task(path: str | Path, row: dict) -> str | None:
    """The evaluation task of a row by its file's name (see JMED_POOLS); None for another name."""
    name = Path(path).stem.lower()
    if name in JMED_TASKS:  # an evaluation set, datasets/<task>.csv
        return name
    if name in MRNER_POOLS:
        tag = (row.get("tag") or "").strip()
        return "mrner_disease" if tag == "d" else "mrner_medicine" if tag.startswith("m-") else None
    return JMED_POOLS.get(name)


def jmed_llm_documents(question: str, task: str | None) -> tuple[str, ...]:
    """What a JMED-LLM question is about, in the form documents are compared in (canonical:
    normalised as `encode` does, NFKC among it, whitespace removed): the quoted document, each
    sentence of a jcsts pair, the whole stem of a jmmlu_med question. Never the instruction line
    nor the options, which are the same in every row of a task and would make any two rows of it
    look alike. A question in neither layout is its own document: its template then counts too,
    which can remove more rows, never fewer."""
    quoted = None if task == "jmmlu_med" else _QUOTED.fullmatch(question)
    if quoted:
        texts = [quoted.group(1)]
    elif task == "jcsts":
        texts = [_SENTENCE_LABEL.sub("", line, count=1) for line in question.split("\n")[1:]]
    else:
        texts = [question]
    return tuple(d for d in map(canonical, texts) if d)


@dataclass
class JmedRow:
    """One row of a JMED-LLM file as the split and its table see it."""

    task: str | None
    label: str | None  # a choice row's answer letter; None for NER rows (a list each) and unusable rows
    choice: bool
    documents: tuple[str, ...]
    prompt: tuple[str, str] | None = None  # (system, user); None without a question
    conversation: list[dict] | None = None  # None: malformed (the reason is in `skipped`)


@dataclass
class JmedRows(Converted):
    """Converted JMED-LLM rows, and every row read (malformed ones too) with its task, label and
    documents: an evaluation row that cannot be converted still has a document to keep out."""

    rows: list[JmedRow] = field(default_factory=list)

    def keep(self, row: JmedRow) -> None:
        """A usable row, converted already: its conversation joins the conversations."""
        self.rows.append(row)
        self.conversations.append(row.conversation)

    def tags(self) -> list[dict]:
        """{"task", "label"} of each conversation, in order: written beside its messages."""
        return [{"task": r.task, "label": r.label} for r in self.rows if r.conversation is not None]


def jmed_llm_user(row: dict) -> tuple[str, str]:
    """(system, user) of a JMED-LLM row, as the official evaluator builds them (slm.jmed)."""
    system, user = jmed.conversation(row)
    return system["content"], user["content"]


def convert_jmed_llm(paths: list[str | Path]) -> JmedRows:
    """JMED-LLM CSVs: choice tasks (question, optionA..F, answer letter) and NER tasks
    (tag, question, answer as a Python list literal). Each row keeps its task (by file name,
    jmed_llm_task), its label (the answer letter; none for NER) and its documents."""
    out, paths = JmedRows(), [Path(p) for p in paths]
    for path in paths:
        for number, row in _csv(path, out):
            where = f"{path} line {number}"
            task, question = jmed_llm_task(path, row), row.get("question") or ""
            choice = any((row.get(f"option{L}") or "").strip() for L in "ABCDEF")
            if not question.strip():
                out.skipped.append(f"{where}: empty question")
                out.rows.append(JmedRow(task, None, choice, ()))
                continue
            system, user = jmed_llm_user(row)
            answer = (row.get("answer") or "").strip()
            unusable = None
            if not choice:
                try:
                    value = ast.literal_eval(answer)  # never eval(): the cell is data
                except (ValueError, SyntaxError):
                    value = None
                if not isinstance(value, list):
                    unusable = f"answer {answer[:40]!r} is not a list literal"
            elif answer not in LETTERS[:6] or not (row.get(f"option{answer}") or "").strip():
                unusable = f"answer {answer!r} is not one of the row's options"
            documents = jmed_llm_documents(question, task)
            if unusable:
                out.skipped.append(f"{where}: {unusable}")
                out.rows.append(JmedRow(task, None, choice, documents, (system, user)))
                continue
            out.add(system, user, answer)
            out.rows.append(JmedRow(task, answer if choice else None, choice, documents, (system, user),
                                    out.conversations[-1]))
    return _checked(out, paths, "JMED-LLM")


class _HeldDocuments:
    """The evaluation rows' documents, and whether another document shares one of them.

    A document at least `ngram` characters long shares one when they have an `ngram`-character
    span in common (a case report asked about with another target, or quoted in part). A shorter
    one (a tweet) has no such span, so it shares when it equals an evaluation document or one
    contains the other."""

    def __init__(self, documents, ngram: int):
        self.ngram = ngram
        self.exact = {d for d in documents if d}
        self.short = [d for d in self.exact if len(d) < ngram]
        self.grams = {d[i : i + ngram] for d in self.exact for i in range(len(d) - ngram + 1)}
        self.joined = "\0".join(self.exact)  # NUL: no CSV text holds one, so no match spans two documents
        self._seen: dict[str, bool] = {}  # rows share documents: each is compared once

    def shares(self, document: str) -> bool:
        if document not in self._seen:
            n, d = self.ngram, document
            self._seen[d] = (d in self.exact or any(d[i : i + n] in self.grams for i in range(len(d) - n + 1))
                             or (len(d) < n and d in self.joined) or any(s in d for s in self.short))
        return self._seen[document]


SPLIT_LEVELS = ("document", "row")
REMOVED_AS = ("identical row", "shared document")  # why a pool row is not trained on
LEAKING = "kept, sharing a document"  # the table's column of kept rows that a row-level split leaks


@dataclass
class JmedSplit:
    """Which pool rows train and why the others do not, with the task x label table of it."""

    level: str
    ngram: int
    pool: JmedRows
    why: list[str | None]  # per pool row: one of REMOVED_AS, "malformed", or None (kept)
    shared: list[bool]  # per pool row: it shares a document with an evaluation row
    evaluation_tasks: dict[str, int]  # evaluation rows per task, for the warnings

    @property
    def kept(self) -> JmedRows:
        kept = JmedRows(skipped=list(self.pool.skipped))
        for row, why in zip(self.pool.rows, self.why):
            if why is None:
                kept.keep(row)
        return kept

    @property
    def removed(self) -> int:
        return sum(why in REMOVED_AS for why in self.why)

    @property
    def leaking(self) -> int:
        """Kept rows that share a document with an evaluation row (none at document level)."""
        return sum(why is None and shared for why, shared in zip(self.why, self.shared))

    def table(self) -> list[dict]:
        """Rows in, kept, removed and why, by task and label, each task's total after its labels
        (label "all") and the grand total last; NER rows have label "-", unreadable ones "?"."""
        counts: dict[tuple[str, str], Counter] = {}
        for row, why, shared in zip(self.pool.rows, self.why, self.shared):
            label = row.label or ("?" if row.choice else "-")
            for key in ((row.task or NO_TASK, label), (row.task or NO_TASK, "all"), ("all", "all")):
                c = counts.setdefault(key, Counter())
                c["in"] += 1
                c[why or "kept"] += 1
                c[LEAKING] += why is None and shared
        order = {t: i for i, t in enumerate((*JMED_TASKS, NO_TASK, "all"))}
        keys = sorted(counts, key=lambda k: (order[k[0]], k[1] == "all", k[1]))
        columns = ("in", "kept", *REMOVED_AS, "malformed", LEAKING)
        return [{"task": t, "label": label, **{c: counts[t, label][c] for c in columns}} for t, label in keys]

    def warnings(self) -> list[str]:
        """Tasks without rows to train on or with a single label; the leak of a row-level split."""
        out = []
        by_task: dict[str, Counter] = {}
        for row, why in zip(self.pool.rows, self.why):
            c = by_task.setdefault(row.task or NO_TASK, Counter())
            c["in"] += 1
            if why is None:
                c[row.label] += 1
        for task in (*JMED_TASKS, NO_TASK):
            c = by_task.get(task, Counter())
            kept = {label: n for label, n in c.items() if label != "in"}
            if task == NO_TASK:
                if c:
                    out.append(f"{task}: {c['in']} rows from files named after no JMED-LLM task or pool "
                               "(jmed_llm_task): written without a task")
            elif not c:
                out.append(f"{task}: no training pool" + (f" (an evaluation set of {self.evaluation_tasks[task]} rows)"
                                                           if task in self.evaluation_tasks else ""))
            elif not kept:
                out.append(f"{task}: no row kept of {c['in']}")
            elif task in JMED_CHOICE_TASKS and len(kept) == 1:
                out.append(f"{task}: all kept rows have label {next(iter(kept))}")
        if self.level == "row":
            out.append(f"row level LEAKS: {self.leaking} kept rows share a document with an evaluation row (the "
                       "report's protocol removes only rows identical to an evaluation row)")
        if not self.evaluation_tasks:
            out.append("no evaluation set given (--exclude): nothing removed")
        return out

    def summary(self) -> dict:
        return {"level": self.level, "ngram": self.ngram, "removed": self.removed, "leaking": self.leaking,
                "warnings": self.warnings(), "table": self.table()}

    def markdown(self) -> str:
        rows = self.table()
        columns = list(rows[0]) if rows else []
        level = ("document: pool rows sharing a document with an evaluation row are removed" if self.level == "document"
                 else "row: only rows identical to an evaluation row are removed; the split leaks")
        lines = [f"JMED-LLM training split, {level} ({self.ngram}-character spans)", "",
                 "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
        return "\n".join(lines + [""] + [f"warning: {w}" for w in self.warnings()]) + "\n"

    def write(self, out: str | Path) -> tuple[Path, Path]:
        """<out>.split.json and <out>.split.md, each whole or not at all."""
        paths = Path(f"{out}.split.json"), Path(f"{out}.split.md")
        texts = json.dumps(self.summary(), ensure_ascii=False, indent=1) + "\n", self.markdown()
        for path, text in zip(paths, texts):
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
        return paths


def jmed_llm_split(pool: JmedRows, evaluation: JmedRows, ngram: int = 50, level: str = "document") -> JmedSplit:
    """The pool's training rows: without every row that shares a document with any evaluation row,
    of any task (level "document"), or only without rows identical to an evaluation row (level
    "row", the report's protocol: fine-tuned on every row "except test samples"; it leaks).

    Rows about one case report differ in their target, rows about one tweet in the symptom, so the
    documents are compared (jmed_llm_documents), never the prompts: the template and options are
    the same in every row of a task. `ngram` is the span length that marks a shared long document.
    """
    if level not in SPLIT_LEVELS:
        raise ConfigError(f"split level {level!r}: choose one of {', '.join(SPLIT_LEVELS)}")
    held = _HeldDocuments((d for r in evaluation.rows for d in r.documents), ngram)
    prompts = {r.prompt for r in evaluation.rows if r.prompt}
    why, shared = [], []
    for row in pool.rows:
        shared.append(any(held.shares(d) for d in row.documents))
        if row.conversation is None:
            why.append("malformed")
        elif row.prompt in prompts:  # the same question is the same test item, whatever its answer cell says
            why.append("identical row")
        else:
            why.append("shared document" if level == "document" and shared[-1] else None)
    return JmedSplit(level, ngram, pool, why, shared, dict(Counter(r.task or NO_TASK for r in evaluation.rows)))


def convert_igakuqa(paths: list[str | Path]) -> Converted:
    """IgakuQA JSONL (problem_id, problem_text, choices, answer): the published baseline prompt."""
    out, paths = Converted(), [Path(p) for p in paths]
    for path in paths:
        for number, r in _rows_jsonl(path, out):
            where = f"{path} line {number}"
            text, choices, answer = r.get("problem_text"), r.get("choices"), r.get("answer")
            if not isinstance(text, str) or not isinstance(choices, list) or not isinstance(answer, list) or not answer:
                out.skipped.append(f"{where}: needs problem_text, a choices list and a non-empty answer list")
                continue
            letters = "abcdefgh"[: len(choices)]
            if choices and not all(isinstance(a, str) and a in letters for a in answer):
                out.skipped.append(f"{where}: answer {answer} is not among the choices {list(letters)}")
                continue
            lines = [f"問題: {text}", *(f"{L}: {c}" for L, c in zip(letters, choices))]
            if choices:
                lines.append(f"必ず{','.join(letters)}の中からちょうど{len(answer)}個選んでください。")
            out.add(IGAKU_SYSTEM, "\n".join(lines) + "\n答え:", ",".join(answer))
    return _checked(out, paths, "IgakuQA")


def _options(raw) -> list[str] | None:
    """Options as a list, from a list or a {"A": ..., "B": ...} dict (in letter order)."""
    if isinstance(raw, list) and all(isinstance(o, str) for o in raw):
        return raw
    if isinstance(raw, dict) and raw and all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        return [raw[k] for k in sorted(raw)]
    return None


def _mcq(out: Converted, where: str, question, options, answer) -> None:
    if not isinstance(question, str) or not question.strip():
        out.skipped.append(f"{where}: empty question")
        return
    if options is None or not 2 <= len(options) <= len(LETTERS):
        out.skipped.append(f"{where}: options must be 2 to {len(LETTERS)} strings, as a list or a letter dict")
        return
    letters = LETTERS[: len(options)]
    if isinstance(answer, str) and answer.strip().upper() in letters and len(answer.strip()) == 1:
        letter = answer.strip().upper()
    elif isinstance(answer, str) and answer in options:  # the answer given as the option's text
        letter = letters[options.index(answer)]
    else:
        out.skipped.append(f"{where}: answer {str(answer)[:40]!r} is neither an option letter nor an option's text")
        return
    # "Answer:" cues the reply, so a base model reading the prompt as plain text continues with the letter
    user = question.strip() + "\n" + "".join(f"{L}. {o}\n" for L, o in zip(letters, options)) + "Answer:"
    out.add(ENGLISH_SYSTEM, user, letter)


def convert_medqa(paths: list[str | Path]) -> Converted:
    """MedQA (USMLE) JSONL: question, options (dict or list, 4 or 5), answer_idx (letter) or answer (text)."""
    out, paths = Converted(), [Path(p) for p in paths]
    for path in paths:
        for number, r in _rows_jsonl(path, out):
            _mcq(out, f"{path} line {number}", r.get("question"), _options(r.get("options")),
                 r.get("answer_idx") or r.get("answer"))
    return _checked(out, paths, "MedQA")


def convert_medmcqa(paths: list[str | Path], cop_base: int = 1) -> Converted:
    """MedMCQA JSONL: question, opa..opd, cop (the correct option's number: 1-4 in the original
    release, 0-3 in some re-packagings; say which with cop_base)."""
    out, paths = Converted(), [Path(p) for p in paths]
    for path in paths:
        for number, r in _rows_jsonl(path, out):
            options = [r.get(k) for k in ("opa", "opb", "opc", "opd")]
            cop = r.get("cop")
            valid = isinstance(cop, int) and not isinstance(cop, bool) and 0 <= cop - cop_base < 4
            letter = LETTERS[cop - cop_base] if valid else None
            _mcq(out, f"{path} line {number}", r.get("question"),
                 options if all(isinstance(o, str) and o.strip() for o in options) else None, letter or repr(cop))
    return _checked(out, paths, "MedMCQA")


MMLU_MEDICAL = ("anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
                "professional_medicine")


def convert_mmlu(paths: list[str | Path], subjects: tuple[str, ...] = MMLU_MEDICAL) -> Converted:
    """MMLU CSVs as published (data/<split>/<subject>_<split>.csv, no header: question, A, B, C, D,
    answer letter), the medical subjects only by default; other files are skipped and listed."""
    out, paths = Converted(), [Path(p) for p in paths]
    for path in paths:
        subject = path.stem.rsplit("_", 1)[0]
        if subject not in subjects:
            out.skipped.append(f"{path}: subject {subject!r} is not one of {list(subjects)}")
            continue
        for number, row in _csv(path, out, header=False):
            where = f"{path} line {number}"
            if len(row) != 6:
                out.skipped.append(f"{where}: {len(row)} cells, MMLU rows have 6 (question, A-D, answer)")
                continue
            _mcq(out, where, row[0], row[1:5], row[5])
    return _checked(out, paths, "MMLU")


def convert_pubmedqa(path: str | Path) -> Converted:
    """PubMedQA (ori_pqal.json: {pmid: {QUESTION, CONTEXTS, final_decision}}): yes / no / maybe."""
    out = Converted()
    path = Path(path)
    text = _text(path, out)
    try:
        data = json.loads(text) if text is not None else None
    except json.JSONDecodeError as e:
        out.skipped.append(f"{path} line {e.lineno}: not valid JSON ({e.msg})")
        return _checked(out, [path], "PubMedQA")
    if text is not None and not isinstance(data, dict):
        out.skipped.append(f"{path}: not a JSON object of {{pmid: record}}")
    for pmid, r in (data.items() if isinstance(data, dict) else []):
        where = f"{path} record {pmid}"
        if not isinstance(r, dict) or r.get("final_decision") not in ("yes", "no", "maybe"):
            out.skipped.append(f"{where}: final_decision must be yes, no or maybe")
            continue
        contexts = r.get("CONTEXTS")
        if not isinstance(r.get("QUESTION"), str) or not isinstance(contexts, list):
            out.skipped.append(f"{where}: needs QUESTION and a CONTEXTS list")
            continue
        user = ("Context: " + " ".join(map(str, contexts)) + f"\nQuestion: {r['QUESTION']}\nAnswer yes, no or maybe.\n"
                "Answer:")
        out.add("Answer the biomedical research question from the context.", user, r["final_decision"])
    return _checked(out, [path], "PubMedQA")


def as_text(conversation: list[dict]) -> str:
    """A conversation as plain text, for instruction-like documents in (continued) pretraining.

    Pretraining text cannot hold the chat tokens (text never becomes a special token), so the
    turns are written out in words; raising the share of such documents late in training (a
    mixture curriculum) is the published remedy for continued pretraining that made a model
    ignore instructions.
    """
    labels = {"system": "指示", "user": "質問", "assistant": "回答"}
    return "\n".join(f"{labels[m['role']]}: {m['content']}" for m in conversation)


def write_jsonl(conversations: list[list[dict]], path: str | Path, text: bool = False,
                tags: list[dict] | None = None) -> int:
    """Conversations as {"messages": [...]} lines (finetune.py), or as {"text": ...} documents
    (the corpus pipeline, for instruction-like pretraining data). `tags`, one dict a conversation
    (JMED-LLM: task and label), go into its record beside them: readers take the keys they know,
    and slm.finetune.mixture caps and balances by these."""
    if tags is not None and len(tags) != len(conversations):
        raise ValueError(f"{len(tags)} tags for {len(conversations)} conversations")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:  # the file appears only when whole
        with open(tmp, "w", encoding="utf-8") as f:
            for conv, extra in zip(conversations, tags or [{}] * len(conversations)):
                record = {"text": as_text(conv)} if text else {"messages": conv}
                f.write(json.dumps({**record, **extra}, ensure_ascii=False) + "\n")

    atomic_write(path, write)
    return len(conversations)


CONVERTERS = {"jmed-llm": convert_jmed_llm, "igakuqa": convert_igakuqa, "medqa": convert_medqa,
              "medmcqa": convert_medmcqa, "mmlu": convert_mmlu}


def main(argv=None) -> int:
    """python -m slm.finetune.converters --format jmed-llm --input all/*.csv --exclude eval/*.csv --out train.jsonl"""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--format", required=True, choices=[*CONVERTERS, "pubmedqa"])
    p.add_argument("--input", nargs="+", required=True)
    p.add_argument("--exclude", nargs="*", default=[], help="JMED-LLM evaluation CSVs whose documents stay out")
    p.add_argument("--exclude-level", choices=SPLIT_LEVELS, default="document",
                   help="document: keep out every row sharing a document with an evaluation row (default); row: "
                        "only rows identical to one (the report's protocol, which leaks)")
    p.add_argument("--out", required=True)
    p.add_argument("--as-text", action="store_true", help="write {'text'} documents for the corpus pipeline")
    p.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    args = p.parse_args(argv)
    try:
        if args.format == "pubmedqa" and len(args.input) > 1:
            raise ConfigError("--format pubmedqa reads one file (ori_pqal.json); "
                              f"got {len(args.input)}: {' '.join(args.input)}")
        if args.exclude and args.format != "jmed-llm":
            raise ConfigError(f"--exclude keeps JMED-LLM evaluation documents out of JMED-LLM pools; "
                              f"--format {args.format} has no such split")
        converted = convert_pubmedqa(args.input[0]) if args.format == "pubmedqa" else CONVERTERS[args.format](args.input)
        split, tags = None, None
        if args.format == "jmed-llm":
            split = jmed_llm_split(converted, convert_jmed_llm(args.exclude) if args.exclude else JmedRows(),
                                   level=args.exclude_level)
            converted = split.kept
            tags = converted.tags()
            tables = split.write(args.out)  # before the rows: a training file is never without its table
        n = write_jsonl(converted.conversations, args.out, text=args.as_text, tags=tags)
    except (CorpusError, ConfigError, OSError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    if split is not None:
        print(split.markdown(), end="")
        removed = (f"{split.removed} removed as sharing a document with the evaluation sets"
                   if split.level == "document" else f"{split.removed} removed as identical to an evaluation row, "
                                                     f"{split.leaking} kept that share a document with one (leaking)")
        print(f"{n} conversations written to {args.out} (the split: {tables[0]}, {tables[1]}); {removed}; "
              f"{len(converted.skipped)} records skipped" + "".join(f"\n  {s}" for s in converted.skipped[:20]))
        return 0
    print(f"{n} conversations written to {args.out}; {len(converted.skipped)} records skipped"
          + "".join(f"\n  {s}" for s in converted.skipped[:20]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
