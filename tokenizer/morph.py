"""Morphological analysis: MeCab through fugashi with unidic-lite (report §2.2).

A user dictionary of medical terms keeps terms such as 糖尿病, 既往歴, HbA1c and
浸潤影 whole (unidic alone splits them: 糖尿|病, 既往|歴, HbA|1|c). The report
built its dictionary from J-Medic; the project ships a small starter list,
`tokenizer/dict/medical_terms.csv`, written for it.

Building a dictionary from a larger term list
---------------------------------------------
Write a CSV with the header `surface,reading,category` (reading in katakana,
may be `*`; category one of CATEGORIES) and pass it to `build_user_dict`, or to
`python -m tokenizer.train --user-dict terms.csv`. Each term becomes a common
noun (名詞,普通名詞,一般) with a low cost, so MeCab prefers it whole. Surfaces
are normalised the way `encode` normalises text, so they match. The compiler,
MeCab's mecab-dict-index (via fugashi), runs in a subprocess, because a bad
dictionary can kill the process that builds it.
"""

from __future__ import annotations

import csv
import io
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

# Relative: this file is also copied, as it is, beside tokenization_slm.py into an exported
# transformers tokenizer (tokenizer.hf_export), where there is no `tokenizer` package.
from .clean import META_SPACE

DICT_DIR = Path(__file__).parent / "dict"
STARTER_DICT = DICT_DIR / "medical_terms.csv"
CATEGORIES = ("disease", "symptom", "finding", "drug", "exam", "anatomy", "procedure")
TERM_COST = 3000  # low against unidic's word costs, so a listed term beats splitting it


class UserDictError(ValueError):
    """A term list or a compiled dictionary is unusable; the message names the file and line."""


def unidic_dir() -> str:
    import unidic_lite  # the MeCab stack (see Morphology)

    return unidic_lite.DICDIR


def unidic_version() -> str:
    return (Path(unidic_dir()) / "version").read_text().strip()


def _context_ids(dicdir: str) -> dict[str, int]:
    """unidic's context ids for common nouns, by word origin (goshu): 漢 外 記号 混 ..."""
    ids = {}
    for line in (Path(dicdir) / "left-id.def").read_text(encoding="utf-8").splitlines():
        num, _, feature = line.partition(" ")
        prefix = "名詞,普通名詞,一般,*,*,*,*,*,"
        if feature.startswith(prefix):
            ids[feature[len(prefix):]] = int(num)
    return ids


def _goshu(surface: str) -> str:
    """Word origin for the context id: katakana words are 外 (foreign), Latin ones 記号, else 漢."""
    if all("\u30a0" <= c <= "\u30ff" for c in surface):
        return "外"
    if any(c.isascii() for c in surface):
        return "記号"
    return "漢"


