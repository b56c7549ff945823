"""Train a tokenizer: `python -m tokenizer.train --input corpus/ --vocab-size 32768 --out runs/tokenizer`.

Cleans the corpus, splits it into morphemes with MeCab (plus the medical user
dictionary), trains the SentencePiece Unigram model with the report's settings
(§2.2) and saves a tokenizer folder that `JapaneseTokenizer.load` reads.

The folder is built beside --out and moved into place only when complete: a
failed run leaves --out exactly as it was. An --out that is not empty is refused
unless --overwrite is given, and then the old tokenizer is replaced only once
the new one is ready. Every input is read through before training, so a file in
the wrong encoding fails at once, named. Inputs can differ in encoding and
format: `--input ../aozora:encoding=cp932,format=aozora notes.jsonl` mixes
Shift_JIS Aozora Bunko works (header, footer, ruby and editor's notes removed)
with UTF-8 JSONL.
A failure is one line `error: ...` and exit status 2 (--debug: the traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tokenizer.clean import CleanConfig
from tokenizer.corpus import CorpusError
from tokenizer.folders import FolderExistsError
from tokenizer.morph import STARTER_DICT, UserDictError
from tokenizer.unigram import TokenizerTrainingError, train_tokenizer

# What a user can cause and fix; anything else is a bug in this package, shown as a traceback.
USER_ERRORS = (CorpusError, UserDictError, TokenizerTrainingError, FolderExistsError, OSError)


class UsageError(Exception):
    """A bad command line (argparse's complaint), reported as one line like every other error."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(f"{message} (see --help)")


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m tokenizer.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", nargs="+", required=True,
                   help="text/JSONL files or directories of them; PATH:encoding=cp932,format=aozora gives one input its "
                        "own encoding and format (text, jsonl, aozora: Aozora Bunko works, markup and notes removed)")
    p.add_argument("--out", required=True, help="folder to write the tokenizer to (new or empty, or see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the tokenizer already in --out, once the new one is complete")
    p.add_argument("--vocab-size", type=_positive, default=32768)
    p.add_argument("--user-dict", default=str(STARTER_DICT),
                   help="term CSV (surface,reading,category) for MeCab; 'none' for plain unidic (default: the starter list)")
    p.add_argument("--no-chat-tokens", action="store_true",
                   help="do not reserve <|system|> <|user|> <|assistant|> (the report adds them at fine-tuning)")
    p.add_argument("--allow-smaller-vocab", action="store_true", help="accept a smaller vocabulary if the corpus is too small")
    p.add_argument("--max-repeat", type=int, default=3, help="cut runs of one character longer than this")
    p.add_argument("--skip-clean-step", nargs="*", default=[], help="cleaning steps to switch off, by name")
    p.add_argument("--encoding", default="utf-8",
                   help="encoding of the inputs that do not name their own (e.g. cp932 for Shift_JIS)")
    p.add_argument("--text-field", default="text", help="field holding the text in .jsonl files")
    p.add_argument("--num-workers", type=_positive, default=None, help="processes (default: all cores)")
    p.add_argument("--debug", action="store_true", help="on an error, show the traceback too")
    return p


def _fail(error: BaseException | str) -> int:
    message = " ".join(str(error).split("\n")).strip() or type(error).__name__
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except UsageError as e:
        return _fail(e)
    debug = args.debug
    try:
        clean_config = CleanConfig(skip=args.skip_clean_step, max_repeat=args.max_repeat)
    except ValueError as e:
        if debug:
            raise
        return _fail(str(e).replace("CleanConfig.skip", "--skip-clean-step").replace("CleanConfig.max_repeat", "--max-repeat"))
    out = Path(args.out)
    had_tokenizer = False
    try:
        had_tokenizer = out.is_dir() and any(out.iterdir())
        summary = train_tokenizer(
            args.input, out, vocab_size=args.vocab_size,
            user_dict=None if args.user_dict.lower() == "none" else args.user_dict,
            chat_tokens=not args.no_chat_tokens, allow_smaller_vocab=args.allow_smaller_vocab,
            clean_config=clean_config, num_workers=args.num_workers, encoding=args.encoding,
            text_field=args.text_field, overwrite=args.overwrite,
        )
    except USER_ERRORS as e:
        if debug:
            raise
        kept = had_tokenizer and not isinstance(e, FolderExistsError)
        return _fail(f"{e} (the tokenizer in {out} is unchanged)" if kept else e)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"error: interrupted; {out} is unchanged", file=sys.stderr)
        return 130
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    if had_tokenizer:
        print(f"replaced the tokenizer in {out}: the new one was moved in once complete, the old one moved aside and deleted")
    else:
        print(f"saved tokenizer to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
