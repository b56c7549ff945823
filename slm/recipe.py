"""Published clinical-adaptation recipes, one config each (configs/recipes/): continued pretraining,
(staged) instruction tuning, then evaluation of the starting and the final model, each step optional.

    python -m slm.recipe --config configs/recipes/004-staged-lora-medqa.yaml --base /models/llama-2-7b-chat
    python -m slm.recipe --config ... --finetune.optim.lr 1e-4          # any field, dotted

`pretrain` is a TrainConfig and `finetune` a FinetuneConfig (stages allowed), written without
`out` and `init_from`: the recipe chains them (base -> pretrain -> finetune) under its own `out`.
The evaluation table sets the base model beside the result, benchmark by benchmark.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from slm import runs
from slm.checkpoint import atomic_write
from slm.config import Config, ConfigError
from slm.eval import registry
from slm.eval.harness import BenchmarkError, Context
from slm.finetune.trainer import FinetuneConfig, finetune
from slm.lm import load_lm
from slm.train import cli
from slm.train.config import TrainConfig
from slm.train.trainer import train


@dataclasses.dataclass
class EvalStep(Config):
    """One evaluation: a benchmark of slm.eval.registry, its data, and its options (checked against
    the benchmark's options dataclass when the recipe loads)."""

    benchmark: str = "perplexity"
    data: list[str] = dataclasses.field(default_factory=list)
    options: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict, source: str | None = None) -> EvalStep:
        """A YAML step names its options beside the benchmark: {benchmark: medqa, data: [...], shots: 5}."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source or 'evaluate'}: a step must be a mapping, got {d!r}")
        rest = {k: v for k, v in d.items() if k not in ("benchmark", "data", "options")}
        return cls(benchmark=d.get("benchmark", "perplexity"), data=d.get("data", []),
                   options={**d.get("options", {}), **rest})

    def validate(self) -> None:
        try:
            registry.options(self.benchmark, self.options, source=f"evaluation {self.benchmark!r}")
        except BenchmarkError as e:
            raise ConfigError(str(e)) from None
        if not self.data:
            raise ConfigError(f"evaluation {self.benchmark!r} needs data files")

    def task(self) -> registry.Task:
        return registry.task(self.benchmark, self.data, self.options, source=f"evaluation {self.benchmark!r}")


@dataclasses.dataclass
class RecipeConfig(Config):
    name: str = ""
    reference: str = ""  # where the recipe's hyperparameters come from
    out: str = ""
    base: str = ""  # the local model folder it starts from (ours or transformers')
    pretrain: dict | None = None  # TrainConfig fields, without out and init_from
    finetune: dict | None = None  # FinetuneConfig fields, without out and init_from
    evaluate: list[EvalStep] = dataclasses.field(default_factory=list)
    evaluate_base: bool = True  # also evaluate the starting model, for the before/after table

    def validate(self) -> None:
        if not self.name or not self.out or not self.base:
            raise ConfigError("a recipe needs name, out and base (the local model folder it starts from)")
        self.pretrain_config(), self.finetune_config(self.base)  # field errors now, not after hours of training

    def pretrain_config(self) -> TrainConfig | None:
        if self.pretrain is None:
            return None
        return TrainConfig.from_dict({**self.pretrain, "out": str(Path(self.out) / "pretrain"), "init_from": self.base},
                                     source=f"recipe {self.name}: pretrain")

    def finetune_config(self, start: str) -> FinetuneConfig | None:
        if self.finetune is None:
            return None
        return FinetuneConfig.from_dict({**self.finetune, "out": str(Path(self.out) / "finetune"), "init_from": start},
                                        source=f"recipe {self.name}: finetune")


def run(config: RecipeConfig, device: str | None = None, resume: bool = False, overwrite: bool = False) -> dict:
    """Train what the recipe trains, evaluate base and result; results.json and table.md in `out`.
    An `out` holding an earlier run of a recipe is refused unless `resume` continues its training
    or `overwrite` moves it aside."""
    tasks = [step.task() for step in config.evaluate]  # every benchmark's data checked before any training
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(config.out)
    aside = runs.claim(out, resume=resume, overwrite=overwrite)
    if aside:
        print(f"--overwrite: moved the recipe run that was in {out} aside to {aside}")
    models = {"base": config.base} if config.evaluate_base else {}
    current = config.base
    if config.pretrain is not None:
        pretrain = config.pretrain_config()
        train(pretrain, resume=resume)
        current = str(runs.latest_checkpoint(runs.checkpoints_dir(pretrain.out)))
        models["pretrained"] = current
    if config.finetune is not None:
        tuning = config.finetune_config(current)
        result = finetune(tuning, resume=resume)
        if "final" in result:  # staged: the last stage's result
            current = result["final"]
        else:  # the checkpoint judged best by its answers (a LoRA one is put on its base when loaded)
            checkpoints = runs.checkpoints_dir(tuning.out)
            current = str(checkpoints / result["best"][1] if result["best"] else runs.latest_checkpoint(checkpoints))
        models["finetuned"] = current
    results: dict[str, dict[str, dict[str, float]]] = {}
    for label, path in models.items():
        lm = load_lm(path, device=device)
        for n, (step, task) in enumerate(zip(config.evaluate, tasks)):
            name = f"{n + 1}-{step.benchmark}"
            result = registry.run(task, lm, out / runs.EVAL_DIR / label / name, Context(progress=False))
            results.setdefault(name, {})[label] = result.headline
    table = _table(results, list(models))
    atomic_write(out / "results.json", lambda p: p.write_text(json.dumps({"recipe": config.name, "models": models,
                                                                          "results": results}, indent=2) + "\n"))
    atomic_write(out / "table.md", lambda p: p.write_text(table))
    print(f"recipe {config.name}\n{table}", end="")
    return {"models": models, "results": results}


def _table(results: dict[str, dict[str, dict[str, float]]], labels: list[str]) -> str:
    lines = ["| evaluation | metric | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for name, by_model in results.items():
        metrics = next(iter(by_model.values()))
        for metric in metrics:
            cells = [f"{by_model[label][metric]:.4g}" if label in by_model else "" for label in labels]
            lines.append(f"| {name} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="configs/recipes/*.yaml")
    p.add_argument("--base", help="the local model folder to start from (overrides the config's base)")
    p.add_argument("--device", help="evaluation device, default cuda when available (training follows the trainer's)")
    p.add_argument("--resume", action="store_true", help="continue the training steps of a recipe run in out/")
    p.add_argument("--overwrite", action="store_true", help="move a recipe run in out/ aside and start afresh")
    p.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    args, overrides = p.parse_known_args(argv)
    if args.base:
        overrides += ["--base", args.base]

    def body() -> int:
        run(RecipeConfig.load(args.config, overrides), args.device, resume=args.resume, overwrite=args.overwrite)
        return 0

    return cli.run(body, argv, errors=(BenchmarkError,))


if __name__ == "__main__":
    sys.exit(main())
