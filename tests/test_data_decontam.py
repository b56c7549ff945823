import csv
import json

import pytest

from slm.config import ConfigError
from slm.data.decontam import (BenchmarkError, DecontamConfig, Decontaminator, build_decontam,
                               load_benchmark_texts)
from slm.data.document import Document

# Fixtures in the benchmarks' schemas, with questions written for these tests.
IGAKUQA = [
    {"problem_id": "999A1", "problem_text": "72歳の女性。3日前からの発熱と湿性咳嗽を主訴に来院した。体温38.6℃、"
     "SpO2 92%(room air)。胸部エックス線写真で右下肺野に浸潤影を認める。まず行うべき検査はどれか。",
     "choices": ["喀痰グラム染色", "頭部MRI", "骨髄穿刺", "脳波検査", "上部消化管内視鏡検査"],
     "text_only": True, "answer": ["a"], "points": "3"},
    {"problem_id": "999A2", "problem_text": "低カリウム血症をきたす薬剤はどれか。",
     "choices": ["スピロノラクトン", "ループ利尿薬", "ACE阻害薬", "ヘパリン", "トリメトプリム"],
     "text_only": True, "answer": ["b"], "points": "1"},
]
JMED_CHOICE = [
    ["tag", "question", "optionA", "optionB", "optionC", "optionD", "optionE", "optionF", "answer"],
    ["disease", "以下の看護記録において、患者の状態として最も適切なものは？\n「夜間に自己抜去したため末梢静脈路を再確保した。"
     "本人は点滴の必要性を理解できておらず、せん妄の可能性がある。」",
     "せん妄の可能性がある", "脱水の可能性がある", "低血糖の可能性がある", "特記事項なし", "", "", "A"],
]
JMED_NER = [
    ["tag", "question", "answer"],
    ["d", "以下の症例報告において、患者に実際に認められた所見を表す表現は？\n「症例は45歳男性。"
     "健診で肝機能障害を指摘され、腹部超音波検査で脂肪肝と診断された。」", "['肝機能障害', '脂肪肝']"],
]
NOTE = ("【看護記録】80歳男性 肺炎 入院3日目\nO: 体温 37.4℃、SpO2 95%(経鼻カニューレ 1L/分)。"
        "痰の喀出は自力で可能となり、食事は7割摂取。\nA: 呼吸状態は改善傾向にある。")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path, rows):
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


@pytest.fixture
def benchmarks(tmp_path):
    return [write_jsonl(tmp_path / "999-A.jsonl", IGAKUQA),
            write_csv(tmp_path / "nrner_choice.csv", JMED_CHOICE),
            write_csv(tmp_path / "mrner_disease.csv", JMED_NER)]


def doc(text: str) -> Document:
    return Document(text=text, source="web", path="pages.jsonl", line=1)


def test_load_benchmark_texts(benchmarks):
    igakuqa, choice, ner = benchmarks
    assert load_benchmark_texts([igakuqa]) == [IGAKUQA[0]["problem_text"], *IGAKUQA[0]["choices"],
                                               IGAKUQA[1]["problem_text"], *IGAKUQA[1]["choices"]]
    assert load_benchmark_texts([choice]) == JMED_CHOICE[1][1:6]  # empty options are not options
    assert load_benchmark_texts([ner]) == [JMED_NER[1][1]]  # NER answers are spans of the question
    assert len(load_benchmark_texts(benchmarks)) == 12 + 5 + 1


def test_malformed_benchmarks_name_file_and_line(tmp_path):
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text(json.dumps(IGAKUQA[0], ensure_ascii=False) + "\n\n{not json\n", encoding="utf-8")
    with pytest.raises(BenchmarkError, match=r"bad\.jsonl line 3: not valid JSON"):
        load_benchmark_texts([bad_json])
    metadata = write_jsonl(tmp_path / "999-A_metadata.jsonl", [{"problem_id": "999A1", "category": "呼吸器"}])
    with pytest.raises(BenchmarkError, match=r"999-A_metadata\.jsonl:1: not an IgakuQA question"):
        load_benchmark_texts([metadata])
    # The first row spans lines 2-3 (a quoted cell with a line break), so the short row is line 4.
    short_row = write_csv(tmp_path / "short.csv", [*JMED_CHOICE, ["disease", "問題文のみ"]])
    with pytest.raises(BenchmarkError, match=r"short\.csv:4: 2 cells, the header has 9"):
        load_benchmark_texts([short_row])
    no_question = write_csv(tmp_path / "other.csv", [["text", "label"], ["胸痛", "A"]])
    with pytest.raises(BenchmarkError, match=r"other\.csv:1: no 'question' column"):
        load_benchmark_texts([no_question])
    with pytest.raises(BenchmarkError, match="unknown benchmark format"):
        load_benchmark_texts([write_jsonl(tmp_path / "q.json", IGAKUQA)])
    with pytest.raises(BenchmarkError, match="no such benchmark file"):
        load_benchmark_texts([tmp_path / "missing.jsonl"])
    assert issubclass(BenchmarkError, ConfigError)  # the prepare CLI reports it as a bad config


