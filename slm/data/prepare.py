"""Corpus preparation (report §2.1): read -> clean -> filter -> deduplicate -> decontaminate ->
(quality classifier, optional) -> tokenize into shards, with a report of what was removed and why.

    python -m slm.data.prepare --config configs/data/sample.yaml [--out DIR] [--strict] [--section.field value]

One process streams the documents through the stages (cheap, and dedup needs
one order); a pool of worker processes tokenizes and writes shards (the
expensive part). In flight at any time: a bounded number of shards, so memory
does not grow with the corpus (the dedup filters are fixed-size too).

The output folder: `config.yaml` (resolved), `tokenizer/` (the one used),
`<source>/shard-*.npy` + `manifest.json` per source, `report.json` and
`summary.txt`. Rerunning into the same folder with the same config (and the same
tokenizer and input files) resumes: complete shards are kept, the rest rewritten,
byte-identical to a clean run.

A folder is never shared by two preparations: one that holds a preparation made
with another config, tokenizer or inputs is refused, naming what differs, unless
`--overwrite` (which says what it removes); a non-empty folder that holds no
preparation is refused either way. The tokenizer, the config and the input files
are checked before anything is written, so a failing start leaves the folder as it
was. Everything but the shards (which are resumable) is written whole or not at
all: files atomically, the tokenizer copy built beside and renamed.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import multiprocessing
import os
import resource
import shutil
import sys
import time
from collections import Counter, deque
from pathlib import Path

import numpy as np
import yaml
from tokenizer.progress import progress as progress_bar

from slm.checkpoint import atomic_write
from slm.config import Config, ConfigError, safe_name
from slm.data.decontam import DecontamConfig, build_decontam
from slm.data.dedup import DedupConfig, build_dedup
from slm.data.document import Document, Stage
from slm.data.filters import FilterConfig, build_filters
from slm.lm import load_lm
from slm.data.quality import QualityConfig, QualityFilter, train_quality_classifier
from slm.data.readers import ReadErrors, SourceConfig, check_source_encoding, read_documents
from slm.data.shards import (DOCS_SUFFIX, TOKENS_FILE, shard_complete, shard_stem, token_dtype, write_manifest,
                             write_shard)
from tokenizer.hf import load_tokenizer
from tokenizer.clean import CleanConfig, clean
from tokenizer.corpus import CorpusError, batched, list_files


@dataclasses.dataclass
class DataConfig(Config):
    out: str = "runs/data"
    tokenizer: str = ""  # a tokenizer folder (python -m tokenizer.train), or a transformers model's folder
    sources: list[SourceConfig] = dataclasses.field(default_factory=list)
    clean: dict = dataclasses.field(default_factory=dict)  # tokenizer.clean.CleanConfig fields
    filters: FilterConfig = dataclasses.field(default_factory=FilterConfig)
    dedup: DedupConfig = dataclasses.field(default_factory=DedupConfig)
    decontamination: DecontamConfig = dataclasses.field(default_factory=DecontamConfig)
    quality: QualityConfig = dataclasses.field(default_factory=QualityConfig)
    quality_sources: list[str] = dataclasses.field(default_factory=list)  # judged by the classifier; empty: all
    docs_per_shard: int = 10000
    num_workers: int = 0  # tokenizer processes; 0: one per core
    strict: bool = False  # stop at the first bad input line instead of counting it

    def validate(self) -> None:
        if not self.tokenizer:
            raise ConfigError("DataConfig.tokenizer must name a tokenizer folder")
        if not self.sources:
            raise ConfigError("DataConfig.sources is empty")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"DataConfig.sources: duplicate source names in {names}")
        if set(self.quality_sources) - set(names):
            raise ConfigError(f"DataConfig.quality_sources names unknown sources {sorted(set(self.quality_sources) - set(names))}")
        if self.docs_per_shard <= 0:
            raise ConfigError("DataConfig.docs_per_shard must be positive")
        try:
            CleanConfig.from_dict(self.clean)
        except ValueError as e:
            raise ConfigError(f"DataConfig.clean: {e}") from None


# ---------------------------------------------------------------- tokenizer workers

_worker_tok = None  # the worker's tokenizer (ours or a transformers one)


def _init_worker(tokenizer_dir: str) -> None:
    global _worker_tok
    _worker_tok = load_tokenizer(tokenizer_dir)


def _tokenize_shard(stem: str, texts: list[str], dtype: str) -> int:
    docs = [_worker_tok.encode(t, add_bos=True, add_eos=True) for t in texts]
    return write_shard(Path(stem), docs, np.dtype(dtype))


class _ShardWriter:
    """Hands shards to the worker pool (or tokenizes inline with one worker), keeping few in flight."""

    def __init__(self, tokenizer_dir: Path, num_workers: int, dtype: np.dtype, progress: bool):
        self.dtype = dtype.name
        self.pool = None
        if num_workers > 1:
            self.pool = multiprocessing.get_context("spawn").Pool(num_workers, _init_worker, (str(tokenizer_dir),))
        else:
            _init_worker(str(tokenizer_dir))
        self.max_in_flight = 2 * max(num_workers, 1)
        self.pending: deque = deque()
        self.tokens: Counter = Counter()  # per source
        self.skipped = 0
        self.bar = progress_bar(desc="shards", unit="shard", enabled=progress, position=1)

    def submit(self, source: str, stem: Path, texts: list[str]) -> None:
        if shard_complete(stem):  # resuming: this shard was written by an earlier run
            self.tokens[source] += int(np.load(stem.with_name(stem.name + DOCS_SUFFIX))[-1])
            self.skipped += 1
            self.bar.update()
            return
        if self.pool is None:
            self._done(source, _tokenize_shard(str(stem), texts, self.dtype))
            return
        while len(self.pending) >= self.max_in_flight:
            self._collect_one()
        self.pending.append((source, self.pool.apply_async(_tokenize_shard, (str(stem), texts, self.dtype))))

    def _done(self, source: str, n_tokens: int) -> None:
        self.tokens[source] += n_tokens
        self.bar.update()

    def _collect_one(self) -> None:
        source, result = self.pending.popleft()
        self._done(source, result.get())

    def drain(self) -> None:
        while self.pending:
            self._collect_one()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()
        self.bar.close()


# ---------------------------------------------------------------- the pipeline


BATCH = 256  # documents that go through the stages together (the quality stage embeds them in one call)


def build_stages(config: DataConfig, clean_config: CleanConfig, quality: Stage | None = None) -> list[Stage]:
    """Filters, document dedup, decontamination, the quality classifier, and sentence dedup last:
    it remembers the sentences of the documents it passes, so it must only see survivors."""
    dedup = build_dedup(config.dedup)
    sentences = [s for s in dedup if s.name == "sentence_dedup"]
    return [*build_filters(config.filters), *(s for s in dedup if s.name != "sentence_dedup"),
            *build_decontam(config.decontamination, lambda text: clean(text, clean_config)),
            *([quality] if quality is not None else []), *sentences]


class _ForSources:
    """A stage applied to the documents of some sources only; the others pass untouched."""

    def __init__(self, stage, sources: list[str]):
        self.stage, self.sources, self.name = stage, set(sources), stage.name

    def filter_batch(self, docs: list[Document]) -> list[Document | None]:
        chosen = [d for d in docs if not self.sources or d.source in self.sources]
        judged = iter(self.stage.filter_batch(chosen) if chosen else [])
        return [next(judged) if not self.sources or d.source in self.sources else d for d in docs]


def build_quality_stage(config: DataConfig, out: Path, clean_config: CleanConfig, progress: bool) -> _ForSources:
    """The report's quality classifier: label a sample of cleaned documents with the LM, embed, fit
    a random forest (saved as `<out>/quality_classifier.npz`); the stage keeps predicted-high documents."""
    lm = load_lm(config.quality.lm)
    chosen = [s for s in config.sources if not config.quality_sources or s.name in config.quality_sources]
    errors = ReadErrors(strict=config.strict)  # this pass only samples; the main pass counts bad input

    def cleaned():
        for source in chosen:
            for doc in read_documents(source, errors):
                doc.text = clean(doc.text, clean_config).strip()
                if doc.text:
                    yield doc

    classifier = train_quality_classifier(lm, cleaned(), config.quality, progress=progress)
    classifier.save(out / "quality_classifier.npz")
    stage = QualityFilter(lm, classifier, config.quality.threshold, config.quality.batch_size)
    return _ForSources(stage, config.quality_sources)


CONFIG_FILE, REPORT_FILE, SUMMARY_FILE, QUALITY_FILE = "config.yaml", "report.json", "summary.txt", "quality_classifier.npz"
TOKENIZER_COPY = "tokenizer"
OUTPUTS = (CONFIG_FILE, TOKENS_FILE, REPORT_FILE, SUMMARY_FILE, QUALITY_FILE, TOKENIZER_COPY)  # besides source folders
NOT_OUTPUT_DEFINING = ("num_workers", "strict", "out")  # they do not change what is written
TRASH_PREFIX = ".preparation.old-"  # what --overwrite is removing


def _output_defining(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in NOT_OUTPUT_DEFINING}


def _short(value) -> str:
    text = "(absent)" if value is _ABSENT else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_ABSENT = object()


def differences(previous: dict, current: dict, prefix: str = "") -> list[str]:
    """What differs between two resolved configs, as dotted fields (sources by name), `was -> now`."""
    found = []
    for key in [*previous, *(k for k in current if k not in previous)]:
        was, now = previous.get(key, _ABSENT), current.get(key, _ABSENT)
        where = f"{prefix}{key}"
        if was == now:
            continue
        if key == "inputs" and not prefix and isinstance(was, dict) and isinstance(now, dict):
            for name in (n for n in was if n in now and was[n] != now[n]):  # new or gone sources: see sources
                a, b = was[name], now[name]
                found.append(f"the input files of source {name!r} changed: {a.get('files')} files, "
                             f"{a.get('bytes')} bytes -> {b.get('files')} files, {b.get('bytes')} bytes"
                             + (" (same count and size: a file was modified, renamed or moved)"
                                if (a.get("files"), a.get("bytes")) == (b.get("files"), b.get("bytes")) else ""))
        elif isinstance(was, dict) and isinstance(now, dict):
            found += differences(was, now, where + ".")
        elif (key == "sources" and isinstance(was, list) and isinstance(now, list)
              and all(isinstance(s, dict) and "name" in s for s in [*was, *now])):
            old, new = {s["name"]: s for s in was}, {s["name"]: s for s in now}
            if [n for n in old if n in new] != [n for n in new if n in old]:
                found.append(f"{where}: order {list(old)} -> {list(new)}")
            found += [f"{where}: {n!r} only in the folder's preparation" for n in old if n not in new]
            found += [f"{where}: {n!r} is new" for n in new if n not in old]
            for name in (n for n in old if n in new):
                found += differences(old[name], new[name], f"{where}[{name}].")
        elif key == "tokenizer_sha256" and not prefix:
            found.append("the tokenizer's files differ (tokenizer_sha256)")
        else:
            found.append(f"{where}: {_short(was)} -> {_short(now)}")
    return found


def input_fingerprints(config: DataConfig) -> dict[str, dict]:
    """Per source: how many input files, their bytes, and a digest of their names, sizes and
    modification times; a preparation resumes only over the same inputs."""
    fingerprints = {}
    for source in config.sources:
        try:
            files = list_files(source.paths)
        except CorpusError as e:
            raise CorpusError(f"source {source.name!r}: {e}") from None
        digest, total = hashlib.sha256(), 0
        for path in files:
            st = path.stat()
            total += st.st_size
            digest.update(f"{path.resolve()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        fingerprints[source.name] = {"files": len(files), "bytes": total, "sha256": digest.hexdigest()}
    return fingerprints


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _check_inputs_outside(config: DataConfig, out: Path) -> None:
    """The output folder holds no input: overwriting or resuming there would change the inputs."""
    if _inside(Path(config.tokenizer), out):
        raise ConfigError(f"DataConfig.tokenizer {config.tokenizer} is inside the output folder {out}; "
                          "use the tokenizer's own folder, or another --out")
    for source in config.sources:
        for item in source.paths:
            if _inside(Path(item), out) or _inside(out, Path(item)):
                raise ConfigError(f"source {source.name!r}: input {item} and the output folder {out} overlap; "
                                  "write the preparation somewhere else (--out)")


def _previous_outputs(out: Path, previous: dict) -> list[Path]:
    """What a preparation wrote into `out`, going by its config: only names that are ours."""
    names = [s.get("name") for s in previous.get("sources", []) if isinstance(s, dict)]
    sources = []
    for name in names:
        try:
            sources.append(safe_name(name, "source name"))
        except ConfigError:  # never follow a name out of the folder, whatever the file says
            continue
    leftovers = [p for p in out.iterdir() if p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name)]
    return [p for p in (*(out / n for n in sources), *(out / n for n in OUTPUTS)) if p.exists() or p.is_symlink()] + leftovers


def claim_folder(out: Path, resolved: dict, overwrite: bool = False, log=print) -> str:
    """Make sure preparing `resolved` into `out` mixes with no other preparation; returns "fresh",
    "resume" or "overwrite". Raises ConfigError naming the folder and what differs; with
    `overwrite`, first removes the preparation that is there (and says what it removes)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"DataConfig.out {out} is a file, not a folder")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if all(e.startswith(TRASH_PREFIX) for e in entries):  # nothing, or what a killed --overwrite left
        for e in entries:
            shutil.rmtree(out / e)
        return "fresh"
    previous_file = out / CONFIG_FILE
    if not previous_file.is_file():
        shown = ", ".join(entries[:8]) + (f", ... ({len(entries)} entries)" if len(entries) > 8 else "")
        raise ConfigError(f"{out} is not empty ({shown}) and holds no preparation (no {CONFIG_FILE}); preparing into "
                          "it would mix the shards with what is there: use an empty or new folder (--out)")
    try:
        previous = yaml.safe_load(previous_file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{previous_file}: cannot read the folder's preparation config: {e}") from None
    if not isinstance(previous, dict):
        raise ConfigError(f"{previous_file}: not a preparation config (a mapping of fields)")
    if "inputs" not in previous:  # written before inputs were recorded: compare the rest
        resolved = {k: v for k, v in resolved.items() if k != "inputs"}
    diffs = differences(_output_defining(previous), _output_defining(resolved))
    if not diffs and not overwrite:
        return "resume"
    if not overwrite:
        raise ConfigError(f"{out} holds a preparation made with a different config or tokenizer ({previous_file}): "
                          + "; ".join(diffs[:10]) + (f"; and {len(diffs) - 10} more" if len(diffs) > 10 else "")
                          + ". Use another --out, or --overwrite to replace that preparation")
    removing = _previous_outputs(out, previous)
    new_sources = {s["name"] for s in resolved["sources"]}
    foreign = [n for n in entries if n in new_sources and out / n not in removing]
    if foreign:
        raise ConfigError(f"{out} holds {foreign}, not written by its preparation ({previous_file}), where this one "
                          "would write its sources; --overwrite removes only a preparation's own files: move them away")
    why = "; ".join(diffs[:5]) if diffs else "the same config: preparing again from scratch"
    log(f"--overwrite: removing the preparation in {out} ({why}): "
        + ", ".join(p.name + ("/" if p.is_dir() and not p.is_symlink() else "") for p in removing))
    # Each entry renamed away whole, the config last: a kill midway leaves the old preparation with
    # whole sources missing (resumable as it was, or replaced by another --overwrite), never a source
    # folder with half its shards; the trash folder goes with the next run.
    trash = out / f"{TRASH_PREFIX}{os.getpid()}"
    trash.mkdir()
    for path in [*(p for p in removing if p != previous_file), previous_file]:
        os.replace(path, trash / path.name)
    shutil.rmtree(trash)
    return "overwrite"


def _replace_folder(target: Path, build) -> None:
    """`build(folder)` into a folder beside `target`, then renamed into its place."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        build(tmp)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def _tokenizer_digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for name in ("tokenizer.model", "tokenizer.json", "user.dic", "tokenizer_config.json"):
        if (directory / name).is_file():
            digest.update((directory / name).read_bytes())
    return digest.hexdigest()


def prepare(config: DataConfig, progress: bool = True, overwrite: bool = False) -> dict:
    """Run the pipeline; returns the report (also written to `<out>/report.json` and `summary.txt`).

    `overwrite`: replace a preparation of another config that `config.out` holds (else an error)."""
    start = time.perf_counter()
    out = Path(config.out)
    # Everything that can fail on the config is tried before the folder is touched.
    tok = load_tokenizer(config.tokenizer)
    resolved = {**config.to_dict(), "tokenizer_sha256": _tokenizer_digest(Path(config.tokenizer)),
                "inputs": input_fingerprints(config)}
    # The corpus is cleaned with the tokenizer's own settings unless the data config says otherwise.
    clean_config = CleanConfig.from_dict(config.clean) if config.clean else tok.clean_config
    stages = build_stages(config, clean_config)  # reads the decontamination benchmarks
    for source in config.sources:
        check_source_encoding(source)
    _check_inputs_outside(config, out)
    claim_folder(out, resolved, overwrite, log=lambda m: print(m, file=sys.stderr))

    out.mkdir(parents=True, exist_ok=True)
    _write_text(out / CONFIG_FILE, yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))
    # half-written files and folders of an interrupted run (the folder is this preparation's now)
    for stale in [*out.glob(".*.tmp-*"), *out.glob(".*.old-*"),
                  *(p for s in config.sources for p in (out / s.name).glob(".*.tmp*"))]:
        shutil.rmtree(stale) if stale.is_dir() and not stale.is_symlink() else stale.unlink()
    _replace_folder(out / TOKENIZER_COPY, tok.save)
    # What training needs of the tokenizer, readable without it (slm.train imports no tokenizer stack).
    tokens = {"vocab_size": tok.vocab_size, "bos_id": tok.bos_id, "eos_id": tok.eos_id, "pad_id": tok.pad_id}
    _write_text(out / TOKENS_FILE, json.dumps(tokens) + "\n")
    if config.quality.enabled:  # before sentence dedup, which must see survivors only (build_stages)
        quality = build_quality_stage(config, out, clean_config, progress)
        at = next((i for i, s in enumerate(stages) if s.name == "sentence_dedup"), len(stages))
        stages.insert(at, quality)
    errors = ReadErrors(strict=config.strict)
    num_workers = config.num_workers or os.cpu_count() or 1
    writer = _ShardWriter(out / TOKENIZER_COPY, num_workers, token_dtype(tok.vocab_size), progress)
    per_source: dict[str, Counter] = {}
    cleaning_changes: Counter = Counter()
    try:
        for source in config.sources:
            counts = per_source[source.name] = Counter()
            directory = out / source.name
            directory.mkdir(exist_ok=True)
            buffer: list[str] = []
            n_shards = 0
            errors_before, examples_before = errors.total, len(errors.examples)
            documents = progress_bar(read_documents(source, errors), desc=source.name, unit="doc", enabled=progress)
            for batch in batched(documents, BATCH):
                counts["read"] += len(batch)
                for kept in _run_stages(batch, clean_config, cleaning_changes, stages, counts):
                    counts["kept"] += 1
                    buffer.append(kept.text)
                    if len(buffer) == config.docs_per_shard:
                        writer.submit(source.name, shard_stem(directory, n_shards), buffer)
                        buffer, n_shards = [], n_shards + 1
            if not counts["read"]:
                bad = errors.total - errors_before
                shown = errors.examples[examples_before : examples_before + 1]
                raise CorpusError(f"source {source.name!r} gave no document ({', '.join(source.paths)}): {bad} bad "
                                  "input line(s) or file(s)" + (f", the first: {shown[0]}" if shown else ""))
            if buffer:
                writer.submit(source.name, shard_stem(directory, n_shards), buffer)
                n_shards += 1
            writer.drain()
            counts["read_errors"] = errors.total - errors_before
            counts["shards"] = n_shards
            write_manifest(directory, n_shards, counts["kept"], writer.tokens[source.name], token_dtype(tok.vocab_size))
    finally:
        writer.close()

    elapsed = time.perf_counter() - start
    report = _report(config, per_source, writer, errors, cleaning_changes, stages, elapsed, num_workers)
    _write_text(out / REPORT_FILE, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    _write_text(out / SUMMARY_FILE, summary_table(report))
    return report


def _run_stages(docs: list[Document], clean_config: CleanConfig, changes: Counter, stages: list,
                counts: Counter) -> list[Document]:
    """Clean the documents, then pass them through every stage in order; count where each was removed.

    Stages see documents in input order either way; a stage with `filter_batch` gets them together.
    """
    for doc in docs:
        doc.text = clean(doc.text, clean_config, changes).strip()
    kept = [d for d in docs if d.text]
    counts["removed:clean"] += len(docs) - len(kept)
    for stage in stages:
        judged = stage.filter_batch(kept) if hasattr(stage, "filter_batch") else [stage(d) for d in kept]
        survivors = [d for d in judged if d is not None]
        counts[f"removed:{stage.name}"] += len(kept) - len(survivors)
        kept = survivors
    return kept


def _report(config, per_source, writer, errors, cleaning_changes, stages, elapsed, num_workers) -> dict:
    docs_read = sum(c["read"] for c in per_source.values())
    tokens = sum(writer.tokens.values())
    usage_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    usage_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "out": config.out,
        "stages": ["clean", *(s.name for s in stages)],
        "sources": {name: {**dict(c), "tokens": writer.tokens[name]} for name, c in per_source.items()},
        "read_errors": {"total": errors.total, "per_file": dict(errors.counts), "examples": errors.examples,
                        "documents_dropped": errors.dropped_documents},
        "cleaning_changed_documents": dict(cleaning_changes),
        "stage_stats": {s.name: dict(s.stats) for s in stages if getattr(s, "stats", None)},
        "quality_classifier": "quality_classifier.npz" if config.quality.enabled else None,
        "shards_resumed": writer.skipped,
        "seconds": elapsed,
        "num_workers": num_workers,
        "documents_per_s": docs_read / elapsed,
        "tokens_per_s": tokens / elapsed,
        "tokens_per_s_per_worker": tokens / elapsed / num_workers,
        "peak_rss_mb": {"main": usage_self / 1024, "largest_worker": usage_children / 1024},
    }


def summary_table(report: dict) -> str:
    """The report as a table a person reads: documents in and out per stage, tokens per source."""
    columns = ["read", "read_errors", *(f"removed:{s}" for s in report["stages"]), "kept", "tokens", "shards"]
    names = list(report["sources"])
    width = max(len(c) for c in columns) + 2
    lines = [f"{'':<{width}}" + "".join(f"{n:>16}" for n in names)]
    for c in columns:
        lines.append(f"{c:<{width}}" + "".join(f"{report['sources'][n].get(c, 0):>16,}" for n in names))
    errs = report["read_errors"]
    lines.append("")
    lines.append(f"bad input lines skipped: {errs['total']:,} (documents left out whole because of them: "
                 f"{errs['documents_dropped']:,})" + "".join(f"\n  {e}" for e in errs["examples"]))
    for name, stats in report["stage_stats"].items():
        lines.append(f"{name}: {json.dumps(stats, ensure_ascii=False)}")
    lines.append(f"{report['documents_per_s']:,.0f} documents/s, {report['tokens_per_s_per_worker']:,.0f} tokens/s per "
                 f"worker ({report['num_workers']} workers), {report['seconds']:.1f} s; "
                 f"peak memory {report['peak_rss_mb']['main']:.0f} MB main, {report['peak_rss_mb']['largest_worker']:.0f} MB worker")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="a YAML data config (configs/data/*.yaml)")
    p.add_argument("--out", help="output folder (overrides the config's)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad input line")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a preparation of another config that the output folder holds")
    p.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    args, overrides = p.parse_known_args(argv)
    try:
        config = DataConfig.load(args.config, overrides)
        if args.out:
            config = config.replace(out=args.out)
        if args.strict:
            config = config.replace(strict=True)
        report = prepare(config, overwrite=args.overwrite)
    except (ConfigError, CorpusError, OSError) as e:  # OSError: FileNotFoundError, permissions, a full disk
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary_table(report), end="")
    print(f"wrote {config.out}/report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
