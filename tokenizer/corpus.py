"""Reading text files with errors that name the file and line.

Plain text (one line at a time) and JSONL (one document per line, a text field),
files or directories of them, streamed. Empty files, binary files and text that
does not decode in the given encoding stop with a message naming the file (and
line and byte offset), the encoding tried and the one to pass instead (Shift_JIS
is recognised by decoding the line as cp932), rather than a traceback from deep
inside a codec. Given an `on_error` callback instead, a bad line is reported to
it and skipped, and reading goes on (the corpus pipeline counts them in its
report). `count_texts` reads a whole input set through first, so a job that
must not start on a bad corpus (tokenizer training) fails before any work.
"""

from __future__ import annotations

import codecs
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


def _encoding_name(encoding: str) -> str:
    """The codec's own name ("utf-8", "cp932"), or a CorpusError naming an unknown one."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise CorpusError(f"unknown encoding {encoding!r} (e.g. utf-8, or cp932 for Shift_JIS)") from None


def check_encoding(encoding: str) -> None:
    """Refuse an encoding Python does not know, before any file is read."""
    _encoding_name(encoding)


def check_file(path: Path) -> None:
    """Refuse empty and binary files up front (UTF-16 text, which holds NUL bytes, is named as such)."""
    if os.path.getsize(path) == 0:
        raise CorpusError(f"{path}: file is empty", path)
    with open(path, "rb") as f:
        head = f.read(BINARY_SNIFF_BYTES)
    if b"\x00" in head:
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # lines are split on the byte "\n": no UTF-16
            raise CorpusError(f"{path}: UTF-16 text (it starts with a byte order mark), which is not read here: "
                              "convert it to UTF-8 (iconv -f utf-16 -t utf-8)", path)
        raise CorpusError(f"{path}: looks binary (NUL byte at offset {head.index(0)}), not a text file: "
                          "leave it out of the inputs", path)


def _japanese(text: str) -> bool:
    """Printable characters and spaces (no controls but tab and line ends), not all ASCII: text,
    not bytes that happen to decode."""
    return not text.isascii() and all(c.isprintable() or c in "\t\r\n" or (c.isspace() and c > " ") for c in text)


def _utf8_japanese(text: str) -> bool:
    """A line that is valid UTF-8 and reads as Japanese in it: several characters, nearly all kana,
    kanji or Japanese punctuation. (A short Shift_JIS line can be valid UTF-8 by chance: 驢馬 is
    the bytes of UTF-8 "醔n", so one or two characters decide nothing.)"""
    wide = [c for c in text if not c.isascii()]
    if len(wide) < 4 or not _japanese(text):
        return False
    japanese = sum("\u3000" <= c <= "\u30ff" or "\u4e00" <= c <= "\u9fff" or "\uff01" <= c <= "\uff9f" for c in wide)
    return japanese >= 0.8 * len(wide) and any("\u3040" <= c <= "\u30ff" for c in wide)


def _decodes(raw: bytes, encoding: str) -> str | None:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError:
        return None


def _decoding_hint(raw: bytes, encoding: str) -> str:
    """How to read a line that failed to decode: the encoding it does decode in, if a likely one."""
    name = _encoding_name(encoding)
    if name != "cp932" and (text := _decodes(raw, "cp932")) is not None and _japanese(text):
        return "it decodes as Shift_JIS: pass encoding='cp932' / --encoding cp932"
    if name != "utf-8" and (text := _decodes(raw, "utf-8")) is not None and _japanese(text):
        return "it decodes as UTF-8: pass encoding='utf-8' / --encoding utf-8"
    return ("binary data, or text in another encoding: leave the file out of the inputs, or pass its encoding "
            "(encoding=... / --encoding NAME, e.g. cp932 for Shift_JIS)")


def read_lines(path: str | Path, encoding: str = "utf-8", on_error: OnError | None = None) -> Iterator[str | None]:
    """The lines of a text file, without line ends; decoding errors name the line, the byte offset,
    the encoding tried and the one that would work.

    With `on_error`, an undecodable line is reported and yielded as None (line numbers stay
    right, and a caller can drop the document around it rather than split it there); an
    empty or binary file is reported and yields nothing. Without it, no None is ever yielded.
    """
    path = Path(path)
    utf8 = _encoding_name(encoding).startswith("utf")  # an unknown encoding is raised even with on_error: no file is readable
    try:
        check_file(path)
    except CorpusError as e:
        _fail(e, on_error)
        return
    offset = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not utf8 and not raw.isascii() and (text := _decodes(raw, "utf-8")) is not None and _utf8_japanese(text):
                # UTF-8 Japanese read as cp932 often "decodes", into mojibake; Shift_JIS is almost never valid UTF-8
                _fail(CorpusError(
                    f"{path} line {number}: UTF-8 text (byte offset {offset} of the file), not {encoding}: read as "
                    f"{encoding} it would be mojibake; pass encoding='utf-8' / --encoding utf-8", path), on_error)
                offset += len(raw)
                yield None
                continue
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as e:
                _fail(CorpusError(
                    f"{path} line {number}: not valid {encoding} (byte 0x{raw[e.start]:02x} at column {e.start + 1}, "
                    f"byte offset {offset + e.start} of the file); {_decoding_hint(raw, encoding)}", path), on_error)
                offset += len(raw)
                yield None
                continue
            offset += len(raw)
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


def count_texts(inputs: Iterable[str | Path], text_field: str = "text", encoding: str = "utf-8") -> int:
    """Read every input through (as `read_texts`), so a bad file stops a job before any work on
    the others; returns the number of non-blank texts, and refuses inputs that hold none."""
    check_encoding(encoding)
    files = list_files(inputs)
    n = sum(1 for text in read_texts(files, text_field, encoding) if text.strip())
    if n == 0:
        shown = ", ".join(map(str, files[:3])) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        raise CorpusError(f"no text in the inputs: {shown} hold only blank lines" if len(files) > 1 else
                          f"{files[0]}: no text, only blank lines", files[0])
    return n
