"""Converters on fixtures in each published schema, malformed records included."""

import csv
import json

from slm.finetune.converters import (IGAKU_SYSTEM, convert_igakuqa, convert_jmed_llm, convert_medmcqa, convert_medqa, convert_pubmedqa,
                                     jmed_llm_split, main)
from slm.jmed import CHOICE_SYSTEM, NER_SYSTEM

CASE_A = "以下の症例報告において、「発疹」がADE（有害事象）である可能性は？\n「７１歳女。抗菌薬投与後に全身に発疹が出現し、投与中止で軽快した。既往に高血圧あり。」"
CASE_A2 = CASE_A.replace("「発疹」", "「発熱」")  # the same case report, another target
CASE_B = "以下の症例報告において、「肝障害」がADE（有害事象）である可能性は？\n「５０歳男。解熱鎮痛薬の長期内服後にAST上昇を認め、中止後に改善した。喫煙歴あり。」"


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
                    encoding="utf-8")
    return path


def test_jmed_llm_choice_and_ner_rows_use_the_official_prompts(tmp_path):
    choice = write_csv(tmp_path / "crade.csv", ["tag", "question", "optionA", "optionB", "optionC", "optionD", "answer"],
                       [["disease", CASE_A, "関連なし", "可能性あり", "おそらく", "確実", "B"],
                        ["disease", CASE_B, "関連なし", "可能性あり", "", "", "C"]])  # C is an empty option
    ner = write_csv(tmp_path / "nrner.csv", ["tag", "question", "answer"],
                    [["d", "以下の看護記録の所見は？「発熱と咳嗽あり」", "['発熱', '咳嗽']"], ["d", "所見は？", "発熱"]])
    out = convert_jmed_llm([choice, ner])
    assert len(out.conversations) == 2 and len(out.skipped) == 2
    system, user, answer = (m["content"] for m in out.conversations[0])
    assert system == CHOICE_SYSTEM and answer == "B"
    assert user == f"質問: {CASE_A}\n選択肢:\nA. 関連なし\nB. 可能性あり\nC. おそらく\nD. 確実\n"
    assert [m["content"] for m in out.conversations[1]] == [NER_SYSTEM, "以下の看護記録の所見は？「発熱と咳嗽あり」", "['発熱', '咳嗽']"]
    assert "crade.csv line 4: answer 'C' is not one of the row's options" in out.skipped[0]  # where the row starts
    assert "is not a list literal" in out.skipped[1]


def test_jmed_llm_split_shares_no_document_with_the_evaluation_sets(tmp_path):
    header = ["tag", "question", "optionA", "optionB", "answer"]
    pool = convert_jmed_llm([write_csv(tmp_path / "pool.csv", header, [["d", q, "はい", "いいえ", "A"] for q in
                                                                         (CASE_A, CASE_A2, CASE_B)])])
    evaluation = convert_jmed_llm([write_csv(tmp_path / "eval.csv", header, [["d", CASE_A, "はい", "いいえ", "A"]])])
    split = jmed_llm_split(pool, evaluation)
    kept, removed = split.kept, split.removed
    assert removed == 2 and [c[1]["content"] for c in kept.conversations] == [f"質問: {CASE_B}\n選択肢:\nA. はい\nB. いいえ\n"]
    held = {CASE_A[i : i + 50] for i in range(len(CASE_A) - 49)}
    for conv in kept.conversations:  # provably: no 50-character stretch of any evaluation question survives
        text = conv[1]["content"]
        assert not any(text[i : i + 50] in held for i in range(len(text) - 49))


def test_igakuqa_prompt_and_malformed_records(tmp_path):
    path = write_jsonl(tmp_path / "112-A.jsonl", [
        {"problem_id": "112A1", "problem_text": "正しいのはどれか。2つ選べ。", "choices": ["甲", "乙", "丙", "丁", "戊"],
         "answer": ["a", "c"], "points": "1"},
        {"problem_id": "112A2", "problem_text": "値を求めよ。", "choices": [], "answer": ["26"], "points": "1"},
        {"problem_id": "112A3", "problem_text": "どれか。", "choices": ["甲", "乙"], "answer": ["e"]},
        "{not json"])
    out = convert_igakuqa([path])
    user, answer = out.conversations[0][1]["content"], out.conversations[0][2]["content"]
    assert out.conversations[0][0]["content"] == IGAKU_SYSTEM and answer == "a,c"
    assert user == "問題: 正しいのはどれか。2つ選べ。\na: 甲\nb: 乙\nc: 丙\nd: 丁\ne: 戊\n必ずa,b,c,d,eの中からちょうど2個選んでください。\n答え:"
    assert out.conversations[1][2]["content"] == "26"
    assert len(out.skipped) == 2 and "not among the choices" in out.skipped[0] and "not valid JSON" in out.skipped[1]


