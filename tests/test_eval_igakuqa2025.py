"""IgakuQA 2025 (the 119th exam): its grader's scoring rules, published answer files, and the exam
put to a model, on fixtures in the published layout."""

import json

import pytest

from conftest import ScriptedLM
from evaluate import main
from slm.eval import registry
from slm.eval.harness import Context
from slm.eval.igakuqa import SYSTEM
from slm.eval.harness import BenchmarkError
from slm.eval.igakuqa2025 import IgakuQA2025Error, is_correct, load_questions, normalize

QUIET = Context(progress=False)
CHOICES = [f"{c}. 選択肢{c.upper()}" for c in "abcde"]

# (block, number, question, choices, has_image, answer): points 1 except B26, E28 and E50 (3)
QUESTIONS = [
    ("A", 1, "貧血の原因", CHOICES, False, "c"),
    ("A", 2, "二つ選ぶ問題", CHOICES, True, "ce"),
    ("A", 3, "数値入力の問題", [], False, "600"),
    ("B", 1, "必修の一点問題", CHOICES, False, "a"),
    ("B", 26, "必修の三点問題", CHOICES, True, "b"),
    ("C", 1, "公衆衛生の問題", CHOICES, False, "b"),
    ("C", 2, "選択肢の欄がない数値問題", None, False, "12"),  # no "choices" field at all
    ("D", 1, "選択肢が一つ欠けた問題", ["a. 甲", "b. 乙", "d. 丁", "e. 戊"], False, "d"),  # c lost
    ("E", 25, "必修の二十五番", CHOICES, False, "a"),
    ("E", 28, "aでもcでも正解の問題", CHOICES, False, "a"),
    ("E", 50, "必修の五十番", CHOICES, False, "bd"),
    ("F", 1, "臨床の問題", CHOICES, False, "e"),
]
TOTAL = 12 + 3 * 2  # 12 questions, three of them worth 3 points
SHOTS = [
    {"problem_id": "800A1", "problem_text": "インフルエンザの治療薬はどれか。", "choices": ["オセルタミビル", "アシクロビル"],
     "answer": ["a"]},
    {"problem_id": "800A2", "problem_text": "腎機能の評価に用いるのはどれか。2つ選べ。", "choices": ["クレアチニン", "eGFR", "AST"],
     "answer": ["a", "b"]},
    {"problem_id": "800A3", "problem_text": "低血糖の症状はどれか。", "choices": ["徐脈", "発汗"], "answer": ["b"]},
]


