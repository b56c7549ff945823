"""Streaming documents out of a source's files, keeping where each came from.

Plain text files hold documents separated by blank lines (`split: blank_line`,
the sample corpus's format), one per line (`line`) or one per file (`file`);
JSONL files hold one document per line in a configurable text field, the other
fields kept as metadata. `format: aozora` reads Aozora Bunko works (Shift_JIS,
so `encoding: cp932`): each file is one document, its body without header,
footer, ruby or editor's notes (tokenizer.aozora), its title and author kept
as metadata. Nothing is read whole into memory.

Bad input (undecodable lines, malformed JSON, a missing field, empty or binary
files) is counted in a `ReadErrors` with file and line, and skipped; in strict
mode the first one stops the run with that message. Decoding, and naming why a
line does not decode, is tokenizer.corpus's (`read_lines`, `read_jsonl_records`);
the fix it names here is the source's `encoding` field (Aozora Bunko's files, for
one, are Shift_JIS, `encoding: cp932`); a source that gives no document at all
stops the preparation (slm.data.prepare).

`read_text` and `strict_jsonl_records` read the small UTF-8 files that must be
whole (benchmarks, labels, converter inputs): the first bad line raises.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from slm.config import Config, ConfigError, safe_name
from slm.data.document import Document
from tokenizer import aozora
from tokenizer.corpus import (CorpusError, UndecodableError, check_encoding, list_files, read_jsonl_records, read_lines,
                              read_text, utf8_fix)

__all__ = ["MAX_EXAMPLES", "SAMPLE_BYTES", "ReadErrors", "SourceConfig", "UndecodableError", "check_source_encoding",
           "read_documents", "read_text", "strict_jsonl_records"]  # read_text: tokenizer.corpus's, named here too

MAX_EXAMPLES = 20  # error messages kept verbatim in the report; the rest are counted


@dataclasses.dataclass
class SourceConfig(Config):
    name: str = ""
    paths: list[str] = dataclasses.field(default_factory=list)
    format: Literal["auto", "text", "jsonl", "aozora"] = "auto"  # auto: .jsonl files are JSONL, others text
    split: Literal["blank_line", "line", "file"] = "blank_line"  # how text files hold documents
    text_field: str = "text"
    encoding: str = "utf-8"

    def validate(self) -> None:
        safe_name(self.name, "SourceConfig.name")  # the source's folder in the output: never outside it
        if not self.paths:
            raise ConfigError(f"SourceConfig.paths of source {self.name!r} is empty")
        try:
            check_encoding(self.encoding)
        except CorpusError as e:
            raise ConfigError(f"SourceConfig.encoding of source {self.name!r}: {e}") from None

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


def _text_documents(path: Path, source: SourceConfig, errors: ReadErrors) -> Iterator[Document]:
    """Documents of a text file. A document with an unreadable line (None) is left out whole,
    and counted: a fragment on either side of the hole is no document."""
    lines = read_lines(path, source.encoding, errors, source.encoding_fix)
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


def _aozora_documents(path: Path, source: SourceConfig, errors: ReadErrors) -> Iterator[Document]:
    """A work's body as one document (left out whole, and counted, if a line of it is unreadable)."""
    lines = list(read_lines(path, source.encoding, errors, source.encoding_fix))
    text = list(aozora.body(lines))
    if None in text:
        errors.dropped_documents += 1
    elif "".join(text).strip():
        title, author = (lines + ["", ""])[:2]
        yield Document("\n".join(text).strip("\n"), source.name, str(path), aozora.bounds(lines)[0] + 1,
                       meta={"title": (title or "").strip(), "author": (author or "").strip()})


def _jsonl_documents(path: Path, source: SourceConfig, errors: ReadErrors) -> Iterator[Document]:
    for number, record in read_jsonl_records(path, source.text_field, source.encoding, errors,
                                              source.encoding_fix):
        text = record.pop(source.text_field)
        yield Document(text, source.name, str(path), number, meta=record)


def strict_jsonl_records(path: str | Path, text_field: str | None = None) -> Iterator[tuple[int, dict]]:
    """`read_jsonl_records` of a UTF-8 file that must be whole (benchmarks, labels): the first bad line raises."""
    return read_jsonl_records(path, text_field, "utf-8", None, utf8_fix)


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
        lines = list(read_lines(path, source.encoding, found.append, source.encoding_fix, max_bytes=SAMPLE_BYTES))
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
        if source.format == "aozora":
            yield from _aozora_documents(path, source, errors)
            continue
        jsonl = source.format == "jsonl" or (source.format == "auto" and path.suffix == ".jsonl")
        yield from (_jsonl_documents if jsonl else _text_documents)(path, source, errors)
