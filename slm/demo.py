"""The last step of `make demo`: load the newest checkpoint of a pretraining run, show what it
generates, and report its held-out perplexity before and after training.

    python -m slm.demo --run runs/pretrain/tiny-sample
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from slm import runs
from slm.generate import RECOMMENDED
from slm.model import SLM
from slm.train import cli
from tokenizer import JapaneseTokenizer

PROMPTS = ["糖尿病の既往歴があり、", "胸部X線で浸潤影を認め"]


def run(run_dir: Path, seed: int = 0) -> dict:
    checkpoint = runs.latest_checkpoint(runs.checkpoints_dir(run_dir))
    if checkpoint is None:
        raise FileNotFoundError(f"{run_dir}/checkpoints holds no complete checkpoint; run train.py first")
    model, tok = SLM.from_pretrained(checkpoint), JapaneseTokenizer.load(checkpoint / runs.TOKENIZER_DIR)
    print(f"checkpoint {checkpoint}: {model.num_params():,} parameters, vocabulary {tok.vocab_size:,}")
    prompts = [tok.encode(p, add_bos=True) for p in PROMPTS]
    texts = {}
    for name, kwargs in (("greedy", dict(repetition_penalty=RECOMMENDED["repetition_penalty"])),
                         ("sampled", dict(RECOMMENDED, seed=seed))):
        out = model.generate(prompts, max_new_tokens=40, **kwargs)
        texts[name] = [tok.decode(row, skip_special_tokens=True) for row in out.tolist()]
        for text in texts[name]:
            print(f"{name:>8}: {text}")
    evals = runs.read_log(run_dir, "eval")
    ppl = {}
    if evals:
        ppl = {"before": math.exp(evals[0]["eval_loss"]), "after": math.exp(evals[-1]["eval_loss"]),
               "steps": evals[-1]["step"]}
        print(f"held-out perplexity: {ppl['before']:.1f} before training, {ppl['after']:.1f} after {ppl['steps']} steps")
    print(f"loss curve: {run_dir / runs.LOSS_PLOT}")
    return {"texts": texts, "perplexity": ppl}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/pretrain/tiny-sample"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    args = parser.parse_args(argv)

    def body() -> int:
        run(args.run, args.seed)
        return 0

    return cli.run(body, argv)


if __name__ == "__main__":
    sys.exit(main())
