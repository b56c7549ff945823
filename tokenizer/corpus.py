"""Reading text files with errors that name the file and line.

Plain text (one line at a time) and JSONL (one document per line, a text field),
files or directories of them, streamed. Empty files, binary files and text that
does not decode in the given encoding stop with a message naming the file (and
line), rather than a traceback from deep inside a codec.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

BINARY_SNIFF_BYTES = 8192


class CorpusError(ValueError):
    """An input file cannot be read as text; the message names it."""


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
        raise CorpusError(f"{path}: file is empty")
    with open(path, "rb") as f:
        head = f.read(BINARY_SNIFF_BYTES)
    if b"\x00" in head:
        raise CorpusError(f"{path}: looks binary (NUL byte at offset {head.index(0)}), not a text file")


def read_lines(path: str | Path, encoding: str = "utf-8") -> Iterator[str]:
    """The lines of a text file, without line ends; decoding errors name the line."""
    path = Path(path)
    check_file(path)
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as e:
                hint = " (Shift_JIS text? pass encoding='cp932' / --encoding cp932)" if encoding.lower().replace("-", "") == "utf8" else ""
                raise CorpusError(
                    f"{path} line {number}: not valid {encoding} (byte 0x{raw[e.start]:02x} at column {e.start + 1}){hint}"
                ) from None
            yield line.rstrip("\r\n")


def read_jsonl(path: str | Path, text_field: str = "text", encoding: str = "utf-8") -> Iterator[str]:
    """The `text_field` of each JSON object in a JSONL file; a bad line names the line and field."""
    for number, line in enumerate(read_lines(path, encoding), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise CorpusError(f"{path} line {number}: not valid JSON ({e.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
            raise CorpusError(f"{path} line {number}: field {text_field!r} is missing or not a string")
        yield record[text_field]


def read_texts(inputs: Iterable[str | Path], text_field: str = "text", encoding: str = "utf-8") -> Iterator[str]:
    """Lines of text files and texts of JSONL files (by suffix .jsonl), over files and directories."""
    for path in list_files(inputs):
        if path.suffix == ".jsonl":
            yield from read_jsonl(path, text_field, encoding)
        else:
            yield from read_lines(path, encoding)
