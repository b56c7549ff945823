import json

import pytest

from slm.config import ConfigError
from slm.data.readers import ReadErrors, SourceConfig, read_documents
from tokenizer.corpus import CorpusError


def source(tmp_path, **kw):
    return SourceConfig(name="s", paths=[str(tmp_path)], **kw)


def test_text_documents_split_on_blank_lines_with_file_and_line(tmp_path):
    (tmp_path / "a.txt").write_text("症例1\n発熱あり。\n\n症例2\n咳嗽なし。\n\n\n症例3\n", encoding="utf-8")
    docs = list(read_documents(source(tmp_path), ReadErrors()))
    assert [(d.text, d.line) for d in docs] == [("症例1\n発熱あり。", 1), ("症例2\n咳嗽なし。", 4), ("症例3", 8)]
    assert all(d.source == "s" and d.path.endswith("a.txt") for d in docs)
    assert [d.text for d in read_documents(source(tmp_path, split="line"), ReadErrors())] == \
        ["症例1", "発熱あり。", "症例2", "咳嗽なし。", "症例3"]
    assert len(list(read_documents(source(tmp_path, split="file"), ReadErrors()))) == 1


def test_jsonl_documents_keep_other_fields_as_metadata(tmp_path):
    rows = [{"body": "心不全の説明。", "topic": "心不全", "synthetic": True}, {"body": "肺炎の説明。"}]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    docs = list(read_documents(source(tmp_path, text_field="body"), ReadErrors()))
    assert docs[0].text == "心不全の説明。" and docs[0].meta == {"topic": "心不全", "synthetic": True}
    assert docs[1].line == 2


def test_bad_input_is_counted_with_file_and_line_never_dropped_silently(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "良い行"}\n{"text": 1}\n{bad json\n{"other": "x"}\n', encoding="utf-8")
    (tmp_path / "b.txt").write_bytes("正常\n".encode() + "心不全\n".encode("cp932") + "続き\n".encode())
    (tmp_path / "c.txt").write_bytes(b"")
    errors = ReadErrors()
    docs = list(read_documents(source(tmp_path), errors))
    assert [d.text for d in docs] == ["良い行"]  # b.txt's only document has an unreadable line: left out whole
    assert errors.total == 5 and errors.dropped_documents == 1
    assert errors.counts[str(tmp_path / "a.jsonl")] == 3
    assert any("a.jsonl line 3: not valid JSON" in e for e in errors.examples)
    assert any("b.txt line 2: not valid utf-8" in e for e in errors.examples)
    assert any("c.txt: file is empty" in e for e in errors.examples)


def test_strict_mode_stops_at_the_first_bad_line(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "ok"}\n{"txt": "x"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"a\.jsonl line 2: field 'text' is missing"):
        list(read_documents(source(tmp_path), ReadErrors(strict=True)))


def test_source_config_is_validated():
    with pytest.raises(ConfigError, match="paths of source 'x' is empty"):
        SourceConfig(name="x")
    with pytest.raises(ConfigError, match="split must be one of"):
        SourceConfig(name="x", paths=["a"], split="paragraph")


def test_an_unreadable_line_drops_its_document_not_its_neighbours(tmp_path):
    (tmp_path / "a.txt").write_bytes("一行目。\n".encode() + b"\xff\xfe bad\n" + "三行目。\n\n次の文書。\n".encode())
    errors = ReadErrors()
    assert [(d.text, d.line) for d in read_documents(source(tmp_path), errors)] == [("次の文書。", 5)]
    assert (errors.total, errors.dropped_documents) == (1, 1)


def test_an_undecodable_line_names_its_byte_and_the_sources_encoding_field(tmp_path):
    (tmp_path / "aozora.txt").write_bytes("吾輩は猫である。\r\n".encode("cp932"))
    (tmp_path / "bom.txt").write_bytes("\ufeff心不全。\n".encode("utf-8"))  # a byte-order mark is no text
    errors = ReadErrors()
    docs = list(read_documents(SourceConfig(name="aozora", paths=[str(tmp_path)]), errors))
    assert [d.text for d in docs] == ["心不全。"]
    assert errors.examples == [f"{tmp_path / 'aozora.txt'} line 1: not valid utf-8 (byte 0x8c at column 1, offset 0 "
                               "in the file); it decodes as Shift_JIS (cp932); set `encoding: cp932` in source "
                               "'aozora' of the data config (now 'utf-8')"]
    docs = list(read_documents(SourceConfig(name="aozora", paths=[str(tmp_path / "aozora.txt")], encoding="cp932"),
                               errors))
    assert [d.text for d in docs] == ["吾輩は猫である。"]


def test_mixture_names_are_folder_names_too():
    from slm.data.loader import MixtureConfig

    with pytest.raises(ConfigError, match=r"MixtureConfig: a source name .*'\.\.'"):
        MixtureConfig(weights={"..": 1.0})
    with pytest.raises(ConfigError, match=r"curriculum\[0\]: a source name .*'a/b'"):
        MixtureConfig(curriculum=[{"weights": {"a/b": 1.0}}])
