"""The training loop (report §2.4.1), for one process, torchrun/DDP, or DeepSpeed ZeRO-2, shared by
pretraining and instruction tuning; and pretraining's parts of it.

`Trainer` runs the loop from a LoopConfig: engine, steps, held-out loss, spikes, checkpoints.
What a run trains on is its hooks: `setup` (the loader, a slm.data.loader.Loader, and the
model), `model_inputs`, `eval_batches`, `eval_every` and the checkpoint hooks. Trainer's own
hooks are pretraining's, read from a TrainConfig; slm.finetune.trainer.FinetuneTrainer
overrides them for instruction tuning. There is one held-out loss loop (`evaluate`) for both.

The model knows nothing of this: DDP or DeepSpeed's engine, autocast, activation
checkpointing and torch.compile wrap it here. Each optimizer step consumes
`accumulation` micro-batches per process from the loader, so a step sees
micro x processes x accumulation rows (the report: 8 x 4 x 32 = 1024).

Everything a step depends on is in the checkpoint (weights, optimizer, RNG
states, loader position, spike window), so a resumed run repeats the losses of
an uninterrupted one exactly on one process in float32.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Iterable

import torch
import torch.distributed as dist
from torch.utils.checkpoint import checkpoint
import yaml

from slm.chat import IGNORE
from slm.checkpoint import CheckpointError, atomic_write
from slm.config import ConfigError, ModelConfig
from slm.data.loader import Loader, MixtureConfig, PackedLoader
from slm.data.shards import TOKENS_FILE
from slm.hf import load_model_folder
from slm.model import SLM
from slm import runs
from slm.train import state as ckpt
from slm.train.config import LoopConfig, TrainConfig
from slm.train.monitor import Monitor, Progress, SpikeDetector, StopSignal
from slm.train.optim import build_optimizer, lr_at, param_groups, set_lr


class Run:
    """Process-group facts: rank, world size, device (torchrun sets the environment)."""

    def __init__(self):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Each value summed over the ranks (in float64); every rank must call it."""
        if self.world_size == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def mean(self, value: float) -> float:
        return self.sum([value])[0] / self.world_size

    def any(self, flag: bool) -> bool:
        """Whether `flag` is true on any rank; every rank must call it."""
        return flag if self.world_size == 1 else self.sum([float(flag)])[0] > 0


def build_model(config: TrainConfig, vocab_size: int) -> SLM:
    """A fresh model from a preset or config file, or one to continue pretraining from
    (our checkpoint folder, or a transformers Llama/Mistral folder)."""
    if config.init_from:
        source = Path(config.init_from)
        if not (source / "config.json").is_file():
            raise ConfigError(f"TrainConfig.init_from: {source} has no config.json")
        model = load_model_folder(source, **config.model_overrides).float()
    else:  # a new model takes its vocabulary from the tokenizer the data was prepared with
        model = SLM(ModelConfig.resolve(config.model).replace(**{"vocab_size": vocab_size, **config.model_overrides}))
    if model.config.vocab_size != vocab_size:
        raise ConfigError(f"the model's vocab_size={model.config.vocab_size} does not match the data's tokenizer "
                          f"({vocab_size}); set model_overrides.vocab_size or prepare the data with its tokenizer")
    if config.seq_len > model.config.max_seq_len:
        raise ConfigError(f"TrainConfig.seq_len={config.seq_len} exceeds the model's max_seq_len={model.config.max_seq_len}")
    return model


def _data_tokens(data: Path) -> dict:
    """{"vocab_size", "bos_id", "eos_id", "pad_id"} of the tokenizer the data was prepared with, read
    from the file prepare writes, not through the tokenizer: slm.train imports without its stack."""
    path = data / TOKENS_FILE
    if not path.is_file():
        raise ConfigError(f"TrainConfig.data: {data} is not a prepared data folder (no {TOKENS_FILE}; "
                          "python -m slm.data.prepare writes it)")
    return json.loads(path.read_text(encoding="utf-8"))


