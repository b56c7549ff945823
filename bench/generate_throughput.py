"""Generation throughput with the KV cache: prefill and decode tokens/s, ours against transformers'
`generate` on the same weights (ours exported to ArceeForCausalLM), greedy, synthetic prompts.

Prefill is timed as generation of one token (the prompt's forward pass plus one step); decode
as the extra time of `new` further tokens. Every row writes exactly `new` tokens (no early stop).

    python bench/generate_throughput.py                                   # GPU: ncvc-slm-1b, bf16, batch 1 and 32
    python bench/generate_throughput.py --device cpu --preset tiny --prompt 64 --new 16 --batches 1 4
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import command, device_parser, device_setup, machine, write_report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slm.config import ModelConfig  # noqa: E402
from slm.model import SLM  # noqa: E402


def timed(fn, device, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = device_parser(__doc__)
    p.add_argument("--prompt", type=int, default=512)
    p.add_argument("--new", type=int, default=128)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    device, dtype, name = device_setup(args)
    config = ModelConfig.from_preset(args.preset, attn_dropout=0.0, resid_dropout=0.0,
                                     max_seq_len=max(args.prompt + args.new + 1, 16))
    torch.manual_seed(0)
    ours = SLM(config).to(device=device, dtype=dtype).eval()
    models = {"ours": ours}
    if importlib.util.find_spec("transformers"):
        import transformers

        from slm import hf

        with tempfile.TemporaryDirectory() as d:
            hf.export(ours, d, dtype=dtype)
            models["transformers"] = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=dtype).to(device).eval()

    def generate(name, ids, new):
        with torch.no_grad():
            if name == "ours":
                return ours.generate(ids, max_new_tokens=new, eos_token_id=[])
            return models[name].generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0)

    rows = []
    for batch in args.batches:
        ids = torch.randint(3, config.vocab_size, (batch, args.prompt), device=device)
        for name in models:
            generate(name, ids, 2)  # warm-up
            prefill = timed(lambda: generate(name, ids, 1), device, args.repeats)
            full = timed(lambda: generate(name, ids, args.new + 1), device, args.repeats)
            row = {"model": name, "batch": batch, "prompt": args.prompt, "new": args.new,
                   "prefill_tokens_per_s": batch * args.prompt / prefill,
                   "decode_tokens_per_s": batch * args.new / max(full - prefill, 1e-9)}
            rows.append(row)
            print(f"{name:<13} batch {batch:<3} prefill {row['prefill_tokens_per_s']:>12,.0f} tok/s   "
                  f"decode {row['decode_tokens_per_s']:>10,.0f} tok/s")
    out = args.out or ROOT / "bench" / "results" / f"generate_throughput_{device.type}.json"
    write_report(out, {"benchmark": "generate_throughput", "command": command(), "device": name, "machine": machine(),
                       "torch": torch.__version__, "preset": args.preset, "dtype": str(dtype), "rows": rows})
    print(f"written to {out}")


if __name__ == "__main__":
    main()
