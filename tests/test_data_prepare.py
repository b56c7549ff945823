"""The corpus pipeline end to end: report, shards, resume after a crash, strict mode."""

import json

import pytest

from conftest import SAMPLE_CORPUS
from slm.config import ConfigError
from slm.data import prepare as prep
from slm.data.loader import MixtureConfig, PackedLoader
from slm.data.shards import TokenStream
from slm.data.prepare import DataConfig, main, prepare
from tokenizer.corpus import CorpusError


def config(tmp_path, tokenizer_dir, out="out", **kw):
    extra = tmp_path / "extra"
    if not extra.exists():
        extra.mkdir()
        rows = [{"text": "心不全の患者では体重の増加に注意する。利尿薬の効果を毎日評価する。"},
                {"text": "心不全の患者では体重の増加に注意する。利尿薬の効果を毎日評価する。"},  # an exact duplicate
                {"body": "no text field"}, "not json"]
        (extra / "notes.jsonl").write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)
                                                     for r in rows) + "\n", encoding="utf-8")
    fields = dict(out=str(tmp_path / out), tokenizer=str(tokenizer_dir), docs_per_shard=20, num_workers=1,
                  sources=[{"name": "sample", "paths": [str(SAMPLE_CORPUS)]},
                           {"name": "notes", "paths": [str(extra)]}])
    return DataConfig.from_dict({**fields, **kw})


def shard_bytes(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.glob("*/shard-*"))}


