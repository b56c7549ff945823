"""`python -m tokenizer.train` never clobbers a tokenizer, never half-changes one, and fails with one
named line: driven through the real command line (`main`), the folder compared byte for byte."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SAMPLE_CORPUS
from tokenizer import JapaneseTokenizer
from tokenizer.folders import FolderExistsError
from tokenizer.morph import STARTER_DICT
from tokenizer.train import main
from tokenizer.unigram import train_tokenizer

FAST = ["--vocab-size", "2500", "--num-workers", "1"]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith((".tmp-", ".old-")))


def one_error_line(capsys) -> str:
    """The command's stderr: exactly one line, `error: ...`, and no traceback anywhere."""
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = [x for x in err.splitlines() if x.strip() and "counting morphemes" not in x]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def existing(tmp_path, tokenizer_dir):
    """A copy of a trained tokenizer folder, and its bytes before the command."""
    out = tmp_path / "tok"
    shutil.copytree(tokenizer_dir, out)
    return out, snapshot(out)


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


# ---------------------------------------------------------------- no run clobbers another


def test_an_existing_tokenizer_is_refused_without_overwrite(existing, capsys):
    out, before = existing
    assert main(["--input", str(SAMPLE_CORPUS), "--out", str(out), *FAST]) == 2
    line = one_error_line(capsys)
    assert str(out) in line and "already holds a tokenizer" in line and "--overwrite" in line
    assert snapshot(out) == before
    assert leftovers(out.parent) == []


def test_a_folder_that_is_not_a_tokenizer_is_refused_even_with_overwrite(tmp_path, capsys):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        assert main(["--input", str(SAMPLE_CORPUS), "--out", str(out), *FAST, *extra]) == 2
        line = one_error_line(capsys)
        assert str(out) in line and "not empty" in line and "notes.txt" in line
    assert snapshot(out) == {"notes.txt": b"mine"}
    (tmp_path / "file").write_text("x")
    assert main(["--input", str(SAMPLE_CORPUS), "--out", str(tmp_path / "file"), *FAST]) == 2
    assert "is a file, not a folder" in one_error_line(capsys)


def test_the_library_function_refuses_too_and_before_any_work(existing, monkeypatch):
    out, before = existing
    monkeypatch.setattr("tokenizer.unigram.count_texts", lambda *a: pytest.fail("read the corpus before refusing"))
    with pytest.raises(FolderExistsError, match="already holds a tokenizer"):
        train_tokenizer([SAMPLE_CORPUS], out, vocab_size=2500, num_workers=1, progress=False)
    assert snapshot(out) == before


def test_a_successful_overwrite_replaces_it_and_says_so(tmp_path, tokenizer_dir, capsys):
    # Paths with spaces on purpose: MeCab's arguments are split like a shell's.
    out = tmp_path / "my tokenizer"
    shutil.copytree(tokenizer_dir, out)
    terms = tmp_path / "my terms" / "terms.csv"
    terms.parent.mkdir()
    shutil.copy(STARTER_DICT, terms)
    pid = dead_pid()  # a run killed while building, and one killed between its two renames
    (tmp_path / f".tmp-my tokenizer-{pid}").mkdir()
    (tmp_path / f".tmp-my tokenizer-{pid}" / "user.dic").write_bytes(b"half")
    (tmp_path / f".old-my tokenizer-{pid}").mkdir()
    assert main(["--input", str(SAMPLE_CORPUS), "--out", str(out), "--user-dict", str(terms), "--overwrite", *FAST]) == 0
    stdout = capsys.readouterr().out
    assert f"replaced the tokenizer in {out}" in stdout and "moved aside and deleted" in stdout
    tok = JapaneseTokenizer.load(out)
    assert tok.vocab_size == 2500  # the fixture's has 3000
    assert tok.morphemes("糖尿病の既往歴") == ["糖尿病", "の", "既往歴"]  # the user dictionary, loaded from "my tokenizer"
    assert (out / "user_terms.csv").read_bytes() == STARTER_DICT.read_bytes()
    assert leftovers(tmp_path) == []


