"""What a long run shows: JSONL metrics, TensorBoard when installed, a loss-curve PNG,
progress (a bar on a terminal, plain periodic lines in a log file), loss-spike detection
(report §2.4.1 watched for spikes early in training), and a stop on Ctrl-C or SIGTERM at
the next step boundary.

Only rank 0 writes; other ranks get a Monitor that does nothing.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from collections import deque
from pathlib import Path

from tqdm import tqdm

from slm.runs import LOSS_PLOT, METRICS_FILE, read_log, writing
from slm.train.config import SpikeConfig


class SpikeDetector:
    """A loss above `factor` x the mean of the last `window` finite losses is a spike.
    Spikes do not enter the window, so one spike cannot hide the next."""

    def __init__(self, config: SpikeConfig):
        self.config = config
        self.recent: deque[float] = deque(maxlen=config.window)

    def __call__(self, loss: float) -> bool:
        full = len(self.recent) == self.recent.maxlen
        spike = full and loss > self.config.factor * (sum(self.recent) / len(self.recent))
        if not spike:
            self.recent.append(loss)
        return spike

    def state_dict(self) -> list[float]:
        return list(self.recent)

    def load_state_dict(self, recent: list[float]) -> None:
        self.recent.clear()
        self.recent.extend(recent)


class Progress:
    """A tqdm bar when stderr is a terminal; otherwise (a log file, a batch job) one plain line
    every `every` steps, so logs hold progress rather than thousands of bar redraws."""

    def __init__(self, *, total: int, initial: int, desc: str, every: int, enabled: bool):
        self.total, self.step, self.desc, self.every, self.enabled = total, initial, desc, max(every, 1), enabled
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step") if enabled and sys.stderr.isatty() else None
        self.start, self.start_step = time.perf_counter(), initial

    def update(self, record: dict) -> None:
        self.step += 1
        if self.bar is not None:
            self.bar.update()
            self.bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}")
        elif self.enabled and (self.step % self.every == 0 or self.step == self.total):
            rate = (self.step - self.start_step) / max(time.perf_counter() - self.start, 1e-9)
            print(f"{self.desc} step {self.step}/{self.total} loss {record['loss']:.4f} lr {record['lr']:.2e} "
                  f"{record['tok_per_s']:,.0f} tok/s {rate:.2f} steps/s", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class StopSignal:
    """`with StopSignal() as stop:` Ctrl-C (SIGINT) or SIGTERM only sets `stop.signal`, so the loop
    ends at the next step with a complete checkpoint; a second Ctrl-C interrupts at once. Outside
    the main thread (where Python cannot take signals) it does nothing."""

    def __init__(self):
        self.signal: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        print(f"\n{self.signal}: stopping after this step, with a checkpoint (again Ctrl-C to stop now)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


class Monitor:
    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool):
        self.enabled = enabled
        self.path = run_dir / METRICS_FILE
        self.plot_path = run_dir / LOSS_PLOT
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # optional: tensorboard

                self._tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:  # tensorboard is optional
                pass

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        with writing(self.path, "the log"), open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None and "step" in record:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step" and math.isfinite(value):
                    self._tb.add_scalar(key, value, record["step"])

    def truncate_after(self, step: int) -> None:
        """On resume, drop records of steps the resumed run will do again (they were lost with the crash)."""
        if not (self.enabled and self.path.is_file()):
            return
        def before(record: dict) -> bool:  # at `step`: its evaluation and the checkpoint's judgment stay
            return record.get("step", -1) < step or (record.get("kind") in ("eval", "select") and record.get("step") == step)

        kept = [record for record in read_log(self.path.parent) if before(record)]  # a torn last line goes too
        self.path.write_text("".join(json.dumps(record) + "\n" for record in kept), encoding="utf-8")

    def plot(self) -> None:
        """loss.png: training loss per step (and held-out loss where measured), learning rate below."""
        if not (self.enabled and self.path.is_file()):
            return
        import matplotlib  # heavy: only when a plot is drawn

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        records = read_log(self.path.parent)
        train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train" and math.isfinite(r.get("loss", math.nan))]
        held = [(r["step"], r["eval_loss"]) for r in records if r.get("kind") == "eval"]
        lrs = [(r["step"], r["lr"]) for r in records if r.get("kind") == "train"]
        if not train:
            return
        fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=[3, 1])
        ax.plot(*zip(*train), label="train loss", linewidth=1)
        if held:
            ax.plot(*zip(*held), "o-", label="held-out loss")
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.set_title(f"{self.path.parent.name}: loss")
        ax.legend()
        ax.grid(alpha=0.3)
        ax_lr.plot(*zip(*lrs), color="tab:green")
        ax_lr.set_xlabel("optimizer step")
        ax_lr.set_ylabel("learning rate")
        ax_lr.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.plot_path, dpi=100)
        plt.close(fig)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