class Trainer:
    """The loop, checkpoints and logging, from LoopConfig fields only; the hooks below the
    constructor are pretraining's (they read TrainConfig fields). Subclasses (instruction tuning)
    override them: what is loaded, what a micro-batch passes to the model, what is held out,
    what a checkpoint holds and how it is judged."""

    stage = "pretrain"  # what progress lines call the run
    loader: Loader
    model: SLM
    tokenizer_dir: Path

    def __init__(self, config: LoopConfig, resume: bool = False, overwrite: bool = False):
        self.config = config
        self.run = Run()
        self.out = Path(config.out)
        self.checkpoints = runs.checkpoints_dir(self.out)
        self.accumulation = config.accumulation(self.run.world_size)
        self._claim(resume, overwrite)
        torch.manual_seed(config.seed)
        self.setup()
        self.model.to(self.run.device)
        self.warmup = config.warmup()
        self.spikes = SpikeDetector(config.spike)
        self.step = 0
        self.rollbacks = 0
        self._setup_engine()
        latest = runs.latest_checkpoint(self.checkpoints) if resume else None
        if resume and latest is None and self.run.main:
            print(f"--resume: no complete checkpoint in {self.checkpoints}; starting from step 0")
        if latest is not None:
            self._restore(latest)
        self.monitor = Monitor(self.out, self.run.main, config.tensorboard)
        if self.run.main:
            self.out.mkdir(parents=True, exist_ok=True)
            text = yaml.safe_dump(config.to_dict(), sort_keys=False)
            atomic_write(self.out / runs.CONFIG_FILE, lambda p: p.write_text(text, encoding="utf-8"))
            self.monitor.truncate_after(self.step)
            if latest is not None:
                self.resumed(latest)

    def _claim(self, resume: bool, overwrite: bool) -> None:
        """Before anything is written: the folder holds no other run (or --resume continues it, or
        --overwrite moves it aside), and a resumed run computes what the saved config says."""
        aside = runs.claim(self.out, resume=resume, overwrite=overwrite, move=self.run.main)
        self.run.barrier()
        changes = runs.check_resume(self.out, self.config.to_dict()) if resume else []
        if self.run.main and aside:
            print(f"--overwrite: moved the run that was in {self.out} aside to {aside}")
        if self.run.main and changes:
            print(f"--resume with changed settings: {'; '.join(changes)}")

    def setup(self) -> None:
        """The loader, the model and the tokenizer folder that goes into checkpoints."""
        config: TrainConfig = self.config
        data = Path(config.data)
        tokens = _data_tokens(data)
        self.tokenizer_dir = data / runs.TOKENIZER_DIR
        self.loader = self._packed_loader(config.mixture, seed=config.seed)
        self.model = build_model(config, tokens["vocab_size"])
        self.model.config = self.model.config.replace(bos_token_id=tokens["bos_id"], eos_token_id=tokens["eos_id"],
                                                      pad_token_id=tokens["pad_id"])

    def param_groups(self) -> list[dict]:
        return param_groups(self.model, self.config.optim.weight_decay)

    def _packed_loader(self, mixture: MixtureConfig, seed: int) -> PackedLoader:
        config: TrainConfig = self.config
        return PackedLoader(config.data, seq_len=config.seq_len, micro_batch=config.micro_batch, rank=self.run.rank,
                            world_size=self.run.world_size, seed=seed, mixture=mixture)

    def model_inputs(self, batch: dict) -> dict:
        """Keyword arguments of the model for one micro-batch (already on the device)."""
        config: TrainConfig = self.config
        return {"labels": batch["labels"], "doc_ids": batch["doc_ids"] if config.doc_masking else None}

    def eval_batches(self) -> Iterable[dict] | None:
        """This rank's held-out micro-batches, or None for no held-out loss: the eval mixture's first
        `eval.batches` (the same rows every time, in a loader of their own)."""
        config: TrainConfig = self.config
        mixture = config.eval.mixture
        if not (mixture.weights or mixture.epochs or mixture.curriculum):
            return None
        loader = self._packed_loader(mixture, seed=config.seed + 1)
        shared = set(loader.sources) & set(self.loader.sources)
        if shared:
            raise ConfigError(f"TrainConfig.eval.mixture uses {sorted(shared)}, which training also reads: "
                              "held-out loss needs held-out sources")
        return itertools.islice(loader, config.eval.batches)

    def eval_every(self) -> int:
        """Steps between held-out losses; 0: only before and after training."""
        config: TrainConfig = self.config
        return config.eval.every

    def save_model(self, directory: Path) -> None:
        self.model.save_pretrained(directory)

    def restore_model(self, directory: Path) -> None:
        restored = SLM.from_pretrained(directory, device=self.run.device, dtype=torch.float32)
        self.model.load_state_dict(restored.state_dict())

    def judge(self, checkpoint: Path) -> dict | None:
        """Rank 0, before a written checkpoint is committed: a record of how good it is (instruction
        tuning: its answers), saved inside it, or None."""
        return None

    def after_save(self, final: Path) -> None:
        """Rank 0, after a checkpoint is committed (instruction tuning points `best` at it)."""

    def resumed(self, checkpoint: Path) -> None:
        """Rank 0, once the run has resumed from `checkpoint` and its log is cut back to it."""

    def protected_checkpoints(self) -> frozenset[str]:
        """Checkpoint folders retention must keep (instruction tuning keeps its best)."""
        return frozenset()

    # ------------------------------------------------------------ engine: plain, DDP or DeepSpeed

    def _setup_engine(self) -> None:
        config, model = self.config, self.model
        bf16 = config.precision == "bf16" or (config.precision == "auto" and self.run.device.type == "cuda")
        if config.activation_checkpointing:
            _checkpoint_blocks(model)
        self.optimizer = build_optimizer(self.param_groups(), config.optim, self.run.device)
        self.deepspeed = None
        forward_model = torch.compile(model) if config.compile else model
        if config.deepspeed:
            import deepspeed  # optional extra: slm[deepspeed]

            ds_config = json.loads(Path(config.deepspeed).read_text())
            # Batch, accumulation, clipping and precision come from our config, so the two cannot disagree.
            ds_config.update(train_micro_batch_size_per_gpu=config.micro_batch,
                             gradient_accumulation_steps=self.accumulation, train_batch_size=config.global_batch,
                             gradient_clipping=config.optim.grad_clip, bf16={"enabled": bf16})
            self.deepspeed, self.optimizer, _, _ = deepspeed.initialize(model=forward_model, optimizer=self.optimizer,
                                                                        config=ds_config)
            self.forward = self.deepspeed
            bf16 = False  # DeepSpeed keeps bf16 weights with float32 master copies itself: no autocast
        elif self.run.world_size > 1:
            self.forward = torch.nn.parallel.DistributedDataParallel(
                forward_model, device_ids=[self.run.device.index] if self.run.device.type == "cuda" else None)
        else:
            self.forward = forward_model
        self.autocast = (lambda: torch.autocast(self.run.device.type, dtype=torch.bfloat16)) if bf16 else nullcontext

    # ------------------------------------------------------------ the loop

    def _on_device(self, batch: dict) -> dict:
        return {k: v.to(self.run.device, non_blocking=True) for k, v in batch.items()}

    def _micro_loss(self, batch: dict, sync: bool) -> torch.Tensor:
        batch = self._on_device(batch)
        no_sync = self.forward.no_sync if isinstance(self.forward, torch.nn.parallel.DistributedDataParallel) and not sync else nullcontext
        with no_sync():
            with self.autocast():
                loss = self.forward(batch["input_ids"], **self.model_inputs(batch)).loss
            if self.deepspeed is not None:
                self.deepspeed.backward(loss)  # DeepSpeed divides by the accumulation steps itself
            else:
                (loss / self.accumulation).backward()
        return loss.detach()

    def train_step(self) -> dict:
        start = time.perf_counter()
        lr = lr_at(self.step, self.config.optim, self.warmup, self.config.steps)
        set_lr(self.optimizer, lr)
        losses = []
        for i in range(self.accumulation):
            losses.append(self._micro_loss(next(self.loader), sync=i == self.accumulation - 1))
            if self.deepspeed is not None:
                self.deepspeed.step()  # applies the update at the accumulation boundary only
        loss = self.run.mean(torch.stack(losses).mean().item())
        if self.deepspeed is not None:
            grad_norm = float(self.deepspeed.get_global_grad_norm() or 0.0)
            skipped = not (math.isfinite(loss) and self.deepspeed.was_step_applied())
        else:
            grad_norm = self._clip()
            skipped = not (math.isfinite(loss) and math.isfinite(grad_norm))
            if skipped:  # a non-finite loss or gradient: no update from this batch
                self.optimizer.zero_grad(set_to_none=True)
            else:
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - start
        tokens = self.config.global_batch * self.config.seq_len
        record = {"kind": "train", "step": self.step, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                  "tokens": (self.step + 1) * tokens, "tok_per_s": tokens / elapsed, "skipped": skipped}
        if self.run.device.type == "cuda":
            record["mem_gb"] = torch.cuda.max_memory_allocated() / 1e9
            peak = _peak_flops(self.run.device)
            if peak:
                record["mfu"] = self.model.flops_per_token(self.config.seq_len) * tokens / elapsed / (peak * self.run.world_size)
        self.step += 1
        return record

    def _clip(self) -> float:
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = self.config.optim.grad_clip if self.config.optim.grad_clip > 0 else float("inf")
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """The held-out loss over `eval_batches` on every rank, None without them. Each scored token
        weighs the same (the sum of batch loss x scored tokens over the sum of scored tokens), so
        short batches and ranks with fewer rows count for what they hold, and pretraining and
        fine-tuning losses mean the same. Packed pretraining batches all score B x (T - 1) tokens:
        the mean of the batch means."""
        batches = self.eval_batches()
        if batches is None:
            return None
        self.model.eval()
        total = count = 0.0
        for batch in batches:
            batch = self._on_device(batch)
            scored = (batch["labels"][:, 1:] != IGNORE).sum().item()  # what the model's mean loss divides by
            with self.autocast():
                total += self.model(batch["input_ids"], **self.model_inputs(batch)).loss.item() * scored
            count += scored
        self.model.train()
        total, count = self.run.sum([total, count])  # every rank, even one without held-out rows
        return total / count if count else None

    def fit(self) -> dict:
        config, eval_every = self.config, self.eval_every()
        self.model.train()
        if self.step == 0:
            self._log_eval()
        bar = Progress(total=config.steps, initial=self.step, desc=self.stage, every=config.log_every,
                       enabled=self.run.main)
        result = {"stopped": None}
        with StopSignal() as stop:
            while self.step < config.steps:
                record = self.train_step()
                spike = record["skipped"] is False and self.spikes(record["loss"])
                record["spike"] = spike
                if self.step % config.log_every == 0 or self.step == config.steps or spike or record["skipped"]:
                    self.monitor.log(record)
                bar.update(record)
                if spike and config.spike.action == "stop":
                    result["stopped"] = f"loss spike at step {record['step']}: {record['loss']:.3f}"
                    break
                if spike and config.spike.action == "rollback" and self._rollback():
                    continue
                if eval_every and self.step % eval_every == 0:
                    self._log_eval()
                saved = self.step % config.checkpoint.every == 0 or self.step == config.steps
                if saved:
                    self.save()
                if self.run.any(stop.signal is not None):  # every rank stops at the same step
                    if not saved:
                        self.save()
                    result["stopped"] = (f"{stop.signal or 'a signal'} at step {self.step}: checkpoint "
                                         f"{runs.step_dir(self.checkpoints, self.step).name} saved; continue with --resume")
                    break
        bar.close()
        if not eval_every or self.step % eval_every:  # unless it was just evaluated
            self._log_eval()
        self.monitor.plot()
        self.monitor.close()
        result.update(step=self.step, out=str(self.out))
        return result

    def _log_eval(self) -> None:
        loss = self.evaluate()
        if loss is not None:
            self.monitor.log({"kind": "eval", "step": self.step, "eval_loss": loss, "eval_ppl": math.exp(min(loss, 50))})

    def _rollback(self) -> bool:
        """Reload the last checkpoint but keep the loader moving on, so the batches that caused the
        spike are skipped rather than repeated."""
        latest = runs.latest_checkpoint(self.checkpoints)
        if latest is None or self.rollbacks >= self.config.spike.max_rollbacks:
            return False
        rollbacks, loader_state = self.rollbacks + 1, self.loader.state_dict()
        self._restore(latest)
        self.rollbacks = rollbacks  # the checkpoint's own count would let a persistent spike loop forever
        self.loader.load_state_dict(loader_state)
        self.monitor.log({"kind": "rollback", "step": self.step, "to": latest.name})
        return True

    # ------------------------------------------------------------ checkpoints

    def save(self) -> Path | None:
        """Write a checkpoint atomically (every rank takes part under DeepSpeed; rank 0 otherwise)."""
        run = self.run
        tmp = runs.begin(self.checkpoints, self.step) if run.main else None
        run.barrier()
        tmp = tmp or runs.pending(self.checkpoints, self.step)
        if self.deepspeed is not None:
            self.deepspeed.save_checkpoint(str(tmp / runs.TRAINER_STATE / "deepspeed"), tag="state")
        final = None
        if run.main:
            with runs.writing(tmp, f"the checkpoint of step {self.step}"):
                self.save_model(tmp)
                if self.tokenizer_dir.is_dir():
                    shutil.copytree(self.tokenizer_dir, tmp / runs.TOKENIZER_DIR)
                ckpt.save_trainer_state(tmp, self.step, None if self.deepspeed else self.optimizer.state_dict(),
                                        self.loader.state_dict(), {"spike_window": self.spikes.state_dict(),
                                                                  "rollbacks": self.rollbacks})
                judgment = self.judge(tmp)
                if judgment is not None:
                    runs.write_selection(tmp, judgment)
            final = runs.commit(tmp, self.checkpoints, self.step, self.config.checkpoint.keep_last,
                                self.config.checkpoint.keep_every, self.protected_checkpoints())
            self.after_save(final)
        run.barrier()
        return final

    def _restore(self, directory: Path) -> None:
        info, loader_state, optimizer_state = ckpt.load_trainer_state(directory)
        try:
            if self.deepspeed is not None:
                self.deepspeed.load_checkpoint(str(directory / runs.TRAINER_STATE / "deepspeed"), tag="state")
            else:
                self.restore_model(directory)
                self.optimizer.load_state_dict(optimizer_state)
            self.loader.load_state_dict(loader_state)
        except (RuntimeError, ValueError, KeyError) as e:  # shapes, parameter groups, loader positions
            first = str(e).strip().splitlines()[0]
            raise CheckpointError(f"{directory}: cannot resume this run from it: {first}. The model, its "
                                  "vocabulary (the data's tokenizer) or the data changed since it was saved") from None
        self.spikes.load_state_dict(info.get("spike_window", []))
        self.rollbacks = info.get("rollbacks", 0)
        self.step = info["step"]


def _checkpoint_blocks(model: SLM) -> None:
    """Activation checkpointing: recompute each block's activations in the backward pass."""
    for block in model.layers:
        forward = block.forward
        block.forward = lambda *args, _f=forward: checkpoint(_f, *args, use_reentrant=False)


def _peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of known GPUs, for MFU (bench/ measures the real matmul peak)."""
    name = torch.cuda.get_device_name(device)
    for key, flops in (("H200", 989e12), ("H100", 989e12), ("A100", 312e12), ("L40S", 362e12), ("A10", 125e12)):
        if key in name:
            return flops
    return None


def run_to_end(trainer: Trainer) -> dict:
    """Fit, then shut the process group down."""
    result = trainer.fit()
    # Only after success, and together: a rank that tears gloo down while another still talks to it
    # aborts; after an exception, a collective shutdown could hang instead (torchrun ends the ranks).
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return result


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Run (or resume) pretraining; a notebook can call this as train.py does. A folder that holds
    another run is refused unless `resume` continues it or `overwrite` moves it aside."""
    return run_to_end(Trainer(config, resume=resume, overwrite=overwrite))
