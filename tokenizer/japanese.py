"""`JapaneseTokenizer`: normalise -> MeCab morphemes -> SentencePiece Unigram pieces (report §2.2).

Encoding a text:
1. `normalize` (tokenizer.clean: widths, punctuation, symbols, whitespace);
2. split it into lines; each newline is the newline token;
3. spaces become the meta-space ▁ and MeCab splits each line into morphemes;
4. each morpheme is encoded by the Unigram model on its own, so no piece ever
   crosses a morpheme boundary, exactly as in training (tokenizer.unigram).
Unknown characters fall back to UTF-8 byte pieces, so every string survives:
`decode(encode(x)) == normalize(x)`.

Special tokens are control symbols: they are only ever produced by the
`add_bos`/`add_eos` flags or by code that inserts their ids (chat formatting),
never from text, so a document that contains the string "<|user|>" encodes it
as ordinary characters.

A saved tokenizer is a folder holding everything needed to reproduce the
pipeline exactly: the Unigram model, the compiled user dictionary and its term
list, and `tokenizer.json` with the cleaning settings and special-token ids.
"""

from __future__ import annotations

from array import array
import json
import multiprocessing
import shutil
import warnings
from collections.abc import Iterable, Sequence
from itertools import chain
from pathlib import Path

import sentencepiece as spm

from tokenizer.clean import CleanConfig, normalize
from tokenizer.folders import StagedFolder
from tokenizer.morph import Morphology, unidic_version

FORMAT_VERSION = 1
BOS, EOS, NEWLINE = "<begin_of_text>", "<end_of_text>", "\n"
CHAT_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
MODEL_FILE, SETTINGS_FILE, USER_DICT_FILE, TERMS_FILE = "tokenizer.model", "tokenizer.json", "user.dic", "user_terms.csv"
TOKENIZER_FILES = frozenset({MODEL_FILE, SETTINGS_FILE, USER_DICT_FILE, TERMS_FILE})  # all a tokenizer folder holds
PIECE_CACHE_SIZE = 1 << 20  # morphemes cached before the cache is emptied (bounds memory)