def test_a_stale_old_folder_is_put_back_when_its_run_was_killed_between_the_renames(tmp_path, tokenizer_dir, capsys):
    before = snapshot(tokenizer_dir)
    shutil.copytree(tokenizer_dir, tmp_path / f".old-tok-{dead_pid()}")  # and tmp_path/tok is missing
    assert main(["--input", str(SAMPLE_CORPUS), "--out", str(tmp_path / "tok"), *FAST]) == 2
    assert "already holds a tokenizer" in one_error_line(capsys)
    assert snapshot(tmp_path / "tok") == before and leftovers(tmp_path) == []


# ---------------------------------------------------------------- a failed command changes nothing


def _too_small_corpus(tmp_path):
    path = tmp_path / "small.txt"
    path.write_text("患者は発熱と咳嗽を訴えた。\n胸部X線で浸潤影を認めた。\n", encoding="utf-8")
    return ["--input", str(path), "--vocab-size", "5000", "--num-workers", "1"], "too small for vocab_size=5000"


def _bad_user_dict(tmp_path):
    path = tmp_path / "terms.csv"
    path.write_text("surface,reading,category\n糖尿病,トウニョウビョウ,illness\n", encoding="utf-8")
    return ["--input", str(SAMPLE_CORPUS), "--user-dict", str(path), *FAST], "terms.csv line 2: category 'illness'"


def _missing_user_dict(tmp_path):
    return ["--input", str(SAMPLE_CORPUS), "--user-dict", str(tmp_path / "nope.csv"), *FAST], "nope.csv: no such file"


def _unloadable_user_dict(tmp_path):
    # A dictionary that compiles but MeCab refuses: with two workers this once meant a pool of
    # workers failing forever; it is checked in the parent first.
    def broken(terms, out, normalize):
        Path(out).write_bytes(b"not a dictionary")
        return 1

    args = ["--input", str(SAMPLE_CORPUS), "--vocab-size", "2500", "--num-workers", "2"]
    return args, "cannot load this user dictionary", broken  # the test patches build_user_dict with `broken`


@pytest.mark.parametrize("case", [_too_small_corpus, _bad_user_dict, _missing_user_dict, _unloadable_user_dict])
def test_a_failing_overwrite_leaves_the_tokenizer_byte_for_byte_unchanged(case, existing, tmp_path, capsys, monkeypatch):
    out, before = existing
    args, message, *patch = case(tmp_path)
    if patch:
        monkeypatch.setattr("tokenizer.unigram.build_user_dict", patch[0])
    assert main([*args, "--out", str(out), "--overwrite"]) == 2
    line = one_error_line(capsys)
    assert message in line and f"the tokenizer in {out} is unchanged" in line
    assert snapshot(out) == before
    assert leftovers(out.parent) == []
    assert JapaneseTokenizer.load(out).vocab_size == 3000


def test_a_crash_after_files_were_written_leaves_it_unchanged_too(existing, monkeypatch):
    # A bug (not a user error) once the model is written: the traceback shows, nothing changes.
    out, before = existing

    def crash():
        raise RuntimeError("boom")

    monkeypatch.setattr("tokenizer.unigram.unidic_version", crash)
    with pytest.raises(RuntimeError, match="boom"):
        main(["--input", str(SAMPLE_CORPUS), "--out", str(out), "--overwrite", *FAST])
    assert snapshot(out) == before
    assert leftovers(out.parent) == []


def test_a_failed_run_into_a_new_folder_creates_nothing(tmp_path, capsys):
    args, message = _too_small_corpus(tmp_path)
    assert main([*args, "--out", str(tmp_path / "new" / "tok")]) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "new" / "tok").exists() and leftovers(tmp_path / "new") == []


# ---------------------------------------------------------------- unreadable inputs, named


