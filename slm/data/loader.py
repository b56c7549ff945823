"""The training loaders' protocol, their rank split, and the packed loader over prepared sources
(report §2.4.1: packed 2048-token rows).

`Loader` is what the training loop asks of a loader (pretraining's PackedLoader here,
instruction tuning's ChatLoader in slm.finetune.data): micro-batches forever, and a state
that resumes them. Both split rows over ranks with `rank_rows`.

Each source's token stream is cut into fixed-length rows by concatenation (the
tail shorter than a row is left out and reported). Rows are drawn as one
global sequence g = 0, 1, 2, ...:

- which source row g comes from follows the mixture weights with Megatron's
  deterministic blending rule (pick the source furthest behind its share), so
  shares are exact at every point, not only on average; a curriculum changes
  the weights at given rows, and shares are then counted from the phase's start;
- the k-th row drawn from a source is row perm_e[k mod n] of that source, where
  e = k div n is the epoch and perm_e a permutation seeded by (seed, source, e):
  a source that runs out starts a new epoch in a new order.

Micro-batch t of rank r takes global rows [(t * world + r) * B, ... + B) (`rank_rows`), so
ranks are disjoint, and the loader's whole state is the step t plus the per-source
draw counts: saved in a checkpoint, it resumes on exactly the rows an
uninterrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

import numpy as np
import torch

from slm.config import Config, ConfigError, safe_name
from slm.data.shards import TokenStream


@runtime_checkable
class Loader(Protocol):
    """Micro-batches of tensors, forever, deterministic given the state; the state goes into
    checkpoints, so a resumed run sees exactly the rows an uninterrupted one would have."""

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]: ...

    def __next__(self) -> dict[str, torch.Tensor]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def rank_rows(step: int, *, rank: int, world_size: int, micro_batch: int) -> range:
    """The global rows micro-batch `step` of `rank` takes: ranks interleave by micro-batch, so they
    are disjoint and, read step by step and rank by rank, are the one global row sequence a single
    process reads (what lets a multi-process run repeat a one-process run)."""
    first = (step * world_size + rank) * micro_batch
    return range(first, first + micro_batch)


@dataclasses.dataclass
class MixtureConfig(Config):
    """How prepared sources blend (absent: every source once, in its natural proportion).

    weights: relative share of rows per source. epochs: alternatively, how many
    passes over a source one pass of the whole mixture makes (the weight becomes
    epochs x the source's rows). A source named in neither is not used.
    curriculum: instead of weights, phases [{"until_row": N, "weights": {...}}, ..., {"weights": {...}}],
    each in force up to its global row; the last phase's weights hold from then on.
    """

    weights: dict[str, float] = dataclasses.field(default_factory=dict)
    epochs: dict[str, float] = dataclasses.field(default_factory=dict)
    curriculum: list[dict] = dataclasses.field(default_factory=list)

    def validate(self) -> None:
        both = set(self.weights) & set(self.epochs)
        if both:
            raise ConfigError(f"MixtureConfig: sources {sorted(both)} have both a weight and epochs; give one")
        for name, value in {**self.weights, **self.epochs}.items():
            safe_name(name, "MixtureConfig: a source name")  # a folder of the prepared data
            if not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"MixtureConfig: weight/epochs of {name!r} must be a non-negative number, got {value!r}")
        if self.curriculum and (self.weights or self.epochs):
            raise ConfigError("MixtureConfig: a curriculum sets the weights of every phase; drop weights/epochs")
        last = -1
        for i, phase in enumerate(self.curriculum):
            if not isinstance(phase, dict) or not isinstance(phase.get("weights"), dict) or set(phase) - {"until_row", "weights"}:
                raise ConfigError(f"MixtureConfig.curriculum[{i}] must be {{until_row: N, weights: {{source: w}}}}")
            for name in phase["weights"]:
                safe_name(name, f"MixtureConfig.curriculum[{i}]: a source name")
            until = phase.get("until_row")
            if until is None and i != len(self.curriculum) - 1:
                raise ConfigError(f"MixtureConfig.curriculum[{i}] needs until_row (only the last phase may omit it)")
            if until is not None and until <= last:
                raise ConfigError(f"MixtureConfig.curriculum[{i}].until_row must increase")
            last = until if until is not None else last


class PackedLoader:
    """Iterates micro-batches {"input_ids", "labels", "doc_ids"} of shape (micro_batch, seq_len), forever.

    labels equal input_ids (SLM shifts them); doc_ids number the documents within
    each row, for the model's opt-in document masking.
    """

    def __init__(self, data_dir: str | Path, *, seq_len: int = 2048, micro_batch: int = 8, rank: int = 0,
                 world_size: int = 1, seed: int = 0, mixture: MixtureConfig | None = None):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.data_dir = Path(data_dir)
        self.seq_len, self.micro_batch, self.rank, self.world_size, self.seed = seq_len, micro_batch, rank, world_size, seed
        mixture = mixture or MixtureConfig()
        available = sorted(p.parent.name for p in self.data_dir.glob("*/manifest.json"))
        if not available:
            raise FileNotFoundError(f"{self.data_dir}: no prepared sources (*/manifest.json)")
        named = set(mixture.weights) | set(mixture.epochs) | {s for ph in mixture.curriculum for s in ph["weights"]}
        unknown = named - set(available)
        if unknown:
            raise ConfigError(f"mixture names sources {sorted(unknown)} not prepared in {self.data_dir}; there are {available}")
        self.sources = sorted(named) if named else available
        self.streams = [TokenStream(self.data_dir / s) for s in self.sources]
        self.rows = np.array([st.n_tokens // seq_len for st in self.streams], dtype=np.int64)
        for name, n in zip(self.sources, self.rows):
            if n == 0:
                raise ValueError(f"source {name!r} has fewer than seq_len={seq_len} tokens: no full row")
        if not named:
            base = self.rows.astype(np.float64)
        else:
            base = np.array([mixture.weights.get(s, mixture.epochs.get(s, 0.0) * n)
                             for s, n in zip(self.sources, self.rows)], dtype=np.float64)
        self._phases = [(None, self._normalise(base))] if not mixture.curriculum else [
            (ph.get("until_row"), self._normalise(np.array([ph["weights"].get(s, 0.0) for s in self.sources])))
            for ph in mixture.curriculum
        ]
        self.step = 0  # micro-batches consumed by each rank
        self._next_global = 0  # global rows whose source has been decided
        self._drawn = np.zeros(len(self.sources), dtype=np.int64)  # rows drawn per source so far
        self._phase_drawn = np.zeros(len(self.sources), dtype=np.int64)  # ... since the current phase began
        self._perm_cache: dict[int, tuple[int, np.ndarray]] = {}  # source -> (epoch, its permutation)

    @staticmethod
    def _normalise(w: np.ndarray) -> np.ndarray:
        if w.sum() <= 0:
            raise ConfigError("mixture weights are all zero")
        return w / w.sum()

    def _phase(self, g: int) -> tuple[int, np.ndarray]:
        """The weights in force at global row g, and the row where their phase began."""
        begin = 0
        for until, w in self._phases:
            if until is None or g < until:
                return begin, w
            begin = until
        return begin, self._phases[-1][1]

    def _row_index(self, s: int, k: int) -> int:
        n = int(self.rows[s])
        epoch = k // n
        cached = self._perm_cache.get(s)
        if cached is None or cached[0] != epoch:  # each source keeps its current epoch's order only
            cached = self._perm_cache[s] = (epoch, np.random.default_rng([self.seed, s, epoch]).permutation(n))
        return int(cached[1][k % n])

    def _draw(self) -> tuple[int, int]:
        """Decide the source of the next global row (Megatron's rule) and its row in that source."""
        g = self._next_global
        begin, w = self._phase(g)
        if g == begin:
            self._phase_drawn[:] = 0
        s = int(np.argmax(w * (g - begin + 1) - self._phase_drawn))
        k = int(self._drawn[s])
        self._drawn[s] += 1
        self._phase_drawn[s] += 1
        self._next_global += 1
        return s, self._row_index(s, k)

    def _row(self, s: int, r: int) -> tuple[np.ndarray, np.ndarray]:
        start = r * self.seq_len
        stream = self.streams[s]
        docs = stream.doc_ids(start, start + self.seq_len)
        return stream.tokens(start, start + self.seq_len), docs - docs[0]

    def __iter__(self):
        return self

    def _next_rows(self) -> range:
        """The global rows of this rank's next micro-batch."""
        return rank_rows(self.step, rank=self.rank, world_size=self.world_size, micro_batch=self.micro_batch)

    def __next__(self) -> dict[str, torch.Tensor]:
        rows = self._next_rows()
        while self._next_global < rows.start:  # other ranks' rows: decide them, do not read them
            self._draw()
        ids, docs = zip(*(self._row(*self._draw()) for _ in rows))
        # rows after ours in this step belong to higher ranks; the next call skips them
        self.step += 1
        input_ids = torch.from_numpy(np.stack(ids))
        return {"input_ids": input_ids, "labels": input_ids.clone(), "doc_ids": torch.from_numpy(np.stack(docs))}

    def state_dict(self) -> dict:
        return {"step": self.step, "next_global": self._next_global, "drawn": self._drawn.tolist(),
                "phase_drawn": self._phase_drawn.tolist(), "seed": self.seed,
                "seq_len": self.seq_len, "micro_batch": self.micro_batch, "world_size": self.world_size,
                "sources": self.sources}

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "seq_len", "micro_batch", "world_size", "sources"):
            if state[key] != getattr(self, key):
                raise ValueError(f"loader state was saved with {key}={state[key]!r}, this loader has {getattr(self, key)!r}")
        # Any rank's state serves every rank: its draw counts lie at or before each rank's next
        # rows, and __next__ decides the rows in between.
        self.step = state["step"]
        self._next_global = state["next_global"]
        self._drawn = np.array(state["drawn"], dtype=np.int64)
        self._phase_drawn = np.array(state["phase_drawn"], dtype=np.int64)
        if self._next_global > self._next_rows().start:
            raise ValueError("loader state is ahead of this rank's next rows (saved by a higher rank mid-step?)")

    def describe(self, total_rows: int | None = None) -> dict:
        """Rows and tokens per source, the tail left out, and (given a run length) the share and epochs."""
        info = {}
        w = self._phase(0)[1]
        for i, (name, stream) in enumerate(zip(self.sources, self.streams)):
            entry = {"rows": int(self.rows[i]), "tokens": stream.n_tokens,
                     "tokens_left_out": stream.n_tokens - int(self.rows[i]) * self.seq_len, "share": float(w[i])}
            if total_rows:
                entry["epochs"] = float(w[i]) * total_rows / int(self.rows[i])
            info[name] = entry
        return info

    def __repr__(self) -> str:
        return f"PackedLoader({json.dumps(self.describe(), ensure_ascii=False)})"
