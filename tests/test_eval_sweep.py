"""Checkpoint sweeps: every checkpoint evaluated once, a CSV and a plot of score against step."""

import csv

import pytest

from evaluate import main
from conftest import SAMPLE_BENCHMARKS, fake_run
from slm.eval.sweep import sweep


@pytest.fixture()
def run(tmp_path, slm_dir, tok):
    """A run folder with two complete checkpoints of a tiny model and one half-written."""
    run = fake_run(tmp_path / "run", slm_dir, tok, (100, 200))
    (run / "checkpoints" / "step-0000300").mkdir()  # no trainer_state: incomplete, skipped
    (run / "config.yaml").write_text("global_batch: 16\nseq_len: 128\n")
    return run


def test_sweep_evaluates_each_checkpoint_once_and_writes_csv_and_png(run):
    calls = []

    def fake(lm, out):
        calls.append(lm)
        out.mkdir(parents=True, exist_ok=True)
        return {"accuracy": 0.25 * len(calls), "points": 3}

    rows = sweep(run, {"bench": fake}, load=lambda checkpoint: checkpoint.name, progress=False)
    assert calls == ["step-0000100", "step-0000200"]
    assert [(r["step"], r["tokens"], r["metric"]) for r in rows[:2]] == [(100, 204800, "accuracy"), (100, 204800, "points")]
    with open(run / "eval" / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and table[2]["value"] == "0.5"
    png = (run / "eval" / "sweep.png").read_bytes()
    assert png[:4] == b"\x89PNG" and len(png) > 10_000
    # a rerun reads the results back; a new checkpoint would be the only one evaluated
    assert sweep(run, {"bench": fake}, load=lambda checkpoint: checkpoint.name, progress=False) == rows
    assert len(calls) == 2
    sweep(run, {"bench": fake}, load=lambda checkpoint: checkpoint.name, force=True, progress=False)
    assert len(calls) == 4


def test_cli_sweeps_real_benchmarks(run, capsys):
    heldout = run / "heldout.txt"
    heldout.write_text("発熱あり。\n\n咳嗽なし。\n", encoding="utf-8")
    assert main(["sweep", str(run), "--benchmarks", "igakuqa", "jmed-llm", "perplexity", "--method", "loglik",
                 "--igakuqa-data", str(SAMPLE_BENCHMARKS / "igakuqa"), "--jmed-llm-data",
                 str(SAMPLE_BENCHMARKS / "jmed-llm"), "--tasks", "smdis", "nrner", "--max-new-tokens", "4",
                 "--perplexity-data", str(heldout)]) == 0
    assert "from 2 checkpoints" in capsys.readouterr().out
    with open(run / "eval" / "sweep.csv") as f:
        metrics = {(r["benchmark"], r["metric"]) for r in csv.DictReader(f)}
    assert {("igakuqa", "accuracy"), ("jmed-llm", "smdis"), ("jmed-llm", "nrner"), ("perplexity", "perplexity"),
            ("perplexity", "bits_per_character")} <= metrics
    assert (run / "eval" / "step-0000200" / "igakuqa" / "predictions.jsonl").is_file()
    assert main(["sweep", str(run), "--benchmarks", "igakuqa"]) == 2  # needs --igakuqa-data
    assert capsys.readouterr().err == "error: --igakuqa-data is needed for igakuqa\n"
