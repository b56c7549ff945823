"""A checkpoint's trainer state: everything a resumed step depends on besides the weights
(optimizer, every RNG, the loader position, the step and the trainer's own counters), in
`trainer_state/` of a checkpoint folder (the layout is slm.runs'). trainer.json is written last:
its presence marks the checkpoint complete.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

from slm.runs import TRAINER_INFO, TRAINER_STATE


def rng_state() -> dict:
    """Every RNG a step can draw from, as plain types and tensors (loadable with weights_only)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, keys.tolist(), pos, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_trainer_state(directory: Path, step: int, optimizer_state: dict | None, loader_state: dict,
                       extra: dict) -> None:
    state_dir = directory / TRAINER_STATE
    if optimizer_state is not None:
        torch.save(optimizer_state, state_dir / "optimizer.pt")
    torch.save(rng_state(), state_dir / "rng.pt")
    (state_dir / "loader.json").write_text(json.dumps(loader_state) + "\n")
    (state_dir / TRAINER_INFO).write_text(json.dumps({"step": step, **extra}) + "\n")  # written last


def load_trainer_state(directory: Path) -> tuple[dict, dict, dict | None]:
    """(trainer info, loader state, optimizer state or None); RNG states are restored here."""
    state_dir = directory / TRAINER_STATE
    info = json.loads((state_dir / TRAINER_INFO).read_text())
    loader = json.loads((state_dir / "loader.json").read_text())
    set_rng_state(torch.load(state_dir / "rng.pt", weights_only=True))  # a checkpoint is data, never code
    optim_path = state_dir / "optimizer.pt"
    optimizer = torch.load(optim_path, weights_only=True) if optim_path.is_file() else None
    return info, loader, optimizer
