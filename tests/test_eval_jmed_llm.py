"""JMED-LLM metrics: the published evaluator's behaviour (upstream) and the corrected mode,
on hand-computed cases."""

import csv
import json

import pytest

from conftest import SAMPLE_BENCHMARKS, ScriptedLM
from evaluate import main
from slm.config import ConfigError
from slm.eval import registry
from slm.eval.harness import Context
from slm.jmed import CHOICE_SYSTEM, NER_SYSTEM, conversation
from slm.eval.jmed_llm import (TASKS, JmedLLMError, Options, cohen_kappa, evaluate, exact_f1, first_letter, load_predictions, load_task, parse_list, partial_f1,
                               report, score_task, standalone_letter)

QUIET = Context(progress=False)


def tasks(*names):
    return {task: load_task(SAMPLE, task) for task in names}


def test_letter_parsing():
    assert first_letter("Answer: B") == "A"  # upstream quirk: the A of "Answer"
    assert first_letter("") == first_letter("わかりません") == "None"
    assert first_letter("答えはC") == "C"
    assert standalone_letter("Answer: B", "ABCD") == "B"
    assert standalone_letter("E です", "ABCD") == "None"  # not one of this row's options


def test_kappa_hand_computed():
    gold, pred = ["A", "A", "B", "B"], ["A", "B", "B", "B"]
    # observed agreement 3/4; expected: P(A) 0.5*0.25 + P(B) 0.5*0.75 = 0.5 -> kappa = (0.75-0.5)/(1-0.5)
    assert cohen_kappa(gold, pred, None) == pytest.approx(0.5)
    # "None" joins the labels and sorts after the letters
    assert cohen_kappa(["A", "B"], ["A", "None"], None) == pytest.approx((0.5 - 0.25) / (1 - 0.25))
    # linear weights: disagreement A vs C costs 2, A vs B costs 1
    g, p = ["A", "B", "C"], ["B", "B", "C"]
    # labels A,B,C; O = [[0,1,0],[0,1,0],[0,0,1]]; rows (1,1,1) cols (0,2,1); E = outer/3
    observed = 1 * 1  # A->B, weight 1
    expected = sum(abs(i - j) * r * c / 3 for i, r in enumerate([1, 1, 1]) for j, c in enumerate([0, 2, 1]))
    assert cohen_kappa(g, p, "linear") == pytest.approx(1 - observed / expected)


def test_list_parsing_never_evaluates_code():
    assert parse_list("['発熱', '咳嗽']") == ["発熱", "咳嗽"]
    assert parse_list("発熱, 咳嗽") == [] and parse_list("") == [] and parse_list("{'a': 1}") == []
    assert parse_list("__import__('os').system('echo hi')") == []


def test_exact_and_the_published_partial_f1_quirk():
    gold, pred = [["胃癌", "走行異常"]], [["胃癌", "腫瘤", "影"]]
    assert exact_f1(gold, pred) == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    # upstream: one exact match -> recall 1, precision |A|/|P| = 2/3
    assert partial_f1(gold, pred, "upstream") == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))
    # precision can exceed 1: |A| = 3 answers, |P| = 1 exact match
    assert partial_f1([["a", "b", "c"]], [["a"]], "upstream") == pytest.approx(2 * 1 * 3 / (1 + 3))
    # upstream ignores substrings; corrected counts them
    assert partial_f1([["胃癌"]], [["進行胃癌"]], "upstream") == 0.0
    assert partial_f1([["胃癌"]], [["進行胃癌"]], "corrected") == 1.0
    assert exact_f1([["a"]], [[]]) == 0.0  # empty prediction: precision 0


