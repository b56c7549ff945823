"""Text cleaning (report §2.2): named, switchable, individually testable steps.

Two stages, decided by what a step does to meaning:

- "normalize" steps only change how the same text is written (widths,
  punctuation forms, symbol variants, whitespace). Every `encode` applies
  them, so training data, prompts and benchmark questions are written the same
  way, and `decode(encode(x)) == normalize(x)` exactly.
- "corpus" steps remove content: personal information, URLs, @accounts and
  #hashtags, characters outside the allowed set, runs of repeated characters.
  They run once, when a corpus is prepared (`clean`), never on a user's prompt.

`clean(text)` runs every enabled step in the report's order:

    whitespace -> fullwidth_punct -> nfkc -> dashes -> unify_symbols -> restore_symbols ->
    personal_info* -> web* -> allowed_chars* -> repeats*
    (* corpus stage)

Symbols are unified before ellipses are restored (the report lists them the other way
round): "•••" becomes "・・・" only in unification, and restoration must see that, or
normalising twice would differ from normalising once and encode would not be lossless.

and returns readable text with ordinary spaces; the meta-space (U+2581) only
appears inside encoding.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

NORMALIZE, CORPUS = "normalize", "corpus"
META_SPACE = "\u2581"

# Characters that NFKC would decompose but medical text needs as they are:
# circled numbers (①-⑳, ㉑-㉟, ㊱-㊿) and the degree-Celsius sign.
NFKC_KEEP = "".join(map(chr, range(0x2460, 0x2474))) + "".join(map(chr, range(0x3251, 0x3260))) + \
    "".join(map(chr, range(0x32B1, 0x32C0))) + "℃"

# The default allowed set: Japanese scripts, ASCII, Latin-1 letters and signs, Greek,
# Japanese and general punctuation, arrows, maths, circled numbers, shapes, ♂♀★☆.
ALLOWED_CHARS = (
    "\n -~"  # newline, space, printable ASCII
    "\u00a9\u00ae"  # © ®: kept so the corpus pipeline's copyright filter can see notices
    "\u00b0-\u00ff"  # ° ± ² µ · × ÷ and Latin-1 letters (é in Ménière)
    "\u0370-\u03ff"  # Greek
    "\u2010-\u205e"  # general punctuation: dashes, quotes, †, •, …, ‰, ′, ″, ※
    "\u2100-\u214f"  # letterlike: ℃ ℉ Ω Å
    "\u2150-\u218f"  # number forms: Ⅰ Ⅱ (NFKC makes them Latin)
    "\u2190-\u21ff"  # arrows
    "\u2200-\u22ff"  # mathematical operators: ≦ ≧ ≒ ≠ ∞ √
    "\u2460-\u24ff"  # circled and parenthesised numbers
    "\u25a0-\u25ff"  # geometric shapes: ■ □ ▲ △ ○ ● ◎ ◇ ◆
    "\u2605\u2606\u2640\u2642"  # ★ ☆ ♀ ♂
    "\u3000-\u303f"  # CJK punctuation: 、。「」『』【】〔〕〜 々 〆 〇
    "\u3041-\u309f"  # hiragana
    "\u30a0-\u30ff"  # katakana
    "\u31f0-\u31ff"  # katakana phonetic extensions
    "\u3251-\u325f\u32b1-\u32bf"  # circled numbers 21-50
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs (+ extension A, compatibility)
    "\uff01-\uff9f"  # full-width forms (NFKC has made most of them ASCII)
)


@dataclass
class CleanConfig:
    """Settings of the cleaning steps; saved with a tokenizer so encode is reproduced exactly."""

    skip: list[str] = field(default_factory=list)  # names of steps switched off
    nfkc_keep: str = NFKC_KEEP
    allowed_chars: str = ALLOWED_CHARS  # a regex character-class body
    extra_allowed_chars: str = ""  # added to allowed_chars (also a character-class body)
    max_repeat: int = 3  # longer runs of one (non-digit) character are cut to this

    def __post_init__(self):
        unknown = sorted(set(self.skip) - set(STEP_NAMES))
        if unknown:
            raise ValueError(f"CleanConfig.skip: unknown step(s) {unknown}; steps: {list(STEP_NAMES)}")
        if self.max_repeat < 1:
            raise ValueError(f"CleanConfig.max_repeat must be at least 1, got {self.max_repeat}")
        try:
            re.compile(f"[{self.allowed_chars}{self.extra_allowed_chars}]")
        except re.error as e:
            raise ValueError(f"CleanConfig.allowed_chars/extra_allowed_chars is not a valid character class: {e}") from None

    @classmethod
    def from_dict(cls, d: dict) -> CleanConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        if set(d) - known:
            raise ValueError(f"unknown CleanConfig field(s) {sorted(set(d) - known)}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- the steps

_OTHER_SPACE = re.compile(r"[^\S \n]")  # any whitespace but the space and the newline
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060\ufeff]")


def whitespace(text: str, config: CleanConfig) -> str:
    """Newlines become "\\n", every other whitespace a space, control and zero-width characters go.

    A literal U+2581 becomes a space too: the tokenizer reserves it as the meta-space.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    return _OTHER_SPACE.sub(" ", text).replace(META_SPACE, " ")


