"""`make demo`: build the tiny model, report its size, save, reload and generate.

The pretraining issue replaces this with the real end-to-end run on the
shipped sample data; until then it exercises the model package top to bottom.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from slm.config import ModelConfig
from slm.model import SLM


def run(out: Path, preset: str = "tiny", seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    config = ModelConfig.from_preset(preset, eos_token_id=1, pad_token_id=1)
    model = SLM(config)
    seq = config.max_seq_len
    print(f"model {preset}: {model.num_params():,} parameters "
          f"({model.num_params(embeddings=False):,} without the embedding)")
    print(f"training FLOPs per token at sequence {seq}: {model.flops_per_token(seq):,.0f}")
    model.save_pretrained(out)
    print(f"saved to {out}/ ({', '.join(sorted(p.name for p in out.iterdir()))})")
    reloaded = SLM.from_pretrained(out)
    prompts = [[5, 6, 7, 8], [9, 10]]
    greedy = reloaded.generate(prompts, max_new_tokens=12)
    sampled = reloaded.generate(prompts, max_new_tokens=12, do_sample=True, temperature=0.8, top_p=0.9, seed=seed)
    print("greedy :", greedy.tolist())
    print("sampled:", sampled.tolist())
    return greedy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder for the saved model")
    parser.add_argument("--preset", default="tiny", choices=sorted(ModelConfig.PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run(args.out / "model", args.preset, args.seed)


if __name__ == "__main__":
    main()