class JapaneseTokenizer:
    def __init__(self, directory: str | Path, settings: dict | None = None):
        """Load a saved tokenizer folder (see `load`). settings: the folder's tokenizer.json unless
        given (a transformers export keeps them in its tokenizer_config.json: tokenizer.hf_export)."""
        self.directory = Path(directory)
        settings_path = self.directory / SETTINGS_FILE
        if settings is None:
            if not settings_path.is_file():
                raise FileNotFoundError(f"{self.directory} is not a tokenizer folder: {SETTINGS_FILE} is missing")
            settings = json.loads(settings_path.read_text(encoding="utf-8"))
        self.settings = settings
        if self.settings.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{settings_path}: format_version {self.settings.get('format_version')} is not {FORMAT_VERSION}")
        if self.settings["unidic_version"] != unidic_version():
            warnings.warn(
                f"{self.directory}: trained with unidic-lite {self.settings['unidic_version']}, "
                f"this environment has {unidic_version()}; morphemes may differ", stacklevel=2
            )
        self.clean_config = CleanConfig.from_dict(self.settings["clean"])
        self._sp = spm.SentencePieceProcessor(model_file=str(self.directory / MODEL_FILE))
        user_dict = self.directory / USER_DICT_FILE
        self._morph = Morphology(user_dict if user_dict.is_file() else None)
        self.special_tokens: dict[str, int] = self.settings["special_tokens"]
        self._special_by_id = {i: s for s, i in self.special_tokens.items()}
        self._pieces = _PieceCache(self._sp)

    @classmethod
    def load(cls, directory: str | Path) -> JapaneseTokenizer:
        return cls(directory)

    def save(self, directory: str | Path) -> None:
        """Write the tokenizer folder to `directory` (e.g. into a model checkpoint), added tokens included.

        The folder is written whole (tokenizer.folders): built beside `directory`, then moved into
        place, replacing a tokenizer folder there (this one's own folder too) only once complete. A
        folder holding anything but a tokenizer's files is refused, never mixed with or replaced.
        """
        text = json.dumps(self.settings, ensure_ascii=False, indent=2) + "\n"
        with StagedFolder(directory, replace=True, owned=TOKENIZER_FILES) as tmp:
            for name in (MODEL_FILE, USER_DICT_FILE, TERMS_FILE):
                if (self.directory / name).is_file():
                    shutil.copy2(self.directory / name, tmp / name)
            (tmp / SETTINGS_FILE).write_text(text, encoding="utf-8")

    def add_special_tokens(self, tokens: Sequence[str]) -> list[str]:
        """Append special tokens after the Unigram vocabulary and return those that were new.

        The report's path (§2.4.2): a base tokenizer without chat tokens gets them at
        fine-tuning time, 32768 -> 32771, and the model's embedding grows to match.
        """
        added = [t for t in dict.fromkeys(tokens) if t not in self.special_tokens]
        for token in added:
            self.special_tokens[token] = self.vocab_size
            self._special_by_id[self.special_tokens[token]] = token
            self.settings.setdefault("added_tokens", []).append(token)
        return added

    # ------------------------------------------------------------ ids

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size() + len(self.settings.get("added_tokens", []))

    @property
    def bos_id(self) -> int:
        return self.special_tokens[BOS]

    @property
    def eos_id(self) -> int:
        return self.special_tokens[EOS]

    @property
    def pad_id(self) -> int:
        return self.special_tokens[EOS]  # report §2.2: <end_of_text> also pads

    @property
    def newline_id(self) -> int:
        return self.special_tokens[NEWLINE]

    @property
    def newline_ids(self) -> list[int]:
        """The tokens that end a line: only the newline token (pieces never hold one)."""
        return [self.newline_id]

    def token_id(self, token: str) -> int:
        """The id of a special token such as "<|user|>"; KeyError names the ones there are."""
        if token not in self.special_tokens:
            raise KeyError(f"{token!r} is not a special token of this tokenizer; it has {list(self.special_tokens)}")
        return self.special_tokens[token]

    def id_to_piece(self, i: int) -> str:
        return self._special_by_id[i] if i >= self._sp.get_piece_size() else self._sp.id_to_piece(i)

    # ------------------------------------------------------------ encode / decode

    def normalize(self, text: str) -> str:
        """The normalisation `encode` applies; `decode(encode(x)) == normalize(x)`."""
        return normalize(text, self.clean_config)

    def morphemes(self, line: str) -> list[str]:
        """MeCab's morphemes of one normalised line, spaces shown as ▁ (tokenizer.morph)."""
        return self._morph.morphemes(line)

    @property
    def fallback_lines(self) -> int:
        """Lines MeCab did not reproduce exactly (encoded whole instead)."""
        return self._morph.fallback_lines

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        ids = [self.bos_id] if add_bos else []
        for n, line in enumerate(self.normalize(text).split("\n")):
            if n:
                ids.append(self.newline_id)
            if line:
                ids.extend(chain.from_iterable(map(self._pieces.__getitem__, self.morphemes(line))))
        if len(self._pieces) > PIECE_CACHE_SIZE:
            self._pieces.clear()
        if add_eos:
            ids.append(self.eos_id)
        return ids

    def encode_batch(self, texts: Sequence[str], num_workers: int = 1, add_bos: bool = False,
                     add_eos: bool = False, chunksize: int = 256) -> list[list[int]]:
        """`encode` over many texts, in `num_workers` processes when > 1 (order kept).

        Workers are spawned (safe beside torch's threads) and load the tokenizer from its
        folder; ids travel back as packed int32 arrays, so the parent does little besides.
        """
        if num_workers <= 1 or len(texts) <= chunksize:
            return [self.encode(t, add_bos, add_eos) for t in texts]
        chunks = [(texts[i : i + chunksize], add_bos, add_eos) for i in range(0, len(texts), chunksize)]
        out: list[list[int]] = []
        with multiprocessing.get_context("spawn").Pool(num_workers, _init_worker, (str(self.directory),)) as pool:
            for lengths, flat in pool.imap(_encode_chunk_in_worker, chunks):
                ids = array("i", flat).tolist()
                start = 0
                for n in array("i", lengths):
                    out.append(ids[start : start + n])
                    start += n
        return out

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Text from ids: pieces with ▁ as spaces, bytes reassembled, the newline token as "\\n",
        other special tokens written out (or left out with skip_special_tokens)."""
        out, run = [], []
        for i in ids:
            i = int(i)
            special = self._special_by_id.get(i)
            if special is None:
                run.append(i)
                continue
            if run:
                out.append(self._sp.decode(run))
                run = []
            if special == NEWLINE or not skip_special_tokens:
                out.append(special)
        if run:
            out.append(self._sp.decode(run))
        return "".join(out)

    def decode_batch(self, batch: Iterable[Iterable[int]], skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(ids, skip_special_tokens) for ids in batch]

    def __reduce__(self):
        # MeCab and sentencepiece handles do not pickle; a copy reloads the same folder.
        return (JapaneseTokenizer, (str(self.directory),))

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"JapaneseTokenizer({str(self.directory)!r}, vocab_size={self.vocab_size})"


class _PieceCache(dict):
    """morpheme -> piece ids. Morphemes are Zipf-distributed, so nearly every lookup is a hit,
    and a dict hit costs less than anything sentencepiece could do."""

    def __init__(self, sp: spm.SentencePieceProcessor):
        super().__init__()
        self._sp = sp

    def __missing__(self, morpheme: str) -> tuple[int, ...]:
        ids = self[morpheme] = tuple(self._sp.encode(morpheme))
        return ids


_worker: JapaneseTokenizer | None = None


def _init_worker(directory: str) -> None:
    global _worker
    _worker = JapaneseTokenizer(directory)


def _encode_chunk_in_worker(job: tuple[Sequence[str], bool, bool]) -> tuple[bytes, bytes]:
    texts, add_bos, add_eos = job
    encoded = [_worker.encode(t, add_bos, add_eos) for t in texts]
    return array("i", map(len, encoded)).tobytes(), array("i", chain.from_iterable(encoded)).tobytes()
