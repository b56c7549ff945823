"""The GPU benchmarks also run on CPU (the same scripts on both machines), on the tiny preset."""

import json
import re
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


# ---------------------------------------------------------------- the JMED-LLM experiment, end to end

JMED_SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "benchmarks" / "jmed-llm"
SAMPLE_CORPUS = Path(__file__).resolve().parents[1] / "data" / "sample" / "corpus"
POOLS = {"CRADE": "crade", "CRNER": "mrner_disease", "RRNER": "mrner_medicine", "JMMLU-Med": "jmmlu_med",
         "NRNER": "nrner", "RRTNM": "rrtnm", "SMDIS": "smdis"}  # datasets/all/'s pools and the tasks they feed
WORDS = ["発熱", "咳嗽", "頭痛", "嘔気", "倦怠感", "腹痛", "発疹", "浮腫", "胸痛", "めまい", "下痢", "関節痛"]


def jmed_layout(root: Path, rows_per_pool: int = 24) -> Path:
    """JMED-LLM's datasets/ folder: the sample evaluation sets, and pools in all/ whose documents are
    new short texts (so that the leak-free split keeps them), both labels of every choice task."""
    import csv
    import random
    import shutil

    datasets = root / "datasets"
    (datasets / "all").mkdir(parents=True)
    for path in JMED_SAMPLE.glob("*.csv"):
        shutil.copy(path, datasets / path.name)
    rng = random.Random(0)
    for pool, task in POOLS.items():
        with open(JMED_SAMPLE / f"{task}.csv", encoding="utf-8", newline="") as f:
            header, *rows = list(csv.reader(f))
        out = []
        for k in range(rows_per_pool):
            row = list(rows[k % len(rows)])
            words = rng.sample(WORDS, 3)
            document = f"記録{k}：{'と'.join(words)}を認めた。"
            question = header.index("question")
            if "「" in row[question]:
                row[question] = re.sub(r"「.*」", f"「{document}」", row[question], flags=re.S)
            else:
                row[question] = f"{document}原因はどれか。"
            if "optionB" in header:  # alternate the letters so that every choice task has two labels
                row[-1] = "AB"[k % 2]
            else:
                row[-1] = str(words[:2])
            out.append(row)
        with open(datasets / "all" / f"{pool}.csv", "w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows([header, *out])
    return datasets


@pytest.mark.slow
def test_the_jmed_experiment_runs_end_to_end_and_writes_its_table(tmp_path):
    out = tmp_path / "experiment"
    command = [sys.executable, str(BENCH / "jmed_experiment.py"), "--corpus", str(SAMPLE_CORPUS),
               "--jmed", str(jmed_layout(tmp_path)), "--out", str(out), "--vocab-size", "3000",
               "--pretrain-steps", "2", "--finetune-steps", "2", "--ner-max-new-tokens", "4"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    table = (out / "results.md").read_text(encoding="utf-8")
    for task in ("crade", "jcsts", "jmmlu_med", "mrner_disease", "mrner_medicine", "nrner", "rrtnm", "smdis"):
        assert f"| {task} |" in table
    assert "Reference on SMDIS" in table and "kappa 0; acc 1/2" in table and "| nrner | instruct |" in table
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert set(results["models"]) == {"base", "instruct"} and results["curve"]
    assert (out / "data" / "jmed-train.jsonl.split.md").is_file() and (out / "data" / "jmed-train-rowlevel.jsonl.split.md").is_file()
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)  # a rerun skips what is complete
    assert again.returncode == 0 and again.stdout.count("done already, skipped") >= 6
    intervals = subprocess.run([sys.executable, str(BENCH / "jmed_intervals.py"), "--data", str(tmp_path / "datasets"),
                                str(out / "eval" / "instruct")], capture_output=True, text=True, timeout=300)
    assert intervals.returncode == 0, intervals.stderr[-2000:]
    assert "repetition_penalty 1.0" in intervals.stdout and re.search(r"  nrner: \S+ \[\S+, \S+\]", intervals.stdout)
