"""Benchmark decontamination: remove training documents that share text with evaluation questions.

A model that saw IgakuQA or JMED-LLM questions in pretraining scores what it
memorised, not what it knows, so every document sharing a long enough piece of
text with a question stem or an answer option is removed (the n-gram overlap test
of GPT-3 and its successors, over characters since Japanese has no spaces).

Both sides are normalised the way `encode` normalises (tokenizer.clean.normalize:
widths, punctuation and symbol forms) and lose their whitespace before the
n-grams are taken, so "ＨｂＡ１ｃ", "HbA1c" and a line break in the middle of a
sentence do not hide an overlap.

Which n-grams are evidence was measured against the real benchmarks (IgakuQA
2018, the eight JMED-LLM evaluation sets) and the project's sample corpus, which
was written without copying them, so every match in it is a false positive:

    n (characters)                       13     16     20     25
    sample documents matched (of 171)    59     34      4      2
    ... counting only n-grams at least
        half kana or kanji               21      4      0      0
    IgakuQA questions detectable
        (with that rule)               100%    98%    93%    84%

Clinical text repeats itself: lab panels ("Na 139mEq/L、K 4.1mEq/L"), "SpO2 96%
(room air)", long terms ("改訂長谷川式簡易知能評価スケール", 16 characters) and exam
phrasing ("として最も考えられるのはどれか。"). So the defaults are 20-character n-grams,
of which only those at least half kana or kanji count: no false positive on the
sample, while 97% of benchmark items (93% of IgakuQA questions, all but stems under
20 characters with short choices) leave n-grams that a copy of them would share.
A document sharing one such n-gram (`min_matches`) is removed.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from slm.config import Config, ConfigError
from slm.data.dedup import without_whitespace
from slm.data.document import Document, Stage
from slm.data.filters import count_japanese
from tokenizer.clean import normalize
from slm.data.readers import read_text, strict_jsonl_records
from tokenizer.corpus import CorpusError


class BenchmarkError(ConfigError):
    """A benchmark file is missing or malformed; the message names the file and line."""


def _igakuqa_texts(path: Path) -> list[str]:
    """Question stems and choices of an IgakuQA file: one JSON question a line
    (`problem_text`, `choices`, ...); the _metadata and _translate files are not questions."""
    texts = []
    try:
        records = list(strict_jsonl_records(path))  # UTF-8; another encoding names line, byte and fix
    except CorpusError as e:
        raise BenchmarkError(str(e)) from None
    for lineno, question in records:
        if not (isinstance(question.get("problem_text"), str) and isinstance(question.get("choices"), list)):
            raise BenchmarkError(f"{path}:{lineno}: not an IgakuQA question (needs a problem_text string and a choices list)")
        texts.append(question["problem_text"])
        texts.extend(str(choice) for choice in question["choices"])
    return texts


_OPTION_COLUMN = re.compile(r"option[A-Z]")


def _jmed_llm_texts(path: Path) -> list[str]:
    """Questions and non-empty options of a JMED-LLM CSV: `question` with optionA..optionF for the
    choice tasks, `tag, question, answer` for NER (whose answers are spans of the question)."""
    try:
        text = read_text(path)  # UTF-8 (a byte-order mark allowed); another encoding names line, byte and fix
    except CorpusError as e:
        raise BenchmarkError(str(e)) from None
    with io.StringIO(text, newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None or "question" not in header:
                raise BenchmarkError(
                    f"{path}:1: no 'question' column in the header {header}; JMED-LLM files have "
                    "question with optionA..optionF, or tag, question, answer"
                )
            columns = [i for i, name in enumerate(header) if name == "question" or _OPTION_COLUMN.fullmatch(name)]
            texts = []
            start = reader.line_num + 1  # a row's first line: cells may span lines
            for row in reader:
                if row:  # csv gives [] for a blank line
                    if len(row) != len(header):
                        raise BenchmarkError(f"{path}:{start}: {len(row)} cells, the header has {len(header)}")
                    texts.extend(row[i] for i in columns if row[i])
                start = reader.line_num + 1
        except csv.Error as e:
            raise BenchmarkError(f"{path}:{reader.line_num}: malformed CSV: {e}") from None
    return texts


def load_benchmark_texts(paths: Iterable[str | Path]) -> list[str]:
    """Question stems and option texts of benchmark files, by format: IgakuQA `.jsonl`, JMED-LLM `.csv`."""
    texts = []
    for path in map(Path, paths):
        if not path.is_file():
            raise BenchmarkError(f"{path}: no such benchmark file")
        if path.suffix == ".jsonl":
            texts.extend(_igakuqa_texts(path))
        elif path.suffix == ".csv":
            texts.extend(_jmed_llm_texts(path))
        else:
            raise BenchmarkError(f"{path}: unknown benchmark format; expected IgakuQA .jsonl or JMED-LLM .csv")
    return texts


def canonical(text: str) -> str:
    """The form both sides are compared in: normalised as `encode` does, whitespace removed."""
    return without_whitespace(normalize(text))


class Decontaminator:
    """Removes documents sharing at least `min_matches` distinct evidence n-grams with the benchmarks.

    Evidence n-grams are the character n-grams of question stems and options (texts shorter
    than n give none) of which at least half are kana or kanji (see the module docstring).
    They are held in memory, each with the set of files it came from as a bit mask, so
    `stats` can say how many removed documents overlapped each file. Pass evaluation sets,
    not whole pools: IgakuQA's 2,000 questions and JMED-LLM's 800 items give about 400,000
    n-grams at n = 20 (about 160 bytes each, 60 MB).
    """

    name = "decontamination"

    def __init__(self, paths: Sequence[str | Path], ngram: int, min_matches: int,
                 clean_text: Callable[[str], str] | None = None):
        """`clean_text`: what the pipeline does to documents before they get here (tokenizer.clean
        with its settings), applied to benchmark texts too, so a verbatim copy matches whatever
        cleaning changed in it (blanks cut by the repeats step, removed characters...)."""
        self.paths = [str(p) for p in paths]
        self.ngram = ngram
        self.min_matches = min_matches
        self._files: dict[str, int] = {}  # n-gram -> bit mask of the files it occurs in
        for bit, path in enumerate(self.paths):
            for text in load_benchmark_texts([path]):
                for gram in self._ngrams(canonical(clean_text(text) if clean_text else text)):
                    if 2 * count_japanese(gram) >= ngram:
                        self._files[gram] = self._files.get(gram, 0) | (1 << bit)
        self.stats = {path: 0 for path in self.paths}  # removed documents that overlap each file

    def _ngrams(self, text: str) -> Iterable[str]:
        n = self.ngram
        return (text[i : i + n] for i in range(len(text) - n + 1))

    def __call__(self, doc: Document) -> Document | None:
        files = self._files
        matched: dict[str, int] = {}
        for gram in self._ngrams(canonical(doc.text)):
            mask = files.get(gram)
            if mask:
                matched[gram] = mask
        if len(matched) < self.min_matches:
            return doc
        overlap = 0
        for mask in matched.values():
            overlap |= mask
        for bit, path in enumerate(self.paths):
            if overlap >> bit & 1:
                self.stats[path] += 1
        return None


@dataclasses.dataclass
class DecontamConfig(Config):
    """Benchmark files whose questions must not be in the training data; none: no decontamination."""

    benchmarks: list[str] = dataclasses.field(default_factory=list)  # IgakuQA .jsonl, JMED-LLM .csv
    ngram: int = 20  # characters; shorter n-grams match stock clinical phrases (see the module docstring)
    min_matches: int = 1  # one shared 20-character clause already points at a copied question

    def validate(self) -> None:
        for name in ("ngram", "min_matches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"DecontamConfig.{name} must be positive, got {getattr(self, name)}")


def build_decontam(config: DecontamConfig, clean_text: Callable[[str], str] | None = None) -> list[Stage]:
    """A Decontaminator over the configured benchmarks, or no stage when there are none."""
    if not config.benchmarks:
        return []
    return [Decontaminator(config.benchmarks, config.ngram, config.min_matches, clean_text)]
