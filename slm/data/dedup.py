"""Deduplication (report §2.1: "removing duplication documents and sentences") in fixed memory.

The corpus can be tens of GB, so nothing here keeps the texts it has seen:
every stage remembers them in Bloom filters whose size is fixed when the stage
is built (from the expected number of keys and a false-positive rate), so
memory does not grow with the corpus. The price is a small, known rate of
false positives: a new document or sentence taken for a repeat. Three stages,
in the order `build_dedup` runs them:

- `ExactDedup`: a document whose text was seen before.
- `NearDedup` (off by default): a document that MinHash/LSH finds close to an
  earlier one (a copy with small edits, another page's header or date).
- `SentenceDedup`: sentences seen in earlier documents are cut out (web
  boilerplate: notices, menus, footers repeated on every page of a site).

Whole copies go first, so the sentence stage does not cut a duplicate apart
sentence by sentence, and does not remember the sentences of documents that are
removed anyway. Keys are taken without whitespace (layout, not content); the
pipeline has already normalised widths (tokenizer.clean) before these stages.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re

import numpy as np

from slm.config import Config, ConfigError
from slm.data.document import Document, Stage

_WHITESPACE = re.compile(r"\s+")


def without_whitespace(text: str) -> str:
    """The text with every whitespace character removed: the form texts are compared in.

    Spaces and line breaks in Japanese text are layout, so two copies that differ only
    in wrapping or indentation are the same text."""
    return _WHITESPACE.sub("", text)


class BloomFilter:
    """A set of byte strings in a fixed-size bit array that answers "seen?" with no false negatives.

    Sized for `capacity` keys at false-positive rate `error_rate`: m = -n ln p / (ln 2)^2 bits
    and k = (m / n) ln 2 hash positions (about 14.4 bits and 10 positions per key at p = 1e-3).
    After n distinct keys the chance that a new key is reported present is (1 - e^(-kn/m))^k
    (`expected_error_rate`): p at capacity, rising past it (about 0.06 at twice the capacity
    for p = 1e-3), so an undersized filter wrongly removes more, it never crashes.

    The k positions come from one 128-bit blake2b digest by double hashing (h1 + i*h2 mod m),
    which keeps the false-positive rate of k independent hashes (Kirsch and Mitzenmacher 2006)
    at the cost of one digest. blake2b, not Python's `hash`, so filters are the same in every
    process and run. The bits live in a numpy array; keys hash uniformly, so after a few
    thousand keys the whole array is resident: memory is fixed by the capacity, whatever
    the corpus. Single keys are read and set through a memoryview, which is faster than
    numpy indexing for a few bits.
    """

    def __init__(self, capacity: int, error_rate: float):
        if capacity < 1:
            raise ValueError(f"BloomFilter capacity must be positive, got {capacity}")
        if not 0.0 < error_rate < 1.0:
            raise ValueError(f"BloomFilter error_rate must be in (0, 1), got {error_rate}")
        self.capacity = capacity
        self.error_rate = error_rate
        self.num_bits = max(8, math.ceil(-capacity * math.log(error_rate) / math.log(2) ** 2))
        self.num_hashes = max(1, round(self.num_bits / capacity * math.log(2)))
        self.bits = np.zeros((self.num_bits + 7) // 8, dtype=np.uint8)
        self._view = memoryview(self.bits)
        self.count = 0  # keys added that were not (probably) present: the n of the error estimate

    def _positions(self, key: bytes) -> list[int]:
        digest = hashlib.blake2b(key, digest_size=16).digest()
        h1 = int.from_bytes(digest[:8], "little")
        h2 = int.from_bytes(digest[8:], "little") | 1  # odd, so the k positions do not collapse
        return [(h1 + i * h2) % self.num_bits for i in range(self.num_hashes)]

    def add(self, key: bytes) -> bool:
        """Add `key`; return whether it was (probably) present before."""
        view = self._view
        present = True
        for pos in self._positions(key):
            byte, bit = pos >> 3, 1 << (pos & 7)
            if not view[byte] & bit:
                present = False
                view[byte] |= bit
        if not present:
            self.count += 1
        return present

    def __contains__(self, key: bytes) -> bool:
        view = self._view
        return all(view[pos >> 3] & (1 << (pos & 7)) for pos in self._positions(key))

    @property
    def nbytes(self) -> int:
        return self.bits.nbytes

    @property
    def expected_error_rate(self) -> float:
        """The false-positive rate now, from the number of distinct keys added."""
        return (1.0 - math.exp(-self.num_hashes * self.count / self.num_bits)) ** self.num_hashes

    def state_dict(self) -> dict[str, np.ndarray]:
        """The filter as numpy arrays (for np.savez), to resume a run where it stopped.
        `bits` is the live array, not a copy: a copy of a sentence filter would double its memory."""
        return {"bits": self.bits, "meta": np.array([self.num_bits, self.num_hashes, self.count], dtype=np.int64)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        num_bits, num_hashes, count = (int(v) for v in state["meta"])
        if (num_bits, num_hashes) != (self.num_bits, self.num_hashes):
            raise ValueError(
                f"BloomFilter state has {num_bits} bits and {num_hashes} hashes, this filter "
                f"{self.num_bits} and {self.num_hashes}: build it with the same capacity and error_rate"
            )
        np.copyto(self.bits, state["bits"])
        self.count = count


class ExactDedup:
    """Removes a document whose text, without whitespace, was seen before."""

    name = "exact_dedup"

    def __init__(self, capacity: int, error_rate: float):
        self.seen = BloomFilter(capacity, error_rate)

    def __call__(self, doc: Document) -> Document | None:
        return None if self.seen.add(without_whitespace(doc.text).encode()) else doc

    @property
    def stats(self) -> dict:
        return {"distinct_documents": self.seen.count, "expected_false_positive_rate": self.seen.expected_error_rate}


# A sentence ends after 。！？!? (a run of them, with the closing brackets that follow) or a line break.
# Two fixed-width look-behinds, since Python's look-behind cannot vary in width; the look-ahead keeps
# a run ("？！", "。」", "\n\n") in one piece, so no sentence starts with a stray bracket.
_SENTENCE_END = re.compile(r"(?:(?<=[。！？!?\n])|(?<=[。！？!?][」』）)]))(?![。！？!?\n」』）)])")


def split_sentences(text: str) -> list[str]:
    """Sentences with their delimiters and trailing line breaks: "".join(result) == text."""
    return [s for s in _SENTENCE_END.split(text) if s]


class SentenceDedup:
    """Cuts out of each document the sentences that appeared in earlier documents.

    Only sentences of at least `min_chars` characters (without whitespace) are compared:
    short sentences are the stock phrases of clinical writing ("特記事項なし。",
    "意識清明。", "転倒なし。"), which every note repeats and which carry its content,
    while the boilerplate worth removing (site notices, disclaimers, navigation lines)
    is longer. Repeats inside one document are kept: they are that document's own text.
    A document whose every long sentence was cut contributed nothing new, and is removed.
    """

    name = "sentence_dedup"

    def __init__(self, min_chars: int, capacity: int, error_rate: float):
        self.min_chars = min_chars
        self.seen = BloomFilter(capacity, error_rate)
        self.sentences = 0  # long sentences compared
        self.removed = 0  # ... and cut as repeats
        self.removed_chars = 0

    def __call__(self, doc: Document) -> Document | None:
        kept: list[str] = []
        keys: list[bytes] = []
        long_kept = 0
        for sentence in split_sentences(doc.text):
            key = without_whitespace(sentence)
            if len(key) < self.min_chars:
                kept.append(sentence)
                continue
            key_bytes = key.encode()
            keys.append(key_bytes)
            if key_bytes in self.seen:
                self.removed += 1
                self.removed_chars += len(sentence)
            else:
                kept.append(sentence)
                long_kept += 1
        self.sentences += len(keys)
        for key_bytes in keys:  # after the checks, so a repeat within this document is not a repeat
            self.seen.add(key_bytes)
        if long_kept == len(keys):
            return doc
        return dataclasses.replace(doc, text="".join(kept)) if long_kept else None

    @property
    def stats(self) -> dict:
        return {
            "sentences": self.sentences,
            "removed_sentences": self.removed,
            "removed_chars": self.removed_chars,
            "expected_false_positive_rate": self.seen.expected_error_rate,
        }


_POLY = np.uint64(0x100000001B3)  # the 64-bit FNV prime, as the base of the n-gram polynomial hash
_CHUNK = 8192  # n-grams hashed at once: num_perm x _CHUNK uint64 values (8 MB at 128) in flight


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of 64-bit integers that spreads every input bit over all outputs."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class NearDedup:
    """Removes a document whose MinHash signature shares an LSH band with an earlier document.

    A document is the set of its character n-grams (text without whitespace); MinHash
    estimates the Jaccard similarity J of two such sets with `num_perm` hash functions, and
    LSH with b `bands` of r = num_perm / b rows flags a pair with probability
    1 - (1 - J^r)^b. At 128 = 16 x 8 that is an S-curve: 0.01 at J = 0.4, 0.24 at 0.6,
    0.5 at 0.67, 0.95 at 0.8, 0.99 at 0.85. Each band's keys go into their own Bloom filter at
    error_rate / bands, so a new document is wrongly removed with probability error_rate.

    The i-th hash function is mix64(x xor s_i) over 64-bit n-gram hashes x, with the s_i drawn
    from a fixed seed: the same document gets the same signature in every run. (The textbook
    (a x + b) mod p needs 128-bit products; with 32-bit a and x it wraps so rarely that the
    minima of all functions fall on the same few n-grams, and unrelated texts look alike.)
    """

    name = "near_dedup"

    def __init__(self, ngram: int, num_perm: int, bands: int, capacity: int, error_rate: float, seed: int = 0):
        if num_perm % bands:
            raise ValueError(f"NearDedup: bands={bands} must divide num_perm={num_perm}")
        self.ngram = ngram
        self.num_perm = num_perm
        self.rows = num_perm // bands
        self._seeds = np.random.default_rng(seed).integers(0, 1 << 64, size=(num_perm, 1), dtype=np.uint64)
        self.seen = [BloomFilter(capacity, error_rate / bands) for _ in range(bands)]

    def signature(self, text: str) -> np.ndarray | None:
        """The MinHash signature (num_perm uint64 values) of the text's n-grams; None for no text."""
        codes = np.frombuffer(without_whitespace(text).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        if codes.size == 0:
            return None
        n = min(self.ngram, codes.size)  # a text shorter than n is one n-gram
        grams = np.zeros(codes.size - n + 1, dtype=np.uint64)
        for j in range(n):  # polynomial hash of every n-gram at once; uint64 arithmetic wraps
            grams = grams * _POLY + codes[j : codes.size - n + 1 + j]
        grams = np.unique(grams)
        signature = np.full(self.num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
        for start in range(0, grams.size, _CHUNK):
            hashes = _mix64(grams[None, start : start + _CHUNK] ^ self._seeds)
            np.minimum(signature, hashes.min(axis=1), out=signature)
        return signature

    def __call__(self, doc: Document) -> Document | None:
        signature = self.signature(doc.text)
        if signature is None:
            return doc
        bands = signature.reshape(len(self.seen), self.rows)
        # Every band is added, also for a removed document, so chains of small edits are caught.
        seen = [band_filter.add(band.tobytes()) for band_filter, band in zip(self.seen, bands)]
        return None if any(seen) else doc

    @property
    def stats(self) -> dict:
        return {"expected_false_positive_rate": 1.0 - math.prod(1.0 - f.expected_error_rate for f in self.seen)}


@dataclasses.dataclass
class DedupConfig(Config):
    """Which deduplication stages run, and the size of their filters.

    Capacities are the numbers of distinct keys the filters hold at `error_rate`; memory is
    about 1.8 bytes per key at 1e-3 (the document filter 86 MiB at 50M documents, the sentence
    filter 857 MiB at 500M sentences, near-duplicates 1.9 GiB: 16 bands at 1e-3 / 16 each).
    Keys hash all over the filters, so they are resident almost at once: these defaults
    cost about 0.95 GB (2.9 GB with near-duplicates) on any corpus. Size them to the corpus
    (configs/data/sample.yaml uses 1M and 10M for the sample).
    """

    exact_documents: bool = True
    repeated_sentences: bool = True
    # Sentences shorter than this (characters without whitespace) are never cut: stock clinical
    # phrases such as "特記事項なし。" (7) or "バイタルサインに著変なし。" (13) are content. At 10 the
    # sample corpus loses "リチウムの血中濃度を上昇させる。" (16) from the second drug that does it.
    min_sentence_chars: int = 20
    near_duplicates: bool = False
    ngram: int = 5  # characters per MinHash shingle: about two Japanese words
    num_perm: int = 128
    bands: int = 16  # 16 bands of 8 rows: pairs above about 0.67 Jaccard similarity are duplicates
    seed: int = 0
    capacity: int = 50_000_000  # distinct documents (exact and near-duplicate filters)
    sentence_capacity: int = 500_000_000  # distinct sentences of at least min_sentence_chars
    error_rate: float = 1e-3  # chance that a new document (or sentence) is taken for a repeat

    def validate(self) -> None:
        for name in ("min_sentence_chars", "ngram", "num_perm", "bands", "capacity", "sentence_capacity"):
            if getattr(self, name) < 1:
                raise ConfigError(f"DedupConfig.{name} must be positive, got {getattr(self, name)}")
        if self.num_perm % self.bands:
            raise ConfigError(f"DedupConfig.bands={self.bands} must divide num_perm={self.num_perm}")
        if not 0.0 < self.error_rate < 1.0:
            raise ConfigError(f"DedupConfig.error_rate must be in (0, 1), got {self.error_rate}")


def build_dedup(config: DedupConfig) -> list[Stage]:
    """The enabled stages in their fixed order: exact, near-duplicate, sentence."""
    stages: list[Stage] = []
    if config.exact_documents:
        stages.append(ExactDedup(config.capacity, config.error_rate))
    if config.near_duplicates:
        stages.append(NearDedup(config.ngram, config.num_perm, config.bands, config.capacity, config.error_rate,
                                config.seed))
    if config.repeated_sentences:
        stages.append(SentenceDedup(config.min_sentence_chars, config.sentence_capacity, config.error_rate))
    return stages
