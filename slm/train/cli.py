"""What train.py and finetune.py share: --config with dotted overrides, --resume, --deepspeed."""

from __future__ import annotations

import argparse

from slm.train.config import LoopConfig


def parse(doc: str, config_cls: type[LoopConfig], argv=None) -> tuple[LoopConfig, bool]:
    """(the resolved config, whether to resume) from the command line."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="a run YAML (configs/pretrain/*.yaml, configs/finetune/*.yaml)")
    p.add_argument("--resume", action="store_true", help="continue from the latest complete checkpoint in out/")
    p.add_argument("--deepspeed", help="DeepSpeed JSON config (ZeRO-2): overrides the config's deepspeed field")
    p.add_argument("--base", help="the checkpoint to start from (the same as --init_from)")
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by the deepspeed launcher
    args, overrides = p.parse_known_args(argv)
    config = config_cls.load(args.config, overrides)
    if args.deepspeed:
        config = config.replace(deepspeed=args.deepspeed)
    if args.base:
        config = config.replace(init_from=args.base)
    return config, args.resume
