"""Training throughput, MFU and peak memory of the model's variants, against transformers' Arcee.

Synthetic tokens (no tokenizer, no MeCab), one device, after warm-up steps. A step is what
the trainer does: forward and backward under bf16 autocast on float32 weights (CPU: float32),
gradient clipping, a (fused on CUDA) AdamW step. Reported per variant: tokens/s, MFU and
peak memory. MFU counts the model's FLOPs per token by PaLM's convention, attention included
(`SLM.flops_per_token`: 6N + 12 L H Q T), and divides by the matmul peak measured in the
same run (a large bf16 matmul), also stated beside the datasheet peak where one is known.

Variants (each an option of the model or trainer; the plain path is the reference):
  sdpa               SDPA attention, the whole (B, T, vocab) logits
  +chunked-ce        the loss in chunks of 4096 positions (ce_chunk_size)
  +compile           torch.compile of the model
  +ac                activation checkpointing of every block
  flash              flash-attn 2 (when installed; its absence is reported)
  docs:sdpa|flex|flash  document-masked packing: dense mask, flex_attention (compiled), flash varlen
  hf-arcee           transformers' ArceeForCausalLM, same config and batch (dropout 0 in both:
                     Arcee has no residual dropout, so "ours dropout 0" is its pair)

    python bench/train_throughput.py                                  # GPU: ncvc-slm-1b, seq 2048, bf16
    python bench/train_throughput.py --micro-batches 1 2 4 8         # the micro-batch sweep of the best variant
    python bench/train_throughput.py --device cpu --preset tiny --seq-len 128 --micro-batches 2 --steps 2 --warmup 1
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import platform
import sys
import time
from pathlib import Path

import torch

from common import command, device_parser, device_setup, machine, write_report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slm.config import ModelConfig  # noqa: E402
from slm.model import SLM  # noqa: E402
from slm.train.config import OptimConfig  # noqa: E402
from slm.train.optim import build_optimizer, param_groups  # noqa: E402
from slm.train.trainer import _checkpoint_blocks, _peak_flops  # noqa: E402

VARIANTS = {
    "sdpa": {},
    "sdpa+chunked-ce": {"model": {"ce_chunk_size": 4096}},
    "sdpa+ac": {"ac": True},
    "sdpa+compile": {"compile": True},
    "sdpa+compile+chunked-ce": {"compile": True, "model": {"ce_chunk_size": 4096}},
    "sdpa+compile+chunked-ce+ac": {"compile": True, "ac": True, "model": {"ce_chunk_size": 4096}},
    "flash+compile+chunked-ce": {"compile": True, "model": {"attn_backend": "flash", "ce_chunk_size": 4096}},
    "docs:sdpa": {"docs": True, "model": {"attn_backend": "sdpa"}},
    "docs:flex+compile": {"docs": True, "compile": True, "model": {"attn_backend": "flex", "attn_dropout": 0.0}},
    "docs:flash": {"docs": True, "model": {"attn_backend": "flash"}},
    "ours, dropout 0": {"model": {"attn_dropout": 0.0, "resid_dropout": 0.0}},
    "ours, dropout 0, compile": {"compile": True, "model": {"attn_dropout": 0.0, "resid_dropout": 0.0}},
    "hf-arcee": {"hf": True},
    "hf-arcee, compile": {"hf": True, "compile": True},
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device, dtype, n: int, repeats: int = 20) -> float:
    """FLOP/s of an n x n x n matmul: the peak this device really reaches in this dtype."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def build(config: ModelConfig, spec: dict, device):
    torch.manual_seed(0)
    if spec.get("hf"):
        import transformers

        from slm import hf

        cfg = hf.hf_config(config.replace(attn_dropout=0.0, resid_dropout=0.0), torch.float32)
        hf_conf = transformers.AutoConfig.for_model(cfg.pop("model_type"), **cfg)
        hf_conf._attn_implementation = "sdpa"
        model = transformers.AutoModelForCausalLM.from_config(hf_conf).to(device)
        forward = lambda m, ids, docs: m(input_ids=ids, labels=ids).loss  # noqa: E731
    else:
        model = SLM(config.replace(**spec.get("model", {}))).to(device)
        forward = lambda m, ids, docs: m(ids, labels=ids, doc_ids=docs).loss  # noqa: E731
    if spec.get("ac"):
        _checkpoint_blocks(model)
    return model.train(), forward


