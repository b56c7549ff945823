"""Reading text files with errors that name the file and line, and why it does not decode.

Plain text (one line at a time), JSONL (one document per line, a text field)
and Aozora Bunko works (tokenizer.aozora), files or directories of them,
streamed; each `Input` of a corpus has its own encoding and format
(`PATH:encoding=cp932,format=aozora` on a command line). Empty files, binary files and text that
does not decode in the given encoding stop with a message naming the file (and
line, column and byte offset), the encoding tried, the encoding it looks like
(Shift_JIS when it decodes as cp932 into kana or kanji; UTF-8 Japanese read as
cp932 is refused too, as it would "decode" into mojibake) and the fix, rather
than a traceback from deep inside a codec. Given an `on_error` callback instead,
a bad line is reported to it and skipped, and reading goes on (the corpus
pipeline counts them in its report). `count_texts` reads a whole input set
through first, so a job that must not start on a bad corpus (tokenizer training)
fails before any work.

This module is the one owner of decoding a file and naming why it cannot be
decoded, for every stage: each reader takes the stage's own fix (a `Fix`: the
tokenizer's `--encoding` option here by default, a data source's `encoding:`
field in slm.data.readers, `utf8_fix` for files that must be UTF-8, such as
benchmarks and instruction data). `read_text` reads a small file whole.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tokenizer import aozora

BINARY_SNIFF_BYTES = 8192
LEAVE_OUT = "leave it out of the inputs"  # what to do with a binary file, unless a reader is told otherwise


class CorpusError(ValueError):
    """An input file cannot be read as text; the message names it (and `path` holds it)."""

    def __init__(self, message: str, path: str | Path | None = None):
        super().__init__(message)
        self.path = str(path) if path is not None else None


class UndecodableError(CorpusError):
    """A file's bytes are not text in the encoding tried (another encoding, UTF-16, or a binary file):
    the whole file is unreadable, not one record."""


OnError = Callable[[CorpusError], None]
Fix = Callable[[str | None], str]  # the encoding the bytes look like (or None) -> what to do


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


def check_file(path: Path, binary_fix: str = LEAVE_OUT) -> None:
    """Refuse empty files (a CorpusError) and binary ones (an UndecodableError ending in `binary_fix`) up
    front; UTF-16 text, which holds NUL bytes, is named as such (lines are split on the byte "\\n")."""
    if os.path.getsize(path) == 0:
        raise CorpusError(f"{path}: file is empty", path)
    with open(path, "rb") as f:
        head = f.read(BINARY_SNIFF_BYTES)
    if b"\x00" in head:
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise UndecodableError(f"{path}: UTF-16 text (it starts with a byte order mark), which is not read here: "
                                   f"convert it to UTF-8 (iconv -f utf-16 -t utf-8 FILE > FILE.utf8)", path)
        raise UndecodableError(f"{path}: looks binary (NUL byte at offset {head.index(0)}), not a text file; "
                               f"{binary_fix}", path)


def _kana_or_kanji(c: str) -> bool:
    return "\u3040" <= c <= "\u30ff" or "\u4e00" <= c <= "\u9fff" or "\uff66" <= c <= "\uff9f"


def _japanese(text: str) -> bool:
    """Printable characters and spaces (no controls but tab and line ends) holding kana or kanji:
    Japanese text, not bytes that happen to decode."""
    return (all(c.isprintable() or c in "\t\r\n" or (c.isspace() and c > " ") for c in text)
            and any(map(_kana_or_kanji, text)))


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


def likely_encoding(raw: bytes, encoding: str) -> str | None:
    """The encoding bytes that failed in `encoding` probably are: "cp932" (Shift_JIS) or "utf-8" when
    they decode there into Japanese text, else None (binary data, or text in another encoding)."""
    tried = _encoding_name(encoding)
    for other in ("cp932", "utf-8"):
        if other != tried and (text := _decodes(raw, other)) is not None and _japanese(text):
            return other
    return None


LOOKS = {"cp932": "it decodes as Shift_JIS (cp932)", "utf-8": "it decodes as UTF-8",
         None: "binary data, or text in another encoding"}


def undecodable(path: str | Path, raw: bytes, error: UnicodeDecodeError, encoding: str, fix: Fix, line: int = 1,
                offset: int = 0) -> UndecodableError:
    """The error for a line `raw` of `path` (line number `line`, at byte `offset` of the file) that does
    not decode in `encoding`: the place (line, column, byte offset), the encoding it looks like, and
    `fix(that encoding)`, what to change."""
    guess = likely_encoding(raw, encoding)
    return UndecodableError(f"{path} line {line}: not valid {encoding} (byte 0x{raw[error.start]:02x} at column "
                            f"{error.start + 1}, offset {offset + error.start} in the file); {LOOKS[guess]}; "
                            f"{fix(guess)}", path)


def option_fix(guess: str | None) -> str:
    """The fix for a corpus file read with the tokenizer's `encoding` option (`--encoding`)."""
    if guess:
        return f"pass encoding='{guess}' / --encoding {guess}"
    return ("leave the file out of the inputs, or pass its encoding (encoding=... / --encoding NAME, e.g. cp932 "
            "for Shift_JIS)")


