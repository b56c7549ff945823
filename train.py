"""Pretraining and continued pretraining (report §2.4.1).

    python train.py --config configs/pretrain/tiny-sample.yaml
    torchrun --nproc_per_node 4 train.py --config configs/pretrain/ncvc-slm-1b.yaml
    torchrun --nproc_per_node 4 train.py --config configs/pretrain/ncvc-slm-1b.yaml --deepspeed configs/deepspeed/zero2.json
    python train.py --config ... --resume            # continue from the latest complete checkpoint
    python train.py --config ... --overwrite         # start afresh where another run is (moved aside)
    python train.py --config ... --optim.lr 5e-4     # any config field, dotted
"""

import sys

from slm.train.cli import parse, run
from slm.train.config import TrainConfig
from slm.train.trainer import train


def main(argv=None) -> int:
    def body() -> int:
        config, args = parse(__doc__, TrainConfig, argv)
        result = train(config, resume=args.resume, overwrite=args.overwrite)
        if result.get("stopped"):
            print(f"stopped: {result['stopped']}", file=sys.stderr)
            return 1
        return 0

    return run(body, argv)


if __name__ == "__main__":
    sys.exit(main())
