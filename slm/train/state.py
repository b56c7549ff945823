"""Run folders and checkpoints: atomic, self-contained, resumable (DESIGN: run and checkpoint folders).

    runs/<name>/checkpoints/step-000100/
        model.safetensors, config.json    the weights, loadable by SLM.from_pretrained
        tokenizer/                        the tokenizer the data was prepared with
        trainer_state/                    optimizer, RNG states, loader position, step (resume only)
    runs/<name>/checkpoints/latest        text file naming the newest complete checkpoint

A checkpoint is written into `.tmp-step-000100/` and renamed into place only when
every file is on disk; `latest` is replaced after that. A crash at any moment
leaves the previous checkpoint and `latest` intact; `.tmp-*` leftovers are
removed by the next save.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

STEP_PREFIX, LATEST = "step-", "latest"
CRASH_ENV = "SLM_FAULT_IN_CHECKPOINT"  # fault injection for tests: SIGKILL mid-save at this step


def step_dir(checkpoints: Path, step: int) -> Path:
    return checkpoints / f"{STEP_PREFIX}{step:07d}"


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


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """The newest complete checkpoint: the one `latest` names, else the highest complete step folder."""
    pointer = checkpoints / LATEST
    if pointer.is_file():
        candidate = checkpoints / pointer.read_text().strip()
        if (candidate / "trainer_state" / "trainer.json").is_file():
            return candidate
    steps = complete_checkpoints(checkpoints)
    return steps[-1] if steps else None


def complete_checkpoints(checkpoints: Path) -> list[Path]:
    """Every complete step folder, oldest first (what a checkpoint sweep evaluates)."""
    return sorted(p for p in checkpoints.glob(f"{STEP_PREFIX}*") if (p / "trainer_state" / "trainer.json").is_file())


def begin(checkpoints: Path, step: int) -> Path:
    """A fresh temporary folder for the checkpoint of `step` (stale ones removed)."""
    checkpoints.mkdir(parents=True, exist_ok=True)
    for stale in checkpoints.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = checkpoints / f".tmp-{STEP_PREFIX}{step:07d}"
    (tmp / "trainer_state").mkdir(parents=True)
    return tmp


def commit(tmp: Path, checkpoints: Path, step: int, keep_last: int, keep_every: int,
           protect: frozenset[str] = frozenset()) -> Path:
    """Make the temporary folder the checkpoint of `step`, point `latest` at it, apply retention
    (never to the folders named in `protect`, such as the best checkpoint so far)."""
    if os.environ.get(CRASH_ENV) == str(step):
        os.kill(os.getpid(), 9)  # the test's SIGKILL, after every file is written but before the rename
    final = step_dir(checkpoints, step)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer_tmp = checkpoints / f".{LATEST}.tmp"
    pointer_tmp.write_text(final.name + "\n")
    os.replace(pointer_tmp, checkpoints / LATEST)
    if keep_last > 0:
        steps = sorted(checkpoints.glob(f"{STEP_PREFIX}*"))
        for old in steps[:-keep_last]:
            number = int(old.name[len(STEP_PREFIX):])
            if not (keep_every and number % keep_every == 0) and old.name not in protect:
                shutil.rmtree(old, ignore_errors=True)
    return final


def save_trainer_state(directory: Path, step: int, optimizer_state: dict | None, loader_state: dict,
                       extra: dict) -> None:
    state_dir = directory / "trainer_state"
    if optimizer_state is not None:
        torch.save(optimizer_state, state_dir / "optimizer.pt")
    torch.save(rng_state(), state_dir / "rng.pt")
    (state_dir / "loader.json").write_text(json.dumps(loader_state) + "\n")
    (state_dir / "trainer.json").write_text(json.dumps({"step": step, **extra}) + "\n")  # written last


def load_trainer_state(directory: Path) -> tuple[dict, dict, dict | None]:
    """(trainer info, loader state, optimizer state or None); RNG states are restored here."""
    state_dir = directory / "trainer_state"
    info = json.loads((state_dir / "trainer.json").read_text())
    loader = json.loads((state_dir / "loader.json").read_text())
    set_rng_state(torch.load(state_dir / "rng.pt", weights_only=True))  # a checkpoint is data, never code
    optim_path = state_dir / "optimizer.pt"
    optimizer = torch.load(optim_path, weights_only=True) if optim_path.is_file() else None
    return info, loader, optimizer
