"""Instruction tuning (report §2.4.2).

    python finetune.py --config configs/finetune/sample.yaml
    python finetune.py --config configs/finetune/sample.yaml --init_from runs/pretrain/x/checkpoints/step-0000300
    torchrun --nproc_per_node 4 finetune.py --config ... [--deepspeed configs/deepspeed/zero2.json]
    python finetune.py --config ... --resume
    python finetune.py --config ... --overwrite      # start afresh where another run is (moved aside)
"""

import sys

from slm.finetune.trainer import FinetuneConfig, finetune
from slm.train.cli import parse, run


def main(argv=None) -> int:
    def body() -> int:
        config, args = parse(__doc__, FinetuneConfig, argv)
        result = finetune(config, resume=args.resume, overwrite=args.overwrite)
        if result["best"]:
            print(f"best checkpoint: {result['best'][1]} ({config.metric} {result['best'][0]:.3f})")
        return 0

    return run(body, argv)


if __name__ == "__main__":
    sys.exit(main())
