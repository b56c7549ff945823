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


# ---------------------------------------------------------------- names, folders, encodings

def small(tmp_path, tokenizer_dir, out="small", **kw):
    """A two-source preparation of a few documents: quick."""
    for name in ("a", "b"):
        if not (tmp_path / f"{name}.txt").exists():
            (tmp_path / f"{name}.txt").write_text("".join(f"心不全の患者{i}では体重の増加に注意する。利尿薬の効果を毎日評価する。\n\n"
                                                          for i in range(6)), encoding="utf-8")
    fields = dict(out=str(tmp_path / out), tokenizer=str(tokenizer_dir), docs_per_shard=4, num_workers=1,
                  sources=[{"name": "a", "paths": [str(tmp_path / "a.txt")]},
                           {"name": "b", "paths": [str(tmp_path / "b.txt")]}],
                  dedup={"exact_documents": False, "repeated_sentences": False, "capacity": 1000,
                         "sentence_capacity": 1000})
    return DataConfig.from_dict({**fields, **kw})


def snapshot(folder):
    """Every file under `folder` (hidden ones too) with its bytes and modification time."""
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\\b", ".hidden", "", "x y"])
def test_a_source_name_that_is_no_single_folder_name_is_refused_at_config_load(tmp_path, tokenizer_dir, name):
    path = tmp_path / "data.yaml"
    path.write_text(json.dumps({"out": str(tmp_path / "out"), "tokenizer": str(tokenizer_dir),
                                "sources": [{"name": name, "paths": [str(SAMPLE_CORPUS)]}]}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"data\.yaml: .*SourceConfig\.name") as info:
        DataConfig.load(path)
    assert repr(name) in str(info.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "shard-00000.tokens.npy").exists()


def test_safe_name_is_one_check_for_every_config_name():
    from slm.config import safe_name

    assert safe_name("clinical-notes_v2.1", "X.name") == "clinical-notes_v2.1" and safe_name("カルテ", "X.name")
    for bad in ("..", "a/b", "/abs", ".x", "a\x00b"):
        with pytest.raises(ConfigError, match=r"StageConfig\.name"):
            safe_name(bad, "StageConfig.name")


def test_a_folder_holding_another_preparation_is_refused_and_left_unchanged(tmp_path, tokenizer_dir):
    prepare(small(tmp_path, tokenizer_dir), progress=False)
    out = tmp_path / "small"
    before = snapshot(out)
    other = small(tmp_path, tokenizer_dir, sources=[{"name": "a", "paths": [str(tmp_path / "a.txt")]},
                                                    {"name": "c", "paths": [str(tmp_path / "b.txt")]}],
                  docs_per_shard=3)
    with pytest.raises(ConfigError) as info:
        prepare(other, progress=False)
    message = str(info.value)
    assert str(out) in message and "different config" in message and "--overwrite" in message
    assert "docs_per_shard: 4 -> 3" in message and "'b' only in the folder's preparation" in message
    assert "'c' is new" in message
    assert snapshot(out) == before


def test_changed_input_files_are_refused_not_mixed_into_the_old_shards(tmp_path, tokenizer_dir):
    prepare(small(tmp_path, tokenizer_dir), progress=False)
    before = snapshot(tmp_path / "small")
    with open(tmp_path / "b.txt", "a", encoding="utf-8") as f:
        f.write("追記された文書です。心臓の働きを説明する。\n")
    with pytest.raises(ConfigError, match=r"the input files of source 'b' changed: 1 files, \d+ bytes -> 1 files"):
        prepare(small(tmp_path, tokenizer_dir), progress=False)
    assert snapshot(tmp_path / "small") == before


def test_overwrite_replaces_the_other_preparation_and_says_what_it_removes(tmp_path, tokenizer_dir, capsys):
    prepare(small(tmp_path, tokenizer_dir), progress=False)
    out = tmp_path / "small"
    (out / "b" / "notes.txt").write_text("mine")  # inside the old preparation's source folder: goes with it
    (out / "README.md").write_text("kept")  # not the preparation's: stays
    path = tmp_path / "other.yaml"
    small(tmp_path, tokenizer_dir, sources=[{"name": "c", "paths": [str(tmp_path / "a.txt")]}]).save(path)
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "'c' is new" in err
    assert main(["--config", str(path), "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert f"--overwrite: removing the preparation in {out}" in err
    assert all(name in err for name in ("a/", "b/", "config.yaml", "tokenizer/", "report.json", "tokens.json"))
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "c", "config.yaml", "report.json", "summary.txt",
                                                     "tokenizer", "tokens.json"]
    assert json.loads((out / "report.json").read_text())["sources"].keys() == {"c"}
    assert not list(out.glob(".*"))  # no temporary file or folder left behind


def test_a_folder_that_holds_no_preparation_is_never_prepared_into(tmp_path, tokenizer_dir):
    out = tmp_path / "small"
    out.mkdir()
    (out / "a").mkdir()
    (out / "a" / "shard-00000.docs.npy").write_bytes(b"someone else's")
    (out / "thesis.tex").write_text("mine")
    before = snapshot(out)
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match=r"is not empty \(a, thesis\.tex\) and holds no preparation"):
            prepare(small(tmp_path, tokenizer_dir), progress=False, overwrite=overwrite)
    assert snapshot(out) == before


def test_a_failing_start_changes_nothing(tmp_path, tokenizer_dir):
    prepare(small(tmp_path, tokenizer_dir), progress=False)
    out = tmp_path / "small"
    before = snapshot(out)
    with pytest.raises(CorpusError, match=r"source 'b': .*missing\.txt: no such file"):
        prepare(small(tmp_path, tokenizer_dir, sources=[{"name": "a", "paths": [str(tmp_path / "a.txt")]},
                                                        {"name": "b", "paths": [str(tmp_path / "missing.txt")]}]),
                progress=False, overwrite=True)
    with pytest.raises(FileNotFoundError, match="is not a tokenizer folder"):
        prepare(small(tmp_path, tokenizer_dir, tokenizer=str(tmp_path / "no-tokenizer")), progress=False, overwrite=True)
    with pytest.raises(ConfigError, match="and the output folder .* overlap"):  # inputs inside the output: never
        prepare(small(tmp_path, tokenizer_dir, sources=[{"name": "a", "paths": [str(out / "b")]}]), progress=False,
                overwrite=True)
    assert snapshot(out) == before


def test_the_same_config_resumes_and_rewrites_its_files_whole(tmp_path, tokenizer_dir):
    first = prepare(small(tmp_path, tokenizer_dir), progress=False)
    out = tmp_path / "small"
    shards = shard_bytes(out)
    again = prepare(small(tmp_path, tokenizer_dir, num_workers=1, strict=True), progress=False)
    assert again["shards_resumed"] == first["sources"]["a"]["shards"] + first["sources"]["b"]["shards"]
    assert shard_bytes(out) == shards and not list(out.glob(".*")) and not list(out.glob("*/.*"))
    assert (out / "tokenizer" / "tokenizer.model").is_file()


def test_a_source_in_another_encoding_names_the_encoding_field(tmp_path, tokenizer_dir):
    sjis = tmp_path / "aozora.txt"
    sjis.write_bytes("".join(f"吾輩は猫である{i}。名前はまだ無い。どこで生れたかとんと見当がつかぬ。\r\n\r\n"
                             for i in range(6)).encode("cp932"))
    sources = [{"name": "a", "paths": [str(tmp_path / "a.txt")]}, {"name": "aozora", "paths": [str(sjis)]}]
    with pytest.raises(CorpusError) as info:  # refused before anything is written
        prepare(small(tmp_path, tokenizer_dir, sources=sources), progress=False)
    message = str(info.value)
    assert "source 'aozora': none of its 1 file(s) reads as utf-8 text" in message
    assert "aozora.txt line 1: not valid utf-8 (byte 0x8c at column 1, offset 0 in the file)" in message
    assert "it decodes as Shift_JIS (cp932); set `encoding: cp932` in source 'aozora'" in message
    assert not (tmp_path / "small").exists()
    # one such file beside good ones: its lines are counted and skipped, and the report names the fix
    sjis_too = [{"name": "a", "paths": [str(tmp_path / "a.txt"), str(sjis)]}]
    report = prepare(small(tmp_path, tokenizer_dir, out="mixed", sources=sjis_too), progress=False)
    assert report["read_errors"]["total"] == 6 and report["sources"]["a"]["read"] == 6
    assert "set `encoding: cp932` in source 'a'" in report["read_errors"]["examples"][0]
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"source 'blank' gave no document \(\S+blank\.txt\): 0 bad input"):
        prepare(small(tmp_path, tokenizer_dir, out="blank", sources=[{"name": "blank", "paths": [str(blank)]}]),
                progress=False)
    with pytest.raises(CorpusError, match=r"aozora\.txt line 1: not valid utf-8 .*set `encoding: cp932`"):
        prepare(small(tmp_path, tokenizer_dir, sources=sources, strict=True), progress=False)
    sources[1]["encoding"] = "cp932"
    report = prepare(small(tmp_path, tokenizer_dir, out="fixed", sources=sources), progress=False)
    assert report["sources"]["aozora"]["read"] == 6 and report["read_errors"]["total"] == 0
    with pytest.raises(ConfigError, match=r"SourceConfig\.encoding of source 'aozora': unknown encoding 'sjis-x'"):
        small(tmp_path, tokenizer_dir, sources=[{"name": "aozora", "paths": [str(sjis)], "encoding": "sjis-x"}])