_DIGIT = "0-9\uff10-\uff19"
_FW_PERIOD = re.compile(f"\uff0e(?![{_DIGIT}])|(?<![{_DIGIT}])\uff0e")
_FW_COMMA = re.compile(f"\uff0c(?![{_DIGIT}])|(?<![{_DIGIT}])\uff0c")


def fullwidth_punct(text: str, config: CleanConfig) -> str:
    """Full-width period and comma (．，) become 。 and 、 before NFKC would make them "." and ",".

    Between digits they are a decimal point or a thousands separator (７．２％, １，０００)
    and are left for NFKC to make "." and ",".
    """
    if "\uff0e" in text:
        text = _FW_PERIOD.sub("。", text)
    if "\uff0c" in text:
        text = _FW_COMMA.sub("、", text)
    return text


def nfkc(text: str, config: CleanConfig) -> str:
    """Unicode NFKC (full-width ASCII to half-width, half-width katakana to full-width, ...),
    except for the characters in `nfkc_keep`, which NFKC would break apart (① -> 1, ℃ -> °C)."""
    if unicodedata.is_normalized("NFKC", text):
        return text
    keep = _char_class(config.nfkc_keep)
    if keep is None or not keep.search(text):
        return unicodedata.normalize("NFKC", text)
    parts = keep.split(text)
    return "".join(p if i % 2 else unicodedata.normalize("NFKC", p) for i, p in enumerate(parts))


@functools.lru_cache(maxsize=16)
def _char_class(chars: str) -> re.Pattern | None:
    """A compiled capturing [chars] class (cached per configuration), or None for no characters."""
    return re.compile(f"([{re.escape(chars)}])") if chars else None


_KATAKANA = "\u30a1-\u30fa\u30fc"
_LONG_VOWEL_LIKE = "\u2014\u2015\u2500\u2501"  # — ― ─ ━ written for ー after katakana
_CHOONPU = re.compile(f"(?<=[{_KATAKANA}])[{_LONG_VOWEL_LIKE}]+")
_HYPHENS = re.compile("[\u02d7\u058a\u2010-\u2015\u2043\u207b\u208b\u2212\u2500\u2501\ufe58\ufe63\uff0d]")
_TILDES = re.compile("[\u02dc\u223c\u223e\u301c\u3030\uff5e]")
_ANY_DASH = re.compile(f"{_HYPHENS.pattern}|{_TILDES.pattern}")


def dashes(text: str, config: CleanConfig) -> str:
    """Unify hyphen, long-vowel mark and tilde variants.

    Dash-like characters right after katakana are long-vowel marks (コンピュ―タ -> コンピュータ);
    other hyphen and minus variants become "-" (γ‐GTP -> γ-GTP); tilde and wave-dash
    variants become "~" (3〜5日 -> 3~5日).
    """
    if not _ANY_DASH.search(text):
        return text
    text = _CHOONPU.sub(lambda m: "ー" * len(m.group()), text)
    text = _HYPHENS.sub("-", text)
    return _TILDES.sub("~", text)


_ELLIPSIS = re.compile(r"\.{3,}|・{3,}")
_CELSIUS = re.compile(r"°\s?C(?![A-Za-z])")


def restore_symbols(text: str, config: CleanConfig) -> str:
    """Restore what NFKC spelled out: "..." and "・・・" to …, and "°C" to ℃ (37.5°C -> 37.5℃)."""
    if ".." in text or "・・" in text:
        text = _ELLIPSIS.sub("…", text)
    return _CELSIUS.sub("℃", text) if "°" in text else text


