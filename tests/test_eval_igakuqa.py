"""IgakuQA's official scoring rules on fixtures in the official layout."""

import json

import pytest

from evaluate import main
from slm.eval.igakuqa import IgakuQAError, load_predictions, load_questions, parse_prediction, score
from tokenizer.corpus import CorpusError


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
    with pytest.raises(CorpusError, match=r"p\.jsonl line 1: not valid JSON"):
        load_predictions(bad, qs)
    bad.write_text('{"problem_id": "112A1", "prediction": 3}\n')
    with pytest.raises(IgakuQAError, match="needs string fields"):
        load_predictions(bad, qs)
    with pytest.raises(IgakuQAError, match="official IgakuQA layout"):
        load_questions(tmp_path / "nothing")


def test_cli_scores_and_writes_reports(data, tmp_path, capsys):
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"problem_id": p, "prediction": "a"}) + "\n" for p in ("112A1", "112B30")))
    assert main(["score", "igakuqa", "--data", str(data), "--predictions", str(preds), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "| 2018 | 4/7 |" in out and "without a prediction" in out
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["2018"]["points"] == 4
    assert (tmp_path / "o" / "table.md").is_file() and (tmp_path / "o" / "predictions.jsonl").is_file()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem_id": "nope", "prediction": "a"}\n')
    assert main(["score", "igakuqa", "--data", str(data), "--predictions", str(bad)]) == 2
