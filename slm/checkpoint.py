"""The model folder's files: `model.safetensors` + `config.json`, and atomic writes.

A folder is self-contained: everything needed to rebuild the model is in it. Files
are written under a temporary name and renamed into place, so a crash mid-save
never leaves a half-written file where a reader would find it. This module knows
the files, not the model: `SLM.save_pretrained` / `SLM.from_pretrained` (slm.model)
turn a model into tensors and back, checking every tensor against the config.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from slm.config import ModelConfig

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


class CheckpointError(ValueError):
    """A checkpoint does not match its config, or is missing a file."""


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)`, flush it to disk, then rename it to `path` (atomic on POSIX)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")  # keeps the suffix writers look at
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_model_folder(directory: str | Path, tensors: dict[str, torch.Tensor], config: ModelConfig) -> None:
    """model.safetensors and config.json in `directory`, each written atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(tensors, p, metadata={"format": "pt"}))
    atomic_write(directory / CONFIG_NAME, config.save)


def read_model_folder(directory: str | Path, device=None) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """(config, tensors) of a folder written by `write_model_folder`."""
    directory = Path(directory)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            raise CheckpointError(f"{directory} is not a model folder: {name} is missing")
    config = ModelConfig.load(directory / CONFIG_NAME)
    return config, read_safetensors(directory / WEIGHTS_NAME, device)


def read_safetensors(path: Path, device=None) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a truncated or corrupt file is a CheckpointError naming it."""
    try:
        return load_file(path, device=str(device) if device is not None else "cpu")
    except Exception as e:  # safetensors raises its own SafetensorError, OSError or ValueError by case
        raise CheckpointError(f"{path}: not a readable safetensors file, truncated or corrupt ({e})") from None