def test_medqa_options_as_dict_or_list_answers_as_letter_or_text_five_options(tmp_path):
    path = write_jsonl(tmp_path / "medqa.jsonl", [
        {"question": "Q1?", "options": {"A": "x", "B": "y", "C": "z", "D": "w", "E": "v"}, "answer_idx": "E"},
        {"question": "Q2?", "options": ["x", "y", "z", "w"], "answer": "z"},
        {"question": "Q3?", "options": ["x", "y"], "answer": "not an option"},
        {"question": "", "options": ["x", "y"], "answer_idx": "A"},
        {"question": "Q5?", "options": "x;y", "answer_idx": "A"}])
    out = convert_medqa([path])
    assert [c[2]["content"] for c in out.conversations] == ["E", "C"]
    assert out.conversations[0][1]["content"] == "Q1?\nA. x\nB. y\nC. z\nD. w\nE. v\nAnswer:"
    assert len(out.skipped) == 3


def test_medmcqa_correct_option_numbering(tmp_path):
    rows = [{"question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 1},
            {"question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 9},
            {"question": "Q?", "opa": "a", "opb": "", "opc": "c", "opd": "d", "cop": 2}]
    path = write_jsonl(tmp_path / "medmcqa.jsonl", rows)
    assert [c[2]["content"] for c in convert_medmcqa([path]).conversations] == ["A"]
    assert [c[2]["content"] for c in convert_medmcqa([path], cop_base=0).conversations] == ["B"]
    assert len(convert_medmcqa([path]).skipped) == 2


def test_pubmedqa_yes_no_maybe(tmp_path):
    path = tmp_path / "ori_pqal.json"
    path.write_text(json.dumps({"1": {"QUESTION": "Does X help?", "CONTEXTS": ["c1", "c2"], "final_decision": "yes"},
                                "2": {"QUESTION": "Q", "CONTEXTS": ["c"], "final_decision": "probably"}}))
    out = convert_pubmedqa(path)
    assert [c[2]["content"] for c in out.conversations] == ["yes"] and "record 2" in out.skipped[0]


def test_cli_writes_the_finetune_format_and_excludes_evaluation_documents(tmp_path, capsys):
    header = ["tag", "question", "optionA", "optionB", "answer"]
    write_csv(tmp_path / "pool.csv", header, [["d", CASE_A2, "はい", "いいえ", "A"], ["d", CASE_B, "はい", "いいえ", "B"]])
    write_csv(tmp_path / "eval.csv", header, [["d", CASE_A, "はい", "いいえ", "A"]])
    assert main(["--format", "jmed-llm", "--input", str(tmp_path / "pool.csv"), "--exclude", str(tmp_path / "eval.csv"),
                 "--out", str(tmp_path / "train.jsonl")]) == 0
    lines = (tmp_path / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["messages"][2]["content"] == "B"
    assert "1 removed as sharing a document" in capsys.readouterr().out


def test_instruction_like_text_for_a_pretraining_curriculum(tmp_path, tokenizer_dir):
    from slm.data.loader import MixtureConfig, PackedLoader
    from slm.data.prepare import DataConfig, prepare
    from slm.finetune.converters import as_text
    from slm.finetune.converters import write_jsonl as write_conversations

    conv = [{"role": "user", "content": "発熱の原因は?"}, {"role": "assistant", "content": "感染症です。"}]
    assert as_text(conv) == "質問: 発熱の原因は?\n回答: 感染症です。"
    write_conversations([conv] * 40, tmp_path / "inst" / "inst.jsonl", text=True)
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "g.txt").write_text("一般的な文章です。心臓は血液を全身に送る臓器である。\n\n" * 40, encoding="utf-8")
    prepare(DataConfig.from_dict({"out": str(tmp_path / "data"), "tokenizer": str(tokenizer_dir), "num_workers": 1,
                                  "sources": [{"name": "general", "paths": [str(tmp_path / "gen")]},
                                              {"name": "instructions", "paths": [str(tmp_path / "inst")]}],
                                  "dedup": {"exact_documents": False, "repeated_sentences": False,
                                            "capacity": 1000, "sentence_capacity": 1000},
                                  "filters": {"length": {"min_chars": 5}}}), progress=False)
    curriculum = MixtureConfig(curriculum=[{"until_row": 8, "weights": {"general": 1}},
                                           {"weights": {"general": 1, "instructions": 1}}])
    loader = PackedLoader(tmp_path / "data", seq_len=8, micro_batch=4, mixture=curriculum)
    assert loader.describe()["instructions"]["rows"] > 0
    assert next(loader)["input_ids"].shape == (4, 8)


# ---------------------------------------------------------------- files that cannot be used

def test_a_shift_jis_csv_is_an_error_naming_the_line_byte_and_fix(tmp_path):
    import pytest

    from tokenizer.corpus import CorpusError

    path = tmp_path / "smdis.csv"
    with open(path, "w", newline="", encoding="cp932") as f:  # what Excel writes on a Japanese Windows
        w = csv.writer(f)
        w.writerow(["tag", "question", "optionA", "optionB", "answer"])
        w.writerow(["d", "発熱はありますか", "はい", "いいえ", "A"])
    with pytest.raises(CorpusError) as info:
        convert_jmed_llm([path])
    message = str(info.value)
    assert "smdis.csv line 2: not valid utf-8 (byte 0x94 at column 3, offset 39 in the file)" in message
    assert "Shift_JIS (cp932)" in message and "re-save it as UTF-8" in message and "iconv -f cp932" in message


def test_binary_empty_and_all_malformed_inputs_are_errors_with_the_reasons(tmp_path):
    import pytest

    from slm.finetune.converters import convert_mmlu
    from tokenizer.corpus import CorpusError

    binary = tmp_path / "medqa.jsonl"
    binary.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)))
    with pytest.raises(CorpusError, match=r"medqa\.jsonl: looks binary \(NUL byte at offset 3\).*decompress"):
        convert_medqa([binary])
    empty = write_csv(tmp_path / "empty.csv", ["tag", "question", "optionA", "optionB", "answer"], [])
    (tmp_path / "zero.csv").write_bytes(b"")
    with pytest.raises(CorpusError, match=r"no usable JMED-LLM record in \S+empty\.csv, \S+zero\.csv: 1 skipped "
                                          r"\(first: \S+zero\.csv: file is empty\)"):
        convert_jmed_llm([empty, tmp_path / "zero.csv"])
    bad = write_jsonl(tmp_path / "bad.jsonl", ["{nope", {"question": "Q?", "options": ["x"], "answer_idx": "A"}])
    with pytest.raises(CorpusError, match=r"no usable MedQA record in \S+bad\.jsonl: 2 skipped \(first: \S+bad\.jsonl "
                                          r"line 1: not valid JSON.*; \S+bad\.jsonl line 2: options must be"):
        convert_medqa([bad])
    (tmp_path / "ori_pqal.json").write_text("[1, 2]")
    with pytest.raises(CorpusError, match=r"no usable PubMedQA record .*not a JSON object of \{pmid: record\}"):
        convert_pubmedqa(tmp_path / "ori_pqal.json")
    (tmp_path / "anatomy_test.csv").write_bytes("骨は,a,b,c,d,A\n".encode("cp932"))
    with pytest.raises(CorpusError, match=r"anatomy_test\.csv line 1: not valid utf-8"):
        convert_mmlu([tmp_path / "anatomy_test.csv"])


