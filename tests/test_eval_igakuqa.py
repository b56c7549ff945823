"""IgakuQA's official scoring rules on fixtures in the official layout."""

import json
import shutil

import pytest

from conftest import SAMPLE_BENCHMARKS, ScriptedLM
from evaluate import main
from slm.eval import registry
from slm.eval.harness import Context
from slm.eval.igakuqa import (SYSTEM, IgakuQAError, Options, Question, conversation, evaluate, extract_answer,
                              find_shots, format_question, load_predictions, load_questions, load_shots,
                              parse_prediction, score)

QUIET = Context(progress=False)


def q(pid, answer, points="1", choices=5, text_only=True):
    return {"problem_id": pid, "problem_text": "問題", "choices": ["x"] * choices, "text_only": text_only,
            "answer": answer, "points": points}


@pytest.fixture()
def data(tmp_path):
    root = tmp_path / "IgakuQA" / "data"
    for year, exam, block, rows, meta in [
        ("2018", "112", "A", [q("112A1", ["a"]), q("112A2", ["a", "c"]), q("112A3", ["26"], choices=0),
                              q("112A4", ["b"], points="0", text_only=False)],
         [{"problem_id": "112A1", "kinki": "cde"}, {"problem_id": "112A2", "kinki": ["ｂ"]}]),
        ("2018", "112", "B", [q("112B30", ["a or d"], points="3"), q("112B1", ["e"], points="1")],
         [{"problem_id": "112B1", "kinki": " a"}]),
        ("2022", "116", "A", [q("116A71", ["b"]), q("116A1", ["c"])], []),
    ]:
        d = root / year
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{exam}-{block}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        if meta:  # absent metadata is fine: no prohibited choices
            (d / f"{exam}-{block}_metadata.jsonl").write_text(
                "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in meta), encoding="utf-8")
        (d / f"{exam}-{block}_translate.jsonl").write_text("", encoding="utf-8")  # ignored
    return tmp_path / "IgakuQA"


def test_official_rules(data):
    qs = load_questions(data)
    preds = {"112A1": "Ａ", "112A2": "a,c", "112A3": "26", "112A4": "b", "112B30": "d", "112B1": "a",
             "116A71": "z", "116A1": "c,d"}
    r = score(qs, preds)
    y18, y22 = r["years"]["2018"], r["years"]["2022"]
    # 112A1 full-width and upper case: correct; 112A2 exact set; 112A3 numeric string; 112A4 0 points but counted;
    # 112B30 accepts d; 112B1 wrong (picked prohibited a)
    assert (y18["points"], y18["total"], y18["correct"], y18["questions"]) == (1 + 1 + 1 + 0 + 3, 1 + 1 + 1 + 0 + 3 + 1, 5, 6)
    assert y18["accuracy"] == pytest.approx(5 / 6)
    assert y18["required_points"] == 3 and y18["required_total"] == 4  # block B
    assert y18["text_only"] == 5 and y18["kinki_picked"] == 1
    # 116A71 counts as correct for any prediction; no partial credit for c,d against c
    assert (y22["points"], y22["total"], y22["correct"]) == (1, 2, 1)


def test_no_partial_credit_and_no_lenient_splitting():
    assert parse_prediction("a, b") == {"a", " b"}  # officially wrong against ["a", "b"] (GPT-4's 112C23)
    assert parse_prediction("ｂ，ｃ") == {"b", "c"}  # full-width comma becomes "," by NFKC
    assert parse_prediction("") == {""}


def test_missing_predictions_count_wrong_and_are_listed(data):
    r = score(load_questions(data), {"112A1": "a"})
    assert r["years"]["2018"]["correct"] == 1 and "112A2" in r["years"]["2018"]["missing"]


def test_bad_prediction_files_name_file_and_line(data, tmp_path):
    qs = load_questions(data)
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"problem_id": "112A1", "prediction": "a"}\n{"problem_id": "999Z9", "prediction": "a"}\n')
    with pytest.raises(IgakuQAError, match=r"p\.jsonl line 2: unknown problem_id '999Z9'"):
        load_predictions(bad, qs)
    bad.write_text('{"problem_id": "112A1"\n')
    with pytest.raises(IgakuQAError, match=r"p\.jsonl line 1: not valid JSON"):
        load_predictions(bad, qs)
    bad.write_text('{"problem_id": "112A1", "prediction": 3}\n')
    with pytest.raises(IgakuQAError, match="needs string fields"):
        load_predictions(bad, qs)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(IgakuQAError, match="official IgakuQA layout"):
        load_questions(tmp_path / "nothing")
    with pytest.raises(IgakuQAError, match="missing: no such folder"):
        load_questions(tmp_path / "missing")


