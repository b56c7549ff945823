"""Reading text files with errors that name the file and line.

Plain text (one line at a time) and JSONL (one document per line, a text field),
files or directories of them, streamed. Empty files, binary files and text that
does not decode in the given encoding stop with a message naming the file (and
line), rather than a traceback from deep inside a codec. Given an `on_error`
callback instead, a bad line is reported to it and skipped, and reading goes on
(the corpus pipeline counts them in its report).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

BINARY_SNIFF_BYTES = 8192


class CorpusError(ValueError):
    """An input file cannot be read as text; the message names it (and `path` holds it)."""

    def __init__(self, message: str, path: str | Path | None = None):
        super().__init__(message)
        self.path = str(path) if path is not None else None


OnError = Callable[[CorpusError], None]


def _fail(error: CorpusError, on_error: OnError | None) -> None:
    if on_error is None:
        raise error
    on_error(error)


def batched(items: Iterable, n: int) -> Iterator[list]:
    """Lists of up to n consecutive items (itertools.batched arrives only in Python 3.12)."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def list_files(inputs: Iterable[str | Path]) -> list[Path]:
    """Files named directly, and every file under named directories (sorted, hidden ones skipped)."""
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.relative_to(path).parts))
            if not found:
                raise CorpusError(f"{path}: directory holds no files")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise CorpusError(f"{path}: no such file or directory")
    return files


def check_file(path: Path) -> None:
    """Refuse empty and binary files up front."""
    if os.path.getsize(path) == 0:
        raise CorpusError(f"{path}: file is empty", path)
    with open(path, "rb") as f:
        head = f.read(BINARY_SNIFF_BYTES)
    if b"\x00" in head:
        raise CorpusError(f"{path}: looks binary (NUL byte at offset {head.index(0)}), not a text file", path)


def read_lines(path: str | Path, encoding: str = "utf-8", on_error: OnError | None = None) -> Iterator[str | None]:
    """The lines of a text file, without line ends; decoding errors name the line.

    With `on_error`, an undecodable line is reported and yielded as None (line numbers stay
    right, and a caller can drop the document around it rather than split it there); an
    empty or binary file is reported and yields nothing. Without it, no None is ever yielded.
    """
    path = Path(path)
    try:
        check_file(path)
    except CorpusError as e:
        _fail(e, on_error)
        return
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as e:
                hint = " (Shift_JIS text? pass encoding='cp932' / --encoding cp932)" if encoding.lower().replace("-", "") == "utf8" else ""
                _fail(CorpusError(
                    f"{path} line {number}: not valid {encoding} (byte 0x{raw[e.start]:02x} at column {e.start + 1}){hint}",
                    path), on_error)
                yield None
                continue
            yield line.rstrip("\r\n")


def read_jsonl_records(path: str | Path, text_field: str | None = "text", encoding: str = "utf-8",
                       on_error: OnError | None = None) -> Iterator[tuple[int, dict]]:
    """(line number, record) for each JSON object (whose `text_field`, unless None, is a string);
    a bad line names the line and field (raised, or reported to `on_error` and skipped)."""
    for number, line in enumerate(read_lines(path, encoding, on_error), start=1):
        if line is None or not line.strip():  # None: an undecodable line, already reported
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            _fail(CorpusError(f"{path} line {number}: not valid JSON ({e.msg})", path), on_error)
            continue
        if not isinstance(record, dict):
            _fail(CorpusError(f"{path} line {number}: not a JSON object", path), on_error)
            continue
        if text_field is not None and not isinstance(record.get(text_field), str):
            _fail(CorpusError(f"{path} line {number}: field {text_field!r} is missing or not a string", path), on_error)
            continue
        yield number, record


def read_jsonl(path: str | Path, text_field: str = "text", encoding: str = "utf-8") -> Iterator[str]:
    """The `text_field` of each JSON object in a JSONL file."""
    for _, record in read_jsonl_records(path, text_field, encoding):
        yield record[text_field]


def read_texts(inputs: Iterable[str | Path], text_field: str = "text", encoding: str = "utf-8") -> Iterator[str]:
    """Lines of text files and texts of JSONL files (by suffix .jsonl), over files and directories."""
    for path in list_files(inputs):
        if path.suffix == ".jsonl":
            yield from read_jsonl(path, text_field, encoding)
        else:
            yield from read_lines(path, encoding)
