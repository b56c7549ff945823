"""Streaming documents out of a source's files, keeping where each came from.

Plain text files hold documents separated by blank lines (`split: blank_line`,
the sample corpus's format), one per line (`line`) or one per file (`file`);
JSONL files hold one document per line in a configurable text field, the other
fields kept as metadata. Nothing is read whole into memory.

Bad input (undecodable lines, malformed JSON, a missing field, empty or binary
files) is counted in a `ReadErrors` with file and line, and skipped; in strict
mode the first one stops the run with that message. A line that does not decode
is named with its byte in the file and the fix (the source's `encoding` field:
Aozora Bunko's files, for one, are Shift_JIS, `encoding: cp932`); a source that
gives no document at all stops the preparation (slm.data.prepare).

`decode_lines` and `jsonl_records` are the readers under all of this, shared with
the instruction data (slm.finetune), which treats an `UndecodableError` (a file in
another encoding, or a binary one) as fatal rather than as one bad record.
`read_text` and `strict_jsonl_records` read the small UTF-8 files that must be
whole (benchmarks, labels, converter inputs): the first bad line raises.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from slm.config import Config, ConfigError, safe_name
from slm.data.document import Document
from tokenizer.corpus import BINARY_SNIFF_BYTES, CorpusError, list_files

MAX_EXAMPLES = 20  # error messages kept verbatim in the report; the rest are counted


@dataclasses.dataclass
class SourceConfig(Config):
    name: str = ""
    paths: list[str] = dataclasses.field(default_factory=list)
    format: Literal["auto", "text", "jsonl"] = "auto"  # auto: .jsonl files are JSONL, others text
    split: Literal["blank_line", "line", "file"] = "blank_line"  # how text files hold documents
    text_field: str = "text"
    encoding: str = "utf-8"

    def validate(self) -> None:
        safe_name(self.name, "SourceConfig.name")  # the source's folder in the output: never outside it
        if not self.paths:
            raise ConfigError(f"SourceConfig.paths of source {self.name!r} is empty")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ConfigError(f"SourceConfig.encoding of source {self.name!r}: unknown encoding {self.encoding!r} "
                              "(e.g. utf-8, or cp932 for Shift_JIS text)") from None

    def encoding_fix(self, guess: str | None) -> str:
        """What to change when this source's files do not decode (`guess`: what they look like)."""
        if guess:
            return f"set `encoding: {guess}` in source {self.name!r} of the data config (now {self.encoding!r})"
        return (f"set `encoding:` in source {self.name!r} of the data config (now {self.encoding!r}) to the files' "
                "encoding (e.g. cp932 for Shift_JIS text such as Aozora Bunko), or leave the file out")


@dataclasses.dataclass
class ReadErrors:
    """Bad input seen while reading, per file; raised at once in strict mode."""

    strict: bool = False
    counts: Counter = dataclasses.field(default_factory=Counter)
    examples: list[str] = dataclasses.field(default_factory=list)
    dropped_documents: int = 0  # documents left out whole because one of their lines was unreadable

    def __call__(self, error: CorpusError) -> None:
        if self.strict:
            raise error
        self.counts[error.path] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(str(error))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class UndecodableError(CorpusError):
    """A file's bytes are not text in the expected encoding (another encoding, or a binary file)."""


OnError = Callable[[CorpusError], None]
Fix = Callable[[str | None], str]  # the encoding the bytes look like (or None) -> what to do


def _codec(encoding: str) -> str:
    return codecs.lookup(encoding).name


def _japanese(text: str) -> bool:
    """Kana or kanji and no control characters: text, not bytes that happen to decode."""
    return (not any(c < " " and c not in "\t\r\n" for c in text)
            and any("\u3040" <= c <= "\u30ff" or "\u4e00" <= c <= "\u9fff" or "\uff01" <= c <= "\uff9f" for c in text))


