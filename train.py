"""Pretraining and continued pretraining (report §2.4.1).

    python train.py --config configs/pretrain/tiny-sample.yaml
    torchrun --nproc_per_node 4 train.py --config configs/pretrain/ncvc-slm-1b.yaml
    torchrun --nproc_per_node 4 train.py --config configs/pretrain/ncvc-slm-1b.yaml --deepspeed configs/deepspeed/zero2.json
    python train.py --config ... --resume            # continue from the latest complete checkpoint
    python train.py --config ... --optim.lr 5e-4     # any config field, dotted
"""

import argparse
import sys

from slm.config import ConfigError
from slm.train.config import TrainConfig
from slm.train.trainer import train


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="a pretraining YAML (configs/pretrain/*.yaml)")
    p.add_argument("--resume", action="store_true", help="continue from the latest complete checkpoint in out/")
    p.add_argument("--deepspeed", help="DeepSpeed JSON config (ZeRO-2): overrides the config's deepspeed field")
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by the deepspeed launcher
    args, overrides = p.parse_known_args(argv)
    try:
        config = TrainConfig.load(args.config, overrides)
        if args.deepspeed:
            config = config.replace(deepspeed=args.deepspeed)
        result = train(config, resume=args.resume)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if result.get("stopped"):
        print(f"stopped: {result['stopped']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
