import json

import pytest

from tokenizer.corpus import CorpusError, list_files, read_jsonl, read_lines, read_texts


def test_reads_lines_of_text_and_jsonl_files_in_folders(tmp_path):
    (tmp_path / "a.txt").write_text("一行目\r\n二行目\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.jsonl").write_text(json.dumps({"text": "症例"}, ensure_ascii=False) + "\n\n", encoding="utf-8")
    (tmp_path / ".hidden").write_text("x")
    assert list(read_texts([tmp_path])) == ["一行目", "二行目", "症例"]


def test_non_utf8_names_file_and_line_and_suggests_the_encoding(tmp_path):
    path = tmp_path / "sjis.txt"
    path.write_bytes("正常\n".encode() + "糖尿病\n".encode("cp932"))
    with pytest.raises(CorpusError, match=r"sjis\.txt line 2: not valid utf-8 .*cp932"):
        list(read_lines(path))
    path.write_bytes("糖尿病\n".encode("cp932"))
    assert list(read_lines(path, encoding="cp932")) == ["糖尿病"]


def test_empty_and_binary_files_are_refused(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(CorpusError, match=r"empty\.txt: file is empty"):
        list(read_lines(tmp_path / "empty.txt"))
    (tmp_path / "model.bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    with pytest.raises(CorpusError, match=r"model\.bin: looks binary \(NUL byte at offset 8\)"):
        list(read_lines(tmp_path / "model.bin"))


def test_missing_paths_and_empty_folders_are_named(tmp_path):
    with pytest.raises(CorpusError, match="nope.txt: no such file"):
        list_files([tmp_path / "nope.txt"])
    (tmp_path / "d").mkdir()
    with pytest.raises(CorpusError, match="holds no files"):
        list_files([tmp_path / "d"])


def test_bad_jsonl_names_line_and_field(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "a"}\n{"body": "b"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"x\.jsonl line 2: field 'text' is missing"):
        list(read_jsonl(path))
    path.write_text('{"text": "a"\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"x\.jsonl line 1: not valid JSON"):
        list(read_jsonl(path))
