"""The benchmarks by name: the one list that `evaluate.py`'s subcommands, checkpoint sweeps and
recipes are built from.

Adding a benchmark is one module in slm/eval (a `Benchmark`: name, options dataclass, `load`,
`run`, optionally `score`; see slm.eval.harness) and one line in `_BUILTIN` below.
Code outside the package (a hospital's own question set) calls `register` instead.

    from slm.eval import registry
    task = registry.task("igakuqa", ["IgakuQA/"], {"method": "loglik"})   # data checked here
    result = registry.run(task, load_lm("runs/pretrain/x"), out="runs/eval/x/igakuqa")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slm.config import Config, ConfigError, safe_name
from slm.eval import igakuqa, igakuqa2025, jmed_llm, mcqa, perplexity, qa
from slm.eval.harness import Benchmark, BenchmarkError, Context, Partial, Result, file_stats, write_results
from slm.lm import LocalLM

_BUILTIN = (
    igakuqa.BENCHMARK,
    igakuqa2025.BENCHMARK,
    jmed_llm.BENCHMARK,
    perplexity.BENCHMARK,
    qa.BENCHMARK,
    *mcqa.BENCHMARKS,
)
_REGISTRY: dict[str, Benchmark] = {}


def register(benchmark: Benchmark) -> Benchmark:
    """Add a benchmark. Its name is a subcommand and a folder of evaluation outputs, so it is one
    safe folder name (slm.config.safe_name)."""
    try:
        safe_name(benchmark.name, "a benchmark's name")
    except ConfigError as e:
        raise BenchmarkError(str(e)) from None
    if benchmark.name in _REGISTRY:
        raise ValueError(f"a benchmark named {benchmark.name!r} is already registered")
    _REGISTRY[benchmark.name] = benchmark
    return benchmark


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


for _benchmark in _BUILTIN:
    register(_benchmark)


def names() -> list[str]:
    return list(_REGISTRY)


def get(name: str) -> Benchmark:
    if name not in _REGISTRY:
        raise BenchmarkError(f"unknown benchmark {name!r}; the benchmarks are {names()}")
    return _REGISTRY[name]


def options(name: str, values: Config | dict | None = None, source: str | None = None) -> Config:
    """The benchmark's options from a mapping (unknown keys and bad values are errors naming them)."""
    cls = get(name).options
    if isinstance(values, cls):
        return values
    return cls.from_dict(dict(values or {}), source=source or f"{name} options")


@dataclass
class Task:
    """A benchmark with its options and its data, loaded and validated: ready for any model."""

    benchmark: Benchmark
    options: Config
    data: Any
    files: list[str]


def _files(benchmark: Benchmark, data: str | Path | Sequence[str | Path]) -> list[str]:
    files = [str(data)] if isinstance(data, (str, Path)) else [str(d) for d in data]
    if not files:
        raise BenchmarkError(f"{benchmark.name}: no data given")
    if not benchmark.many_files and len(files) != 1:
        raise BenchmarkError(f"{benchmark.name} reads one data folder or file, got {len(files)}: {files}")
    return files


def task(name: str, data: str | Path | Sequence[str | Path], values: Config | dict | None = None,
         source: str | None = None) -> Task:
    """Read and check a benchmark's data and options, before any model is loaded: unusable data
    are a BenchmarkError naming the file, the line or row, and the field."""
    benchmark = get(name)
    files = _files(benchmark, data)
    chosen = options(name, values, source)
    return Task(benchmark, chosen, benchmark.load(files, chosen), files)


def fingerprint(task: Task, lm: LocalLM, model: dict | None = None) -> dict:
    """What must be the same for an interrupted run's finished parts to be reused: the benchmark,
    its options, its data files (sizes and times), and the model: its name, how it reads
    prompts, and what the caller knows of it (`model`: evaluate.py gives its folder's files,
    dtype and device). Batching is left out: a run that ran out of memory may resume with a
    smaller --batch-size."""
    return {"benchmark": task.benchmark.name, "options": task.options.to_dict(), "data": file_stats(task.files),
            "model": {"name": lm.name, "chat": lm.chat, "max_length": lm.max_length, **(model or {})}}


def run(task: Task, lm: LocalLM, out: str | Path | None = None, context: Context = Context(), *,
        echo: bool = False, overwrite: bool = True, model: dict | None = None) -> Result:
    """Put the task to the model; write its files to `out` (if given) and print its summary (if `echo`).
    The files are moved into place once complete (slm.eval.harness.write_results): results
    already in `out` are replaced then, or with `overwrite` False are an OutputError. With `out`,
    a benchmark run in parts saves each finished part in `out`/partial/ and reads back those an
    interrupted run finished under the same `fingerprint` (`model` is added to it)."""
    if out is not None:
        context = dataclasses.replace(context, partial=Partial(out, lambda: fingerprint(task, lm, model)))
    result = task.benchmark.run(lm, task.data, task.options, context)
    if context.partial is not None:
        result.notes += context.partial.notes()
    finish(result, out, echo, overwrite)
    return result


def score(name: str, data: str | Path | Sequence[str | Path], predictions: Sequence[str | Path],
          values: Config | dict | None = None, out: str | Path | None = None, echo: bool = False,
          overwrite: bool = True) -> Result:
    """Score published prediction files by the benchmark's official rules (no model)."""
    benchmark = get(name)
    if benchmark.score is None:
        raise BenchmarkError(f"{name} has no published prediction format to score")
    files = _files(benchmark, data)
    if not predictions:
        raise BenchmarkError(f"{name}: no prediction files given")
    result = benchmark.score(files, [str(p) for p in predictions], options(name, values))
    finish(result, out, echo, overwrite)
    return result


def finish(result: Result, out: str | Path | None, echo: bool, overwrite: bool = True) -> None:
    if out is not None:
        write_results(out, result, overwrite)
    if echo:
        print(result.summary() + (f"written to {out}" if out is not None else ""), end="\n" if out else "")