def run_variant(name: str, spec: dict, config: ModelConfig, micro_batch: int, seq_len: int, device, steps: int,
                warmup: int, peak: float) -> dict:
    row = {"variant": name, "micro_batch": micro_batch, "seq_len": seq_len}
    if spec.get("hf") and importlib.util.find_spec("transformers") is None:
        return {**row, "skipped": "transformers is not installed"}
    if spec.get("model", {}).get("attn_backend") == "flash" and (device.type != "cuda" or importlib.util.find_spec("flash_attn") is None):
        return {**row, "skipped": "flash-attn is not installed (or no CUDA): the SDPA rows stand for it"}
    if spec.get("model", {}).get("attn_backend") == "flex" and device.type != "cuda":
        return {**row, "skipped": "flex_attention has no backward on CPU"}
    if spec.get("compile") and device.type == "cpu":
        return {**row, "skipped": "compile is measured on GPU only (CPU inductor build takes minutes)"}
    model = optimizer = fn = None
    try:
        model, forward = build(config, spec, device)
        fn = torch.compile(model) if spec.get("compile") else model
        optimizer = build_optimizer(param_groups(model, 0.1), OptimConfig(), device)
        ids = torch.randint(0, config.vocab_size, (micro_batch, seq_len), device=device)
        docs = (torch.arange(seq_len, device=device) // max(seq_len // 4, 1)).expand(micro_batch, -1) if spec.get("docs") else None
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        def step():
            with autocast:
                loss = forward(fn, ids, docs)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        for _ in range(warmup):
            step()
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        seconds = (time.perf_counter() - start) / steps
        tokens_per_s = micro_batch * seq_len / seconds
        flops_per_token = _flops_per_token(config, seq_len)
        row.update(tokens_per_s=tokens_per_s, step_s=seconds, mfu=tokens_per_s * flops_per_token / peak,
                   peak_memory_gb=torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None)
    except torch.cuda.OutOfMemoryError:
        row["skipped"] = "out of memory"
    finally:
        model = optimizer = fn = None  # noqa: F841  (free the variant before the next one)
        gc.collect()
        torch._dynamo.reset()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def _flops_per_token(config: ModelConfig, seq_len: int) -> float:
    """SLM.flops_per_token without allocating the model: built on the meta device."""
    with torch.device("meta"):
        return SLM(config).flops_per_token(seq_len)


def main() -> None:
    p = device_parser(__doc__)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--micro-batches", type=int, nargs="+", default=[8])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()

    device, dtype, name = device_setup(args)
    config = ModelConfig.from_preset(args.preset, max_seq_len=max(args.seq_len, 1))
    measured = matmul_peak(device, dtype, 8192 if device.type == "cuda" else 1024)
    datasheet = _peak_flops(device) if device.type == "cuda" else None
    print(f"{name}: measured {dtype} matmul peak {measured / 1e12:.1f} TFLOP/s"
          + (f" (datasheet {datasheet / 1e12:.0f})" if datasheet else ""))
    print(f"{args.preset}: {_flops_per_token(config, args.seq_len) / 1e9:.2f} GFLOP/token at seq {args.seq_len}")
    rows = []
    for micro_batch in args.micro_batches:
        for variant in args.variants:
            row = run_variant(variant, VARIANTS[variant], config, micro_batch, args.seq_len, device, args.steps,
                              args.warmup, measured)
            rows.append(row)
            if "skipped" in row:
                print(f"{variant:<28} mb {micro_batch:<3} skipped: {row['skipped']}")
            else:
                memory = f"{row['peak_memory_gb']:6.1f} GB" if row["peak_memory_gb"] is not None else "     n/a"
                print(f"{variant:<28} mb {micro_batch:<3} {row['tokens_per_s']:>10,.0f} tok/s  MFU {row['mfu']:6.1%}  {memory}")
    ours = {r["variant"]: r for r in rows if "tokens_per_s" in r}
    if "ours, dropout 0" in ours and "hf-arcee" in ours:
        print(f"ours / transformers (eager, dropout 0): {ours['ours, dropout 0']['tokens_per_s'] / ours['hf-arcee']['tokens_per_s']:.2f}x")
    out = args.out or ROOT / "bench" / "results" / f"train_throughput_{device.type}.json"
    write_report(out, {"benchmark": "train_throughput", "command": command(), "device": name,
                       "machine": machine(), "python": platform.python_version(), "torch": torch.__version__,
                       "cuda": torch.version.cuda, "flash_attn_installed": importlib.util.find_spec("flash_attn") is not None,
                       "preset": args.preset, "seq_len": args.seq_len, "dtype": str(dtype),
                       "matmul_peak_flops": measured, "datasheet_peak_flops": datasheet,
                       "flops_per_token": _flops_per_token(config, args.seq_len), "rows": rows})
    print(f"written to {out}")


if __name__ == "__main__":
    main()
