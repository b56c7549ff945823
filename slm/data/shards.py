"""Token shards on disk: writing them (in worker processes) and reading them back as one stream.

A source's folder holds `shard-00000.tokens.npy` (every document as
<begin_of_text> tokens <end_of_text>, concatenated; uint16 while the vocabulary
fits, else uint32) and `shard-00000.docs.npy` (int64 offsets where each
document starts, plus the end), and, once every shard is written,
`manifest.json`. `.npy` files are self-describing and memory-mappable.

Each file is written under a temporary name and renamed; the docs file is
written second, so its presence means the shard is complete. That is what
makes preparation resumable: a rerun skips complete shards and rewrites the
rest, and since shard contents are a deterministic function of the inputs and
the config, the result is byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import json
import os
from itertools import chain
from pathlib import Path

import numpy as np

TOKENS_SUFFIX, DOCS_SUFFIX, MANIFEST = ".tokens.npy", ".docs.npy", "manifest.json"
TOKENS_FILE = "tokens.json"  # a prepared folder's vocabulary size and special ids (read by training)


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 holds ids below 65536; larger vocabularies need uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def shard_stem(directory: Path, index: int) -> Path:
    return directory / f"shard-{index:05d}"


def shard_complete(stem: Path) -> bool:
    return stem.with_name(stem.name + DOCS_SUFFIX).is_file()


def _save_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_shard(stem: Path, documents: list[list[int]], dtype: np.dtype) -> int:
    """Write one shard (tokens, then document offsets); returns its token count."""
    lengths = np.fromiter(map(len, documents), dtype=np.int64, count=len(documents))
    offsets = np.zeros(len(documents) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.fromiter(chain.from_iterable(documents), dtype=dtype, count=int(offsets[-1]))
    _save_atomic(stem.with_name(stem.name + TOKENS_SUFFIX), tokens)
    _save_atomic(stem.with_name(stem.name + DOCS_SUFFIX), offsets)
    return int(offsets[-1])


def write_manifest(directory: Path, n_shards: int, n_docs: int, n_tokens: int, dtype: np.dtype) -> None:
    tmp = directory / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"shards": n_shards, "documents": n_docs, "tokens": n_tokens, "dtype": dtype.name}) + "\n")
    os.replace(tmp, directory / MANIFEST)


class TokenStream:
    """A prepared source as one read-only token sequence, with document boundaries.

    Shards are memory-mapped, so opening a source costs a few file handles,
    not its size in memory.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        manifest_path = self.directory / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{self.directory}: no {MANIFEST}; was preparation of this source finished?")
        self.manifest = json.loads(manifest_path.read_text())
        stems = [shard_stem(self.directory, i) for i in range(self.manifest["shards"])]
        self._tokens = [np.load(s.with_name(s.name + TOKENS_SUFFIX), mmap_mode="r") for s in stems]
        sizes = np.array([len(t) for t in self._tokens], dtype=np.int64)
        self._shard_start = np.concatenate([[0], np.cumsum(sizes)])
        starts = [np.load(s.with_name(s.name + DOCS_SUFFIX))[:-1] + base for s, base in zip(stems, self._shard_start)]
        self.doc_starts = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
        self.n_tokens = int(self._shard_start[-1])

    def tokens(self, start: int, end: int) -> np.ndarray:
        """Tokens [start, end) as int64, read across shard boundaries."""
        if not 0 <= start <= end <= self.n_tokens:
            raise IndexError(f"tokens [{start}, {end}) outside a stream of {self.n_tokens}")
        first = int(np.searchsorted(self._shard_start, start, side="right")) - 1
        pieces, pos, shard = [], start, first
        while pos < end:
            base = self._shard_start[shard]
            stop = min(end, self._shard_start[shard + 1])
            pieces.append(np.asarray(self._tokens[shard][pos - base : stop - base], dtype=np.int64))
            pos, shard = stop, shard + 1
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)

    def doc_ids(self, start: int, end: int) -> np.ndarray:
        """For each position in [start, end), the number of the document it belongs to."""
        return np.searchsorted(self.doc_starts, np.arange(start, end), side="right") - 1