def test_shift_jis_input_names_the_file_line_encoding_and_the_option(tmp_path, capsys):
    path = tmp_path / "aozora.txt"
    path.write_bytes("一行目は大丈夫\n".encode() + "吾輩は猫である。\n".encode("cp932"))
    assert main(["--input", str(path), "--out", str(tmp_path / "tok"), *FAST]) == 2
    line = one_error_line(capsys)
    assert f"{path} line 2: not valid utf-8" in line
    assert f"offset {len('一行目は大丈夫'.encode()) + 1} in the file" in line and "--encoding cp932" in line
    assert not (tmp_path / "tok").exists()
    assert main(["--input", str(path), "--out", str(tmp_path / "tok"), "--encoding", "cp932", *FAST]) == 2
    assert "line 1: UTF-8 text" in (line := one_error_line(capsys)) and "--encoding utf-8" in line


@pytest.mark.parametrize("content, message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "looks binary (NUL byte at offset 8)"),
    (bytes(range(0x80, 0x100)) * 4, "binary data, or text in another encoding"),
    (b"", "file is empty"),
    (b"\n  \n\r\n", "no text, only blank lines"),
    ("症例\n".encode("utf-16"), "UTF-16 text"),
])
def test_binary_empty_and_blank_inputs_are_one_named_line(tmp_path, capsys, content, message):
    good = tmp_path / "good.txt"
    good.write_text("患者は発熱を訴えた。\n", encoding="utf-8")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    files = [bad] if message.startswith("no text") else [good, bad]
    assert main(["--input", *map(str, files), "--out", str(tmp_path / "tok"), *FAST]) == 2
    line = one_error_line(capsys)
    assert message in line and (str(bad) in line)
    assert not (tmp_path / "tok").exists()


def test_inputs_are_read_through_before_any_training(tmp_path, capsys, monkeypatch):
    # The bad line is the last of many files: training (morpheme counting) never starts.
    monkeypatch.setattr("tokenizer.unigram.count_morphemes", lambda *a, **k: pytest.fail("counted before checking"))
    bad = tmp_path / "zz_last.txt"
    bad.write_bytes("あ\n".encode() * 100 + "い\n".encode("cp932"))
    assert main(["--input", str(SAMPLE_CORPUS), str(bad), "--out", str(tmp_path / "tok"), *FAST]) == 2
    assert "zz_last.txt line 101: not valid utf-8" in one_error_line(capsys)


# ---------------------------------------------------------------- every failure: one line, exit 2


@pytest.mark.parametrize("args, message", [
    (["--input", "no/such/corpus"], "no/such/corpus: no such file or directory"),
    (["--input", str(SAMPLE_CORPUS), "--skip-clean-step", "nfkc", "tidy"], "--skip-clean-step: unknown step(s) ['tidy']"),
    (["--input", str(SAMPLE_CORPUS), "--encoding", "klingon"], "unknown encoding 'klingon'"),
    (["--input", str(SAMPLE_CORPUS), "--vocab-size", "100"], "vocab_size=100 leaves no room"),
    (["--input", str(SAMPLE_CORPUS), "--num-workers", "0"], "--num-workers: must be at least 1"),
    (["--input", str(SAMPLE_CORPUS), "--user-dict", str(STARTER_DICT.parent)], "is a folder; --user-dict takes a term list"),
    ([], "the following arguments are required: --input"),
])
def test_usage_errors_are_one_line_and_exit_2(tmp_path, capsys, args, message):
    assert main([*args, "--out", str(tmp_path / "tok")]) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "tok").exists()


def test_a_user_dictionary_that_is_not_utf8_csv_is_named(tmp_path, capsys):
    path = tmp_path / "user.dic"
    path.write_bytes(bytes(range(0x80, 0x100)))
    assert main(["--input", str(SAMPLE_CORPUS), "--user-dict", str(path), "--out", str(tmp_path / "tok"), *FAST]) == 2
    line = one_error_line(capsys)
    assert "user.dic: not a UTF-8 term list" in line and "takes the CSV" in line


def test_debug_shows_the_traceback(existing):
    out, before = existing
    with pytest.raises(FolderExistsError):
        main(["--input", str(SAMPLE_CORPUS), "--out", str(out), "--debug", *FAST])
    assert snapshot(out) == before


def test_the_module_runs_as_a_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tokenizer.train", "--input", str(tmp_path / "none"),
                           "--out", str(tmp_path / "tok")], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'none'}: no such file or directory"]
