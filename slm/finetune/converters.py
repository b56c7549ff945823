"""Converters from published medical QA schemas to chat conversations (report §2.4.2).

Each reads local files and returns `Converted`: the conversations, and every
record it skipped with file, line (or key) and reason. Multiple-choice data is
messy in practice (options as a dict or a list, answers as a letter or as the
option text, more than four options, blanks), so each converter states what it
accepts and counts what it cannot use.

JMED-LLM and IgakuQA use the benchmarks' own system prompts and question formats,
so training looks exactly like evaluation. `jmed_llm_split` keeps out every pool
row that shares a document with an evaluation row, across all tasks.

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
import sys
from dataclasses import dataclass, field
from pathlib import Path

from slm.checkpoint import atomic_write
from slm.config import ConfigError
from slm.data.readers import UndecodableError, jsonl_records, read_text, utf8_fix
from slm.finetune.instructions import ENCODING, nothing_usable
from tokenizer.corpus import CorpusError

BINARY_FIX = "the converters read UTF-8 CSV, JSONL or JSON files (a compressed file? decompress it first)"

LETTERS = "ABCDEFGH"

JMED_CHOICE_SYSTEM = ("与えられた医学に関する質問と選択肢から、最も適切な回答を選択してください。"
                      "なお、回答には選択肢のアルファベット（例：A）のみを含め、他には何も含めないことを厳守してください。")
JMED_NER_SYSTEM = ("与えられた医学に関する質問から、最も適切な回答をしてください。"
                   "なお、回答にはPythonのリスト形式（例：['回答1', '回答2']）のみを含め、他には何も含めないことを厳守してください。")
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
    return jsonl_records(path, None, ENCODING, _skip_or_raise(out), utf8_fix, BINARY_FIX)


def _checked(out: Converted, paths: list[Path], what: str) -> Converted:
    """`out`, unless it holds no conversation: then a CorpusError with the files and the reasons."""
    if not out.conversations:
        raise nothing_usable(paths, f"{what} record", len(out.skipped), out.skipped)
    return out


def jmed_llm_user(row: dict) -> tuple[str, str]:
    """(system, user) of a JMED-LLM row, as the official evaluator builds them."""
    options = [(L, row.get(f"option{L}") or "") for L in "ABCDEF"]
    options = [(L, o) for L, o in options if o.strip()]
    if not options:  # NER rows: tag, question, answer
        return JMED_NER_SYSTEM, row["question"]
    return JMED_CHOICE_SYSTEM, f"質問: {row['question']}\n選択肢:\n" + "".join(f"{L}. {o}\n" for L, o in options)


def convert_jmed_llm(paths: list[str | Path]) -> Converted:
    """JMED-LLM CSVs: choice tasks (question, optionA..F, answer letter) and NER tasks
    (tag, question, answer as a Python list literal)."""
    out, paths = Converted(), [Path(p) for p in paths]
    for path in paths:
        for number, row in _csv(path, out):
            where = f"{path} line {number}"
            if not (row.get("question") or "").strip():
                out.skipped.append(f"{where}: empty question")
                continue
            system, user = jmed_llm_user(row)
            answer = (row.get("answer") or "").strip()
            if system == JMED_NER_SYSTEM:
                try:
                    value = ast.literal_eval(answer)  # never eval(): the cell is data
                except (ValueError, SyntaxError):
                    value = None
                if not isinstance(value, list):
                    out.skipped.append(f"{where}: answer {answer[:40]!r} is not a list literal")
                    continue
            elif answer not in LETTERS[:6] or not (row.get(f"option{answer}") or "").strip():
                out.skipped.append(f"{where}: answer {answer!r} is not one of the row's options")
                continue
            out.add(system, user, answer)
    return _checked(out, paths, "JMED-LLM")


def jmed_llm_split(pool: Converted, evaluation: Converted, ngram: int = 50) -> tuple[Converted, int]:
    """The pool without every row that shares a document with any evaluation row.

    Rows about the same case report differ only in their target; a shared stretch of
    `ngram` characters of the question marks a shared document. Returns the kept rows
    and how many were removed.
    """
    def grams(conv) -> set[str]:
        text = conv[1]["content"]
        return {text[i : i + ngram] for i in range(0, max(len(text) - ngram + 1, 1))}

    held = set().union(*(grams(c) for c in evaluation.conversations)) if evaluation.conversations else set()
    kept = Converted(skipped=list(pool.skipped))
    removed = 0
    for conv in pool.conversations:
        if grams(conv) & held:
            removed += 1
        else:
            kept.conversations.append(conv)
    return kept, removed


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


def write_jsonl(conversations: list[list[dict]], path: str | Path, text: bool = False) -> int:
    """Conversations as {"messages": [...]} lines (finetune.py), or as {"text": ...} documents
    (the corpus pipeline, for instruction-like pretraining data)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:  # the file appears only when whole
        with open(tmp, "w", encoding="utf-8") as f:
            for conv in conversations:
                record = {"text": as_text(conv)} if text else {"messages": conv}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")

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
    p.add_argument("--out", required=True)
    p.add_argument("--as-text", action="store_true", help="write {'text'} documents for the corpus pipeline")
    p.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    args = p.parse_args(argv)
    try:
        if args.format == "pubmedqa" and len(args.input) > 1:
            raise ConfigError("--format pubmedqa reads one file (ori_pqal.json); "
                              f"got {len(args.input)}: {' '.join(args.input)}")
        converted = convert_pubmedqa(args.input[0]) if args.format == "pubmedqa" else CONVERTERS[args.format](args.input)
        removed = 0
        if args.exclude:
            converted, removed = jmed_llm_split(converted, convert_jmed_llm(args.exclude))
        n = write_jsonl(converted.conversations, args.out, text=args.as_text)
    except (CorpusError, ConfigError, OSError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{n} conversations written to {args.out}; {removed} removed as sharing a document with the "
          f"evaluation sets; {len(converted.skipped)} records skipped" + "".join(f"\n  {s}" for s in converted.skipped[:20]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