def utf8_fix(guess: str | None) -> str:
    """The fix for a file that must be UTF-8 and is not (`guess`: the encoding it looks like)."""
    source = guess if guess and guess != "utf-8" else "ITS-ENCODING"
    return ("the file must be UTF-8: re-save it as UTF-8 (from Excel: Save As 'CSV UTF-8'; or "
            f"iconv -f {source} -t utf-8 FILE > FILE.utf8{'' if guess else ', cp932 for Shift_JIS'})")


def _decoded(path: str | Path, encoding: str, on_error: OnError | None, fix: Fix, binary_fix: str,
             max_bytes: int | None) -> Iterator[str | None]:
    """The lines of a file with their line ends (a UTF-8 byte-order mark dropped), or None for each
    line that does not decode, reported (`read_lines`)."""
    path = Path(path)
    name = _encoding_name(encoding)  # an unknown encoding is raised even with on_error: no file is readable
    try:
        check_file(path, binary_fix)
    except CorpusError as e:
        _fail(e, on_error)
        return
    offset = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            line = error = None
            if not name.startswith("utf") and not raw.isascii() and (text := _decodes(raw, "utf-8")) is not None \
                    and _utf8_japanese(text):
                # UTF-8 Japanese read as cp932 often "decodes", into mojibake; Shift_JIS is almost never valid UTF-8
                error = UndecodableError(f"{path} line {number}: UTF-8 text (offset {offset} in the file), not "
                                         f"{encoding}: read as {encoding} it would be mojibake; {fix('utf-8')}", path)
            else:
                try:
                    line = raw.decode(encoding)
                except UnicodeDecodeError as e:
                    error = undecodable(path, raw, e, encoding, fix, number, offset)
            offset += len(raw)
            if error is not None:
                _fail(error, on_error)
            elif number == 1 and name.startswith("utf-8") and line.startswith("\ufeff"):
                line = line[1:]
            yield line
            if max_bytes is not None and offset >= max_bytes:
                return


def read_lines(path: str | Path, encoding: str = "utf-8", on_error: OnError | None = None, fix: Fix = option_fix,
               binary_fix: str = LEAVE_OUT, max_bytes: int | None = None) -> Iterator[str | None]:
    """The lines of a text file, without line ends (and without a UTF-8 byte-order mark); decoding
    errors (UndecodableError) name the line, column and byte offset, the encoding tried, the one it
    looks like and `fix(that one)`; a binary file ends in `binary_fix`.

    With `on_error`, an undecodable line is reported and yielded as None (line numbers stay
    right, and a caller can drop the document around it rather than split it there); an
    empty or binary file is reported and yields nothing. Without it, no None is ever yielded.
    `max_bytes`: stop after the line that reaches that many bytes (a sample of the file).
    """
    for line in _decoded(path, encoding, on_error, fix, binary_fix, max_bytes):
        yield None if line is None else line.rstrip("\r\n")


def read_text(path: str | Path, encoding: str = "utf-8", fix: Fix = utf8_fix,
              binary_fix: str = "give a text file (a compressed file? decompress it first)") -> str:
    """A whole (small) file as text, line ends as they are, without a UTF-8 byte-order mark. A missing
    or empty file is a CorpusError, one that does not decode (or is binary) an UndecodableError
    naming the line and byte and the fix, as `read_lines`."""
    if not Path(path).is_file():
        raise CorpusError(f"{path}: no such file", path)
    return "".join(_decoded(path, encoding, None, fix, binary_fix, None))


def read_jsonl_records(path: str | Path, text_field: str | None = "text", encoding: str = "utf-8",
                       on_error: OnError | None = None, fix: Fix = option_fix,
                       binary_fix: str = LEAVE_OUT) -> Iterator[tuple[int, dict]]:
    """(line number, record) for each JSON object (whose `text_field`, unless None, is a string);
    a bad line names the line and field (raised, or reported to `on_error` and skipped); decoding
    as `read_lines`."""
    for number, line in enumerate(read_lines(path, encoding, on_error, fix, binary_fix), start=1):
        if line is None or not line.strip():  # None: an undecodable line, already reported
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            _fail(CorpusError(f"{path} line {number}: not valid JSON ({e.msg} at column {e.colno})", path), on_error)
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


