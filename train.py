"""Pretraining and continued pretraining (report §2.4.1).

    python train.py --config configs/pretrain/tiny-sample.yaml
    torchrun --nproc_per_node 4 train.py --config configs/pretrain/ncvc-slm-1b.yaml
    torchrun --nproc_per_node 4 train.py --config configs/pretrain/ncvc-slm-1b.yaml --deepspeed configs/deepspeed/zero2.json
    python train.py --config ... --resume            # continue from the latest complete checkpoint
    python train.py --config ... --optim.lr 5e-4     # any config field, dotted
"""

import sys

from slm.config import ConfigError
from slm.train.cli import parse
from slm.train.config import TrainConfig
from slm.train.trainer import train


def main(argv=None) -> int:
    try:
        config, resume = parse(__doc__, TrainConfig, argv)
        result = train(config, resume=resume)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if result.get("stopped"):
        print(f"stopped: {result['stopped']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