@pytest.fixture()
def data(tmp_path):
    with open(tmp_path / "crade.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["tag", "question", "optionA", "optionB", "optionC", "optionD", "answer"])
        for ans in "ABCD":
            w.writerow(["d", "質問", "a", "b", "c", "d", ans])
    with open(tmp_path / "nrner.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["tag", "question", "answer"])
        w.writerow(["d", "所見は?", "['発熱', '咳嗽']"])
        w.writerow(["d", "所見は?", "['頭痛']"])
    return tmp_path


def test_score_task_in_both_modes(data):
    rows = list(csv.DictReader(open(data / "crade.csv", encoding="utf-8")))
    outputs = ["A", "Answer: B", "C", ""]
    up = score_task("crade", rows, outputs, "upstream")
    assert up["predictions"] == ["A", "A", "C", "None"] and up["accuracy"] == 0.5
    fixed = score_task("crade", rows, outputs, "corrected")
    assert fixed["predictions"] == ["A", "B", "C", "None"] and fixed["accuracy"] == 0.75


def test_cli_and_prediction_file_errors(data, tmp_path, capsys):
    preds = tmp_path / "p.jsonl"
    preds.write_text("\n".join(json.dumps({"task": t, "index": i, "output": o}, ensure_ascii=False) for t, i, o in
                               [("crade", 0, "A"), ("crade", 1, "B"), ("crade", 2, "C"), ("crade", 3, "D"),
                                ("nrner", 0, "['発熱']"), ("nrner", 1, "頭痛")]) + "\n", encoding="utf-8")
    assert main(["score", "jmed-llm", "--data", str(data), "--predictions", str(preds), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "| crade | kappa (accuracy) | 1.00 (1.00) |" in out and "| nrner |" in out
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["mode"] == "upstream"
    preds.write_text('{"task": "crade", "index": 9, "output": "A"}\n')
    with pytest.raises(JmedLLMError, match="has 4 rows, but predictions name index"):
        load_predictions(preds, data)
    preds.write_text('{"task": "unknown", "index": 0, "output": "A"}\n')
    assert main(["score", "jmed-llm", "--data", str(data), "--predictions", str(preds)]) == 2


# ------------------------------------------------------------------ putting the tasks to a model

SAMPLE = SAMPLE_BENCHMARKS / "jmed-llm"


def test_the_official_prompts():
    row = {"question": "所見は？", "optionA": "あり", "optionB": "なし", "optionC": "", "answer": "A"}
    assert conversation(row) == [{"role": "system", "content": CHOICE_SYSTEM},
                                          {"role": "user", "content": "質問: 所見は？\n選択肢:\nA. あり\nB. なし\n"}]
    assert conversation({"question": "所見は？"}) == [{"role": "system", "content": NER_SYSTEM},
                                                             {"role": "user", "content": "所見は？"}]
    assert "アルファベット（例：A）のみ" in CHOICE_SYSTEM and "['回答1', '回答2']" in NER_SYSTEM
    n_row = load_task(SAMPLE, "rrtnm")[2]  # an N row: option E is empty, so not an option
    assert "D. " in conversation(n_row)[1]["content"] and "E. " not in conversation(n_row)[1]["content"]


def test_model_outputs_are_scored_and_what_cannot_be_read_is_listed():
    lm = ScriptedLM({"呼吸数": "B", "インスリン": "Answer: B", "ビタミンB12": "", "ヘモグロビン": "C",
                     "60歳男性。発熱": "['発熱', '咳嗽', '浸潤影', '肺炎']", "45歳女性": "頭痛と嘔気"})
    results, outputs, errors = evaluate(lm, tasks("jmmlu_med", "mrner_disease"), context=QUIET)
    assert results["jmmlu_med"]["predictions"] == ["B", "A", "None", "C"]  # upstream: the A of "Answer"
    assert results["jmmlu_med"]["accuracy"] == 0.5
    assert results["mrner_disease"]["exact_f1"] == pytest.approx(1 / 3)
    rows, metrics = report(results, outputs, "upstream", settings={"model": "scripted"}, errors=errors)
    assert metrics["jmmlu_med"]["unparsed"] == [2] and metrics["mrner_disease"]["unparsed"] == [1, 2]
    assert metrics["jmmlu_med"]["empty"] == [2] and metrics["mrner_disease"]["empty"] == [2]  # 1 wrote prose
    assert rows[1] == {"task": "jmmlu_med", "index": 1, "output": "Answer: B", "parsed": "A", "answer": "B"}
    fixed, _, _ = evaluate(lm, tasks("jmmlu_med"), Options(mode="corrected"), QUIET)
    assert fixed["jmmlu_med"]["predictions"] == ["B", "B", "None", "C"]
    with pytest.raises(ConfigError, match="unknown JMED-LLM tasks"):
        Options(tasks=["jmmlu"])


def test_loglik_ranks_only_the_rows_own_options():
    lm = ScriptedLM(scores={("右肺門リンパ節", "B"): -0.1, ("右肺門リンパ節", "E"): 0.0})
    results, outputs, _ = evaluate(lm, tasks("rrtnm"), Options(method="loglik"), QUIET)
    assert outputs["rrtnm"][3] == "B"  # E scores higher but is not an option of this N row


def test_loglik_generates_the_ner_tasks_and_says_so_once():
    task = registry.task("jmed-llm", SAMPLE, {"method": "loglik", "tasks": ["smdis", "nrner", "mrner_disease"],
                                              "ner_max_new_tokens": 64})
    lm = ScriptedLM()
    result = registry.run(task, lm, context=QUIET)
    assert lm.budgets == [64, 64]  # only the two NER tasks generate, with their own budget
    assert result.metrics["smdis"]["method"] == "loglik"
    assert result.metrics["nrner"]["method"] == "generate (loglik does not apply: free-text answers)"
    assert result.metrics["settings"]["ner_max_new_tokens"] == 64
    said = [n for n in result.summary().splitlines() if "loglik does not apply" in n]
    assert said == ["nrner, mrner_disease: generate (loglik does not apply: free-text answers), up to 64 new tokens "
                    "(ner_max_new_tokens)"]
    lm = ScriptedLM()
    generated = registry.run(registry.task("jmed-llm", SAMPLE, {"tasks": ["smdis", "nrner"], "max_new_tokens": 8}),
                             lm, context=QUIET)
    assert lm.budgets == [8, 8] and generated.notes == []  # without its own budget NER takes max_new_tokens
    assert generated.metrics["nrner"]["method"] == "generate"
    with pytest.raises(ConfigError, match="ner_max_new_tokens must be at least 1"):
        Options(ner_max_new_tokens=0)


def test_a_repetition_penalty_reaches_generation_and_is_recorded():
    lm = ScriptedLM()
    task = registry.task("jmed-llm", SAMPLE, {"method": "loglik", "tasks": ["smdis", "nrner"], "repetition_penalty": 1.3})
    result = registry.run(task, lm, context=QUIET)
    assert lm.penalties == [1.3] and result.metrics["settings"]["repetition_penalty"] == 1.3  # NER generated with it
    assert "repetition penalty 1.3 (the official evaluator's decoding has none)" in result.table
    official = registry.run(registry.task("jmed-llm", SAMPLE, {"tasks": ["nrner"]}), ScriptedLM(), context=QUIET)
    assert official.metrics["settings"]["repetition_penalty"] == 1.0 and "penalty" not in official.table
    with pytest.raises(ConfigError, match="repetition_penalty must be above 0"):
        Options(repetition_penalty=0)


def test_the_table_counts_unparsed_and_empty_outputs():
    lm = ScriptedLM({"呼吸数": "B", "インスリン": "わかりません"})  # the other rows: empty outputs
    result = registry.run(registry.task("jmed-llm", SAMPLE, {"tasks": ["jmmlu_med", "nrner"]}), lm, context=QUIET)
    lines = result.table.splitlines()
    assert lines[0] == "| task | metric | score | unparsed | empty |"
    assert lines[2].startswith("| jmmlu_med | ") and lines[2].endswith(" | 3/4 | 2/4 |")
    assert lines[2].startswith("| jmmlu_med | kappa (accuracy) | ")
    assert lines[3] == "| nrner | partial F1 (exact F1) | 0.00 (0.00) | 3/3 | 3/3 |"  # a zero that is nothing written, said so


def test_cli_with_a_checkpoint_and_rescoring_its_predictions(slm_dir, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["jmed-llm", "--model", str(slm_dir), "--data", str(SAMPLE), "--max-new-tokens", "8",
                 "--method", "loglik", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert all(f"| {t} |" in printed for t in TASKS)
    assert main(["score", "jmed-llm", "--data", str(SAMPLE), "--predictions", str(out / "predictions.jsonl")]) == 0
    assert capsys.readouterr().out.split("\n")[:10] == printed.split("\n")[:10]  # the same table from the file


def test_a_transformers_model_goes_through_the_same_harness(hf_dir, tmp_path, capsys):
    out = tmp_path / "hf"
    assert main(["jmed-llm", "--model", str(hf_dir), "--data", str(SAMPLE), "--tasks", "smdis", "nrner",
                 "--max-new-tokens", "6", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["model"] == hf_dir.name and set(metrics) >= {"smdis", "nrner"}
    assert metrics["smdis"]["rows"] == 4 and metrics["smdis"]["not_answered"] == []
    assert main(["jmed-llm", "--model", str(hf_dir), "--data", str(SAMPLE), "--tasks", "smdis", "--method", "loglik",
                 "--out", str(tmp_path / "ll")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "ll" / "predictions.jsonl").read_text().splitlines()]
    assert all(r["output"] in ("A", "B") for r in rows)
