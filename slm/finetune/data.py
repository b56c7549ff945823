"""Instruction examples as training rows (report §2.4.2): truncation, optional packing, padding
into batches (`collate`), the training loader over them (`ChatLoader`, a slm.data.loader.Loader)
and the held-out rows split over ranks (`held_out_batches`).

A batch carries, besides input_ids and labels, `doc_ids` (which example each
position belongs to, so attention never crosses examples and positions restart
per example, and padding is its own "example") and `lengths` (each position's
own example length, which NEFTune's noise scale needs: not the padded or packed
row length).
"""

from __future__ import annotations

import itertools
from typing import Iterator

import numpy as np
import torch

from slm.chat import IGNORE, Encoded
from slm.data.loader import rank_rows


def truncate(example: Encoded, max_len: int) -> Encoded:
    """Keep the first max_len tokens: the prompt's start and as much of the answer as fits.
    Labels stay aligned, so a cut answer simply loses its <end_of_text> target."""
    return Encoded(example.input_ids[:max_len], example.labels[:max_len])


def pack(examples: list[Encoded], max_len: int) -> list[list[Encoded]]:
    """Group examples, in order, into rows of at most max_len tokens (each example truncated to fit)."""
    rows, row, used = [], [], 0
    for ex in examples:
        ex = truncate(ex, max_len)
        if row and used + len(ex.input_ids) > max_len:
            rows.append(row)
            row, used = [], 0
        row.append(ex)
        used += len(ex.input_ids)
    if row:
        rows.append(row)
    return rows


def collate(rows: list[list[Encoded]], max_len: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Rows (each one example, or several when packed) as padded tensors of shape (B, max_len)."""
    B = len(rows)
    input_ids = torch.full((B, max_len), pad_id, dtype=torch.long)
    labels = torch.full((B, max_len), IGNORE, dtype=torch.long)
    doc_ids = torch.zeros((B, max_len), dtype=torch.long)
    lengths = torch.ones((B, max_len), dtype=torch.long)
    for b, row in enumerate(rows):
        pos = 0
        for doc, ex in enumerate(row):
            n = len(ex.input_ids)
            if pos + n > max_len:
                raise ValueError(f"row {b} holds {pos + n} tokens, more than max_len={max_len}")
            input_ids[b, pos : pos + n] = torch.tensor(ex.input_ids)
            labels[b, pos : pos + n] = torch.tensor(ex.labels)
            doc_ids[b, pos : pos + n] = doc
            lengths[b, pos : pos + n] = n
            pos += n
        doc_ids[b, pos:] = len(row)  # padding: a document of its own, never attended to by the examples
        lengths[b, pos:] = max(max_len - pos, 1)
    return {"input_ids": input_ids, "labels": labels, "doc_ids": doc_ids, "lengths": lengths}


class ChatLoader:
    """Deterministic, resumable micro-batches of chat rows, forever; ranks take disjoint rows.

    Row g of the global sequence is row perm_e[g mod n] with e = g div n (a new order each
    epoch, seeded); micro-batch t of rank r takes the global rows `rank_rows` gives it, as
    PackedLoader's do. The state is the step t.
    """

    def __init__(self, rows: list[list[Encoded]], *, max_len: int, micro_batch: int, pad_id: int, rank: int = 0,
                 world_size: int = 1, seed: int = 0):
        if not rows:
            raise ValueError("no instruction examples to train on")
        self.rows, self.max_len, self.micro_batch, self.pad_id = rows, max_len, micro_batch, pad_id
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.step = 0
        self._perm: tuple[int, np.ndarray] | None = None

    def _row(self, g: int) -> list[Encoded]:
        n = len(self.rows)
        epoch = g // n
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(n))
        return self.rows[int(self._perm[1][g % n])]

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        take = rank_rows(self.step, rank=self.rank, world_size=self.world_size, micro_batch=self.micro_batch)
        self.step += 1
        return collate([self._row(g) for g in take], self.max_len, self.pad_id)

    def state_dict(self) -> dict:
        return {"step": self.step, "rows": len(self.rows), "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if (state["rows"], state["seed"]) != (len(self.rows), self.seed):
            raise ValueError(f"loader state was saved for {state['rows']} rows and seed {state['seed']}, "
                             f"this data has {len(self.rows)} rows and seed {self.seed}")
        self.step = state["step"]


def held_out_batches(rows: list[list[Encoded]], *, max_len: int, micro_batch: int, pad_id: int, rank: int = 0,
                     world_size: int = 1) -> Iterator[dict[str, torch.Tensor]]:
    """This rank's share of the held-out rows, once through in order, in micro-batches split over
    ranks as ChatLoader splits them (the last may be short, and a rank may get none)."""
    for step in itertools.count():
        take = rank_rows(step, rank=rank, world_size=world_size, micro_batch=micro_batch)
        if take.start >= len(rows):
            return
        yield collate(rows[take.start : take.stop], max_len, pad_id)
