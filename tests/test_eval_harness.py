"""Putting items to a model: prompt fitting, generation budgets, log-likelihood picks, result files."""

import json

import pytest

from conftest import ScriptedLM
from slm.eval.harness import (PARTIAL_DIR, RESULT_FILES, Item, OutputError, Partial, Problem, Result, answer_items,
                               check_out, method_used, write_results)


def user(text, shots=0):
    return [{"role": "user", "content": "例" * 10}] * shots + [{"role": "user", "content": text}]


def test_examples_are_dropped_until_the_prompt_fits_and_what_cannot_fit_is_an_error():
    lm = ScriptedLM({"Q": "a"}, max_length=40)
    items = [Item("fits", [user("Q1", 2), user("Q1", 1), user("Q1")]),  # 22 tokens + 16 new: all shots fit
             Item("drops", [user("Q2" * 3, 2), user("Q2" * 3, 1), user("Q2" * 3)]),  # 26 tokens, then 16
             Item("never", [user("Q" * 45)])]
    answers = answer_items(lm, items, max_new_tokens=16, progress=False)
    assert (answers["fits"].dropped_shots, answers["fits"].output) == (0, "a")
    assert answers["drops"].dropped_shots == 1 and answers["drops"].error is None
    assert answers["never"].output == ""
    assert "45 tokens" in answers["never"].error  # counted wrong by the benchmark, listed, no crash
    assert len(lm.generated) == 2


def test_a_prompt_too_long_for_the_full_budget_generates_with_less_and_says_so():
    lm = ScriptedLM({"Q": "a"}, max_length=40)
    answers = answer_items(lm, [Item("q", [user("Q" * 30)])], max_new_tokens=16, progress=False)
    assert answers["q"].output == "a" and lm.budgets == [10] and "only 10 new tokens" in answers["q"].note


def test_loglik_picks_the_top_choices_and_records_every_score():
    scores = {("Q", "a"): -3.0, ("Q", "b"): -1.0, ("Q", "c"): -2.0}
    lm = ScriptedLM(scores=scores)
    choices = [(c, c) for c in "abc"]
    one = answer_items(lm, [Item("q", [user("Q")], choices, pick=1)], method="loglik", progress=False)["q"]
    two = answer_items(lm, [Item("q", [user("Q")], choices, pick=2)], method="loglik", progress=False)["q"]
    assert one.output == "b" and two.output == "b,c"  # labels joined in order, as the official format writes them
    assert one.scores == {"a": -3.0, "b": -1.0, "c": -2.0}
    # per character: the long continuation's total is spread over its length
    lm = ScriptedLM(scores={("Q", "長い選択肢"): -5.0, ("Q", "短"): -2.0})
    item = Item("q", [user("Q")], [("a", "長い選択肢"), ("b", "短")], normalize=True)
    assert answer_items(lm, [item], method="loglik", progress=False)["q"].output == "a"


def test_items_without_choices_are_generated_in_loglik_mode():
    lm = ScriptedLM({"numeric": "26"}, {("choice", "a"): 0.0})
    items = [Item("n", [user("numeric")]), Item("c", [user("choice")], [("a", "a"), ("b", "b")])]
    answers = answer_items(lm, items, method="loglik", progress=False)
    assert (answers["n"].output, answers["c"].output) == ("26", "a")
    with pytest.raises(ValueError, match="method"):
        answer_items(lm, items, method="beam")
    assert method_used("loglik", rankable=False, why="no choices") == "generate (loglik does not apply: no choices)"
    assert method_used("loglik", rankable=True, why="-") == "loglik"
    assert method_used("generate", rankable=False, why="-") == "generate"


def test_generation_batches_keep_each_answer_with_its_item():
    outputs = {f"Q{i}": f"A{i}" for i in range(10)}
    lm = ScriptedLM(outputs)
    items = [Item(str(i), [user(f"Q{i}" + "x" * (i * 7 % 5))]) for i in range(10)]  # lengths differ: sorted for batching
    answers = answer_items(lm, items, batch_size=3, progress=False)
    assert {k: a.output for k, a in answers.items()} == {str(i): f"A{i}" for i in range(10)}


def test_write_results_writes_the_three_files(tmp_path):
    result = Result([{"id": 1, "text": "発熱"}], {"accuracy": 0.5}, {"accuracy": 0.5}, "| a |\n",
                    [Problem("unparsed", ["q7"], "2018")])
    write_results(tmp_path / "o", result)
    assert result.summary() == "| a |\n2018: no readable answer (counted wrong) for 1 of the questions: ['q7']\n"
    assert json.loads((tmp_path / "o" / "predictions.jsonl").read_text(encoding="utf-8")) == {"id": 1, "text": "発熱"}
    assert json.loads((tmp_path / "o" / "metrics.json").read_text()) == {"accuracy": 0.5}
    assert (tmp_path / "o" / "table.md").read_text() == "| a |\n"
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["metrics.json", "predictions.jsonl", "table.md"]


def test_a_folder_holding_only_finished_parts_is_resumed_and_then_replaced_by_the_results(tmp_path):
    out = tmp_path / "o"
    Partial(out, dict).put("smdis", {"outputs": []})
    assert check_out(out, overwrite=False) is False  # not results: no --overwrite needed
    write_results(out, Result([], {}, {}, "| a |\n"), overwrite=False)
    assert sorted(p.name for p in out.iterdir()) == sorted(RESULT_FILES)  # partial/ went with the old folder
    with pytest.raises(OutputError, match="--overwrite"):
        check_out(out, overwrite=False)
    other = tmp_path / "other"
    Partial(other, dict).put("smdis", {})
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="notes.txt"):  # someone else's file beside it: never written into
        check_out(other, overwrite=True)
    assert (other / PARTIAL_DIR / "smdis.json").is_file()
