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


def test_decoding_errors_give_the_byte_offset_and_the_encoding_that_works(tmp_path):
    path = tmp_path / "aozora.txt"
    head = "正常\n".encode()
    path.write_bytes(head + "吾輩は猫である。\n".encode("cp932"))
    with pytest.raises(CorpusError, match=rf"line 2: not valid utf-8 \(byte 0x8c at column 1, offset {len(head)} in the "
                                          r"file\); it decodes as Shift_JIS \(cp932\); pass encoding='cp932' / --encoding cp932"):
        list(read_lines(path))
    # UTF-8 read as cp932 often "decodes", into mojibake: refused, naming utf-8.
    path.write_bytes("患者は発熱と咳嗽を訴えた。\n".encode())
    with pytest.raises(CorpusError, match=r"line 1: UTF-8 text .*not cp932.*--encoding utf-8"):
        list(read_lines(path, encoding="cp932"))
    # ... but a short Shift_JIS line that happens to be valid UTF-8 (驢馬 is UTF-8 "醔n") is read as it is.
    path.write_bytes("驢馬\r\n――\n".encode("cp932"))
    assert list(read_lines(path, encoding="cp932")) == ["驢馬", "――"]


def test_binary_without_nul_bytes_utf16_and_unknown_encodings_are_named(tmp_path):
    path = tmp_path / "blob.txt"
    path.write_bytes(bytes(range(0x80, 0x100)) * 8)
    with pytest.raises(CorpusError, match=r"blob\.txt line 1: not valid utf-8 .*binary data, or text in another encoding"):
        list(read_lines(path))
    path.write_bytes("症例\n".encode("utf-16"))
    with pytest.raises(CorpusError, match=r"UTF-16 text .*convert it to UTF-8"):
        list(read_lines(path))
    with pytest.raises(CorpusError, match="unknown encoding 'sjs'"):
        list(read_lines(path, encoding="sjs"))


def test_count_texts_reads_everything_and_refuses_inputs_without_text(tmp_path):
    from tokenizer.corpus import count_texts

    (tmp_path / "a.txt").write_text("一\n\n  \n二\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"text": "三"}\n{"text": " "}\n', encoding="utf-8")
    assert count_texts([tmp_path]) == 3
    (tmp_path / "c.txt").write_bytes("四\n".encode("cp932"))
    with pytest.raises(CorpusError, match=r"c\.txt line 1"):
        count_texts([tmp_path])
    blank = tmp_path / "blank"
    blank.mkdir()
    (blank / "x.txt").write_text("\n \r\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"x\.txt: no text, only blank lines"):
        count_texts([blank])


def test_on_error_reports_a_bad_line_and_reading_goes_on(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_bytes("一\n".encode() + "二\n".encode("cp932") + "三\n".encode())
    errors = []
    assert list(read_lines(path, on_error=errors.append)) == ["一", None, "三"]
    assert len(errors) == 1 and "mixed.txt line 2" in str(errors[0]) and errors[0].path == str(path)