def test_cli_scores_and_writes_reports(data, tmp_path, capsys):
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"problem_id": p, "prediction": "a"}) + "\n" for p in ("112A1", "112B30")))
    assert main(["score", "igakuqa", "--data", str(data), "--predictions", str(preds), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "| 2018 | 4/7 |" in out and "no prediction (counted wrong) for 2" in out
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["years"]["2018"]["points"] == 4
    assert (tmp_path / "o" / "table.md").is_file() and (tmp_path / "o" / "predictions.jsonl").is_file()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem_id": "nope", "prediction": "a"}\n')
    assert main(["score", "igakuqa", "--data", str(data), "--predictions", str(bad)]) == 2


# ------------------------------------------------------------------ putting the exam to a model

SAMPLE = SAMPLE_BENCHMARKS / "igakuqa"


def question(choices=5, answer=("a", "c")):
    return Question("1", "y", "A", "問題文", [f"選択肢{i}" for i in range(choices)], list(answer), 1, True)


def test_the_published_prompt():
    assert format_question(question()) == (
        "問題: 問題文\na: 選択肢0\nb: 選択肢1\nc: 選択肢2\nd: 選択肢3\ne: 選択肢4\n"
        "必ずa,b,c,d,eの中からちょうど2個選んでください。\n答え:")
    assert format_question(question(choices=0, answer=["26"])) == "問題: 問題文\n答え:"  # numeric entry
    shots = load_shots(find_shots(SAMPLE))
    messages = conversation(question(), shots)
    assert messages[0] == {"role": "system", "content": SYSTEM} and len(messages) == 1 + 2 * 3 + 1
    assert [m["role"] for m in messages[1:]] == ["user", "assistant"] * 3 + ["user"]
    assert messages[4]["content"] == "a,b"  # the two-answer example: letters joined by ","
    assert find_shots(SAMPLE / "data") == find_shots(SAMPLE)  # the repository or its data/ folder


def official_repository(root):
    """The sample laid out as the published IgakuQA repository: data/ and scripts/prompts/prompt.jsonl."""
    shutil.copytree(SAMPLE / "data", root / "data")
    (root / "scripts" / "prompts").mkdir(parents=True)
    shutil.copy(SAMPLE / "prompts" / "prompt.jsonl", root / "scripts" / "prompts" / "prompt.jsonl")
    return root


def test_the_official_repository_is_data_as_it_is_and_the_shots_file_used_is_said(tmp_path):
    repo = official_repository(tmp_path / "IgakuQA")
    shots = repo / "scripts" / "prompts" / "prompt.jsonl"
    assert find_shots(repo) == find_shots(repo / "data") == shots
    for data in (repo, repo / "data"):
        exam = registry.task("igakuqa", data).data
        assert exam.shots_file == shots and len(exam.shots) == 3
    result = registry.run(registry.task("igakuqa", repo), ScriptedLM(), context=QUIET)
    assert result.metrics["settings"]["shots_file"] == str(shots)
    assert f"few-shot examples: 3 from {shots}" in result.summary()
    assert registry.run(registry.task("igakuqa", repo, {"shots": 0}), ScriptedLM(),
                        context=QUIET).metrics["settings"]["shots_file"] is None
    shots.unlink()
    with pytest.raises(IgakuQAError, match="looked for .*scripts/prompts/prompt.jsonl.*prompts/prompt.jsonl"):
        registry.task("igakuqa", repo)


def test_loglik_says_the_numeric_questions_are_generated_and_the_table_counts_problems():
    lm = ScriptedLM({"体格指数": "27"}, {("急性心筋梗塞", "a"): -1.0})
    result = registry.run(registry.task("igakuqa", SAMPLE, {"method": "loglik"}), lm, context=QUIET)
    numeric = result.metrics["settings"]["numeric_entry"]
    assert numeric == {"questions": 1, "method": "generate (loglik does not apply: numeric-entry answers, "
                                                  "no choices to rank)"}
    said = [n for n in result.summary().splitlines() if "does not apply" in n]
    assert said == ["1 numeric-entry question(s): generate (loglik does not apply: numeric-entry answers, no choices "
                    "to rank), up to 32 new tokens"]
    generated = registry.run(registry.task("igakuqa", SAMPLE), ScriptedLM({"2型糖尿病": "b"}), context=QUIET)
    assert generated.metrics["settings"]["numeric_entry"]["method"] == "generate"
    assert not [n for n in generated.summary().splitlines() if "numeric-entry" in n]
    header, _, row = generated.table.splitlines()
    assert header.endswith("| prohibited picked | unparsed | not answered |")
    assert row.endswith(" | 9/10 | 0/10 |")  # one answer readable, nine outputs empty


def test_answer_extraction():
    q = question()
    assert extract_answer("c", q) == "c"
    assert extract_answer("ｃ，ａ", q) == "a,c"  # full-width, any separator
    assert extract_answer("答え: B", q) == "b"
    assert extract_answer("answer: c", q) == "c"  # the a of "answer" is part of a word
    assert extract_answer("c\n問題: 次の問題 a", q) == "c"  # only the first line: the model went on
    assert extract_answer("f", q) is None and extract_answer("", q) is None and extract_answer("わかりません", q) is None
    numeric = question(choices=0, answer=["1.2"])
    assert extract_answer("１．２", numeric) == "1.2" and extract_answer("26Torr", numeric) == "26"
    assert extract_answer("不明", numeric) is None


def test_model_answers_are_scored_by_the_official_rules_and_failures_listed():
    questions = load_questions(SAMPLE)
    lm = ScriptedLM({"2型糖尿病": "b", "急性心筋梗塞": "a, b", "市中肺炎": "わかりません", "体格指数": "27",
                     "アナフィラキシー": "d", "II、III、aVF": "ａ"})
    result = evaluate(lm, questions, load_shots(find_shots(SAMPLE)), context=QUIET)
    y = result["years"]["sample"]
    # correct: 900A1 (1), 900A2 (1), 900A5 (1), 900B1 (3 points, required block)
    assert (y["points"], y["total"], y["correct"], y["questions"]) == (6, 11, 4, 10)
    assert (y["required_points"], y["required_total"]) == (3, 6)
    assert y["kinki_picked"] == 1  # d for 900B2 is prohibited
    assert "900A3" in y["unparsed"] and "900A1" not in y["unparsed"] and y["not_answered"] == []
    rows = {r["problem_id"]: r for r in result["questions"]}
    assert rows["900A2"]["output"] == "a, b" and rows["900A2"]["prediction"] == "a,b" and rows["900A2"]["correct"]
    assert rows["900A3"]["prediction"] == "" and not rows["900A3"]["correct"] and rows["900A1"]["shots"] == 3
    assert result["settings"]["method"] == "generate"


def test_loglik_mode_picks_as_many_letters_as_the_question_has_answers():
    questions = load_questions(SAMPLE)
    scores = {("急性心筋梗塞", "a"): -1.0, ("急性心筋梗塞", "b"): -2.0, ("2型糖尿病", "b"): -0.5}
    lm = ScriptedLM({"体格指数": "27"}, scores)
    result = evaluate(lm, questions, [], Options(method="loglik"), QUIET)
    rows = {r["problem_id"]: r for r in result["questions"]}
    assert rows["900A2"]["prediction"] == "a,b" and rows["900A2"]["correct"]
    assert rows["900A1"]["prediction"] == "b" and set(rows["900A1"]["scores"]) == set("abcde")
    assert rows["900A5"]["prediction"] == "27" and rows["900A5"]["correct"]  # numeric: generated
    assert rows["900A5"]["scores"] is None


def test_cli_with_a_checkpoint(slm_dir, tmp_path, capsys):
    for method in ("generate", "loglik"):
        out = tmp_path / method
        assert main(["igakuqa", "--model", str(slm_dir), "--data", str(SAMPLE), "--method", method,
                     "--out", str(out)]) == 0
        assert "| sample |" in capsys.readouterr().out
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["settings"]["method"] == method and not metrics["settings"]["chat"]  # a base model
        # a run's predictions.jsonl is in the published format: `score` gives the same points
        assert main(["score", "igakuqa", "--data", str(SAMPLE), "--predictions", str(out / "predictions.jsonl")]) == 0
        assert f"| sample | {metrics['years']['sample']['points']}/11 |" in capsys.readouterr().out
    assert main(["igakuqa", "--model", str(tmp_path / "nothing"), "--data", str(SAMPLE)]) == 2
    assert main(["igakuqa", "--model", str(slm_dir), "--data", str(SAMPLE / "data"), "--shots-file",
                 str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "x")]) == 2
    assert "none.jsonl" in capsys.readouterr().err
