"""Benchmarks (report §2.5): every benchmark of slm.eval.registry put to a model, checkpoint
sweeps, and scoring of published prediction files. The subcommands and their options are
built from the registry, so a new benchmark appears here by itself.

    python evaluate.py igakuqa --model runs/finetune/sft --data IgakuQA/        [--method loglik] [--shots 3]
    python evaluate.py jmed-llm --model runs/finetune/sft --data JMED-LLM/datasets [--mode corrected]
    python evaluate.py perplexity --model runs/pretrain/x --data heldout/*.txt
    python evaluate.py medqa --model M --data test.jsonl --train train.jsonl --shots 5 --selection knn --cot
    python evaluate.py qa --model runs/finetune/sft --data heldout.jsonl [--unit chars] [--repetition-penalty 1.3]
    python evaluate.py sweep runs/pretrain/x --benchmarks igakuqa perplexity --igakuqa-data IgakuQA/ \\
        --perplexity-data h.txt
    python evaluate.py score igakuqa --data IgakuQA/ --predictions preds.jsonl [more.jsonl ...]
    python evaluate.py score jmed-llm --data JMED-LLM/datasets --predictions outputs.jsonl [--mode corrected]

--model is a checkpoint folder, a run folder (its best checkpoint, else the newest), a LoRA
adapter checkpoint (its base from the run's init_from, or --base), or a transformers model
folder. Base models (without the chat marker written by instruction tuning) read the prompts
as plain text; `--method loglik` ranks the choices by likelihood instead of generating.
The data are read and checked before any model is loaded. Every run writes predictions.jsonl,
metrics.json and table.md (--out, default runs/eval/<run>-<checkpoint>/<benchmark>), moved
into place once complete; a folder that already holds results is refused before any work
unless --overwrite (the old results are then replaced only when the new ones are complete),
and a failed run leaves it as it was. A benchmark run in parts (JMED-LLM's tasks) saves each
finished part in <out>/partial/ at once: rerun the same command after a crash or a kill and
the parts finished with the same model, options and data are read back, not run again (a
folder holding only partial/ needs no --overwrite). `score` needs no model: it reads the
benchmark's published prediction format (a model run's predictions.jsonl is in that format too). In a
sweep, a benchmark option applies to every chosen benchmark that has it; a checkpoint already
evaluated is read back (--force evaluates it again).

Data and prediction files are UTF-8 (a file saved by Excel as Shift_JIS / cp932 is refused
with the line where decoding failed: re-save it as UTF-8). Any failure ends with one line
`error: ...` and exit status 2; --debug (before the subcommand) shows the traceback.
"""

import argparse
import dataclasses
import json
import pickle
import sys
import types
import typing
from functools import partial
from pathlib import Path
from typing import Literal

import torch
from safetensors import SafetensorError, safe_open

from slm.checkpoint import CheckpointError
from slm.config import ConfigError
from slm.eval import registry
from slm.eval.harness import PARTIAL_DIR, BenchmarkError, Context, check_out, file_stats, saved_parts
from slm.eval.sweep import sweep
from slm.lm import load_lm
from slm.runs import EVAL_DIR, TOKENIZER_DIR, display_name, resolve_model_dir
from tokenizer.corpus import CorpusError


class ModelError(ValueError):
    """A model that cannot be loaded; the message names the folder and, where found, the broken file."""


# what a failure of the user's data, files or machine raises: one line `error: ...`, status 2
ERRORS = (BenchmarkError, ConfigError, CorpusError, CheckpointError, ModelError, OSError, ValueError, SafetensorError,
          torch.OutOfMemoryError)
# what loading a broken model folder raises from inside safetensors, torch or transformers
LOAD_ERRORS = (SafetensorError, OSError, RuntimeError, EOFError, pickle.UnpicklingError, json.JSONDecodeError)


def broken_file(paths) -> Path | None:
    """The first weights (.safetensors) or JSON file of the model folders (and their tokenizer/)
    that does not open, or None."""
    folders = []
    for path in paths:
        try:
            folder = resolve_model_dir(path) if path is not None else None
        except (OSError, ValueError):
            continue
        folders += [folder, folder / TOKENIZER_DIR] if folder is not None else []
    for folder in folders:
        for file in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
            try:
                with safe_open(str(file), framework="pt"):
                    pass
            except Exception:  # any failure to open it is the answer sought
                return file
        for file in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return file
    return None