def write_exam(root, questions=QUESTIONS, answers=None, shots=True):
    blocks = {}
    for block, n, text, choices, image, _ in questions:
        record = {"number": f"119{block}{n}", "has_image": image}
        if text is not None:  # None: the field left out
            record["question"] = text + " "
        if choices is not None:
            record["choices"] = choices
        blocks.setdefault(block, []).append(record)
    (root / "questions").mkdir(parents=True)
    for block in "ABCDEF":
        (root / "questions" / f"119{block}_json.json").write_text(
            json.dumps(blocks.get(block, []), ensure_ascii=False, indent=2), encoding="utf-8")
    rows = answers if answers is not None else [(f"119{b}{n}", a) for b, n, *_, a in questions]
    (root / "results").mkdir()
    (root / "results" / "correct_answers.csv").write_text(  # with a BOM, as spreadsheets write it
        "問題番号,解答\n" + "".join(f"{n},{a}\n" for n, a in rows), encoding="utf-8-sig")
    if shots:
        (root / "prompts").mkdir()
        (root / "prompts" / "prompt.jsonl").write_text(
            "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in SHOTS), encoding="utf-8")
    return root


@pytest.fixture()
def exam(tmp_path):
    return write_exam(tmp_path / "IgakuQA119")


def published(path, answers: dict[str, dict[str, str]]):
    """A file in the published answer format: {model: {question number: answer}}."""
    numbers = list(dict.fromkeys(n for by_model in answers.values() for n in by_model))
    results = [{"question_number": n, "question_text": "…", "choices": [], "has_image": False,
                "answers": [{"model": m, "timestamp": "2025-05-13T07:52:43", "answer": a[n], "confidence": 1.0,
                             "explanation": "", "cot": None} for m, a in answers.items() if n in a]}
               for n in numbers]
    path.write_text(json.dumps({"experiment_id": path.stem, "results": results}, ensure_ascii=False), encoding="utf-8")
    return path


# ------------------------------------------------------------------ the grader's rules

def test_normalisation_reads_every_way_of_writing_the_letters():
    for written in ("ce", "ec", "c,e", "E C", "(c)(e)", "ｃｅ", "[c, e]", "Ｅ，Ｃ", "c、e", " c\te "):
        assert normalize(written) == "ce", written
    assert normalize("６００") == "600" and normalize("600") == "600"
    assert normalize("006") == "006"  # a number is not sorted
    assert normalize("") == "" and normalize(None) == ""


def test_exact_match_empty_wrong_and_119E28(exam):
    qs = load_questions(exam)
    assert is_correct(qs["119A2"], "E, C") and not is_correct(qs["119A2"], "c")  # no partial credit
    assert not is_correct(qs["119A2"], "ace")
    assert is_correct(qs["119A3"], "６００") and not is_correct(qs["119A3"], "60")
    assert not is_correct(qs["119A1"], "") and not is_correct(qs["119A1"], " ")  # empty is wrong
    assert is_correct(qs["119E28"], "a") and is_correct(qs["119E28"], "(C)")  # a or c
    assert not is_correct(qs["119E28"], "ac") and not is_correct(qs["119E28"], "b")


def test_points_sections_and_the_layout(exam):
    qs = load_questions(exam)
    points = {n: q.points for n, q in qs.items() if q.points != 1}
    assert points == {"119B26": 3, "119E28": 3, "119E50": 3}  # B/E 26-50; B1, E25 and every general question 1
    assert {n for n, q in qs.items() if q.section == "required"} == {"119B1", "119B26", "119E25", "119E28", "119E50"}
    assert qs["119A1"].choices[0] == "選択肢A" and qs["119A1"].text == "貧血の原因"  # "a. " prefix stripped
    assert qs["119A3"].choices == [] and qs["119C2"].choices == []  # numeric entry: empty list or no field
    assert qs["119D1"].labels == "abde" and qs["119A2"].answer == "ce"


def test_a_published_file_scores_by_the_rules_through_the_cli(exam, tmp_path, capsys):
    m1 = {"119A1": "C", "119A2": "E, C", "119A3": "６００", "119B1": "", "119B26": "(b)", "119C2": "12", "119D1": "d",
          "119E25": "b", "119E28": "c", "119E50": "ｄ，ｂ", "119F1": "ef"}  # 119C1 not answered
    m2 = {n: "a" for n in m1}
    first = published(tmp_path / "119A_m.json", {"m1": {n: a for n, a in m1.items() if n < "119D"}, "m2": m2})
    second = published(tmp_path / "119D_m.json", {"m1": {n: a for n, a in m1.items() if n >= "119D"}})
    out = tmp_path / "o"
    assert main(["score", "igakuqa2025", "--data", str(exam), "--predictions", str(first), str(second),
                 "--prediction-model", "m1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    # correct: A1, A2, A3, B26 (3), C2, D1, E28 (3, "c"), E50 (3); wrong: B1 (empty), C1 (missing), E25, F1
    assert {k: metrics["overall"][k] for k in ("points", "total", "correct", "questions")} == \
        {"points": 14, "total": TOTAL, "correct": 8, "questions": 12}
    assert metrics["overall"]["missing"] == ["119C1"]
    assert {k: metrics["required"][k] for k in ("points", "total", "correct", "questions")} == \
        {"points": 9, "total": 11, "correct": 3, "questions": 5}
    assert {k: metrics["general"][k] for k in ("points", "total", "correct", "questions")} == \
        {"points": 5, "total": 7, "correct": 5, "questions": 7}
    # without images: A2 and B26 left out
    assert {k: metrics["text_only"][k] for k in ("points", "total", "correct", "questions")} == \
        {"points": 10, "total": 14, "correct": 6, "questions": 10}
    assert "| all | 14/18 | 66.7% (8/12) |" in printed and "| required (B, E) | 9/11 |" in printed
    assert "no prediction (counted wrong) for 1 of the questions: ['119C1']" in printed
    rows = {json.loads(line)["question_number"]: json.loads(line)
            for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()}
    assert rows["119E50"]["prediction"] == "bd" and rows["119E50"]["correct"] and rows["119E50"]["points"] == 3
    assert rows["119C1"]["output"] is None and not rows["119C1"]["correct"]
    assert rows["119B26"]["has_image"] and rows["119B26"]["section"] == "required"

    # several models and none chosen: an error naming them; the other model scores on its own
    assert main(["score", "igakuqa2025", "--data", str(exam), "--predictions", str(first)]) == 2
    assert "['m1', 'm2']" in capsys.readouterr().err
    result = registry.score("igakuqa2025", [exam], [first], {"prediction_model": "m2"})
    assert result.headline["points"] == 1 + 1 + 3 and result.metrics["overall"]["missing"] == ["119C1"]  # B1, E25, E28
    assert main(["score", "igakuqa2025", "--data", str(exam), "--predictions", str(first), "--prediction-model",
                 "m3"]) == 2


def test_bad_prediction_files_name_the_file_entry_and_field(exam, tmp_path):
    bad = tmp_path / "p.json"
    for content, message in [
        ({"results": [{"question_number": "119Z9", "answers": []}]},
         r"p\.json results\[0\]: .*unknown question '119Z9'"),
        ({"results": [{"question_number": "119A1", "answers": "a"}]}, r"results\[0\] \(119A1\): field 'answers'"),
        ({"results": [{"question_number": "119A1", "answers": [{"answer": "a"}]}]}, r"answers\[0\]: field 'model'"),
        ({"results": [{"question_number": "119A1", "answers": [{"model": "m"}]}]}, r"answers\[0\]: field 'answer'"),
        ([{"question_number": "119A1"}], "field 'results'"),
    ]:
        bad.write_text(json.dumps(content), encoding="utf-8")
        with pytest.raises(IgakuQA2025Error, match=message):
            registry.score("igakuqa2025", [exam], [bad])
    bad.write_text('{"results": [', encoding="utf-8")
    with pytest.raises(IgakuQA2025Error, match=r"p\.json line 1: not valid JSON"):
        registry.score("igakuqa2025", [exam], [bad])


# ------------------------------------------------------------------ validation before any model work

def test_validation_names_the_file_the_question_or_row_and_the_field(tmp_path):
    def fails(name, message, questions=QUESTIONS, answers=None):
        root = write_exam(tmp_path / name, questions, answers)
        with pytest.raises(IgakuQA2025Error, match=message):
            registry.task("igakuqa2025", root)
        return root

    no_text = [("A", 1, None, CHOICES, False, "c")]  # no "question" field
    fails("field", r"119A_json\.json question 1 \(119A1\): field 'question'", no_text)
    fails("choices", r"question 1 \(119A1\): field 'choices' must be a list of strings",
          [("A", 1, "問", [1, 2], False, "a")])
    block = write_exam(tmp_path / "block")
    (block / "questions" / "119B_json.json").write_text(json.dumps([{"number": "119A7", "question": "問"}]),
                                                         encoding="utf-8")
    with pytest.raises(IgakuQA2025Error, match=r"119B_json\.json question 1 \(119A7\): field 'number' must be 119B<n>"):
        registry.task("igakuqa2025", block)
    fails("extra", r"correct_answers\.csv row 14: 問題番号 119F99 is not a question",
          answers=[(f"119{b}{n}", a) for b, n, *_, a in QUESTIONS] + [("119F99", "a")])
    fails("unanswered", r"119F_json\.json question 1 \(119F1\): no answer in .*correct_answers\.csv",
          answers=[(f"119{b}{n}", a) for b, n, *_, a in QUESTIONS][:-1])
    fails("empty", r"correct_answers\.csv row 2 \(119A1\): field 解答 is empty",
          answers=[("119A1", "")] + [(f"119{b}{n}", a) for b, n, *_, a in QUESTIONS][1:])
    fails("zero", r"no questions in", questions=[], answers=[])

    header = write_exam(tmp_path / "header")
    (header / "results" / "correct_answers.csv").write_text("番号,解答\n119A1,c\n", encoding="utf-8")
    with pytest.raises(IgakuQA2025Error, match=r"correct_answers\.csv row 1: the header needs 問題番号 and 解答"):
        registry.task("igakuqa2025", header)
    (header / "results" / "correct_answers.csv").write_bytes("問題番号,解答\n119A1,ｃ\n".encode("cp932"))
    with pytest.raises(IgakuQA2025Error, match=r"correct_answers\.csv line 1: not valid utf-8 \(byte 0x96 at column 1, "
                                               r"offset 0 in the file\); it decodes as Shift_JIS \(cp932\).*re-save it as UTF-8"):
        registry.task("igakuqa2025", header)
    (header / "questions" / "119A_json.json").write_bytes('[{"number": "119A1", "question": "貧血"}]'.encode("cp932"))
    with pytest.raises(IgakuQA2025Error, match=r"119A_json\.json line 1: not valid utf-8"):
        registry.task("igakuqa2025", header)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(IgakuQA2025Error, match="IgakuQA 2025 layout"):
        registry.task("igakuqa2025", tmp_path / "nothing")
    with pytest.raises(IgakuQA2025Error, match="missing: no such folder"):
        registry.task("igakuqa2025", tmp_path / "missing")
    no_shots = write_exam(tmp_path / "no_shots", shots=False)
    with pytest.raises(BenchmarkError, match=r"prompts/prompt\.jsonl beside the data"):
        registry.task("igakuqa2025", no_shots)
    assert registry.task("igakuqa2025", no_shots, {"shots": 0}).data.shots == []


# ------------------------------------------------------------------ putting the exam to a model

def test_generation_with_the_published_prompt_is_scored_by_the_rules(exam, tmp_path):
    lm = ScriptedLM({"貧血の原因": "c", "二つ選ぶ問題": "e, c", "数値入力の問題": "600", "必修の一点問題": "わかりません",
                     "必修の三点問題": "ｂ", "選択肢が一つ欠けた問題": "c", "aでもcでも正解の問題": "c",
                     "必修の五十番": "b,d\n問題: 次の問題 a", "臨床の問題": "答え: E"})
    task = registry.task("igakuqa2025", exam)
    result = registry.run(task, lm, tmp_path / "run", QUIET)
    prompt = next(p for p in lm.generated if "二つ選ぶ問題" in p[-1]["content"])
    assert prompt[0] == {"role": "system", "content": SYSTEM} and len(prompt) == 1 + 2 * 3 + 1
    assert prompt[-1]["content"] == ("問題: 二つ選ぶ問題\na: 選択肢A\nb: 選択肢B\nc: 選択肢C\nd: 選択肢D\ne: 選択肢E\n"
                                     "必ずa,b,c,d,eの中からちょうど2個選んでください。\n答え:")
    assert prompt[4]["content"] == "a,b"  # the two-answer example
    lost = next(p for p in lm.generated if "選択肢が一つ欠けた問題" in p[-1]["content"])[-1]["content"]
    assert "c: 丁\nd: 戊" in lost  # shown lettered in order ...
    rows = {r["question_number"]: r for r in result.rows}
    assert rows["119D1"]["prediction"] == "d" and rows["119D1"]["correct"]  # ... and the model's c read as d
    assert rows["119A2"]["output"] == "e, c" and rows["119A2"]["prediction"] == "ce" and rows["119A2"]["correct"]
    assert rows["119B1"]["prediction"] == "" and not rows["119B1"]["correct"]
    # correct: A1, A2, A3, B26 (3), D1, E28 (3), E50 (3), F1; C1, C2 and E25 got no output
    overall = result.metrics["overall"]
    assert (overall["points"], overall["correct"], overall["total"]) == (14, 8, TOTAL)
    assert overall["unparsed"] == ["119B1", "119C1", "119C2", "119E25"] and overall["not_answered"] == []
    assert result.headline == {"accuracy": 8 / 12, "points": 14, "required points": 9, "general points": 5}
    assert result.metrics["settings"]["method"] == "generate" and result.metrics["settings"]["shots"] == 3
    assert any("119D1" in note for note in result.notes)  # relettered choices are listed
    # a run's predictions.jsonl is in the published format: scoring it gives the same points
    rescored = registry.score("igakuqa2025", [exam], [tmp_path / "run" / "predictions.jsonl"])
    assert rescored.metrics["overall"]["points"] == 14 and rescored.metrics["overall"]["missing"] == []


def test_loglik_ranks_the_letters_picks_as_many_as_the_answer_and_generates_numbers(exam):
    scores = {("二つ選ぶ問題", "c"): -1.0, ("二つ選ぶ問題", "e"): -2.0, ("貧血の原因", "c"): -0.5,
              ("選択肢が一つ欠けた問題", "c"): -0.1, ("必修の五十番", "b"): -1.0, ("必修の五十番", "d"): -1.5,
              ("aでもcでも正解の問題", "c"): -0.2}
    lm = ScriptedLM({"数値入力の問題": "６００", "選択肢の欄がない数値問題": "12個"}, scores)
    task = registry.task("igakuqa2025", exam, {"method": "loglik", "shots": 0})
    result = registry.run(task, lm, None, QUIET)
    rows = {r["question_number"]: r for r in result.rows}
    assert rows["119A2"]["output"] == "c,e" and rows["119A2"]["correct"]
    assert rows["119A1"]["prediction"] == "c" and set(rows["119A1"]["scores"]) == set("abcde")
    assert rows["119D1"]["prediction"] == "d" and set(rows["119D1"]["scores"]) == set("abde")  # its own letters
    assert rows["119E28"]["prediction"] == "c" and rows["119E28"]["correct"]  # one letter picked, not two
    assert rows["119E50"]["prediction"] == "bd" and rows["119E50"]["correct"]
    assert rows["119A3"]["prediction"] == "600" and rows["119A3"]["correct"] and rows["119A3"]["scores"] is None
    assert rows["119C2"]["prediction"] == "12" and rows["119C2"]["correct"]  # numeric: generated
    assert len(lm.generated) == 2 and result.metrics["settings"]["loglik_target"] == "letter"
    # ranking the choice texts instead of the letters
    text = ScriptedLM(scores={("貧血の原因", "選択肢B"): -0.1})
    rows = {r["question_number"]: r for r in registry.run(
        registry.task("igakuqa2025", exam, {"method": "loglik", "shots": 0, "loglik_target": "text"}), text, None,
        QUIET).rows}
    assert rows["119A1"]["prediction"] == "b"


def test_a_prompt_too_long_for_the_model_counts_wrong_and_is_listed(tmp_path):
    long = QUESTIONS + [("F", 2, "長" * 300, CHOICES, False, "a")]
    root = write_exam(tmp_path / "x", long)
    result = registry.run(registry.task("igakuqa2025", root, {"shots": 0}), ScriptedLM({"臨床": "e"}, max_length=200),
                          None, QUIET)
    assert result.metrics["overall"]["not_answered"] == ["119F2"]
    assert "prompt too long for the model (counted wrong) for 1 of the questions: ['119F2']" in result.summary()


def test_cli_with_a_checkpoint(slm_dir, exam, tmp_path, capsys):
    for method in ("generate", "loglik"):
        out = tmp_path / method
        assert main(["igakuqa2025", "--model", str(slm_dir), "--data", str(exam), "--method", method,
                     "--out", str(out)]) == 0
        assert "| all |" in capsys.readouterr().out
        metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        assert metrics["settings"]["method"] == method and metrics["overall"]["total"] == TOTAL
        assert main(["score", "igakuqa2025", "--data", str(exam), "--predictions", str(out / "predictions.jsonl")]) == 0
        assert f"| all | {metrics['overall']['points']}/{TOTAL} |" in capsys.readouterr().out
