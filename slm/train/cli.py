"""What train.py and finetune.py share: --config with dotted overrides, --resume, --overwrite,
--deepspeed, and failures ending in one line naming the problem (--debug: the traceback)."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable

from slm.checkpoint import CheckpointError
from slm.config import ConfigError
from slm.runs import StorageError
from slm.train.config import LoopConfig
from tokenizer.corpus import CorpusError

# What a user can cause and fix: their message says how. Anything else is a bug, shown in full.
USER_ERRORS = (ConfigError, CorpusError, CheckpointError, FileNotFoundError, StorageError)


def parse(doc: str, config_cls: type[LoopConfig], argv=None) -> tuple[LoopConfig, argparse.Namespace]:
    """(the resolved config, the flags: resume, overwrite, debug) from the command line."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="a run YAML (configs/pretrain/*.yaml, configs/finetune/*.yaml)")
    p.add_argument("--resume", action="store_true", help="continue from the latest complete checkpoint in out/")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in an out/ that holds another run, moving that run aside first")
    p.add_argument("--deepspeed", help="DeepSpeed JSON config (ZeRO-2): overrides the config's deepspeed field")
    p.add_argument("--base", help="the checkpoint to start from (the same as --init_from)")
    p.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by the deepspeed launcher
    args, overrides = p.parse_known_args(argv)
    if args.resume and args.overwrite:
        p.error("--resume continues the run in out/, --overwrite replaces it: give one")
    config = config_cls.load(args.config, overrides)
    if args.deepspeed:
        config = config.replace(deepspeed=args.deepspeed)
    if args.base:
        config = config.replace(init_from=args.base)
    return config, args


def run(body: Callable[[], int], argv, errors: tuple[type[Exception], ...] = ()) -> int:
    """`body()`'s exit code; a user error (USER_ERRORS, and a later stage's own `errors`) ends in one
    line on stderr and exit code 2."""
    try:
        return body()
    except (*USER_ERRORS, *errors) as e:
        if "--debug" in (sys.argv[1:] if argv is None else argv):
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2
