"""Saving and loading model folders: `model.safetensors` + `config.json`.

A folder is self-contained (DESIGN.md, principle 4): everything needed to
rebuild the model is in it. Files are written under a temporary name and
renamed into place, so a crash mid-save never leaves a half-written file where
a reader would find it. Loading checks every tensor's name and shape against the
config before anything is assigned.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from slm.config import ModelConfig
from slm.model import SLM

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


def model_tensors(model: SLM) -> dict[str, torch.Tensor]:
    """The model's tensors as saved: contiguous, on CPU, a tied LM head stored once (as the embedding)."""
    state = model.state_dict()
    if model.config.tie_embeddings:
        state.pop("lm_head.weight")
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def save_pretrained(model: SLM, directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = model_tensors(model)
    atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(tensors, p, metadata={"format": "pt"}))
    atomic_write(directory / CONFIG_NAME, model.config.save)


def check_tensors(model: SLM, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError listing every missing, unexpected or mis-shaped tensor."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        expected.pop("lm_head.weight")
    problems = []
    for name, shape in expected.items():
        if name not in tensors:
            problems.append(f"missing tensor {name!r} (config expects shape {shape})")
        elif tuple(tensors[name].shape) != shape:
            problems.append(f"tensor {name!r} has shape {tuple(tensors[name].shape)}, config expects {shape}")
    problems += [f"unexpected tensor {name!r} with shape {tuple(t.shape)}" for name, t in tensors.items() if name not in expected]
    if problems:
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise CheckpointError(f"{source} does not match its config:\n  " + "\n  ".join(problems[:10]) + more)


def build_model(config: ModelConfig, tensors: dict[str, torch.Tensor], source: str, device=None, dtype=None) -> SLM:
    """An SLM with the given tensors as its weights; nothing is allocated twice or randomly initialised."""
    with torch.device("meta"):
        model = SLM(config)
    check_tensors(model, tensors, source)
    model.load_state_dict(tensors, strict=not config.tie_embeddings, assign=True)
    if config.tie_embeddings:
        model.lm_head.weight = model.embed.weight
    model.to(device=device, dtype=dtype)
    return model.eval()  # dropout off; a trainer calls .train()


def load_pretrained(directory: str | Path, device=None, dtype=None) -> SLM:
    """Load a folder written by `save_pretrained`, in eval mode, in the saved dtype unless `dtype` is given."""
    directory = Path(directory)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            raise CheckpointError(f"{directory} is not a model folder: {name} is missing")
    config = ModelConfig.load(directory / CONFIG_NAME)
    tensors = load_file(directory / WEIGHTS_NAME, device=str(device) if device is not None else "cpu")
    return build_model(config, tensors, str(directory / WEIGHTS_NAME), device=device, dtype=dtype)


def load_model_folder(directory: str | Path, device=None, dtype=None, **overrides) -> SLM:
    """Ours (config.json with d_model) or a transformers Llama/Mistral/Arcee/Gemma/Qwen2 folder
    (config.json with model_type), as an SLM; `overrides` change config fields (e.g. dropout)."""
    import json

    directory = Path(directory)
    if "model_type" in json.loads((directory / CONFIG_NAME).read_text(encoding="utf-8")):
        from slm import hf

        return hf.load(directory, device=device, dtype=dtype, **overrides)
    model = load_pretrained(directory, device=device, dtype=dtype)
    if overrides:  # the same weights under a changed config (dropout, attention backend, ...)
        changed = SLM(model.config.replace(**overrides)).to(device=device, dtype=next(model.parameters()).dtype)
        changed.load_state_dict(model.state_dict())
        model = changed
    return model
