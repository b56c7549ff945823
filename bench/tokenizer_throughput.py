"""Tokenizer throughput: characters per second, end to end, against bare MeCab.

Measures on the same lines of text:
- bare fugashi (unidic-lite, wakati output): the ceiling, since the pipeline makes the same call;
- bare fugashi with node objects (`Tagger()(line)`), what most code calls "fugashi";
- `normalize` alone;
- `JapaneseTokenizer.encode` (normalise + MeCab + Unigram) on one core;
- `encode_batch` with 1..N worker processes (wall clock, pool start-up included).

    python bench/tokenizer_throughput.py                         # the sample corpus, repeated to --min-chars
    python bench/tokenizer_throughput.py --input ../shared/corpus/aozora --encoding cp932 --max-chars 20000000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import fugashi

from common import command, cpu_name, machine, write_report
from tokenizer import JapaneseTokenizer
from tokenizer.clean import normalize
from tokenizer.corpus import read_texts
from tokenizer.unigram import train_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, lines) -> float:
    start = time.perf_counter()
    fn(lines)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", nargs="+", default=[str(ROOT / "data" / "sample" / "corpus")])
    p.add_argument("--encoding", default="utf-8")
    p.add_argument("--tokenizer", help="a trained tokenizer folder (default: train one on the input)")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--min-chars", type=int, default=3_000_000, help="repeat the input up to this many characters")
    p.add_argument("--max-chars", type=int, default=20_000_000, help="use at most this many characters")
    p.add_argument("--workers", type=int, nargs="+", default=None, help="process counts (default 1..cores)")
    p.add_argument("--check-lossless", action="store_true", help="also count lines where decode(encode(x)) != normalize(x)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "tokenizer_throughput.json")
    args = p.parse_args()

    lines, n = [], 0
    for line in read_texts(args.input, encoding=args.encoding):
        lines.append(line)
        n += len(line)
        if n >= args.max_chars:
            break
    base = list(lines)
    while n < args.min_chars:
        lines += base
        n += sum(map(len, base))
    chars = sum(map(len, lines))

    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = args.tokenizer
        if tok_dir is None:
            tok_dir = str(Path(tmp) / "tok")
            train_tokenizer(args.input, tok_dir, vocab_size=args.vocab_size, allow_smaller_vocab=True,
                            encoding=args.encoding, progress=False)
        tok = JapaneseTokenizer.load(tok_dir)
        wakati, nodes = fugashi.Tagger("-Owakati"), fugashi.Tagger()
        results = {}
        # Clean the lines first the way a prepared corpus is, so MeCab sees the same text in every row.
        ready = [normalize(line).replace(" ", "\u2581") for line in lines]
        results["fugashi_wakati"] = chars / timed(lambda ls: [wakati.parse(x) for x in ls], ready)
        results["fugashi_nodes"] = chars / timed(lambda ls: [nodes(x) for x in ls], ready)
        results["normalize"] = chars / timed(lambda ls: [tok.normalize(x) for x in ls], lines)
        tok._pieces.clear()
        results["encode_1_core"] = chars / timed(lambda ls: [tok.encode(x) for x in ls], lines)
        for w in args.workers or range(1, (os.cpu_count() or 1) + 1):
            results[f"encode_batch_{w}_workers"] = chars / timed(lambda ls: tok.encode_batch(ls, num_workers=w), lines)
        if args.check_lossless:
            results_lossless = sum(tok.decode(tok.encode(x)) != tok.normalize(x) for x in base)
        n_tokens = sum(len(tok.encode(x)) for x in lines[: min(len(lines), 20000)])
        sample_chars = sum(map(len, lines[: min(len(lines), 20000)]))

    report = {
        "benchmark": "tokenizer_throughput",
        "command": command(),
        "machine": machine(),
        "versions": {"fugashi": getattr(fugashi, "__version__", "?")},
        "input": {"paths": args.input, "encoding": args.encoding, "lines": len(lines), "characters": chars,
                  "vocab_size": tok.vocab_size, "characters_per_token": sample_chars / max(n_tokens, 1)},
        "chars_per_s": results,
        "pipeline_vs_bare_mecab_1_core": results["encode_1_core"] / results["fugashi_wakati"],
    }
    if args.check_lossless:
        report["lossless_check"] = {"lines": len(base), "mismatches": results_lossless}
        print(f"lossless: {results_lossless} of {len(base):,} distinct input lines differ after decode(encode(x))")
    write_report(args.out, report)
    print(f"{chars:,} characters in {len(lines):,} lines; vocab {tok.vocab_size}; "
          f"{report['input']['characters_per_token']:.2f} characters/token; {os.cpu_count()} cores ({cpu_name()})")
    for name, v in results.items():
        print(f"  {name:<28}{v:>14,.0f} chars/s   {v / results['fugashi_wakati']:.2f}x bare MeCab")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