FORMATS = ("auto", "text", "jsonl", "aozora")  # auto: .jsonl files are JSONL, the others text


@dataclasses.dataclass(frozen=True)
class Input:
    """One input of a corpus: a file or folder, the encoding of its files and how they hold text
    (`text`: one text per line; `jsonl`: a JSON object per line, its `text_field`; `aozora`:
    Aozora Bunko works, each reduced to its body by tokenizer.aozora)."""

    path: str
    encoding: str = "utf-8"
    format: str = "auto"
    text_field: str = "text"

    def __post_init__(self):
        check_encoding(self.encoding)
        if self.format not in FORMATS:
            raise CorpusError(f"input {self.path}: unknown format {self.format!r} (one of {', '.join(FORMATS)})")

    def fix(self, guess: str | None) -> str:
        """What to change when this input's files do not decode (`guess`: what they look like)."""
        if guess:
            return f"give the input as {self.path}:encoding={guess} (or --encoding {guess} for every input)"
        return (f"leave the file out of the inputs, or give the input as {self.path}:encoding=NAME (e.g. cp932 for "
                "Shift_JIS; --encoding NAME for every input)")

    def reads_as(self, path: Path) -> str:
        """The format `path`, one of this input's files, is read in."""
        if self.format == "auto":
            return "jsonl" if path.suffix == ".jsonl" else "text"
        return self.format


def parse_input(spec: str | Path | Input, encoding: str = "utf-8", text_field: str = "text") -> Input:
    """An input from the command line: `PATH`, or `PATH:key=value,...` with keys encoding, format and
    text_field (e.g. `aozora/:encoding=cp932,format=aozora`); what it does not say takes the defaults
    given here. A path that exists as written is always a plain path."""
    if isinstance(spec, Input):
        return spec
    spec = str(spec)
    options = {"encoding": encoding, "text_field": text_field}
    path, sep, tail = spec.rpartition(":")
    if sep and not Path(spec).exists() and re.fullmatch(r"\w+=[^,=]+(,\w+=[^,=]+)*", tail):
        for item in tail.split(","):
            key, value = item.split("=")
            if key not in ("encoding", "format", "text_field"):
                raise CorpusError(f"input {spec!r}: unknown option {key!r} (encoding, format or text_field)")
            options[key] = value
        spec = path
    return Input(spec, **options)


def input_files(inputs: Iterable[str | Path | Input], encoding: str = "utf-8",
                text_field: str = "text") -> list[tuple[Path, Input]]:
    """Every file of the inputs with the input it belongs to (strings parsed by `parse_input`)."""
    pairs = []
    for spec in inputs:
        item = parse_input(spec, encoding, text_field)
        pairs += [(path, item) for path in list_files([item.path])]
    return pairs


def read_texts(inputs: Iterable[str | Path | Input], text_field: str = "text", encoding: str = "utf-8",
               stats: Counter | None = None) -> Iterator[str]:
    """Lines of text files, texts of JSONL files and the body lines of Aozora works, over files and
    directories, each input in its own encoding (`encoding` and `text_field`: for inputs given as
    bare paths). `stats` counts what the Aozora reader removed."""
    for path, item in input_files(inputs, encoding, text_field):
        form = item.reads_as(path)
        if form == "jsonl":
            for _, record in read_jsonl_records(path, item.text_field, item.encoding, fix=item.fix):
                yield record[item.text_field]
        elif form == "aozora":
            yield from aozora.body(read_lines(path, item.encoding, fix=item.fix), stats)
        else:
            yield from read_lines(path, item.encoding, fix=item.fix)


def count_texts(inputs: Iterable[str | Path | Input], text_field: str = "text", encoding: str = "utf-8",
                stats: Counter | None = None) -> int:
    """Read every input through (as `read_texts`), so a bad file stops a job before any work on
    the others; returns the number of non-blank texts, and refuses inputs that hold none."""
    check_encoding(encoding)
    files = [path for path, _ in input_files(inputs, encoding, text_field)]
    n = sum(1 for text in read_texts(inputs, text_field, encoding, stats) if text.strip())
    if n == 0:
        shown = ", ".join(map(str, files[:3])) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        raise CorpusError(f"no text in the inputs: {shown} hold only blank lines" if len(files) > 1 else
                          f"{files[0]}: no text, only blank lines", files[0])
    return n
