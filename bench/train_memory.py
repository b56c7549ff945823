"""Training memory per GPU for the report's setup, by arithmetic (not a measurement): micro-batch 8,
sequence 2048, bf16 autocast, AdamW, with DDP or DeepSpeed ZeRO-2 over 4 GPUs. The measured
single-GPU peak is `peak_memory_gb` of bench/train_throughput.py on a GPU; set the two side by side.

Model states (Rajbhandari et al. 2020, ZeRO, section 3; Psi = parameters):
  DDP, as slm.train runs it: float32 weights 4 Psi + float32 gradients 4 Psi + AdamW m and v 8 Psi = 16 Psi
  ZeRO-2 with DeepSpeed's bf16: bf16 weights 2 Psi on every GPU, then gradients (2 Psi) and the float32
  master weights, m and v (12 Psi) partitioned: 2 Psi + 14 Psi / N
Activations (Korthikanti et al. 2022, eq. 1, no tensor or sequence parallelism), per layer:
  s b h (34 + 5 a s / h) bytes; SDPA's fused kernels keep no (s x s) scores, leaving 34 s b h.
  Activation checkpointing keeps each block's input (2 s b h) and one block's activations.
The loss: bf16 logits (2), their float32 copy (4) and its gradient (4): 10 b s V bytes at the peak,
or 10 x chunk x V with ce_chunk_size.

    python bench/train_memory.py            # writes bench/results/train_memory.json and prints the table
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from common import command, write_report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slm.config import ModelConfig  # noqa: E402
from slm.model import SLM  # noqa: E402

GB = 1e9


def estimate(config: ModelConfig, micro_batch: int, seq_len: int, gpus: int, chunk: int = 0) -> dict:
    with torch.device("meta"):
        psi = SLM(config).num_params()
    s, b, h, L, V = seq_len, micro_batch, config.d_model, config.n_layers, config.vocab_size
    activations = 34 * s * b * h * L
    checkpointed = 2 * s * b * h * L + 34 * s * b * h
    logits = 10 * (chunk if chunk else b * s) * V
    states = {"ddp": 16 * psi, "zero2": 2 * psi + 14 * psi / gpus}
    rows = {}
    for engine, static in states.items():
        for ac in (False, True):
            total = static + (checkpointed if ac else activations) + logits
            rows[f"{engine}{' + activation checkpointing' if ac else ''}"] = {
                "model_states_gb": static / GB, "activations_gb": (checkpointed if ac else activations) / GB,
                "loss_gb": logits / GB, "total_gb": total / GB}
    return {"parameters": psi, "micro_batch": b, "seq_len": s, "gpus": gpus, "ce_chunk_size": chunk, "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="ncvc-slm-1b")
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--gpus", type=int, default=4)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "train_memory.json")
    args = p.parse_args()
    config = ModelConfig.from_preset(args.preset)
    results = [estimate(config, args.micro_batch, args.seq_len, args.gpus, chunk) for chunk in (0, 4096)]
    print(f"{args.preset}: {results[0]['parameters']:,} parameters; micro-batch {args.micro_batch} x {args.seq_len}, "
          f"{args.gpus} GPUs. Arithmetic, GB per GPU (not measured):")
    print(f"{'':<50}{'states':>8}{'activ.':>8}{'loss':>7}{'total':>8}")
    for result in results:
        for name, r in result["rows"].items():
            label = f"{name}, {'chunked loss' if result['ce_chunk_size'] else 'whole logits'}"
            print(f"{label:<50}{r['model_states_gb']:8.1f}{r['activations_gb']:8.1f}{r['loss_gb']:7.1f}{r['total_gb']:8.1f}")
    write_report(args.out, {"benchmark": "train_memory (arithmetic, not measured)", "command": command(),
                            "preset": args.preset, "estimates": results})
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
