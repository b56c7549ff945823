"""The benchmark registry: a new benchmark is one module and one registration, and it appears in
the CLI (run and score), in checkpoint sweeps and in recipes with its own options checked."""

import csv
import dataclasses
import json
import types

import pytest

from conftest import SAMPLE_BENCHMARKS, ScriptedLM, fake_run
from evaluate import main
from slm.config import Config, ConfigError
from slm.eval import registry
from slm.eval.harness import RESULT_FILES, Benchmark, BenchmarkError, Problem, Result, option


def _toy_module() -> types.ModuleType:
    """What a researcher writes for a new benchmark: options, load (validating), run, score."""

    @dataclasses.dataclass(kw_only=True)
    class Options(Config):
        max_new_tokens: int = option(4, "new tokens per answer")
        shout: bool = option(False, "upper-case the answers")

    def load(data, options):
        lines = [line for path in data for line in open(path, encoding="utf-8").read().splitlines() if line.strip()]
        if not lines:
            raise BenchmarkError(f"{data[0]}: no questions")
        return lines

    def run(lm, questions, options, context):
        answers = [c.text for c in lm.generate(questions, max_new_tokens=options.max_new_tokens)]
        rows = [{"question": q, "answer": a.upper() if options.shout else a} for q, a in zip(questions, answers)]
        return Result(rows, {"questions": len(rows)}, {"answered": float(len(rows))}, f"| toy | {len(rows)} |\n",
                      [Problem("unparsed", ["q0"], "toy")])

    def score(data, predictions, options):
        n = sum(1 for _ in open(predictions[0], encoding="utf-8"))
        return Result([], {"scored": n}, {"scored": float(n)}, f"| toy scored | {n} |\n")

    module = types.ModuleType("toy_benchmark")
    module.BENCHMARK = Benchmark(name="toy", options=Options, load=load, run=run, score=score, many_files=True,
                                 data_help="one question a line")
    return module


@pytest.fixture()
def toy():
    registry.register(_toy_module().BENCHMARK)
    yield registry.get("toy")
    registry.unregister("toy")


@pytest.fixture()
def questions(tmp_path):
    path = tmp_path / "questions.txt"
    path.write_text("発熱は？\n咳嗽は？\n", encoding="utf-8")
    return path


def test_a_registered_benchmark_runs_and_scores_from_the_cli(toy, questions, slm_dir, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["toy", "--model", str(slm_dir), "--data", str(questions), "--shout", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| toy | 2 |" in printed and "toy: no readable answer (counted wrong) for 1 of the questions" in printed
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["answer"] == r["answer"].upper() for r in rows] == [True, True]
    assert json.loads((out / "metrics.json").read_text()) == {"questions": 2}
    assert sorted(p.name for p in out.iterdir()) == sorted(RESULT_FILES)  # no partial/: it saved no parts
    assert main(["score", "toy", "--data", str(questions), "--predictions", str(questions)]) == 0
    assert "| toy scored | 2 |" in capsys.readouterr().out
    assert main(["toy", "--model", str(slm_dir), "--data", str(tmp_path / "missing.txt")]) == 2  # no traceback


def test_the_data_are_checked_before_a_model_is_loaded(toy, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    assert main(["toy", "--model", str(tmp_path / "no-model"), "--data", str(empty)]) == 2
    assert "empty.txt: no questions" in capsys.readouterr().err  # the data error, not the missing model


def test_a_registered_benchmark_appears_in_a_sweep(toy, questions, slm_dir, tok, tmp_path):
    run = fake_run(tmp_path / "run", slm_dir, tok, (10, 20))
    assert main(["sweep", str(run), "--benchmarks", "toy", "--toy-data", str(questions), "--max-new-tokens", "2"]) == 0
    with open(run / "eval" / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["benchmark"], r["metric"], r["value"]) for r in rows] == \
        [("10", "toy", "answered", "2.0"), ("20", "toy", "answered", "2.0")]


def test_a_registered_benchmark_is_checked_in_a_recipe(toy, questions, monkeypatch):
    from slm.recipe import EvalStep, RecipeConfig

    step = EvalStep.from_dict({"benchmark": "toy", "data": [str(questions)], "shout": True})
    assert step.options == {"shout": True} and step.task().data == ["発熱は？", "咳嗽は？"]
    recipe = {"name": "r", "out": "o", "base": "b", "evaluate": [{"benchmark": "toy", "data": [str(questions)],
                                                                    "shots": 3}]}
    with pytest.raises(ConfigError, match=r"unknown Options field\(s\) \['shots'\]"):
        RecipeConfig.from_dict(recipe)
    with pytest.raises(ConfigError, match="unknown benchmark 'toyy'"):
        EvalStep.from_dict({"benchmark": "toyy", "data": [str(questions)]})


def test_every_builtin_benchmark_has_keyword_only_options_with_their_defaults_once():
    for name in registry.names():
        benchmark = registry.get(name)
        options = benchmark.options()  # every field has its default
        assert all(f.kw_only for f in dataclasses.fields(options)), name
        assert benchmark.load and benchmark.run and benchmark.data_help, name
    assert {"igakuqa", "jmed-llm", "perplexity", "qa", "medqa", "medmcqa", "pubmedqa", "mmlu"} <= set(registry.names())
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.get("igakuqa"))


def test_the_fingerprint_of_finished_parts_names_benchmark_options_data_and_model():
    task = registry.task("jmed-llm", SAMPLE_BENCHMARKS / "jmed-llm", {"tasks": ["smdis"]})
    lm = ScriptedLM()
    fingerprint = registry.fingerprint(task, lm, {"dtype": "auto"})
    assert fingerprint["benchmark"] == "jmed-llm" and fingerprint["options"]["tasks"] == ["smdis"]
    assert fingerprint["model"] == {"name": "scripted", "chat": True, "max_length": None, "dtype": "auto"}
    smdis = (SAMPLE_BENCHMARKS / "jmed-llm" / "smdis.csv").resolve()
    assert [str(smdis), smdis.stat().st_size, smdis.stat().st_mtime_ns] in fingerprint["data"]
    json.dumps(fingerprint)  # saved with every part
