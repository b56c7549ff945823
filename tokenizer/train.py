"""Train a tokenizer: `python -m tokenizer.train --input corpus/ --vocab-size 32768 --out runs/tokenizer`.

Cleans the corpus, splits it into morphemes with MeCab (plus the medical user
dictionary), trains the SentencePiece Unigram model with the report's settings
(§2.2) and saves a tokenizer folder that `JapaneseTokenizer.load` reads.
"""

from __future__ import annotations

import argparse
import json
import sys

from tokenizer.clean import CleanConfig
from tokenizer.corpus import CorpusError
from tokenizer.morph import STARTER_DICT, UserDictError
from tokenizer.unigram import TokenizerTrainingError, train_tokenizer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", nargs="+", required=True, help="text/JSONL files or directories of them")
    p.add_argument("--out", required=True, help="folder to write the tokenizer to")
    p.add_argument("--vocab-size", type=int, default=32768)
    p.add_argument("--user-dict", default=str(STARTER_DICT),
                   help="term CSV (surface,reading,category) for MeCab; 'none' for plain unidic (default: the starter list)")
    p.add_argument("--no-chat-tokens", action="store_true",
                   help="do not reserve <|system|> <|user|> <|assistant|> (the report adds them at fine-tuning)")
    p.add_argument("--allow-smaller-vocab", action="store_true", help="accept a smaller vocabulary if the corpus is too small")
    p.add_argument("--max-repeat", type=int, default=3, help="cut runs of one character longer than this")
    p.add_argument("--skip-clean-step", nargs="*", default=[], help="cleaning steps to switch off, by name")
    p.add_argument("--encoding", default="utf-8", help="encoding of the input files (e.g. cp932 for Shift_JIS)")
    p.add_argument("--text-field", default="text", help="field holding the text in .jsonl files")
    p.add_argument("--num-workers", type=int, default=None, help="processes (default: all cores)")
    args = p.parse_args(argv)
    try:
        summary = train_tokenizer(
            args.input, args.out, vocab_size=args.vocab_size,
            user_dict=None if args.user_dict.lower() == "none" else args.user_dict,
            chat_tokens=not args.no_chat_tokens, allow_smaller_vocab=args.allow_smaller_vocab,
            clean_config=CleanConfig(skip=args.skip_clean_step, max_repeat=args.max_repeat),
            num_workers=args.num_workers, encoding=args.encoding, text_field=args.text_field,
        )
    except (CorpusError, UserDictError, TokenizerTrainingError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    print(f"saved tokenizer to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
