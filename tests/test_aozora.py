"""Aozora Bunko works reach the tokenizer and the corpus as the text of the work: header, footer,
ruby and editor's notes removed; an Aozora input mixes with UTF-8 inputs in one tokenizer run."""

import json
from collections import Counter

from slm.data.readers import ReadErrors, SourceConfig, read_documents
from tokenizer.aozora import body, strip_markup
from tokenizer.corpus import Input, parse_input, read_texts
from tokenizer.train import main

RULE = "-" * 55
WORK = "\r\n".join([
    "心臓の話", "架空太郎", "", RULE, "【テキスト中に現れる記号について】", "", "《》：ルビ", "（例）心臓《しんぞう》", "",
    "［＃］：入力者注　主に外字の説明や、傍点の位置の指定", RULE, "",
    "［＃３字下げ］一［＃「一」は中見出し］",
    "　｜左心室《さしんしつ》が動悸《どうき》を打つ。※［＃「月＋卑」、第3水準1-90-40］臓も疲れた。",
    "　医者《いしゃ》は［＃傍点］脈［＃傍点終わり］を取つた。", "", "",
    "底本：「架空全集」架空書房", "　　　1930（昭和5）年1月1日発行", "入力：某", "校正：某",
    "青空文庫作成ファイル：", "このファイルは、インターネットの図書館、青空文庫で作られました。", ""])
BODY = ["", "一", "　左心室が動悸を打つ。臓も疲れた。", "　医者は脈を取つた。", "", ""]


def test_the_body_is_kept_without_header_footer_ruby_or_notes():
    stats = Counter()
    assert list(body(WORK.split("\r\n"), stats)) == BODY
    assert +stats == {"works": 1, "header_lines": 11, "footer_lines": 7, "ruby": 3, "notes": 5}


def test_a_work_without_the_markup_block_loses_only_its_title_lines():
    lines = ["短い話", "某", "", "本文《ほんぶん》です。", "［＃本文終わり］"]
    assert list(body(lines)) == ["", "本文です。", ""]
    assert list(body(["題のない本文。"])) == ["題のない本文。"]  # no blank line, no footer: all of it kept
    assert strip_markup("｜青空《あおぞら》") == "青空"


def test_a_source_in_aozora_format_gives_one_document_per_work_with_title_and_author(tmp_path):
    (tmp_path / "work.txt").write_bytes(WORK.encode("cp932"))
    source = SourceConfig(name="aozora", paths=[str(tmp_path)], format="aozora", encoding="cp932")
    [doc] = read_documents(source, ReadErrors(strict=True))
    assert doc.text == "一\n　左心室が動悸を打つ。臓も疲れた。\n　医者は脈を取つた。"
    assert (doc.line, doc.meta) == (12, {"title": "心臓の話", "author": "架空太郎"})


def test_inputs_take_their_own_encoding_and_format(tmp_path):
    assert parse_input("corpus/aozora:encoding=cp932,format=aozora") == Input("corpus/aozora", "cp932", "aozora")
    assert parse_input("notes.jsonl", encoding="cp932") == Input("notes.jsonl", "cp932")
    odd = tmp_path / "a:b=c"
    odd.write_text("x")
    assert parse_input(str(odd)) == Input(str(odd))  # a path that exists is a path, colon or not
    (tmp_path / "aozora").mkdir()
    (tmp_path / "aozora" / "work.txt").write_bytes(WORK.encode("cp932"))
    (tmp_path / "notes.jsonl").write_text(json.dumps({"text": "心不全の治療。"}, ensure_ascii=False) + "\n")
    texts = list(read_texts([f"{tmp_path / 'aozora'}:encoding=cp932,format=aozora", tmp_path / "notes.jsonl"]))
    assert texts == BODY + ["心不全の治療。"]


def test_tokenizer_train_mixes_a_shift_jis_aozora_input_with_utf8_jsonl(tmp_path, capsys):
    from conftest import SAMPLE_CORPUS

    (tmp_path / "aozora").mkdir()
    (tmp_path / "aozora" / "work.txt").write_bytes(WORK.encode("cp932"))
    aozora = f"{tmp_path / 'aozora'}:encoding=cp932,format=aozora"
    assert main(["--input", aozora, str(SAMPLE_CORPUS), "--out", str(tmp_path / "tok"), "--vocab-size", "2500",
                 "--num-workers", "1", "--allow-smaller-vocab"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert summary["inputs"][0] == {"path": str(tmp_path / "aozora"), "encoding": "cp932", "format": "aozora",
                                    "text_field": "text", "files": 1}
    assert summary["aozora_markup_removed"]["ruby"] == 3
    # the same input without its encoding fails before any work, naming the fix for that input
    assert main(["--input", str(tmp_path / "aozora"), "--out", str(tmp_path / "tok2"), "--vocab-size", "2500"]) == 2
    err = capsys.readouterr().err
    assert f"give the input as {tmp_path / 'aozora'}:encoding=cp932" in err
