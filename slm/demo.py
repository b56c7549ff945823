"""`make demo`: train a tokenizer on the shipped sample corpus, build the tiny model on its
vocabulary, report its size, save it with its tokenizer, reload both and generate.

The pretraining issue turns this into the real end-to-end run on the shipped
sample data; until then it exercises tokenizer and model package top to bottom.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from slm.config import ModelConfig
from slm.model import SLM
from tokenizer import JapaneseTokenizer

SAMPLE_CORPUS = Path(__file__).resolve().parents[1] / "data" / "sample" / "corpus"
PROMPTS = ["糖尿病の既往歴があり、", "胸部X線で浸潤影を認め"]


def run(out: Path, preset: str = "tiny", seed: int = 0, corpus: Path = SAMPLE_CORPUS,
        vocab_size: int = 8000) -> list[str]:
    torch.manual_seed(seed)
    tok = JapaneseTokenizer.train([corpus], out / "tokenizer", vocab_size=vocab_size, allow_smaller_vocab=True)
    print(f"tokenizer: {tok.vocab_size:,} pieces; {tok.encode(PROMPTS[0])} <- {PROMPTS[0]!r}")

    config = ModelConfig.from_preset(preset, vocab_size=tok.vocab_size, bos_token_id=tok.bos_id,
                                     eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    model = SLM(config)
    seq = config.max_seq_len
    print(f"model {preset}: {model.num_params():,} parameters "
          f"({model.num_params(embeddings=False):,} without the embedding)")
    print(f"training FLOPs per token at sequence {seq}: {model.flops_per_token(seq):,.0f}")
    model_dir = out / "model"
    model.save_pretrained(model_dir)
    tok.save(model_dir / "tokenizer")
    print(f"saved to {model_dir}/ ({', '.join(sorted(p.name for p in model_dir.iterdir()))})")

    model, tok = SLM.from_pretrained(model_dir), JapaneseTokenizer.load(model_dir / "tokenizer")
    prompts = [tok.encode(p, add_bos=True) for p in PROMPTS]
    greedy = model.generate(prompts, max_new_tokens=12)
    sampled = model.generate(prompts, max_new_tokens=12, do_sample=True, temperature=0.8, top_p=0.9, seed=seed)
    texts = []
    for name, out_ids in (("greedy", greedy), ("sampled", sampled)):
        for row in out_ids.tolist():
            texts.append(tok.decode(row, skip_special_tokens=True))
            print(f"{name:>8}: {texts[-1]!r}")
    print("(an untrained model: the continuations are random pieces)")
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder for the tokenizer and model")
    parser.add_argument("--preset", default="tiny", choices=sorted(ModelConfig.PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run(args.out, args.preset, args.seed)


if __name__ == "__main__":
    main()
