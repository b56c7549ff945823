"""Training the SentencePiece Unigram model on morpheme-split text (report §2.2).

The corpus is cleaned (tokenizer.clean, all steps), split into morphemes by
MeCab, and counted; SentencePiece then trains on the (morpheme, count) table
(its TSV input format). Because every morpheme is a separate "sentence",
pieces can never cross a morpheme boundary, which is what the report's
whitespace pre-tokenizer over morpheme-split text achieves, without
confusing the boundaries with real spaces (those are ▁ inside morphemes).

The report's settings: vocabulary 32768, shrinking factor 0.75, maximum piece
length 16, 8 sub-iterations; identity normalisation, because cleaning already
did NFKC. Byte fallback keeps any character encodable.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm
from tokenizer.progress import progress as progress_bar

from tokenizer.clean import CleanConfig, clean, normalize
from tokenizer.corpus import Input, batched, count_texts, list_files, parse_input, read_texts
from tokenizer.folders import StagedFolder
from tokenizer.japanese import (BOS, CHAT_TOKENS, EOS, FORMAT_VERSION, MODEL_FILE, NEWLINE, SETTINGS_FILE, TERMS_FILE,
                                TOKENIZER_FILES, USER_DICT_FILE)
from tokenizer.morph import STARTER_DICT, Morphology, build_user_dict, read_terms, unidic_version

N_BYTE_PIECES = 256
LINES_PER_TASK = 2000


class TokenizerTrainingError(ValueError):
    """Training cannot produce what was asked (e.g. a corpus too small for the vocabulary)."""


# Worker state for counting morphemes in parallel.
_counter_state: tuple[Morphology, CleanConfig] | None = None


def _init_counter(user_dict: str | None, clean_config: dict) -> None:
    global _counter_state
    _counter_state = (Morphology(user_dict), CleanConfig.from_dict(clean_config))


def _count_morphemes(lines: list[str]) -> tuple[Counter, Counter, int, int]:
    """Morpheme counts of cleaned lines, the cleaning steps that changed something, characters
    and non-blank lines read (for the progress bar)."""
    morph, config = _counter_state
    counts, changes = Counter(), Counter()
    chars = n_texts = 0
    for raw in lines:
        chars += len(raw)
        n_texts += bool(raw.strip())
        for line in clean(raw, config, changes).split("\n"):
            if line:
                counts.update(morph.split(line.replace(" ", "▁")))
    return counts, changes, chars, n_texts


def count_morphemes(inputs: list[Input], user_dict: Path | None, clean_config: CleanConfig, num_workers: int,
                    n_texts: int | None = None, progress: bool = True):
    """Count the morphemes of the cleaned corpus, in parallel, with a progress bar over its `n_texts`
    non-blank texts (lines, or JSONL records)."""
    counts, changes = Counter(), Counter()
    n_chars = 0
    args = (str(user_dict) if user_dict else None, clean_config.to_dict())
    bar = progress_bar(total=n_texts, unit=" texts", unit_scale=True, desc="counting morphemes", enabled=progress)
    batches = batched(read_texts(inputs), LINES_PER_TASK)
    pool = multiprocessing.get_context("spawn").Pool(num_workers, _init_counter, args) if num_workers > 1 else None
    if pool is None:
        _init_counter(*args)
    try:
        for c, ch, chars, n_read in (pool.imap(_count_morphemes, batches) if pool else map(_count_morphemes, batches)):
            counts.update(c)
            changes.update(ch)
            n_chars += chars
            bar.update(n_read)
    finally:
        if pool is not None:
            pool.terminate()
    bar.close()
    return counts, changes, n_chars


def _explain(error: RuntimeError, vocab_size: int, n_morphemes: int, coverage: float) -> TokenizerTrainingError:
    """Turn sentencepiece's internal check failures into messages a user can act on."""
    text = str(error)
    m = re.search(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", text)
    if m:
        return TokenizerTrainingError(
            f"the corpus is too small for vocab_size={vocab_size}: its {n_morphemes:,} distinct morphemes "
            f"support at most {m.group(2)} pieces. Use a larger corpus, a smaller --vocab-size, or "
            "--allow-smaller-vocab to accept the smaller vocabulary."
        )
    m = re.search(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)", text)
    if m:
        return TokenizerTrainingError(
            f"vocab_size={vocab_size} is too small for this corpus: keeping {coverage:.2%} of its characters "
            f"needs {m.group(2)} pieces for single characters alone. Raise --vocab-size (rare characters "
            "fall back to bytes either way)."
        )
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return TokenizerTrainingError(f"sentencepiece could not train on this corpus: {lines[-1] if lines else text}")


def train_tokenizer(
    inputs: Iterable[str | Path],
    out: str | Path,
    vocab_size: int = 32768,
    user_dict: str | Path | None = STARTER_DICT,
    chat_tokens: bool = True,
    allow_smaller_vocab: bool = False,
    clean_config: CleanConfig | None = None,
    character_coverage: float = 0.9995,
    num_workers: int | None = None,
    encoding: str = "utf-8",
    text_field: str = "text",
    progress: bool = True,
    overwrite: bool = False,
) -> dict:
    """Train a tokenizer on text/JSONL/Aozora files or folders and save it to `out`; returns a summary.

    inputs: paths, `PATH:encoding=cp932,format=aozora` specs or `Input`s, each input in its own
      encoding and format (tokenizer.corpus.parse_input); `encoding` and `text_field` are the
      defaults for inputs that do not say.

    user_dict: a term CSV (surface,reading,category) compiled into a MeCab user
      dictionary; the project's starter list by default, None for plain unidic.
    chat_tokens: reserve <|system|> <|user|> <|assistant|>; False reproduces the
      report, which added them at fine-tuning time (32768 -> 32771).
    allow_smaller_vocab: if the corpus cannot fill `vocab_size`, train a smaller
      vocabulary instead of stopping with an error.
    overwrite: replace a tokenizer already in `out` (only once the new one is complete);
      without it, a non-empty `out` is refused (FolderExistsError) before any work.

    Nothing is written to `out` until the end: the folder is built in a hidden sibling
    (tokenizer.folders) and moved into place complete. Every input is read through and the
    user dictionary checked before training, so a bad file fails in seconds, naming itself.
    On any failure `out` is exactly as it was.
    """
    clean_config = clean_config or CleanConfig()
    num_workers = num_workers or os.cpu_count() or 1
    if num_workers < 1:
        raise TokenizerTrainingError(f"num_workers={num_workers}: need at least one process")
    specials = [BOS, EOS, NEWLINE, *(CHAT_TOKENS if chat_tokens else ())]
    n_fixed = 1 + len(specials) + N_BYTE_PIECES  # <unk>, specials, byte pieces
    if vocab_size <= n_fixed:
        raise TokenizerTrainingError(f"vocab_size={vocab_size} leaves no room: {n_fixed} ids are fixed (<unk>, specials, 256 bytes)")
    stage = StagedFolder(out, replace=overwrite, owned=TOKENIZER_FILES)  # refuses an occupied `out` now
    inputs = [parse_input(item, encoding, text_field) for item in inputs]
    removed = Counter()
    n_texts = count_texts(inputs, stats=removed)  # every file decodes, and there is text
    if user_dict is not None:
        read_terms(user_dict, lambda s: normalize(s, clean_config))  # a bad term list fails before any work

    with stage as tmp:
        summary = _train(inputs, tmp, vocab_size, user_dict, specials, allow_smaller_vocab, clean_config,
                         character_coverage, num_workers, n_texts, removed, progress)
    return summary


def _train(inputs: list[Input], out: Path, vocab_size: int, user_dict, specials: list[str], allow_smaller_vocab: bool,
           clean_config: CleanConfig, character_coverage: float, num_workers: int, n_texts: int,
           removed: Counter, progress: bool) -> dict:
    """Write the tokenizer's files into `out` (the temporary folder)."""
    dict_path = None
    if user_dict is not None:
        dict_path = out / USER_DICT_FILE
        n_terms = build_user_dict(user_dict, dict_path, lambda s: normalize(s, clean_config))
        Path(out / TERMS_FILE).write_bytes(Path(user_dict).read_bytes())
    Morphology(dict_path)  # loads here, so a dictionary MeCab refuses is an error, not a pool of failing workers

    counts, changes, n_chars = count_morphemes(inputs, dict_path, clean_config, num_workers, n_texts, progress)
    if not counts:
        shown = ", ".join(item.path for item in inputs[:3]) + (" ..." if len(inputs) > 3 else "")
        raise TokenizerTrainingError(f"no text left to train on in {shown} after cleaning")

    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "morphemes.tsv"
        with open(table, "w", encoding="utf-8") as f:
            for morpheme, n in counts.most_common():
                f.write(f"{morpheme}\t{n}\n")
        options = dict(
            input=str(table), input_format="tsv", model_prefix=str(Path(tmp) / "m"), model_type="unigram",
            vocab_size=vocab_size, shrinking_factor=0.75, max_sentencepiece_length=16, num_sub_iterations=8,
            normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False,
            split_by_unicode_script=False, split_by_number=False, byte_fallback=True,
            character_coverage=character_coverage, unk_id=0, bos_id=1, bos_piece=BOS, eos_id=2, eos_piece=EOS,
            pad_id=-1, control_symbols=specials[2:], num_threads=num_workers, minloglevel=2,
            hard_vocab_limit=not allow_smaller_vocab, max_sentence_length=1 << 16,
        )
        if progress:
            print(f"training Unigram: {len(counts):,} distinct morphemes, vocab {vocab_size:,} ...", flush=True)
        try:
            spm.SentencePieceTrainer.train(**options)
        except RuntimeError as e:
            raise _explain(e, vocab_size, len(counts), character_coverage) from e
        (out / MODEL_FILE).write_bytes((Path(tmp) / "m.model").read_bytes())

    sp = spm.SentencePieceProcessor(model_file=str(out / MODEL_FILE))
    summary = {
        "vocab_size": sp.get_piece_size(),
        "requested_vocab_size": vocab_size,
        "characters": n_chars,
        "distinct_morphemes": len(counts),
        "morphemes": sum(counts.values()),
        "cleaning_changed_lines": dict(changes),
        "user_dict_terms": n_terms if user_dict is not None else 0,
        "inputs": [{**dataclasses.asdict(item), "files": len(list_files([item.path]))} for item in inputs],
        **({"aozora_markup_removed": dict(removed)} if removed else {}),
    }
    settings = {
        "format_version": FORMAT_VERSION,
        "special_tokens": {s: sp.piece_to_id(s) for s in specials},
        "clean": clean_config.to_dict(),
        "unidic_version": unidic_version(),
        "user_dict": USER_DICT_FILE if user_dict is not None else None,
        "unigram": {k: v for k, v in options.items() if k not in ("input", "model_prefix", "num_threads", "minloglevel")},
        "training": summary,
    }
    (out / SETTINGS_FILE).write_text(json.dumps(settings, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return summary