def load_model(args, path):
    """The model of `path` (a folder, run or pointer); a folder that does not load is an error
    naming it and, where it can be found, the truncated or corrupt file."""
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32,
             "float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    chat = {"auto": None, "yes": True, "no": False}[args.chat]
    try:
        return load_lm(path, device=device, dtype=dtype, base=args.base, chat=chat)
    except (CheckpointError, ConfigError, BenchmarkError, CorpusError, FileNotFoundError, torch.OutOfMemoryError):
        raise  # these name what is wrong already
    except LOAD_ERRORS as e:
        file = broken_file([path, args.base])
        where = f"{file}: cannot load the model of {path} (truncated or corrupt?)" if file else \
            f"{path}: cannot load the model"
        raise ModelError(f"{where}: {type(e).__name__}: {e}") from e


def default_out(model: str, benchmark: str) -> Path:
    """runs/eval/<run>-<checkpoint>/<benchmark>: a checkpoint is named with its run."""
    return Path("runs") / EVAL_DIR / display_name(resolve_model_dir(model)) / benchmark


# ------------------------------------------------------------------ options from the registry

def _argument(field: dataclasses.Field, tp) -> dict:
    """argparse keywords for an options field; unset flags are left out (the dataclass has the defaults)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    help = field.metadata.get("help", "")
    default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    if default is not None and "default" not in help:
        help = f"{help} (default: {default})".strip()
    kwargs = {"dest": field.name, "default": argparse.SUPPRESS, "help": help}
    if tp is bool:
        return {**kwargs, "action": argparse.BooleanOptionalAction}
    if typing.get_origin(tp) is Literal:
        return {**kwargs, "choices": list(typing.get_args(tp))}
    if typing.get_origin(tp) is list:
        return {**kwargs, "nargs": "+"}
    return {**kwargs, "type": tp if tp in (int, float) else str}


def add_options(p: argparse.ArgumentParser, classes, seen: set[str] | None = None) -> None:
    """A flag per field of the options classes (a name already added is not added again)."""
    seen = set() if seen is None else seen
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if field.name not in seen:
                seen.add(field.name)
                p.add_argument("--" + field.name.replace("_", "-"), **_argument(field, hints[field.name]))


def chosen_options(args, name: str) -> dict:
    """The options given on the command line that benchmark `name` has."""
    fields = {f.name for f in dataclasses.fields(registry.get(name).options)}
    return {k: v for k, v in vars(args).items() if k in fields}


# ------------------------------------------------------------------ the parser

def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", help="the base checkpoint of a LoRA adapter (default: the run's init_from)")
    p.add_argument("--chat", choices=["auto", "yes", "no"], default="auto",
                   help="read prompts through the chat template (auto: when the checkpoint was instruction-tuned)")
    p.add_argument("--device", help="default: cuda when available, else cpu")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto", help="auto: bf16 on GPU, fp32 on CPU")
    p.add_argument("--batch-size", type=int, default=Context.batch_size)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show the traceback of a failure (before the subcommand)")
    commands = p.add_subparsers(dest="command", required=True)
    for name in registry.names():
        benchmark = registry.get(name)
        sub = commands.add_parser(name, help=f"put {name} to a model")
        sub.add_argument("--model", required=True)
        sub.add_argument("--data", nargs="+" if benchmark.many_files else None, required=True,
                         help=benchmark.data_help)
        sub.add_argument("--out", help="default: runs/eval/<run>-<checkpoint>/<benchmark>; a folder holding "
                                       "results is refused unless --overwrite; the parts an interrupted run "
                                       "finished there (partial/) are read back")
        sub.add_argument("--overwrite", action="store_true",
                         help="replace the results already in --out (only once the new ones are complete)")
        _model_options(sub)
        add_options(sub, [benchmark.options])

    sweep = commands.add_parser("sweep", help="every checkpoint of a run: sweep.csv and sweep.png")
    sweep.add_argument("run", help="a run folder (runs/<name>, with checkpoints/)")
    sweep.add_argument("--benchmarks", nargs="+", choices=registry.names(), required=True)
    for name in registry.names():
        sweep.add_argument(f"--{name}-data", nargs="+", dest=f"data:{name}", help=registry.get(name).data_help)
    sweep.add_argument("--out", help="default: <run>/eval")
    sweep.add_argument("--force", action="store_true", help="re-evaluate checkpoints already evaluated")
    _model_options(sweep)
    add_options(sweep, [registry.get(name).options for name in registry.names()])

    score = commands.add_parser("score", help="score published prediction files by the official rules (no model)")
    benchmarks = score.add_subparsers(dest="benchmark", required=True)
    for name in registry.names():
        benchmark = registry.get(name)
        if benchmark.score is None:
            continue
        sub = benchmarks.add_parser(name)
        sub.add_argument("--data", nargs="+" if benchmark.many_files else None, required=True,
                         help=benchmark.data_help)
        sub.add_argument("--predictions", nargs="+", required=True, help=benchmark.predictions_help)
        sub.add_argument("--out", help="write predictions.jsonl, metrics.json and table.md here (a folder holding "
                                       "results is refused unless --overwrite)")
        sub.add_argument("--overwrite", action="store_true",
                         help="replace the results already in --out (only once the new ones are complete)")
        add_options(sub, [benchmark.options])
    return p


# ------------------------------------------------------------------ the commands

def run_sweep(args) -> None:
    tasks = {}
    for name in args.benchmarks:  # every benchmark's data checked before the first checkpoint is loaded
        data = getattr(args, f"data:{name}")
        if not data:
            raise BenchmarkError(f"--{name}-data is needed for {name}")
        tasks[name] = registry.task(name, data, chosen_options(args, name))
    context = Context(batch_size=args.batch_size, progress=False, load_lm=partial(load_model, args))
    evaluators = {name: partial(_headline, task, context) for name, task in tasks.items()}
    rows = sweep(args.run, evaluators, partial(load_model, args), args.out, args.force)
    out = Path(args.out) if args.out else Path(args.run) / EVAL_DIR
    print(f"{len(rows)} values from {len({r['checkpoint'] for r in rows})} checkpoints: "
          f"{out / 'sweep.csv'}, {out / 'sweep.png'}")


def _headline(task, context, lm, out) -> dict[str, float]:
    return registry.run(task, lm, out, context).headline  # cached or forced: replaced once complete


def _replacing(out: Path, overwrite: bool) -> bool:
    """Refuse an --out holding results (before any work) unless --overwrite, and say what happens."""
    replacing = check_out(out, overwrite)
    if replacing:
        print(f"{out} holds results: they are replaced once the new ones are complete (--overwrite)")
    return replacing


def model_identity(args) -> dict:
    """What tells this model from another with the same folder name, for reusing the finished
    parts of an interrupted run: its folder and files (sizes and times), base, dtype and device."""
    folders = [resolve_model_dir(path) for path in (args.model, args.base) if path is not None]
    return {"folders": [str(f.resolve()) for f in folders], "files": file_stats(folders), "dtype": args.dtype,
            "device": args.device}


def run_benchmark(args) -> None:
    task = registry.task(args.command, args.data, chosen_options(args, args.command))
    out = Path(args.out) if args.out else default_out(args.model, args.command)
    replacing = _replacing(out, args.overwrite)
    saved = saved_parts(out)
    if saved:
        print(f"{out / PARTIAL_DIR} holds {len(saved)} finished part(s) of an interrupted run ({', '.join(saved)}): "
              f"read back if the model, options and data are the same")
    lm = load_model(args, args.model)
    registry.run(task, lm, out, Context(batch_size=args.batch_size, load_lm=partial(load_model, args)), echo=True,
                 overwrite=args.overwrite, model=model_identity(args))
    if replacing:
        print(f"the earlier results in {out} were replaced")


def run_score(args) -> None:
    data = args.data if isinstance(args.data, list) else [args.data]
    replacing = _replacing(Path(args.out), args.overwrite) if args.out else False
    registry.score(args.benchmark, data, args.predictions, chosen_options(args, args.benchmark), args.out, echo=True,
                   overwrite=args.overwrite)
    if replacing:
        print(f"the earlier results in {args.out} were replaced")


def error_line(e: BaseException) -> str:
    """The failure as one line."""
    if isinstance(e, torch.OutOfMemoryError):
        return f"out of memory on the device: try a smaller --batch-size ({str(e).splitlines()[0] if str(e) else ''})"
    text = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
    return text or type(e).__name__


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "score":
            run_score(args)
        elif args.command == "sweep":
            run_sweep(args)
        else:
            run_benchmark(args)
    except ERRORS as e:
        if args.debug:
            raise
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
