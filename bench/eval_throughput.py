"""Evaluation throughput: IgakuQA questions per second, generation against log-likelihood.

The questions are the shipped sample questions (data/sample/benchmarks/igakuqa)
repeated with a number appended, so every prompt is distinct; each goes through the
whole path a real run takes (the published 3-shot prompt, tokenization, the model,
answer extraction, official scoring). The model is the `tiny` preset with random
weights and a context of 2048 (so the published prompt fits, as in the 1B model) over a
tokenizer trained on the sample corpus; random weights never stop early, so generation
always writes --max-new-tokens tokens: the worst case.

    python bench/eval_throughput.py                     # CPU, float32
    python bench/eval_throughput.py --questions 40 --repeats 1   # quick look
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import command, machine, write_report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slm.config import ModelConfig  # noqa: E402
from slm.eval import igakuqa  # noqa: E402
from slm.eval.harness import Context  # noqa: E402
from slm.lm import SLMAdapter  # noqa: E402
from slm.model import SLM  # noqa: E402
from tokenizer import JapaneseTokenizer  # noqa: E402
from tokenizer.unigram import train_tokenizer  # noqa: E402

SAMPLE = ROOT / "data" / "sample" / "benchmarks" / "igakuqa"


def questions(n: int) -> dict[str, igakuqa.Question]:
    base = list(igakuqa.load_questions(SAMPLE).values())
    out = {}
    for i in range(n):
        q = base[i % len(base)]
        copy = igakuqa.Question(f"{q.problem_id}-{i}", q.year, q.block, f"{q.text}（{i}）", q.choices, q.answer,
                                q.points, q.text_only, q.kinki)
        out[copy.problem_id] = copy
    return out


def build_model(workdir: Path, threads: int) -> SLMAdapter:
    torch.manual_seed(0)
    train_tokenizer([ROOT / "data" / "sample" / "corpus"], workdir / "tok", vocab_size=3000, num_workers=1,
                    progress=False)
    tok = JapaneseTokenizer.load(workdir / "tok")
    config = ModelConfig.from_preset("tiny", vocab_size=tok.vocab_size, max_seq_len=2048,
                                     eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    SLM(config).save_pretrained(workdir / "model")
    tok.save(workdir / "model" / "tokenizer")
    torch.set_num_threads(threads)
    return SLMAdapter.from_folder(workdir / "model")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--questions", type=int, default=200)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "eval_throughput.json")
    args = p.parse_args()

    qs = questions(args.questions)
    shots = igakuqa.load_shots(igakuqa.find_shots(SAMPLE))
    with tempfile.TemporaryDirectory() as tmp:
        lm = build_model(Path(tmp), args.threads)
        prompt_tokens = statistics.mean(lm.prompt_length(igakuqa.conversation(q, shots)) for q in qs.values())
        modes = [("generate", "letter"), ("loglik", "letter"), ("loglik", "text")]
        results = []
        for batch_size in args.batch_sizes:
            for method, target in modes:
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    options = igakuqa.Options(method=method, loglik_target=target, max_new_tokens=args.max_new_tokens)
                    result = igakuqa.evaluate(lm, qs, shots, options, Context(batch_size=batch_size, progress=False))
                    times.append(time.perf_counter() - start)
                    assert result["overall"]["questions"] == len(qs)
                seconds = statistics.median(times)
                row = {"method": method, "loglik_target": target if method == "loglik" else None,
                       "batch_size": batch_size, "questions": len(qs), "seconds": seconds,
                       "questions_per_s": len(qs) / seconds, "runs_s": times}
                results.append(row)
                label = method if method == "generate" else f"loglik ({target})"
                print(f"batch {batch_size:>2}  {label:<16} {row['questions_per_s']:8.1f} questions/s  ({seconds:.2f} s)")
    report = {"benchmark": "eval_throughput", "command": command(), "machine": machine(),
              "torch": torch.__version__, "threads": args.threads, "device": "cpu", "dtype": "float32",
              "model": "tiny preset (2 layers, d 64), random weights, max_seq_len 2048, vocab 3000",
              "prompt": "published IgakuQA prompt, 3 shots", "mean_prompt_tokens": prompt_tokens,
              "max_new_tokens": args.max_new_tokens, "results": results}
    write_report(args.out, report)
    print(f"mean prompt {prompt_tokens:.0f} tokens; written to {args.out}")


if __name__ == "__main__":
    main()