def test_prepare_writes_shards_report_and_summary(tmp_path, tokenizer_dir, tok):
    report = prepare(config(tmp_path, tokenizer_dir), progress=False)
    out = tmp_path / "out"
    sample, notes = report["sources"]["sample"], report["sources"]["notes"]
    assert sample["read"] == 171
    for src in (sample, notes):
        removed = sum(v for k, v in src.items() if k.startswith("removed:"))
        assert src["read"] == src["kept"] + removed
    assert notes["read"] == 2 and notes["kept"] == 1 and notes["read_errors"] == 2
    assert notes["removed:exact_dedup"] == 1
    assert any("notes.jsonl line 4: not valid JSON" in e for e in report["read_errors"]["examples"])
    assert sample["tokens"] > 50_000 and sample["shards"] == -(-sample["kept"] // 20)
    summary = (out / "summary.txt").read_text(encoding="utf-8")
    assert "kept" in summary and "bad input lines skipped: 2" in summary
    assert (out / "tokenizer" / "tokenizer.model").is_file() and (out / "config.yaml").is_file()
    # every document is framed by <begin_of_text> ... <end_of_text>, and the loader reads the shards
    stream = TokenStream(out / "sample")
    everything = stream.tokens(0, stream.n_tokens)
    assert (everything[stream.doc_starts] == tok.bos_id).all()
    assert (everything[stream.doc_starts[1:] - 1] == tok.eos_id).all() and everything[-1] == tok.eos_id
    assert len(stream.doc_starts) == sample["kept"] and everything.max() < tok.vocab_size
    loader = PackedLoader(out, seq_len=64, micro_batch=4, mixture=MixtureConfig(weights={"sample": 1.0}))
    assert next(loader)["input_ids"].shape == (4, 64)


def test_a_crash_midway_then_rerun_gives_byte_identical_shards(tmp_path, tokenizer_dir, monkeypatch):
    clean_run = tmp_path / "clean"
    prepare(config(tmp_path, tokenizer_dir, out="clean"), progress=False)

    real, calls = prep._tokenize_shard, []

    def crash_on_fourth(stem, texts, dtype):
        calls.append(stem)
        if len(calls) == 4:
            raise KeyboardInterrupt("killed")
        return real(stem, texts, dtype)

    monkeypatch.setattr(prep, "_tokenize_shard", crash_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        prepare(config(tmp_path, tokenizer_dir, out="crashed"), progress=False)
    crashed = tmp_path / "crashed"
    (crashed / "sample" / ".shard-00005.tokens.npy.tmp-999").write_bytes(b"half a file")
    assert not (crashed / "sample" / "manifest.json").exists()
    monkeypatch.setattr(prep, "_tokenize_shard", real)

    report = prepare(config(tmp_path, tokenizer_dir, out="crashed"), progress=False)
    assert report["shards_resumed"] == 3
    assert shard_bytes(crashed) == shard_bytes(clean_run)
    assert not list(crashed.glob("*/.shard-*"))


def test_rerun_with_another_config_or_tokenizer_is_refused(tmp_path, tokenizer_dir):
    import shutil

    tok_copy = tmp_path / "tok"
    shutil.copytree(tokenizer_dir, tok_copy)
    prepare(config(tmp_path, tok_copy), progress=False)
    with pytest.raises(ConfigError, match="different config"):
        prepare(config(tmp_path, tok_copy, docs_per_shard=7), progress=False)
    settings = tok_copy / "tokenizer.json"
    settings.write_text(settings.read_text(encoding="utf-8") + "\n", encoding="utf-8")  # retrained, say
    with pytest.raises(ConfigError, match="different config or tokenizer"):
        prepare(config(tmp_path, tok_copy), progress=False)


def test_strict_mode_stops_on_bad_input(tmp_path, tokenizer_dir):
    with pytest.raises(CorpusError, match=r"notes\.jsonl line 3: field 'text' is missing"):
        prepare(config(tmp_path, tokenizer_dir, strict=True), progress=False)


def test_cli_with_dotted_overrides(tmp_path, tokenizer_dir, capsys):
    path = tmp_path / "data.yaml"
    config(tmp_path, tokenizer_dir).save(path)
    assert main(["--config", str(path), "--out", str(tmp_path / "cli"), "--docs_per_shard", "50"]) == 0
    assert "kept" in capsys.readouterr().out
    assert json.loads((tmp_path / "cli" / "report.json").read_text())["sources"]["sample"]["shards"] == 4
    assert main(["--config", str(path), "--no_such.field", "1"]) == 2


def test_quality_stage_trains_a_forest_and_judges_chosen_sources(tmp_path, tokenizer_dir, tok):
    from slm.config import ModelConfig
    from slm.data.readers import ReadErrors, SourceConfig, read_documents
    from slm.model import SLM

    model_dir = tmp_path / "lm"
    SLM(ModelConfig.from_preset("tiny", vocab_size=tok.vocab_size, eos_token_id=tok.eos_id,
                                pad_token_id=tok.pad_id)).save_pretrained(model_dir)
    tok.save(model_dir / "tokenizer")
    docs = list(read_documents(SourceConfig(name="sample", paths=[str(SAMPLE_CORPUS)]), ReadErrors()))
    labels = tmp_path / "labels.jsonl"
    labels.write_text("\n".join(json.dumps({"id": f"{d.path}:{d.line}", "label": "高" if i % 2 else "低"})
                                for i, d in enumerate(docs[:20])) + "\n", encoding="utf-8")
    cfg = config(tmp_path, tokenizer_dir, quality={"enabled": True, "lm": str(model_dir), "labels_file": str(labels),
                                                   "n_estimators": 10}, quality_sources=["sample"])
    report = prepare(cfg, progress=False)
    sample, notes = report["sources"]["sample"], report["sources"]["notes"]
    assert "quality" in report["stages"] and (tmp_path / "out" / "quality_classifier.npz").is_file()
    assert sample["removed:quality"] + sample["kept"] + sum(
        v for k, v in sample.items() if k.startswith("removed:") and k != "removed:quality") == 171
    assert notes["removed:quality"] == 0  # not a judged source


def test_shipped_data_config_is_valid():
    from pathlib import Path

    cfg = DataConfig.load(Path(__file__).resolve().parents[1] / "configs" / "data" / "sample.yaml")
    assert [s.name for s in cfg.sources] == ["clinical", "heldout"] and not cfg.quality.enabled


def test_sigkill_midway_then_rerun_gives_byte_identical_shards(tmp_path, tokenizer_dir):
    import os
    import signal
    import subprocess
    import sys
    import time

    corpus = tmp_path / "many"
    corpus.mkdir()
    for i in range(8):  # enough documents that tokenizing takes seconds, not milliseconds
        for f in SAMPLE_CORPUS.glob("*.txt"):
            (corpus / f"{i}-{f.name}").write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    base = dict(tokenizer=str(tokenizer_dir), docs_per_shard=10, num_workers=1,
                sources=[{"name": "big", "paths": [str(corpus)]}],
                dedup={"exact_documents": False, "repeated_sentences": False})
    prepare(DataConfig.from_dict({**base, "out": str(tmp_path / "clean")}), progress=False)

    path = tmp_path / "data.yaml"
    DataConfig.from_dict({**base, "out": str(tmp_path / "killed")}).save(path)
    proc = subprocess.Popen([sys.executable, "-m", "slm.data.prepare", "--config", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = tmp_path / "killed" / "big" / "shard-00003.docs.npy"
    deadline = time.time() + 120
    while time.time() < deadline and not first.exists():
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "big" / "manifest.json").exists()  # it really stopped midway
    assert main(["--config", str(path)]) == 0
    assert json.loads((tmp_path / "killed" / "report.json").read_text())["shards_resumed"] >= 4
    assert shard_bytes(tmp_path / "killed") == shard_bytes(tmp_path / "clean")
