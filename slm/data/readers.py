"""Streaming documents out of a source's files, keeping where each came from.

Plain text files hold documents separated by blank lines (`split: blank_line`,
the sample corpus's format), one per line (`line`) or one per file (`file`);
JSONL files hold one document per line in a configurable text field, the other
fields kept as metadata. Nothing is read whole into memory.

Bad input (undecodable lines, malformed JSON, a missing field, empty or binary
files) is counted in a `ReadErrors` with file and line, and skipped; in strict
mode the first one stops the run with that message.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from slm.config import Config, ConfigError
from slm.data.document import Document
from tokenizer.corpus import CorpusError, list_files, read_jsonl_records, read_lines

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
        if not self.name or "/" in self.name:
            raise ConfigError(f"SourceConfig.name must be a non-empty name without '/', got {self.name!r}")
        if not self.paths:
            raise ConfigError(f"SourceConfig.paths of source {self.name!r} is empty")


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
    lines = read_lines(path, source.encoding, errors)
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
    for number, record in read_jsonl_records(path, source.text_field, source.encoding, errors):
        text = record.pop(source.text_field)
        yield Document(text, source.name, str(path), number, meta=record)


def read_documents(source: SourceConfig, errors: ReadErrors) -> Iterator[Document]:
    """Every document of a source, in a fixed order (files sorted, lines in order)."""
    try:
        files = list_files(source.paths)
    except CorpusError as e:
        raise CorpusError(f"source {source.name!r}: {e}") from None
    for path in files:
        jsonl = source.format == "jsonl" or (source.format == "auto" and path.suffix == ".jsonl")
        yield from (_jsonl_documents if jsonl else _text_documents)(path, source, errors)
