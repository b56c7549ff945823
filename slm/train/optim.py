"""AdamW with weight decay on matrices only, and the warmup-then-decay learning rate (report §2.4.1)."""

from __future__ import annotations

import math

import torch
from torch import nn

from slm.train.config import OptimConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Matrices (embeddings, projections, the head) are decayed; vectors (RMSNorm weights) are not:
    decaying a norm's gain toward 0 fights the normalisation it exists for."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(groups: list[dict], config: OptimConfig, device: torch.device | None = None) -> torch.optim.AdamW:
    fused = config.fused if config.fused is not None else device is not None and device.type == "cuda"
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps, fused=fused)


def lr_at(step: int, config: OptimConfig, warmup: int, total_steps: int) -> float:
    """Linear warmup from 0 over `warmup` steps, then cosine (or linear) decay to min_lr at the last step."""
    if step < warmup:
        return config.lr * (step + 1) / warmup
    if config.schedule == "constant":
        return config.lr
    progress = (step - warmup) / max(1, total_steps - 1 - warmup)
    progress = min(1.0, progress)
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if config.schedule == "cosine" else 1 - progress
    return config.min_lr + (config.lr - config.min_lr) * shape


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