# Japanese phone numbers: 03-1234-5678, (03)1234-5678, 090-1234-5678, 09012345678, +81-90-1234-5678.
_PHONE = re.compile(
    r"(?<![\d.\-/])(?:(?:\+81[-\s]?|0)\d{1,4}[-\s]\d{1,4}[-\s]\d{3,4}|\(0\d{1,4}\)\s?\d{1,4}-\d{3,4}|0[5789]0\d{8})(?![\d.\-/])"
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")


def personal_info(text: str, config: CleanConfig) -> str:
    """Remove e-mail addresses and phone numbers (dates, lab values and doses are not phone-shaped)."""
    return _PHONE.sub("", _EMAIL.sub("", text))


_URL = re.compile(r"(?:https?|ftp)://[!-~]+|www\.[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+[!-~]*")
_ACCOUNT = re.compile(r"(?<![A-Za-z0-9_.])@[A-Za-z0-9_]{1,30}")
# A hashtag follows a space and starts with a non-digit. Clinical notes label problems with "#"
# at the start of a line ("#転倒リスク", "#1 高血圧"), and Aozora marks notes "[#改ページ]": not tags.
_HASHTAG = re.compile(r"(?<=[ \t])#(?![\d\s])[\w・ー]+")


def web(text: str, config: CleanConfig) -> str:
    """Remove URLs, @accounts and #hashtags."""
    return _HASHTAG.sub("", _ACCOUNT.sub("", _URL.sub("", text)))


_SYMBOLS = str.maketrans({
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u301d": '"', "\u301f": '"',  # “ ” „ 〝 〟
    "\u2018": "'", "\u2019": "'", "\u201a": "'",  # ‘ ’ ‚
    "\u2022": "・", "\u2219": "・", "\u2027": "・", "\u00b7": "・",  # • ∙ ‧ ·  (bullets, middle dots)
    "\u21d2": "→", "\u2794": "→", "\u27a1": "→", "\u27f6": "→",  # ⇒ ➔ ➡ ⟶
    "\u2715": "×", "\u2716": "×", "\u2a2f": "×",  # ✕ ✖ ⨯
    "\u3014": "(", "\u3015": ")",  # 〔 〕
    "\u2266": "≦", "\u2264": "≦", "\u2267": "≧", "\u2265": "≧",  # ≤ ≥ written the Japanese way
})
_ANY_SYMBOL = re.compile("[" + re.escape("".join(map(chr, _SYMBOLS))) + "]")


def unify_symbols(text: str, config: CleanConfig) -> str:
    """Symbols of the same meaning become one form (curly quotes, bullets, arrows, ≤/≦, ...),
    so the vocabulary does not spend pieces on variants."""
    return text.translate(_SYMBOLS) if _ANY_SYMBOL.search(text) else text


def allowed_chars(text: str, config: CleanConfig) -> str:
    """Drop characters outside the allowed set (emoji, other scripts, private-use characters)."""
    return re.sub(f"[^{config.allowed_chars}{config.extra_allowed_chars}]", "", text)


def repeats(text: str, config: CleanConfig) -> str:
    """Cut runs of one character longer than `max_repeat` (！！！！！, ーーーー, wwwww); digits are
    never cut, so 10000 stays 10000."""
    n = config.max_repeat
    return re.sub(rf"(\D)\1{{{n},}}", lambda m: m.group(1) * n, text)


@dataclass(frozen=True)
class Step:
    name: str
    stage: str
    apply: Callable[[str, CleanConfig], str]


STEPS: tuple[Step, ...] = (
    Step("whitespace", NORMALIZE, whitespace),
    Step("fullwidth_punct", NORMALIZE, fullwidth_punct),
    Step("nfkc", NORMALIZE, nfkc),
    Step("dashes", NORMALIZE, dashes),
    Step("unify_symbols", NORMALIZE, unify_symbols),
    Step("restore_symbols", NORMALIZE, restore_symbols),
    Step("personal_info", CORPUS, personal_info),
    Step("web", CORPUS, web),
    Step("allowed_chars", CORPUS, allowed_chars),
    Step("repeats", CORPUS, repeats),
)
STEP_NAMES = tuple(s.name for s in STEPS)
DEFAULT_CONFIG = CleanConfig()


def _run(text: str, config: CleanConfig, stages: tuple[str, ...], changes: Counter | None) -> str:
    for step in STEPS:
        if step.stage in stages and step.name not in config.skip:
            new = step.apply(text, config)
            if changes is not None and new != text:
                changes[step.name] += 1
            text = new
    return text


def normalize(text: str, config: CleanConfig = DEFAULT_CONFIG) -> str:
    """The normalisation every `encode` applies: the "normalize" steps only."""
    return _run(text, config, (NORMALIZE,), None)


def clean(text: str, config: CleanConfig = DEFAULT_CONFIG, changes: Counter | None = None) -> str:
    """Corpus cleaning: every enabled step. `changes` counts, per step, the texts it changed."""
    return _run(text, config, (NORMALIZE, CORPUS), changes)