def test_copied_question_is_removed_whatever_its_widths_and_spacing(benchmarks):
    stage = Decontaminator(benchmarks, ngram=20, min_matches=1)
    stem = IGAKUQA[0]["problem_text"]
    # A question-bank page: full-width digits and letters, a line break and spaces inside the stem.
    copied = stem.replace("72", "７２").replace("SpO2", "ＳｐＯ２").replace("来院した。", "来院した。\n  ")
    assert stage(doc("医師国家試験の過去問題を解説します。\n" + copied + "\n正解はaです。")) is None
    assert stage.stats == {str(benchmarks[0]): 1, str(benchmarks[1]): 0, str(benchmarks[2]): 0}
    assert stage(doc("【看護記録】" + JMED_NER[1][1][30:])) is None  # a case report from the NER set
    assert stage.stats[str(benchmarks[2])] == 1


def test_unrelated_and_formulaic_text_is_kept(benchmarks):
    stage = Decontaminator(benchmarks, ngram=20, min_matches=1)
    assert stage(doc(NOTE)) is not None
    # Options shorter than n give no n-grams, and a short stem none either.
    assert stage(doc("ループ利尿薬とスピロノラクトンを併用した。低カリウム血症をきたす薬剤はどれか。")) is not None
    # A run of vital signs shared with a question is mostly digits and Latin letters: not evidence.
    assert stage(doc("術後2日目。体温38.6℃、SpO2 92%(room air)。創部に異常なし。")) is not None
    assert stage.stats == {str(p): 0 for p in benchmarks}


def test_min_matches(benchmarks):
    text = "患者は夜間に自己抜去したため末梢静脈路を再確保した。"  # shares a 23-character span: four 20-grams
    assert Decontaminator(benchmarks, ngram=20, min_matches=1)(doc(text)) is None
    assert Decontaminator(benchmarks, ngram=20, min_matches=4)(doc(text)) is None
    assert Decontaminator(benchmarks, ngram=20, min_matches=5)(doc(text)) is not None


def test_build_decontam_and_config(benchmarks, tmp_path):
    assert build_decontam(DecontamConfig()) == []
    config = DecontamConfig(benchmarks=[str(p) for p in benchmarks])
    (stage,) = build_decontam(config)
    assert (stage.name, stage.ngram, stage.min_matches) == ("decontamination", 20, 1)
    config.save(tmp_path / "decontam.yaml")
    assert DecontamConfig.load(tmp_path / "decontam.yaml") == config
    with pytest.raises(ConfigError, match="DecontamConfig.ngram must be positive"):
        DecontamConfig(ngram=0)
    with pytest.raises(ConfigError, match=r"DecontamConfig.benchmarks\[0\] must be a string"):
        DecontamConfig(benchmarks=[3])


def test_a_shift_jis_benchmark_file_is_named_with_line_byte_and_fix(tmp_path):
    from slm.data.decontam import BenchmarkError, load_benchmark_texts

    csv_path = tmp_path / "crade.csv"
    csv_path.write_bytes("tag,question,optionA,answer\r\nd,発熱はありますか,はい,A\r\n".encode("cp932"))
    with pytest.raises(BenchmarkError, match=r"crade\.csv line 2: not valid utf-8 .*Shift_JIS.*re-save it as UTF-8"):
        load_benchmark_texts([csv_path])
    jsonl = tmp_path / "112-A.jsonl"
    jsonl.write_bytes('{"problem_text": "発熱", "choices": []}\n'.encode("cp932"))
    with pytest.raises(BenchmarkError, match=r"112-A\.jsonl line 1: not valid utf-8 .*iconv -f cp932"):
        load_benchmark_texts([jsonl])
