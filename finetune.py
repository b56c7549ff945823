"""Instruction tuning (report §2.4.2).

    python finetune.py --config configs/finetune/sample.yaml
    python finetune.py --config configs/finetune/sample.yaml --init_from runs/pretrain/x/checkpoints/step-0000300
    torchrun --nproc_per_node 4 finetune.py --config ... [--deepspeed configs/deepspeed/zero2.json]
    python finetune.py --config ... --resume
"""

import argparse
import sys

from slm.config import ConfigError
from slm.finetune.trainer import FinetuneConfig, finetune
from tokenizer.corpus import CorpusError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="an instruction-tuning YAML (configs/finetune/*.yaml)")
    p.add_argument("--resume", action="store_true", help="continue from the latest complete checkpoint in out/")
    p.add_argument("--deepspeed", help="DeepSpeed JSON config (ZeRO-2)")
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)
    args, overrides = p.parse_known_args(argv)
    try:
        config = FinetuneConfig.load(args.config, overrides)
        if args.deepspeed:
            config = config.replace(deepspeed=args.deepspeed)
        result = finetune(config, resume=args.resume)
    except (ConfigError, CorpusError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if result["best"]:
        print(f"best checkpoint: {result['best'][1]} ({config.metric} {result['best'][0]:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
