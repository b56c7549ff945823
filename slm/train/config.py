"""Training run configurations, typed trees loaded from YAML.

`LoopConfig` holds what the shared training loop reads (batch, length, engine, optimizer,
checkpoints, spikes, logging); each trainer's config is LoopConfig plus its own fields, nothing
inherited that it would have to switch off: `TrainConfig` here (pretraining, report §2.4.1)
and `FinetuneConfig` in slm.finetune.trainer (instruction tuning, report §2.4.2).

`python train.py --config configs/pretrain/ncvc-slm-1b.yaml --optim.lr 5e-4` overrides any
field; unknown keys are errors; the resolved config is saved into the run folder.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from slm.config import Config, ConfigError
from slm.data.loader import MixtureConfig


@dataclasses.dataclass
class OptimConfig(Config):
    """AdamW and its schedule. Report: β (0.9, 0.95), weight decay 0.1, 750 warmup steps to 1e-3,
    cosine to 0. Clinical continued pretraining warms up over 1% of the steps instead."""

    lr: float = 1e-3
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1  # on matrices only: norms and other vectors are not decayed
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    warmup_steps: int | None = 750
    warmup_fraction: float | None = None  # instead of warmup_steps: a fraction of all steps (e.g. 0.01)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr: float = 0.0
    # torch's fused AdamW kernel (one launch for all parameters); None: on CUDA. Same update.
    fused: bool | None = None

    def validate(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"OptimConfig.lr must be positive, got {self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"OptimConfig.betas must be two numbers in [0, 1), got {self.betas}")
        if (self.warmup_steps is None) == (self.warmup_fraction is None):
            raise ConfigError("OptimConfig: give exactly one of warmup_steps and warmup_fraction")
        if self.warmup_fraction is not None and not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"OptimConfig.warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ConfigError(f"OptimConfig.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"OptimConfig.min_lr must be in [0, lr], got {self.min_lr}")


@dataclasses.dataclass
class CheckpointConfig(Config):
    every: int = 3200  # report §2.4.1
    keep_last: int = 3  # older step folders are deleted; 0 keeps all
    keep_every: int = 0  # also keep every N-th step for good (0: none), e.g. for checkpoint sweeps

    def validate(self) -> None:
        if self.every <= 0:
            raise ConfigError(f"CheckpointConfig.every must be positive (steps between checkpoints), got {self.every}")
        if self.keep_last < 0 or self.keep_every < 0:
            raise ConfigError("CheckpointConfig.keep_last and keep_every must be 0 or more")


@dataclasses.dataclass
class SpikeConfig(Config):
    """Loss spikes (the report watched for them early in training): a loss above `factor` x the
    running mean of the last `window` steps is a spike. `log` only records it; `stop` ends the
    run; `rollback` reloads the last checkpoint and skips the batches that caused it."""

    action: Literal["log", "stop", "rollback"] = "log"
    factor: float = 2.0
    window: int = 50
    max_rollbacks: int = 3


@dataclasses.dataclass
class EvalConfig(Config):
    """Held-out perplexity on prepared sources kept out of the training mixture."""

    every: int = 0  # steps between evaluations; 0: only before and after training
    batches: int = 8
    mixture: MixtureConfig = dataclasses.field(default_factory=MixtureConfig)  # empty: no evaluation


@dataclasses.dataclass
class LoopConfig(Config):
    """What the shared training loop (slm.train.trainer.Trainer) reads: the run folder, batch
    shape, length, engine, optimizer, checkpoints and logging. Each trainer's config adds its own
    fields (TrainConfig: pretraining data and model; slm.finetune.trainer.FinetuneConfig: chat
    data, LoRA, answer scoring) and gives `out` its default."""

    out: str  # the run folder (config.yaml, metrics.jsonl, checkpoints/)
    init_from: str | None = None  # a checkpoint folder, ours or a transformers one, to start from
    seq_len: int = 2048
    micro_batch: int = 8  # rows per process per forward pass
    global_batch: int = 1024  # rows per optimizer step = micro_batch x processes x accumulation
    steps: int = 24000
    seed: int = 0
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on CUDA, float32 on CPU
    compile: bool = False
    activation_checkpointing: bool = False
    deepspeed: str | None = None  # a DeepSpeed JSON config (ZeRO-2 in configs/deepspeed/zero2.json)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    spike: SpikeConfig = dataclasses.field(default_factory=SpikeConfig)
    log_every: int = 10
    tensorboard: bool = True  # when tensorboard is installed

    def validate(self) -> None:
        name = type(self).__name__  # errors name the config the user wrote (TrainConfig, FinetuneConfig)
        for key in ("seq_len", "micro_batch", "global_batch", "steps", "log_every"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{name}.{key} must be positive, got {getattr(self, key)}")
        if self.global_batch % self.micro_batch:
            raise ConfigError(f"{name}.micro_batch={self.micro_batch} must divide global_batch={self.global_batch}")

    def accumulation(self, world_size: int) -> int:
        """Micro-batches per optimizer step on each process, so that micro x world x accumulation = global."""
        per_step = self.micro_batch * world_size
        if self.global_batch % per_step:
            raise ConfigError(
                f"{type(self).__name__}.global_batch={self.global_batch} is not a multiple of micro_batch x processes "
                f"= {self.micro_batch} x {world_size}"
            )
        return self.global_batch // per_step

    def warmup(self) -> int:
        return self.optim.warmup_steps if self.optim.warmup_steps is not None else round(self.optim.warmup_fraction * self.steps)


@dataclasses.dataclass
class TrainConfig(LoopConfig):
    """Pretraining and continued pretraining: the loop's settings plus packed prepared data, the
    model to build (or `init_from` to continue) and held-out loss on an eval mixture."""

    out: str = "runs/pretrain"
    data: str = ""  # a folder written by `python -m slm.data.prepare`
    mixture: MixtureConfig = dataclasses.field(default_factory=MixtureConfig)
    model: str = "tiny"  # a preset name or a model config file; unused with init_from
    model_overrides: dict = dataclasses.field(default_factory=dict)  # ModelConfig fields, e.g. {resid_dropout: 0.1}
    doc_masking: bool = False  # our opt-in: attention stays within each packed document
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("TrainConfig.data must name a prepared data folder (python -m slm.data.prepare)")
        super().validate()
