"""The GPU benchmarks also run on CPU (the same scripts on both machines), on the tiny preset."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def run(script, *args):
    subprocess.run([sys.executable, str(BENCH / script), *args], check=True, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_train_throughput_runs_on_cpu_and_reports_every_variant(tmp_path):
    out = tmp_path / "t.json"
    run("train_throughput.py", "--device", "cpu", "--preset", "tiny", "--seq-len", "64", "--micro-batches", "1",
        "--steps", "1", "--warmup", "1", "--variants", "sdpa", "sdpa+chunked-ce", "docs:flex+compile", "hf-arcee",
        "--out", str(out))
    report = json.loads(out.read_text())
    rows = {r["variant"]: r for r in report["rows"]}
    assert rows["sdpa"]["tokens_per_s"] > 0 and 0 < rows["sdpa"]["mfu"] < 1.5
    assert "skipped" in rows["docs:flex+compile"]  # said, not silently left out
    assert report["matmul_peak_flops"] > 0 and report["torch"] and report["command"]


@pytest.mark.slow
def test_generate_throughput_and_memory_arithmetic_run_on_cpu(tmp_path):
    run("generate_throughput.py", "--device", "cpu", "--preset", "tiny", "--prompt", "16", "--new", "4",
        "--batches", "1", "--repeats", "1", "--out", str(tmp_path / "g.json"))
    rows = json.loads((tmp_path / "g.json").read_text())["rows"]
    assert {r["model"] for r in rows} == {"ours", "transformers"} and all(r["decode_tokens_per_s"] > 0 for r in rows)
    run("train_memory.py", "--out", str(tmp_path / "m.json"))
    estimate = json.loads((tmp_path / "m.json").read_text())["estimates"][0]
    ddp, zero2 = estimate["rows"]["ddp"], estimate["rows"]["zero2"]
    psi = estimate["parameters"]
    assert ddp["model_states_gb"] == pytest.approx(16 * psi / 1e9)  # fp32 weights, grads, AdamW m and v
    assert zero2["model_states_gb"] == pytest.approx((2 * psi + 14 * psi / 4) / 1e9)


@pytest.mark.slow
def test_eval_throughput_runs_on_cpu(tmp_path):
    out = tmp_path / "e.json"
    run("eval_throughput.py", "--questions", "2", "--repeats", "1", "--batch-sizes", "1", "--max-new-tokens", "2",
        "--out", str(out))
    assert {r["method"] for r in json.loads(out.read_text())["results"]} == {"generate", "loglik"}