def test_cli_failures_end_in_one_error_line_and_exit_2(tmp_path, capsys):
    import pytest

    from tokenizer.corpus import CorpusError

    path = tmp_path / "smdis.csv"
    path.write_bytes("tag,question,optionA,optionB,answer\nd,発熱はありますか,はい,いいえ,A\n".encode("cp932"))
    out = tmp_path / "x.jsonl"
    for argv in (["--input", str(path)], ["--input", str(tmp_path / "missing.csv")]):
        assert main(["--format", "jmed-llm", *argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
        assert not out.exists()
    with pytest.raises(CorpusError, match=r"smdis\.csv line 2"):
        main(["--format", "jmed-llm", "--input", str(path), "--out", str(out), "--debug"])


# ---------------------------------------------------------------- JMED-LLM: documents, splits and their table

CHOICES = ["関連なし", "可能性あり", "おそらく", "確実"]
CASE = ("「症例は６５歳，男性．\n発熱と咳嗽を主訴に来院し，胸部ＣＴで両側肺野にすりガラス影を認めた．\n"
        "抗菌薬を投与したが改善せず，薬剤性肺炎を疑いアミオダロンを中止したところ軽快した．」")
OTHER_CASE = ("「症例は４０歳，女性．\n関節痛に対してＮＳＡＩＤｓを内服中，心窩部痛と黒色便が出現した．\n"
              "上部消化管内視鏡で胃潰瘍を認め，内服を中止しＰＰＩで治癒した．」")
TWEET = "咳をしすぎて腹筋が痛い。"


def crade(target, case, answer="A"):
    return ["disease", f"以下の症例報告において、「{target}」がADE（有害事象）である可能性は？\n{case}", *CHOICES, answer]


def crner(tag, case, answer="['発熱']"):
    return [tag, f"以下の症例報告において、患者に実際に認められた病変や症状の存在を示す異常などの所見を表す表現は？\n{case}", answer]


def smdis(symptom, tweet, answer="B"):
    return [symptom, f"SNSで以下の投稿をした本人または周囲の人間は、1日以内に{symptom}でしたか？\n「{tweet}」",
            f"{symptom}である", f"{symptom}でない", answer]


CRADE_HEADER = ["tag", "question", "optionA", "optionB", "optionC", "optionD", "answer"]
SMDIS_HEADER = ["tag", "question", "optionA", "optionB", "answer"]


def pools(tmp_path, files: dict) -> list:
    """{file name: (header, rows)} as CSVs in tmp_path/<pool or eval>/, JMED-LLM's layout."""
    paths = []
    for name, (header, rows) in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        paths.append(write_csv(tmp_path / name, header, rows))
    return paths


def test_a_document_shared_under_another_target_is_out_at_document_level_and_leaks_at_row_level(tmp_path):
    pool = convert_jmed_llm(pools(tmp_path, {
        "pool/CRADE.csv": (CRADE_HEADER, [crade("発熱", CASE), crade("すりガラス影", CASE, "B"),  # another target
                                          crade("発熱", CASE[:-1] + "退院後の再燃はない．」"),  # the report quoted in part
                                          crade("胃潰瘍", OTHER_CASE, "D")]),
        "pool/CRNER.csv": (["tag", "question", "answer"], [crner("d", CASE)])}))  # the same report, another task
    evaluation = convert_jmed_llm(pools(tmp_path, {"eval/crade.csv": (CRADE_HEADER, [crade("発熱", CASE)])}))
    split = jmed_llm_split(pool, evaluation)
    assert split.why == ["identical row", "shared document", "shared document", None, "shared document"]
    assert [c[1]["content"] for c in split.kept.conversations] == [f"質問: {crade('胃潰瘍', OTHER_CASE)[1]}\n選択肢:\n"
                                                                   "A. 関連なし\nB. 可能性あり\nC. おそらく\nD. 確実\n"]
    row = jmed_llm_split(pool, evaluation, level="row")
    assert row.why == ["identical row", None, None, None, None] and (row.removed, row.leaking) == (1, 3)
    assert any("row level LEAKS: 3 kept rows share a document" in w for w in row.warnings())
    assert split.leaking == 0 and not any("LEAKS" in w for w in split.warnings())


def test_a_document_shorter_than_the_span_is_caught_exactly_and_by_containment(tmp_path):
    from slm.data.decontam import canonical

    assert len(canonical(TWEET)) < 50  # no 50-character span: the prompt-span protocol never saw it
    pool = convert_jmed_llm(pools(tmp_path, {"pool/SMDIS.csv": (SMDIS_HEADER, [
        smdis("咳", TWEET, "A"),  # the evaluation row itself
        smdis("発熱", TWEET),  # the tweet under another symptom
        smdis("頭痛", "咳をしすぎて　腹筋が痛い｡"),  # the same after NFKC and without whitespace
        smdis("咳", TWEET + "そろそろ病院に行かないと。", "A"),  # holds the evaluation tweet
        smdis("咳", "咳をしすぎて腹筋が痛い"),  # held in the evaluation tweet
        smdis("咳", "今日は晴れて気持ちがいい。")])}))
    evaluation = convert_jmed_llm(pools(tmp_path, {"eval/smdis.csv": (SMDIS_HEADER, [smdis("咳", TWEET, "A")])}))
    split = jmed_llm_split(pool, evaluation)
    assert split.why == ["identical row", *["shared document"] * 4, None]
    assert split.kept.conversations[0][1]["content"].endswith("「今日は晴れて気持ちがいい。」\n選択肢:\nA. 咳である\nB. 咳でない\n")


def test_the_question_template_and_options_are_no_shared_document(tmp_path):
    from slm.finetune.converters import jmed_llm_documents

    header = ["tag", "question", "optionA", "optionB", "optionC", "answer"]
    options = ["T0: 原発腫瘍を認めない、または原発腫瘍の評価が不可能である", "T1: 腫瘍の最大径が3cm以下で、肺または臓側胸膜に覆われている",
               "T2: 腫瘍の最大径が3cmを超え5cm以下である、または主気管支に及ぶ"]
    ask = "以下の読影レポートには原発腫瘍がありますか？\n「{}」"
    evaluation = convert_jmed_llm(pools(tmp_path, {"eval/rrtnm.csv": (header, [
        ["T", ask.format("右上葉に28mmの結節を認めます。肺癌を疑います。"), *options, "B"]])}))
    pool = convert_jmed_llm(pools(tmp_path, {"pool/RRTNM.csv": (header, [
        ["T", ask.format("左下葉に40mmの腫瘤があり、左主気管支に及んでいます。"), *options, "C"]])}))
    user = [c.conversations[0][1]["content"] for c in (pool, evaluation)]
    assert any(user[0][i : i + 50] in user[1] for i in range(len(user[0]) - 49))  # the prompts share 50-character spans
    assert jmed_llm_split(pool, evaluation).why == [None]  # their documents share nothing
    assert jmed_llm_documents(ask.format("右上葉に 28mm の結節"), "rrtnm") == ("右上葉に28mmの結節",)
    assert jmed_llm_documents("以下の2つの文の意味の類似度は？\nS1: 発熱を認めた\nS2: 熱があった", "jcsts") == ("発熱を認めた", "熱があった")
    assert jmed_llm_documents("次のうち正しいのはどれか?", "jmmlu_med") == ("次のうち正しいのはどれか?",)  # a stem is its document


def test_the_task_by_label_table_counts_rows_in_kept_and_removed_and_warns(tmp_path):
    pool = convert_jmed_llm(pools(tmp_path, {
        "pool/CRADE.csv": (CRADE_HEADER, [crade("胃潰瘍", OTHER_CASE), crade("黒色便", OTHER_CASE),
                                          crade("発熱", CASE, "B"), crade("咳嗽", CASE, "C"),
                                          ["disease", crade("皮疹", OTHER_CASE)[1], "関連なし", "可能性あり", "", "", "C"]]),
        "pool/SMDIS.csv": (SMDIS_HEADER, [smdis("咳", "今日は晴れて気持ちがいい。"), smdis("咳", "咳が止まらない。", "A")]),
        "pool/RRTNM.csv": (SMDIS_HEADER, [["T", "以下の読影レポートには原発腫瘍がありますか？\n「腫瘤なし」", "あり", "なし", "B"]])}))
    evaluation = convert_jmed_llm(pools(tmp_path, {
        "eval/crade.csv": (CRADE_HEADER, [crade("発熱", CASE, "B")]),
        "eval/rrtnm.csv": (SMDIS_HEADER, [["T", "以下の読影レポートには原発腫瘍がありますか？\n「腫瘤なし」", "あり", "なし", "B"]]),
        "eval/jcsts.csv": (["question", "optionA", "optionB", "answer"],
                           [["以下の2つの文の意味の類似度は？\nS1: 熱\nS2: 熱", "同じ", "違う", "A"]])}))
    split = jmed_llm_split(pool, evaluation)
    rows = {(r["task"], r["label"]): [r[c] for c in ("in", "kept", "identical row", "shared document", "malformed")]
            for r in split.table()}
    assert rows == {("crade", "A"): [2, 2, 0, 0, 0], ("crade", "B"): [1, 0, 1, 0, 0], ("crade", "C"): [1, 0, 0, 1, 0],
                    ("crade", "?"): [1, 0, 0, 0, 1], ("crade", "all"): [5, 2, 1, 1, 1],
                    ("rrtnm", "B"): [1, 0, 1, 0, 0], ("rrtnm", "all"): [1, 0, 1, 0, 0],
                    ("smdis", "A"): [1, 1, 0, 0, 0], ("smdis", "B"): [1, 1, 0, 0, 0], ("smdis", "all"): [2, 2, 0, 0, 0],
                    ("all", "all"): [8, 4, 2, 1, 1]}
    assert split.warnings() == ["jmmlu_med: no training pool", "crade: all kept rows have label A",
                                "rrtnm: no row kept of 1", "jcsts: no training pool (an evaluation set of 1 rows)",
                                "mrner_disease: no training pool", "mrner_medicine: no training pool",
                                "nrner: no training pool"]
    assert "| crade | ? | 1 | 0 | 0 | 0 | 1 | 0 |" in split.markdown()


def test_converted_rows_carry_task_and_label_and_the_cli_saves_the_split_beside_them(tmp_path, capsys):
    from slm.data.readers import ReadErrors
    from slm.finetune.instructions import load_conversations

    pools(tmp_path, {
        "pool/CRADE.csv": (CRADE_HEADER, [crade("発熱", CASE, "B"), crade("咳嗽", CASE, "C"),
                                          crade("胃潰瘍", OTHER_CASE, "D")]),
        # MRNER is CRNER and RRNER by entity type: disease rows of both, medicine rows of CRNER
        "pool/CRNER.csv": (["tag", "question", "answer"], [crner("d", OTHER_CASE),
                                                           crner("m-key", OTHER_CASE, "['ＰＰＩ']")]),
        "pool/RRNER.csv": (["tag", "question", "answer"], [["d", "以下の読影レポートにおいて、所見は？\n「右肺に結節」", "['結節']"]]),
        "eval/crade.csv": (CRADE_HEADER, [crade("発熱", CASE, "B")])})
    out = tmp_path / "train.jsonl"
    argv = ["--format", "jmed-llm", "--input", *map(str, sorted((tmp_path / "pool").iterdir())),
            "--exclude", str(tmp_path / "eval" / "crade.csv"), "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["task"], r["label"]) for r in records] == [("crade", "D"), ("mrner_disease", None),
                                                          ("mrner_medicine", None), ("mrner_disease", None)]
    assert len(load_conversations([str(out)], ReadErrors(strict=True))) == 4  # the extra keys are read past
    saved = json.loads((tmp_path / "train.jsonl.split.json").read_text(encoding="utf-8"))
    assert saved["level"] == "document" and saved["removed"] == 2 and saved["leaking"] == 0
    assert "| crade | all | 3 | 1 | 1 | 1 | 0 | 0 |" in printed
    assert (tmp_path / "train.jsonl.split.md").read_text(encoding="utf-8") in printed
    assert "2 removed as sharing a document" in printed

    assert main([*argv[:-1], str(tmp_path / "row.jsonl"), "--exclude-level", "row"]) == 0
    printed = capsys.readouterr().out
    assert "1 removed as identical to an evaluation row, 1 kept that share a document with one (leaking)" in printed
    assert "warning: row level LEAKS: 1 kept rows share a document" in printed
    saved = json.loads((tmp_path / "row.jsonl.split.json").read_text(encoding="utf-8"))
    assert saved["level"] == "row" and saved["leaking"] == 1
    assert len((tmp_path / "row.jsonl").read_text(encoding="utf-8").splitlines()) == 5