def guess_encoding(raw: bytes, encoding: str) -> str | None:
    """The likely encoding of a line that failed in `encoding`: "cp932" (Shift_JIS) or "utf-8"
    when it decodes there into Japanese text, else None."""
    for other in ("cp932", "utf-8"):
        if _codec(other) != _codec(encoding):
            try:
                if _japanese(raw.decode(other)):
                    return other
            except UnicodeDecodeError:
                pass
    return None


def decode_lines(path: str | Path, encoding: str, on_error: OnError, fix: Fix,
                 binary_fix: str = "leave it out of the inputs", max_bytes: int | None = None) -> Iterator[str | None]:
    """The lines of a text file, without line ends (and without a UTF-8 byte-order mark).

    An empty file is reported to `on_error` as a CorpusError, a binary one (a NUL byte near the
    start) as an UndecodableError, and neither yields a line. A line that does not decode is
    reported as an UndecodableError naming the line, the byte's offset in the file, the encoding
    it looks like and `fix(that encoding)`, what to change; then it is yielded as None, so line
    numbers stay right and a caller can drop the document around it. `on_error` may raise.
    `max_bytes`: stop after the line that reaches that many bytes (a sample of the file).
    """
    path = Path(path)
    if os.path.getsize(path) == 0:
        on_error(CorpusError(f"{path}: file is empty", path))
        return
    with open(path, "rb") as f:
        head = f.read(BINARY_SNIFF_BYTES)
        if b"\x00" in head and not _codec(encoding).startswith(("utf-16", "utf-32")):
            if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                on_error(UndecodableError(f"{path}: UTF-16 text (it starts with a byte-order mark), not {encoding}; "
                                          f"{fix('utf-16')}", path))
            else:
                on_error(UndecodableError(f"{path}: looks binary (NUL byte at offset {head.index(0)}), not a text "
                                          f"file; {binary_fix}", path))
            return
        f.seek(0)
        offset = 0
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as e:
                guess = guess_encoding(raw, encoding)
                looks = {"cp932": "it decodes as Shift_JIS (cp932)", "utf-8": "it decodes as UTF-8"}.get(guess)
                on_error(UndecodableError(
                    f"{path} line {number}: not valid {encoding} (byte 0x{raw[e.start]:02x} at column {e.start + 1}, "
                    f"offset {offset + e.start} in the file){'; ' + looks if looks else ''}; {fix(guess)}", path))
                yield None
            else:
                if number == 1 and line.startswith("\ufeff") and _codec(encoding) in ("utf-8", "utf-8-sig"):
                    line = line[1:]
                yield line.rstrip("\r\n")
            offset += len(raw)
            if max_bytes is not None and offset >= max_bytes:
                return


def jsonl_records(path: str | Path, text_field: str | None, encoding: str, on_error: OnError, fix: Fix,
                  binary_fix: str = "leave it out of the inputs") -> Iterator[tuple[int, dict]]:
    """(line number, record) for each JSON object of a JSONL file (whose `text_field`, unless None,
    is a string); a bad line is reported to `on_error` with file, line and reason, and skipped."""
    for number, line in enumerate(decode_lines(path, encoding, on_error, fix, binary_fix), start=1):
        if line is None or not line.strip():  # None: an undecodable line, already reported
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            on_error(CorpusError(f"{path} line {number}: not valid JSON ({e.msg})", path))
            continue
        if not isinstance(record, dict):
            on_error(CorpusError(f"{path} line {number}: not a JSON object", path))
            continue
        if text_field is not None and not isinstance(record.get(text_field), str):
            on_error(CorpusError(f"{path} line {number}: field {text_field!r} is missing or not a string", path))
            continue
        yield number, record


def _text_documents(path: Path, source: SourceConfig, errors: ReadErrors) -> Iterator[Document]:
    """Documents of a text file. A document with an unreadable line (None) is left out whole,
    and counted: a fragment on either side of the hole is no document."""
    lines = decode_lines(path, source.encoding, errors, source.encoding_fix)
    if source.split == "line":
        for number, line in enumerate(lines, start=1):
            if line is not None and line.strip():
                yield Document(line, source.name, str(path), number)
        return
    buffer, start, damaged = [], 1, False
    for number, line in enumerate(lines, start=1):
        if source.split == "blank_line" and line is not None and not line.strip():
            if damaged:
                errors.dropped_documents += 1
            elif buffer:
                yield Document("\n".join(buffer), source.name, str(path), start)
            buffer, start, damaged = [], number + 1, False
        elif line is None:
            damaged = True
        else:
            buffer.append(line)
    if damaged:
        errors.dropped_documents += 1
    elif buffer:
        yield Document("\n".join(buffer), source.name, str(path), start)


