"""JMED-LLM metrics: the published evaluator's behaviour (upstream) and the corrected mode,
on hand-computed cases."""

import csv
import json

import pytest

from evaluate import main
from slm.eval.jmed_llm import (JmedLLMError, cohen_kappa, exact_f1, first_letter, load_predictions, parse_list,
                               partial_f1, score_task, standalone_letter)


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
    assert "| crade | 1.00 (1.00) |" in out and "| nrner |" in out
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["mode"] == "upstream"
    preds.write_text('{"task": "crade", "index": 9, "output": "A"}\n')
    with pytest.raises(JmedLLMError, match="has 4 rows, but predictions name index"):
        load_predictions(preds, data)
    preds.write_text('{"task": "unknown", "index": 0, "output": "A"}\n')
    assert main(["score", "jmed-llm", "--data", str(data), "--predictions", str(preds)]) == 2
