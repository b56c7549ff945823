"""Instruction examples as training rows: truncation, padding, and optional packing (report §2.4.2).

A batch carries, besides input_ids and labels, `doc_ids` (which example each
position belongs to, so attention never crosses examples and positions restart
per example, and padding is its own "example") and `lengths` (each position's
own example length, which NEFTune's noise scale needs: not the padded or packed
row length).
"""

from __future__ import annotations

import torch

from slm.chat import IGNORE, Encoded


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
