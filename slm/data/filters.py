"""Document filters (report §2.1): each decides whether a whole document stays.

The report screens its web corpus by removing "documents containing adult content
words and copyright notices" and "documents containing not completing sentences";
length and Japanese-script checks catch what those miss (empty pages, dumps,
pages in other languages). Every filter is a stage (slm.data.document): a
callable with a `name` that returns the document or None, and each can be
switched off in `FilterConfig`.

`build_filters` runs them in a fixed order, cheapest first, so the searches for
words and notices see fewer documents:

    length -> japanese_ratio -> incomplete_sentences -> copyright -> adult_words

The pipeline counts removals per stage in that order: a document too short and
with a copyright notice counts as `length`.

Filters see text as slm.data.prepare gives it: cleaned by tokenizer.clean, so
widths are normalised (full-width ASCII is half-width, half-width katakana full-width).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path

from slm.config import Config, ConfigError
from slm.data.document import Document, Stage
from tokenizer.clean import normalize

DEFAULT_WORDLIST = Path(__file__).resolve().parent / "wordlists" / "adult_ja.txt"
_WHITESPACE = re.compile(r"\s")


def _visible_chars(text: str) -> int:
    """Characters that are not whitespace: the size of a text whatever its layout."""
    return len(text) - len(_WHITESPACE.findall(text))


class Length:
    """Removes documents shorter than `min_chars` or longer than `max_chars`.

    Characters are counted without whitespace, so indentation and blank lines do not
    make a page long enough. Very short documents are titles, error pages and
    fragments; beyond a book's length, a "document" is a dump or a concatenated listing.
    """

    name = "length"

    def __init__(self, min_chars: int, max_chars: int | None):
        self.min_chars = min_chars
        self.max_chars = max_chars

    def __call__(self, doc: Document) -> Document | None:
        n = _visible_chars(doc.text)
        if n < self.min_chars or (self.max_chars is not None and n > self.max_chars):
            return None
        return doc


# Hiragana, katakana (with ー and half-width forms), kanji (with extension A, compatibility
# ideographs, 々 and 〆).
_JAPANESE = re.compile(r"[\u3041-\u309f\u30a0-\u30ff\uff66-\uff9f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3005\u3006]")


def count_japanese(text: str) -> int:
    """How many characters of the text are hiragana, katakana or kanji."""
    return len(_JAPANESE.findall(text))


class JapaneseRatio:
    """Removes documents in which Japanese characters make up less than `min_ratio` of the
    characters that are not whitespace.

    Clinical Japanese is full of Latin letters and digits (vital signs, lab values, drug
    abbreviations), so the threshold is set well below what lab-heavy notes score; pages in
    English or of code and numbers score near 0.
    Chinese text passes (kanji count as Japanese); a corpus already sorted by language
    (Wikipedia, OSCAR's ja split) does not need more.
    """

    name = "japanese_ratio"

    def __init__(self, min_ratio: float):
        self.min_ratio = min_ratio

    def __call__(self, doc: Document) -> Document | None:
        chars = _visible_chars(doc.text)
        return doc if chars and count_japanese(doc.text) >= self.min_ratio * chars else None


# A line is complete when it ends in sentence-final punctuation, a closing quote (quoted
# speech drops the 。 before 」), or closing brackets right after sentence-final punctuation.
_COMPLETE_LINE = re.compile(r"[。．.!?！？…‥」』][)）\]］】〕\"'”’]*\s*$")


class IncompleteSentences:
    """Removes documents in which more than `max_ratio` of the non-empty lines do not end a sentence.

    Menus, link lists, tag clouds and hard-wrapped fragments are lines that end anywhere;
    prose and notes end their lines with 。. Clinical documents do have such lines
    (headings, "【正解】b", a line of answer choices), so the threshold leaves room for them.
    """

    name = "incomplete_sentences"

    def __init__(self, max_ratio: float):
        self.max_ratio = max_ratio

    def __call__(self, doc: Document) -> Document | None:
        lines = [line for line in doc.text.splitlines() if line.strip()]
        incomplete = sum(1 for line in lines if not _COMPLETE_LINE.search(line))
        return None if incomplete > self.max_ratio * len(lines) else doc


# Copyright notices, not mentions: a sentence about 著作権 (consent forms, patient leaflets)
# stays, "著作権は○○に帰属します" or "無断転載を禁じます" goes. The (c)/year form needs the year
# not to be followed by 年, so an enumerated "(c) 2019年の調査" is not a notice.
_COPYRIGHT_NOTICE = re.compile(
    r"[©Ⓒ]"
    r"|\(c\)\s*\d{4}(?![\d\-–~]*\s*年)"
    r"|copyright\s*(?:[©Ⓒ]|\(c\)|\d{4})"
    r"|all\s+rights\s+reserved"
    r"|無断(?:転載|複製|複写|転用)"
    r"|(?:転載|複製|複写)(?:を|は)?(?:固く)?禁(?:じ|ず|止)"
    r"|著作権は[^。\n]{1,40}?に帰属",
    re.IGNORECASE,
)


class Copyright:
    """Removes documents with a copyright notice (©, "(c) 2023", "Copyright 2023",
    "All rights reserved", 無断転載, 無断複製, 転載を禁じます, 著作権は…に帰属します).

    A notice marks text whose owner reserved its reuse; the bare word 著作権 does not.
    tokenizer.clean keeps © for this filter (Ⓒ, which NFKC turns into "C", is only
    caught before cleaning).
    """

    name = "copyright"

    def __call__(self, doc: Document) -> Document | None:
        return None if _COPYRIGHT_NOTICE.search(doc.text) else doc


def load_wordlist(path: str | Path) -> list[str]:
    """Words of a list file: one a line, blank lines and lines starting with "#" skipped.
    Words are normalised as the corpus is, so a list written in full-width letters still matches."""
    words = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        word = line.strip()
        if word and not word.startswith("#"):
            words.append(normalize(word))
    if not words:
        raise ValueError(f"{path}: the word list is empty")
    return words


class AdultWords:
    """Removes documents with at least `max_hits` occurrences of adult-content words.

    Words are matched as substrings (Japanese has no word boundaries), so the list holds
    only words that are adult content in every use and no part of an innocent word
    (see wordlists/adult_ja.txt). Occurrences are counted, repeats included: one
    mention is often incidental (a warning about fraudulent アダルトサイト, a patient's
    work history in a case report of syphilis), while adult pages repeat their vocabulary.
    """

    name = "adult_words"

    def __init__(self, words: Iterable[str], max_hits: int):
        # Longest first, so the alternation counts "アダルト動画" once, not a shorter word inside it.
        alternatives = sorted(set(words), key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, alternatives)), re.IGNORECASE)
        self.max_hits = max_hits

    def __call__(self, doc: Document) -> Document | None:
        hits = 0
        for _ in self._pattern.finditer(doc.text):
            hits += 1
            if hits >= self.max_hits:
                return None
        return doc


# ---------------------------------------------------------------- configuration


@dataclasses.dataclass
class FilterSection(Config):
    """What every filter's section has: a switch."""

    enabled: bool = True

    def check_fraction(self, name: str) -> None:
        value = getattr(self, name)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{type(self).__name__}.{name} must be in [0, 1], got {value}")


@dataclasses.dataclass
class LengthConfig(FilterSection):
    # Under 20 characters is less than a sentence: a title, an error page, a fragment. Short notes
    # are content ("心不全の患者では体重の増加に注意する。利尿薬の効果を毎日評価する。" has 34).
    min_chars: int = 20
    # A guard against whole dumps read as one document; books and long articles stay (Aozora
    # Bunko's longest work has 730k characters, 3% of its works pass 100k). None: no limit.
    max_chars: int | None = 1_000_000

    def validate(self) -> None:
        if self.min_chars < 0:
            raise ConfigError(f"LengthConfig.min_chars must be >= 0, got {self.min_chars}")
        if self.max_chars is not None and self.max_chars < max(self.min_chars, 1):
            raise ConfigError(f"LengthConfig.max_chars={self.max_chars} must be at least min_chars={self.min_chars} "
                              "and positive (or null for no limit)")


@dataclasses.dataclass
class JapaneseRatioConfig(FilterSection):
    # The sample corpus's lowest is 0.46 (nursing notes full of vital signs), a short lab report
    # ("WBC 10,200/μL、Hb 14.1g/dL、…。炎症反応の上昇を認めた。") about 0.25; English text is below 0.1.
    min_ratio: float = 0.2

    def validate(self) -> None:
        self.check_fraction("min_ratio")


@dataclasses.dataclass
class IncompleteSentencesConfig(FilterSection):
    # 0.5 would remove the sample corpus's exam items (3 of 5 lines are "【問題1】", the answer
    # choices and "【正解】b"); pages of menus and link lists are far above 0.7.
    max_ratio: float = 0.7

    def validate(self) -> None:
        self.check_fraction("max_ratio")


@dataclasses.dataclass
class CopyrightConfig(FilterSection):
    """No settings: a notice is a notice."""


@dataclasses.dataclass
class AdultWordsConfig(FilterSection):
    wordlist: str | None = None  # a word-list file; None: the shipped slm/data/wordlists/adult_ja.txt
    max_hits: int = 2  # one mention is often incidental; adult pages repeat their words

    def validate(self) -> None:
        if self.max_hits < 1:
            raise ConfigError(f"AdultWordsConfig.max_hits must be at least 1, got {self.max_hits}")
        if self.wordlist is not None and not Path(self.wordlist).is_file():
            raise ConfigError(f"AdultWordsConfig.wordlist: no such file {self.wordlist!r}")


@dataclasses.dataclass
class FilterConfig(Config):
    """One section per filter, each with `enabled`; see `build_filters` for the order."""

    length: LengthConfig = dataclasses.field(default_factory=LengthConfig)
    japanese_ratio: JapaneseRatioConfig = dataclasses.field(default_factory=JapaneseRatioConfig)
    incomplete_sentences: IncompleteSentencesConfig = dataclasses.field(default_factory=IncompleteSentencesConfig)
    copyright: CopyrightConfig = dataclasses.field(default_factory=CopyrightConfig)
    adult_words: AdultWordsConfig = dataclasses.field(default_factory=AdultWordsConfig)


def build_filters(config: FilterConfig) -> list[Stage]:
    """The enabled filters, cheapest first: length, japanese_ratio, incomplete_sentences,
    copyright, adult_words."""
    stages: list[Stage] = []
    if config.length.enabled:
        stages.append(Length(config.length.min_chars, config.length.max_chars))
    if config.japanese_ratio.enabled:
        stages.append(JapaneseRatio(config.japanese_ratio.min_ratio))
    if config.incomplete_sentences.enabled:
        stages.append(IncompleteSentences(config.incomplete_sentences.max_ratio))
    if config.copyright.enabled:
        stages.append(Copyright())
    if config.adult_words.enabled:
        words = load_wordlist(config.adult_words.wordlist or DEFAULT_WORDLIST)
        stages.append(AdultWords(words, config.adult_words.max_hits))
    return stages
