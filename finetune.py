"""Instruction tuning (report §2.4.2).

    python finetune.py --config configs/finetune/sample.yaml
    python finetune.py --config configs/finetune/sample.yaml --init_from runs/pretrain/x/checkpoints/step-0000300
    torchrun --nproc_per_node 4 finetune.py --config ... [--deepspeed configs/deepspeed/zero2.json]
    python finetune.py --config ... --resume
"""

import sys

from slm.config import ConfigError
from slm.finetune.trainer import FinetuneConfig, finetune
from slm.train.cli import parse
from tokenizer.corpus import CorpusError


def main(argv=None) -> int:
    try:
        config, resume = parse(__doc__, FinetuneConfig, argv)
        result = finetune(config, resume=resume)
    except (ConfigError, CorpusError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if result["best"]:
        print(f"best checkpoint: {result['best'][1]} ({config.metric} {result['best'][0]:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
