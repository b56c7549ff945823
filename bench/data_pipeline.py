"""Corpus pipeline throughput and memory: the shipped sample, then synthetic streams of growing size.

A synthetic stream is JSONL built from the sample corpus's clauses, recombined
at random with fresh numbers, so documents and most sentences are new (dedup
keeps working on real decisions) and the text still looks clinical. Each run
prepares it with the default filters and dedup; the peak resident memory of
the main process and of the largest tokenizer worker shows whether memory
stays bounded as the input grows.

    python bench/data_pipeline.py                         # sample, 100 MB, 1 GB
    python bench/data_pipeline.py --sizes-mb 20 --keep    # quick look
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from common import command, machine, write_report

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "corpus"


def synthetic_stream(path: Path, size_bytes: int, seed: int = 0) -> int:
    """Write about `size_bytes` of JSONL documents recombined from the sample corpus; returns documents."""
    rng = random.Random(seed)
    clauses = [c for f in sorted(SAMPLE.glob("*.txt")) for c in re.split(r"(?<=[、。])", f.read_text(encoding="utf-8"))
               if len(c.strip()) > 4]
    written = n = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < size_bytes:
            parts = []
            for _ in range(rng.randint(15, 60)):
                clause = re.sub(r"\d", lambda _: str(rng.randint(0, 9)), rng.choice(clauses).strip())
                parts.append(clause + ("\n" if clause.endswith("。") and rng.random() < 0.3 else ""))
            line = json.dumps({"text": "".join(parts), "id": n}, ensure_ascii=False) + "\n"
            out.write(line)
            written += len(line.encode("utf-8"))
            n += 1
    return n


def run_prepare(config: Path, out: Path) -> dict:
    """Prepare in a fresh process, so its peak memory is this run's alone."""
    proc = subprocess.run([sys.executable, "-m", "slm.data.prepare", "--config", str(config), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads((out / "report.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes-mb", type=float, nargs="+", default=[100, 1000])
    p.add_argument("--workers", type=int, default=0, help="tokenizer processes (0: one per core)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "data_pipeline.json")
    args = p.parse_args()

    from tokenizer.unigram import train_tokenizer

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train_tokenizer([SAMPLE], tmp / "tok", vocab_size=8000, allow_smaller_vocab=True, progress=False)
        inputs = [("sample", SAMPLE, "text", sum(f.stat().st_size for f in SAMPLE.glob("*")))]
        for mb in args.sizes_mb:
            path = tmp / f"synthetic-{mb:g}mb.jsonl"
            synthetic_stream(path, int(mb * 1e6))
            inputs.append((f"synthetic {mb:g} MB", path, "jsonl", path.stat().st_size))
        for label, path, fmt, size in inputs:
            config = tmp / "data.yaml"  # JSON is YAML
            config.write_text(json.dumps({"tokenizer": str(tmp / "tok"), "num_workers": args.workers,
                                          "sources": [{"name": "corpus", "paths": [str(path)], "format": fmt}]}))
            report = run_prepare(config, tmp / "prepared" / label.replace(" ", "_"))
            src = report["sources"]["corpus"]
            row = {"input": label, "bytes": size, "documents_in": src["read"], "documents_kept": src["kept"],
                   "tokens": src["tokens"], "seconds": report["seconds"], "documents_per_s": report["documents_per_s"],
                   "tokens_per_s_per_worker": report["tokens_per_s_per_worker"], "workers": report["num_workers"],
                   "peak_rss_mb": report["peak_rss_mb"], "removed": {k: v for k, v in src.items() if k.startswith("removed:")}}
            runs.append(row)
            print(f"{label:<22}{size / 1e6:>9.1f} MB {row['documents_in']:>9,} docs in {row['documents_kept']:>9,} kept "
                  f"{row['tokens']:>12,} tokens {row['seconds']:>7.1f} s {row['documents_per_s']:>8,.0f} docs/s "
                  f"{row['tokens_per_s_per_worker']:>9,.0f} tok/s/worker  peak RSS main "
                  f"{row['peak_rss_mb']['main']:.0f} MB, worker {row['peak_rss_mb']['largest_worker']:.0f} MB", flush=True)
    write_report(args.out, {"benchmark": "data_pipeline", "command": command(), "machine": machine(), "runs": runs})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