def _jsonl_documents(path: Path, source: SourceConfig, errors: ReadErrors) -> Iterator[Document]:
    for number, record in jsonl_records(path, source.text_field, source.encoding, errors, source.encoding_fix):
        text = record.pop(source.text_field)
        yield Document(text, source.name, str(path), number, meta=record)


def utf8_fix(guess: str | None) -> str:
    """What to do with a file that must be UTF-8 and is not (`guess`: the encoding it looks like)."""
    source = guess if guess and guess != "utf-8" else "ITS-ENCODING"
    return (f"the file must be UTF-8: re-save it as UTF-8, e.g. iconv -f {source} -t utf-8 FILE > FILE.utf8"
            + ("" if guess else " (cp932 for Shift_JIS)"))


def _raise(error: CorpusError) -> None:
    raise error


def read_text(path: str | Path, encoding: str = "utf-8", fix: Fix = utf8_fix,
              binary_fix: str = "give a text file (a compressed file? decompress it first)") -> str:
    """A whole (small) file as text, line ends as they are, without a UTF-8 byte-order mark. A missing
    or empty file is a CorpusError, one that does not decode (or is binary) an UndecodableError
    naming the line and byte and `fix`."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: no such file", path)
    for _ in decode_lines(path, encoding, _raise, fix, binary_fix):  # raises at the first undecodable line
        pass
    text = path.read_bytes().decode(encoding)
    return text[1:] if text.startswith("\ufeff") and _codec(encoding) in ("utf-8", "utf-8-sig") else text


def strict_jsonl_records(path: str | Path, text_field: str | None = None) -> Iterator[tuple[int, dict]]:
    """`jsonl_records` of a UTF-8 file that must be whole (benchmarks, labels): the first bad line raises."""
    return jsonl_records(path, text_field, "utf-8", _raise, utf8_fix)


SAMPLE_BYTES = 1 << 16  # of each file, read up front to check that a source's encoding is right


def check_source_encoding(source: SourceConfig) -> None:
    """Refuse, before any work, a source none of whose files starts as text in its encoding (more
    lines of its first SAMPLE_BYTES undecodable than not); one wrong file among good ones, or a
    bad line here and there, is counted and skipped as the preparation reads it. The error names
    the first file, line and byte that failed and the `encoding` to set."""
    try:
        files = list_files(source.paths)
    except CorpusError as e:
        raise CorpusError(f"source {source.name!r}: {e}") from None
    first: CorpusError | None = None
    for path in files:
        found: list[CorpusError] = []
        lines = list(decode_lines(path, source.encoding, found.append, source.encoding_fix, max_bytes=SAMPLE_BYTES))
        undecodable = [e for e in found if isinstance(e, UndecodableError)]
        if sum(1 for line in lines if line and line.strip()) > len(undecodable):  # mostly text: this file reads
            return
        first = first or (undecodable[0] if undecodable else None)
    if first is not None:
        raise UndecodableError(f"source {source.name!r}: none of its {len(files)} file(s) reads as {source.encoding} "
                               f"text; the first: {first}", first.path)


def read_documents(source: SourceConfig, errors: ReadErrors) -> Iterator[Document]:
    """Every document of a source, in a fixed order (files sorted, lines in order)."""
    try:
        files = list_files(source.paths)
    except CorpusError as e:
        raise CorpusError(f"source {source.name!r}: {e}") from None
    for path in files:
        jsonl = source.format == "jsonl" or (source.format == "auto" and path.suffix == ".jsonl")
        yield from (_jsonl_documents if jsonl else _text_documents)(path, source, errors)
