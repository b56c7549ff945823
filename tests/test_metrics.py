"""Free-text metrics against hand-computed values, the degeneration statistics, and the JMED-LLM task
metrics that evaluation and fine-tuning's checkpoint selection share."""

import pytest

from slm.metrics import (bleu, degeneration, exact_match, free_text_report, longest_repeated_ngram,
                                   distinct_n, rouge_l, token_f1)


def test_exact_match_and_token_f1():
    assert exact_match("The Aspirin.", "aspirin") == 1.0  # case, punctuation and articles do not count
    assert exact_match("aspirin daily", "aspirin") == 0.0
    # prediction "low dose aspirin daily" vs "aspirin daily": 2 common, P = 2/4, R = 2/2
    assert token_f1("low dose aspirin daily", "aspirin daily") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("", "aspirin") == 0.0 and token_f1("", "") == 1.0
    # Japanese by characters: C反応性蛋白 vs C反応性たんぱく: 4 common of 6 and 8
    assert token_f1("C反応性蛋白", "C反応性たんぱく", unit="chars") == pytest.approx(2 * (4 / 6) * (4 / 8) / (4 / 6 + 4 / 8))
    assert exact_match(" はい ", "はい", unit="chars") == 1.0


def test_rouge_l_and_bleu():
    p, r = "fever cough rash pain", "fever rash pain headache"
    # LCS = fever rash pain (3): P = 3/4, R = 3/4
    assert rouge_l([p], [r]) == pytest.approx(0.75)
    assert rouge_l(["発熱と咳"], ["発熱と頭痛"], unit="chars") == pytest.approx(2 * (3 / 4) * (3 / 5) / (3 / 4 + 3 / 5))
    assert bleu([r], [r]) == pytest.approx(100.0)
    assert bleu(["completely different words here"], [r]) < 5
    assert 0 < bleu(["発熱と咳嗽を認めた"], ["発熱と咳嗽を認める"], unit="chars") < 100


def test_degeneration_statistics():
    looping = "take aspirin take aspirin take aspirin take aspirin"
    assert longest_repeated_ngram(looping) == 6  # "take aspirin take aspirin take aspirin" occurs twice (overlapping)
    assert longest_repeated_ngram("one two three") == 0
    assert distinct_n(["a1 b1 a1 b1"], 1) == 0.5 and distinct_n(["a1 b1 a1 b1"], 2) == pytest.approx(2 / 3)
    d = degeneration(["fine answer", looping], finished=[True, False])
    assert d["never_stopped"] == 0.5 and d["longest_repeat_max"] == 6 and d["longest_repeat_mean"] == 3
    report = free_text_report(["aspirin", "beta blocker"], ["aspirin", "ace inhibitor"], finished=[True, True])
    assert report["exact_match"] == 0.5 and report["never_stopped"] == 0 and report["answers"] == 2
    with pytest.raises(ValueError, match="2 predictions for 1"):
        free_text_report(["a", "b"], ["a"])


def test_qa_cli_reports_every_metric_for_a_checkpoint(slm_dir, tmp_path, capsys):
    import json

    from evaluate import main

    data = tmp_path / "heldout.jsonl"
    data.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]},
                                         ensure_ascii=False) for q, a in [("発熱は?", "あり"), ("咳は?", "なし"), ("長い" * 400, "なし")]) + "\n")
    assert main(["qa", "--model", str(slm_dir), "--data", str(data), "--unit", "chars", "--max-new-tokens", "4",
                 "--repetition-penalty", "1.3", "--out", str(tmp_path / "o")]) == 0
    assert "rouge_l" in capsys.readouterr().out
    report = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert report["answers"] == 3 and 0 <= report["never_stopped"] <= 1 and report["settings"]["repetition_penalty"] == 1.3
    assert report["not_answered"] == [2]  # longer than the model's context: listed, the run goes on
    rows = [json.loads(line) for line in (tmp_path / "o" / "predictions.jsonl").read_text().splitlines()]
    assert all(isinstance(r["finished"], bool) for r in rows) and rows[0]["reference"] == "あり"


def test_task_metrics_are_one_implementation_shared_by_evaluation_and_selection():
    import math

    import slm.eval.jmed_llm as jmed
    from slm.metrics import JMED_CHOICE_TASKS, NO_LETTER, cohen_kappa, exact_f1, f1, standalone_letter

    assert jmed.cohen_kappa is cohen_kappa and jmed.exact_f1 is exact_f1 and jmed.CHOICE_TASKS is JMED_CHOICE_TASKS
    # a constant answer agrees with the gold labels no more than chance: kappa 0, whatever its accuracy
    gold = ["A"] * 8 + ["B", "C"]
    assert cohen_kappa(gold, ["A"] * 10, None) == 0.0 and cohen_kappa(gold, ["A"] * 10, "linear") == 0.0
    assert math.isnan(cohen_kappa(["A", "A"], ["A", "A"], None))  # one label throughout: chance is perfect
    assert f1(0.5, 1.0) == pytest.approx(2 / 3) and f1(0.0, 0.0) == 0.0
    assert exact_f1([["a", "b"]], [["a"]]) == pytest.approx(f1(1.0, 0.5))
    assert standalone_letter("ABは誤り、正解は C", "ABC") == "C" and standalone_letter("", "ABC") == NO_LETTER
