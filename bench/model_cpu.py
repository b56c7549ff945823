"""Our model against transformers' equivalent on CPU, side by side in one process.

Same config, same weights (ours exported to `ArceeForCausalLM`, or Llama for the
gated MLP), float32, dropout off in both (transformers' Llama family has no
residual dropout, so the work is the same). Measures
- a training step: forward + backward of the mean next-token loss;
- greedy generation with the KV cache: new tokens per second.
Runs alternate between the two models (ABBA order). The machine's speed drifts
(shared cores switch between fast and slow phases for seconds at a time), so
the headline is the median of the paired ratios, each from two adjacent runs,
rather than a ratio of medians taken across different phases.

    python bench/model_cpu.py                      # writes bench/results/model_cpu.json
    python bench/model_cpu.py --preset tiny --repeats 3 --out /tmp/x.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import transformers

from common import command, cpu_name, machine, write_report
from slm import hf
from slm.config import ModelConfig
from slm.model import SLM


def train_step(model, ids) -> float:
    start = time.perf_counter()
    loss = model(ids, labels=ids).loss
    loss.backward()
    elapsed = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return elapsed


def generation(model, ids, new_tokens, ours: bool) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        if ours:
            out = model.generate(ids, max_new_tokens=new_tokens, eos_token_id=[])
        else:
            out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=0)
    elapsed = time.perf_counter() - start
    assert out.shape[1] == ids.shape[1] + new_tokens
    return ids.shape[0] * new_tokens / elapsed


def alternate(fn_ours, fn_theirs, warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    """Interleave the two in ABBA order: whichever runs second inherits the first one's freed
    memory (page faults or not), a bias of several percent that the order swap cancels."""
    for _ in range(warmup):
        fn_ours(), fn_theirs()
    ours, theirs = [], []
    for i in range(repeats):
        if i % 2 == 0:
            ours.append(fn_ours())
            theirs.append(fn_theirs())
        else:
            theirs.append(fn_theirs())
            ours.append(fn_ours())
    return ours, theirs


def summarise(ours: list[float], theirs: list[float], higher_is_better: bool) -> dict:
    """Medians, and the median paired speed-up of ours over transformers (> 1: ours faster)."""
    ratios = [(a / b if higher_is_better else b / a) for a, b in zip(ours, theirs)]
    return {"ours": statistics.median(ours), "transformers": statistics.median(theirs),
            "speedup": statistics.median(ratios), "speedup_min": min(ratios), "speedup_max": max(ratios),
            "ours_all": ours, "transformers_all": theirs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="slm-25m")
    p.add_argument("--gated", action="store_true", help="gated SwiGLU MLP (compared with LlamaForCausalLM)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--gen-batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "model_cpu.json")
    args = p.parse_args()

    torch.manual_seed(0)
    config = ModelConfig.from_preset(args.preset, attn_dropout=0.0, resid_dropout=0.0, mlp_gated=args.gated)
    ours = SLM(config)
    with tempfile.TemporaryDirectory() as d:
        hf.export(ours, d)
        theirs = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    ids = torch.randint(0, config.vocab_size, (args.batch, args.seq))
    with torch.no_grad():
        diff = (ours.eval()(ids).logits - theirs.eval()(ids).logits).abs().max().item()

    results = {}
    ours.train(), theirs.train()
    a, b = alternate(lambda: train_step(ours, ids), lambda: train_step(theirs, ids), args.warmup, args.repeats)
    results["train_step_s"] = summarise(a, b, higher_is_better=False)
    ours.eval(), theirs.eval()
    for gb in args.gen_batches:
        prompt = torch.randint(0, config.vocab_size, (gb, args.prompt))
        a, b = alternate(lambda: generation(ours, prompt, args.new_tokens, True),
                         lambda: generation(theirs, prompt, args.new_tokens, False), 1, args.repeats)
        results[f"generate_tok_per_s_batch{gb}"] = summarise(a, b, higher_is_better=True)

    report = {
        "benchmark": "model_cpu",
        "command": command(),
        "machine": {**machine(), "torch_threads": torch.get_num_threads()},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "setup": {"preset": args.preset, "gated": args.gated, "params": ours.num_params(), "dtype": "float32",
                  "train_batch": args.batch, "seq": args.seq, "prompt": args.prompt, "new_tokens": args.new_tokens,
                  "warmup": args.warmup, "repeats": args.repeats, "max_abs_logit_diff": diff},
        "results": results,
    }
    write_report(args.out, report)

    print(f"{args.preset} ({ours.num_params() / 1e6:.1f}M params, {'gated' if args.gated else 'plain'} MLP), "
          f"float32, {torch.get_num_threads()} threads, {cpu_name()}; max |logit diff| {diff:.1e}")
    print(f"{'measure (median)':<34}{'ours':>10}{'transformers':>14}{'speed-up (paired: median, range)':>36}")
    rows = [(f"fwd+bwd step s (B={args.batch}, T={args.seq})", results["train_step_s"], ".4f")]
    rows += [(f"generate tok/s (batch {gb})", results[f"generate_tok_per_s_batch{gb}"], ".1f") for gb in args.gen_batches]
    for label, r, fmt in rows:
        spread = f"{r['speedup']:.2f}x ({r['speedup_min']:.2f}-{r['speedup_max']:.2f})"
        print(f"{label:<34}{r['ours']:>10{fmt}}{r['transformers']:>14{fmt}}{spread:>36}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
