"""Every checkpoint of a run on chosen benchmarks: score against step and tokens seen (report
Appendix A.4), as `sweep.csv` and `sweep.png`.

Each checkpoint's results go to `<out>/<checkpoint>/<benchmark>/` (the usual
predictions.jsonl, metrics.json, table.md, moved into place whole by
slm.eval.harness.write_results, then headline.json, written last as the mark of a finished
evaluation); a checkpoint already evaluated is read back instead of run again, so an
interrupted sweep resumes and a new checkpoint costs only itself. `force` evaluates again,
the old results replaced only once the new ones are complete.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

from tokenizer.progress import progress as progress_bar

from slm import runs
from slm.checkpoint import atomic_write
from slm.eval.harness import HEADLINE_FILE
from slm.lm import LocalLM

Evaluator = Callable[[LocalLM, Path], dict[str, float]]  # (model, output folder) -> headline numbers
HEADLINE = HEADLINE_FILE
FIELDS = ("checkpoint", "step", "tokens", "benchmark", "metric", "value")


def tokens_per_step(run_dir: Path) -> int | None:
    """global_batch x seq_len from the run's config.yaml (rows of instruction tuning count as full rows)."""
    config = runs.run_config(run_dir)
    if not config or not config.get("global_batch") or not config.get("seq_len"):
        return None
    return int(config["global_batch"]) * int(config["seq_len"])


def cached(folder: Path) -> dict[str, float] | None:
    """The headline numbers of a finished evaluation in `folder`, or None (not there, or unreadable)."""
    try:
        values = json.loads((folder / HEADLINE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return values if isinstance(values, dict) else None


def sweep(run_dir: str | Path, evaluators: dict[str, Evaluator], load: Callable[[Path], LocalLM],
          out: str | Path | None = None, force: bool = False, progress: bool = True) -> list[dict]:
    """Rows of (checkpoint, step, tokens, benchmark, metric, value) for every complete checkpoint."""
    run_dir = Path(run_dir)
    checkpoints = runs.complete_checkpoints(runs.checkpoints_dir(run_dir))
    if not checkpoints:
        raise FileNotFoundError(f"{runs.checkpoints_dir(run_dir)} holds no complete checkpoint")
    out = Path(out) if out else run_dir / runs.EVAL_DIR
    per_step = tokens_per_step(run_dir)
    rows = []
    for checkpoint in progress_bar(checkpoints, desc="sweep", unit="checkpoint", enabled=progress):
        step = runs.trainer_info(checkpoint)["step"]
        lm = None
        for name, evaluate in evaluators.items():
            folder = runs.eval_dir(out, checkpoint, name)
            values = None if force else cached(folder)
            if values is None:
                lm = lm or load(checkpoint)
                values = evaluate(lm, folder)
                folder.mkdir(parents=True, exist_ok=True)
                atomic_write(folder / HEADLINE, lambda p, v=values: p.write_text(json.dumps(v, indent=2) + "\n"))
            rows += [{"checkpoint": checkpoint.name, "step": step, "tokens": step * per_step if per_step else "",
                      "benchmark": name, "metric": metric, "value": value} for metric, value in values.items()]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / "sweep.csv", lambda p: p.write_text(buffer.getvalue()))
    plot(rows, out / "sweep.png", per_step, title=run_dir.name)
    return rows


def plot(rows: list[dict], path: Path, per_step: int | None, title: str = "") -> None:
    """One panel per benchmark (perplexity and bits per character apart, on log scales), a line
    per metric against step, tokens seen on the top axis. Points are left to the CSV."""
    import matplotlib  # heavy: only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, dict[str, list]] = {}
    for r in rows:
        if r["metric"].endswith("points"):
            continue
        panel = f"{r['benchmark']}: {r['metric']}" if r["benchmark"] == "perplexity" else r["benchmark"]
        panels.setdefault(panel, {}).setdefault(r["metric"], []).append((r["step"], r["value"]))
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5 * max(len(panels), 1), 4), squeeze=False)
    for ax, (panel, lines) in zip(axes[0], panels.items()):
        for metric, points in lines.items():
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=metric)
        ax.set_title(panel)
        ax.set_xlabel("step")
        if panel.startswith("perplexity"):
            ax.set_ylabel(panel.split(": ")[1].replace("_", " "))
            ax.set_yscale("log")
        else:
            ax.set_ylabel("score")
            if len(lines) > 1:
                ax.legend(fontsize=7)
        if per_step:
            top = ax.secondary_xaxis("top", functions=(lambda s: s * per_step / 1e6, lambda t: t * 1e6 / per_step))
            top.set_xlabel("tokens seen (M)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"checkpoint sweep {title}".strip())
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    atomic_write(path, lambda p: fig.savefig(p, dpi=100))
    plt.close(fig)