def test_cli_failures_are_one_line_and_debug_shows_the_traceback(tmp_path, tokenizer_dir, capsys):
    path = tmp_path / "data.yaml"
    small(tmp_path, tokenizer_dir, sources=[{"name": "a", "paths": [str(tmp_path / "nowhere")]}]).save(path)
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: source 'a'") and "Traceback" not in err
    with pytest.raises(CorpusError):
        main(["--config", str(path), "--debug"])


def test_a_kill_during_overwrite_leaves_nothing_that_mixes(tmp_path, tokenizer_dir, monkeypatch):
    prepare(small(tmp_path, tokenizer_dir), progress=False)
    out = tmp_path / "small"
    other = small(tmp_path, tokenizer_dir, sources=[{"name": "c", "paths": [str(tmp_path / "a.txt")]}])

    def killed(path, *args, **kwargs):
        raise KeyboardInterrupt("killed while deleting")

    with monkeypatch.context() as m:
        m.setattr(prep.shutil, "rmtree", killed)
        with pytest.raises(KeyboardInterrupt):
            prepare(other, progress=False, overwrite=True)
    assert [p.name for p in out.iterdir()] == [f".preparation.old-{__import__('os').getpid()}"]  # moved away whole
    report = prepare(other, progress=False)  # what was left is no preparation: the folder counts as empty
    assert report["sources"].keys() == {"c"} and sorted(p.name for p in out.iterdir())[0] == "c"
    assert not list(out.glob(".*"))