def read_terms(path: str | Path, normalize: Callable[[str], str]) -> list[tuple[str, str, str]]:
    """(surface, reading, category) rows of a term list, validated, surfaces normalised."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "no such file"
        raise UserDictError(f"{path}: {what}; --user-dict takes a term list CSV (surface,reading,category), "
                            "or 'none' for plain unidic")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserDictError(
            f"{path}: not a UTF-8 term list (byte 0x{e.object[e.start]:02x} at byte offset {e.start}); save it as "
            "UTF-8 (a compiled .dic is not accepted: --user-dict takes the CSV it is built from)") from None
    rows = []
    with io.StringIO(text, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != ["surface", "reading", "category"]:
            raise UserDictError(f"{path} line 1: header must be 'surface,reading,category', got {header}")
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != 3:
                raise UserDictError(f"{path} line {line}: expected 3 fields (surface,reading,category), got {len(row)}")
            surface, reading, category = (x.strip() for x in row)
            surface = normalize(surface)
            if not surface or any(c.isspace() for c in surface):
                raise UserDictError(f"{path} line {line}: surface {row[0]!r} is empty or contains whitespace")
            if category not in CATEGORIES:
                raise UserDictError(f"{path} line {line}: category {category!r} is not one of {list(CATEGORIES)}")
            rows.append((surface, reading or "*", category))
    if not rows:
        raise UserDictError(f"{path}: no terms")
    return rows


def build_user_dict(terms_csv: str | Path, out: str | Path, normalize: Callable[[str], str]) -> int:
    """Compile a term list into a MeCab user dictionary at `out`; returns the number of terms."""
    rows = read_terms(terms_csv, normalize)
    dicdir = unidic_dir()
    ids = _context_ids(dicdir)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "user.csv"
        with open(source, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            for surface, reading, _ in rows:
                cid = ids[_goshu(surface)]
                # unidic's 26 features: pos1-4, cType, cForm, lForm, lemma, orth, pron, orthBase,
                # pronBase, goshu, iType, iForm, fType, fForm, kana, kanaBase, form, formBase, then
                # the accent/connection fields we leave open.
                features = ["名詞", "普通名詞", "一般", "*", "*", "*", reading, surface, surface, reading, surface,
                            reading, _goshu(surface), "*", "*", "*", "*", reading, reading, reading, reading,
                            "*", "*", "*", "*", "*"]
                w.writerow([surface, cid, cid, TERM_COST, *features])
        # Compiled here, in a folder whose path holds no spaces (the compiler's arguments are
        # joined by spaces), then moved to `out` whole: a failed build never leaves a partial file.
        built = Path(tmp) / "user.dic"
        code = "import sys; from fugashi.cli import build_dict; build_dict()"
        args = ["-d", dicdir, "-u", str(built), str(source)]
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
        if proc.returncode != 0 or not built.is_file():
            last = next((x.strip() for x in reversed(proc.stderr.splitlines()) if x.strip()), "no message")
            raise UserDictError(f"{terms_csv}: building the MeCab dictionary failed (exit {proc.returncode}): {last}")
        out = Path(out)
        partial = out.with_name(f".tmp-{out.name}-{os.getpid()}")
        try:
            shutil.copyfile(built, partial)
            os.replace(partial, out)
        finally:
            partial.unlink(missing_ok=True)
    return len(rows)


class Morphology:
    """Splits one line of text into morphemes."""

    def __init__(self, user_dict: str | Path | None = None):
        import fugashi  # the MeCab stack, loaded when text is tokenised: slm.model and slm.train import without it

        args = "-Owakati"
        if user_dict is not None:
            if not Path(user_dict).is_file():
                raise UserDictError(f"{user_dict}: no such MeCab user dictionary")
            args += f" -u {shlex.quote(str(user_dict))}"  # fugashi splits its arguments as a shell does
        self.user_dict = user_dict
        self.fallback_lines = 0  # lines MeCab did not reproduce exactly (kept whole instead)
        try:
            self._tagger = fugashi.Tagger(args)
        except RuntimeError as e:
            if user_dict is None:
                raise
            details = [x.strip() for x in str(e).splitlines() if x.strip() and not x.startswith("---")]
            detail = details[-1].rsplit("] ", 1)[-1] if details else "no details"  # MeCab's own words, after its trace
            raise UserDictError(f"{user_dict}: MeCab cannot load this user dictionary ({detail}); "
                                "rebuild it from its term list") from None

    def split(self, line: str) -> list[str]:
        """Morphemes whose concatenation is `line` (which must hold no spaces or newlines)."""
        return self._tagger.parse(line).split()

    def morphemes(self, line: str) -> list[str]:
        """The morphemes `encode` uses for one normalised line (no newlines): spaces shown as ▁, and
        the whole line as one morpheme if MeCab ever failed to reproduce it (never seen; counted)."""
        line = line.replace(" ", META_SPACE)
        parts = self.split(line)
        if "".join(parts) != line:
            self.fallback_lines += 1
            return [line]
        return parts
