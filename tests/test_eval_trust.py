"""Trusting an evaluation: every input checked against its schema before any model work (errors
name the file, the line or row, and the field), files that are not UTF-8 named with the fix,
results folders that are never clobbered (a failed run changes nothing), and every CLI failure
one line `error: ...` with status 2."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SAMPLE_BENCHMARKS, ScriptedLM
from evaluate import main
from slm.eval import harness, registry
from tokenizer import folders
from slm.eval.harness import (Benchmark, BenchmarkError, EncodingError, OutputError, Result, read_csv, write_results)
from slm.eval.igakuqa import IgakuQAError
from slm.eval.jmed_llm import JmedLLMError
from slm.eval.mcqa import MCQAError
from slm.eval.sweep import sweep
from conftest import fake_run

NO_MODEL = "no-model-folder"  # data errors come before the model is looked for


def cli_fails(capsys, argv, pattern) -> str:
    """main(argv) ends with status 2 and exactly one stderr line `error: ...` matching `pattern`."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in captured.out + captured.err
    return lines[0]


def jsonl(path: Path, rows, encoding="utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode(encoding))
    return path


def write_csv(path: Path, header, rows, encoding="utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


# ------------------------------------------------------------------ IgakuQA

def question(pid, **fields):
    return {"problem_id": pid, "problem_text": "発熱の原因はどれか。", "choices": ["肺炎", "胃炎", "腸炎", "膀胱炎", "腎炎"],
            "text_only": True, "answer": ["a"], "points": "1", **fields}


def igakuqa(tmp_path, rows=None, meta=None, shots=None, encoding="utf-8") -> Path:
    root = tmp_path / "IgakuQA"
    rows = [question("112A1"), question("112A2")] if rows is None else rows
    jsonl(root / "data" / "2018" / "112-A.jsonl", rows, encoding)
    if meta is not None:
        jsonl(root / "data" / "2018" / "112-A_metadata.jsonl", meta)
    shots = [{k: v for k, v in question(f"800A{i}").items() if k != "points"} for i in (1, 2, 3)] \
        if shots is None else shots
    jsonl(root / "prompts" / "prompt.jsonl", shots)
    return root


def drop(row, key):
    return {k: v for k, v in row.items() if k != key}


@pytest.mark.parametrize("rows, meta, shots, pattern", [
    ([question("112A1"), drop(question("112A2"), "answer")], None, None,
     r"112-A\.jsonl line 2 \(112A2\): field 'answer' must be a non-empty list"),
    ([question("112A1", answer=[])], None, None, r"112-A\.jsonl line 1 \(112A1\): field 'answer'"),
    ([question("112A1", points="three")], None, None, r"line 1 \(112A1\): field 'points' must be an integer"),
    ([question("112A1", points=True)], None, None, r"line 1 \(112A1\): field 'points'"),
    ([question("112A1", choices="abcde")], None, None, r"line 1 \(112A1\): field 'choices' must be a list of strings"),
    ([drop(question("112A1"), "choices")], None, None, r"line 1 \(112A1\): field 'choices'"),
    ([drop(question("112A1"), "problem_text")], None, None, r"line 1 \(112A1\): field 'problem_text'"),
    ([drop(question("112A1"), "problem_id")], None, None, r"112-A\.jsonl line 1: field 'problem_id'"),
    ([question("112A1", text_only="yes")], None, None, r"line 1 \(112A1\): field 'text_only'"),
    ([question("112A1"), question("112A1")], None, None, r"line 2: field 'problem_id' repeats 112A1 \(.*line 1\)"),
    ([], None, None, r"112-A\.jsonl: no questions"),
    (None, [{"problem_id": "112A1", "kinki": 3}], None, r"112-A_metadata\.jsonl line 1 \(112A1\): field 'kinki'"),
    (None, [{"kinki": "a"}], None, r"112-A_metadata\.jsonl line 1: field 'problem_id'"),
    (None, None, [drop(question("800A1"), "answer")], r"prompt\.jsonl line 1 \(800A1\): field 'answer'"),
    (None, None, [], r"prompt\.jsonl: no few-shot examples"),
])
def test_igakuqa_data_are_checked_before_any_model(tmp_path, capsys, rows, meta, shots, pattern):
    root = igakuqa(tmp_path, rows, meta, shots)
    with pytest.raises(IgakuQAError, match=pattern):
        registry.task("igakuqa", root)
    cli_fails(capsys, ["igakuqa", "--model", str(tmp_path / NO_MODEL), "--data", str(root)], pattern)


def test_igakuqa_prediction_files_are_checked(tmp_path, capsys):
    root = igakuqa(tmp_path)
    preds = tmp_path / "p.jsonl"
    for content, pattern in [("", r"p\.jsonl: no predictions"),
                             ('{"problem_id": "112A1", "prediction": "a"}\n[1]\n', r"p\.jsonl line 2: not a JSON object"),
                             ('{"problem_id": "112A1", "prediction": "a"', r"p\.jsonl line 1: not valid JSON")]:
        preds.write_text(content, encoding="utf-8")
        cli_fails(capsys, ["score", "igakuqa", "--data", str(root), "--predictions", str(preds)], pattern)
    cli_fails(capsys, ["score", "igakuqa", "--data", str(root), "--predictions", str(tmp_path / "none.jsonl")],
              r"none\.jsonl: no such file")


# ------------------------------------------------------------------ IgakuQA 2025 (its own tests cover the fields)

def test_igakuqa2025_answers_without_rows_are_an_error(tmp_path, capsys):
    root = tmp_path / "IgakuQA119"
    (root / "questions").mkdir(parents=True)
    (root / "questions" / "119A_json.json").write_text(json.dumps([{"number": "119A1", "question": "問"}]),
                                                        encoding="utf-8")
    (root / "results").mkdir()
    (root / "results" / "correct_answers.csv").write_text("問題番号,解答\n", encoding="utf-8")
    with pytest.raises(BenchmarkError, match=r"correct_answers\.csv: no rows below the header"):
        registry.task("igakuqa2025", root, {"shots": 0})
    cli_fails(capsys, ["igakuqa2025", "--model", NO_MODEL, "--data", str(root), "--shots", "0"], r"no rows below")


# ------------------------------------------------------------------ JMED-LLM

CHOICE_HEADER = ["tag", "question", "optionA", "optionB", "optionC", "answer"]


def jmed(tmp_path, task="smdis", header=CHOICE_HEADER, rows=None, encoding="utf-8") -> Path:
    if rows is None:
        rows = [["t", "所見は？\n二行目", "あり", "なし", "", "A"], ["t", "所見は？", "あり", "なし", "不明", "C"]]
    write_csv(tmp_path / "datasets" / f"{task}.csv", header, rows, encoding)
    return tmp_path / "datasets"


NER_HEADER = ["tag", "question", "answer"]


@pytest.mark.parametrize("task, header, rows, pattern", [
    ("smdis", ["tag", "question", "optionA", "optionB", "optionC"], [["t", "q", "a", "b", "c"]],
     r"smdis\.csv row 1: the smdis header needs question, answer .*missing: answer"),
    ("smdis", ["tag", "optionA", "optionB", "answer"], [["t", "a", "b", "A"]], r"smdis\.csv row 1: .*missing: question"),
    ("smdis", ["tag", "question", "optionA", "answer"], [["t", "q", "a", "A"]], r"row 1: .*option columns"),
    ("smdis", CHOICE_HEADER, [], r"smdis\.csv: no rows below the header"),
    # row 2 has a cell over two lines: the bad row is the third a spreadsheet shows, though on line 4 of the file
    ("smdis", CHOICE_HEADER, [["t", "一行目\n二行目", "a", "b", "", "A"], ["t", "q", "a", "b", "", "C"]],
     r"smdis\.csv row 3: field 'answer' 'C' is not one of the row's options A, B"),
    ("smdis", CHOICE_HEADER, [["t", "q", "a", "", "", "A"]], r"smdis\.csv row 2: fields optionA\.\.optionC: 1 non-empty"),
    ("smdis", CHOICE_HEADER, [["t", "  ", "a", "b", "", "A"]], r"smdis\.csv row 2: field 'question' is empty"),
    ("smdis", CHOICE_HEADER, [["t", "q", "a", "b", "", ""]], r"smdis\.csv row 2: field 'answer' '' is not one"),
    ("smdis", CHOICE_HEADER, [["t", "q", "a", "b", "", "AB"]], r"smdis\.csv row 2: field 'answer' 'AB' is not one"),
    ("smdis", CHOICE_HEADER, [["t", "q", "a", "b", "", "A", "extra"]], r"smdis\.csv row 2: 7 cells, more than the 6"),
    ("smdis", CHOICE_HEADER, [["t", 'q"', "a", "b", "", "A"]], None),  # a stray quote inside a cell is csv-legal
    ("nrner", NER_HEADER, [["t", "所見は？", "['発熱']"], ["t", "所見は？", "発熱, 咳嗽"]],
     r"nrner\.csv row 3: field 'answer' must be a Python list literal"),
    ("nrner", NER_HEADER, [["t", "所見は？", "[1, 2]"]], r"nrner\.csv row 2: field 'answer' must be a Python list"),
    ("nrner", ["tag", "question"], [["t", "所見は？"]], r"nrner\.csv row 1: the nrner header needs question and answer"),
    ("nrner", NER_HEADER, [], r"nrner\.csv: no rows below the header"),
])
def test_jmed_llm_task_files_are_checked_before_any_model(tmp_path, capsys, task, header, rows, pattern):
    data = jmed(tmp_path, task, header, rows)
    if pattern is None:
        assert len(registry.task("jmed-llm", data, {"tasks": [task]}).data[task]) == len(rows)
        return
    with pytest.raises(JmedLLMError, match=pattern):
        registry.task("jmed-llm", data, {"tasks": [task]})
    cli_fails(capsys, ["jmed-llm", "--model", NO_MODEL, "--data", str(data), "--tasks", task], pattern)


def test_jmed_llm_scoring_checks_the_task_files_and_the_predictions(tmp_path, capsys):
    data = jmed(tmp_path, rows=[["t", "q", "a", "b", "", "Z"]])
    preds = jsonl(tmp_path / "p.jsonl", [{"task": "smdis", "index": 0, "output": "A"}])
    cli_fails(capsys, ["score", "jmed-llm", "--data", str(data), "--predictions", str(preds)],
              r"smdis\.csv row 2: field 'answer' 'Z'")
    data = jmed(tmp_path)
    for content, pattern in [("", r"p\.jsonl: no predictions"),
                             ('{"task": "smdis", "index": 0, "output": "A"}\n{"task": "smdis", "index": 0, "output": "B"}\n',
                              r"p\.jsonl line 2: task smdis index 0 repeats line 1"),
                             ('{"task": "smdis", "index": true, "output": "A"}\n', r"p\.jsonl line 1: needs task")]:
        preds.write_text(content, encoding="utf-8")
        cli_fails(capsys, ["score", "jmed-llm", "--data", str(data), "--predictions", str(preds)], pattern)
    preds.write_text('{"task": "smdis", "index": 1, "output": "C"}\n', encoding="utf-8")
    assert main(["score", "jmed-llm", "--data", str(data), "--predictions", str(preds)]) == 0
    assert "| smdis |" in capsys.readouterr().out
    cli_fails(capsys, ["score", "jmed-llm", "--data", str(tmp_path / "nothing"), "--predictions", str(preds)],
              r"nothing: no such folder")


# ------------------------------------------------------------------ perplexity, qa, English multiple choice

def test_perplexity_files_without_a_readable_document_are_errors(tmp_path, capsys):
    good = tmp_path / "good.txt"
    good.write_text("発熱あり。\n", encoding="utf-8")
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    no_field = jsonl(tmp_path / "docs.jsonl", [{"body": "発熱あり。"}])
    for bad, pattern in [(empty, r"empty\.txt: no usable document .*empty"),
                         (no_field, r"docs\.jsonl: no usable document .*field 'text'"),
                         (tmp_path / "none.txt", r"none\.txt: no such file")]:
        with pytest.raises(BenchmarkError, match=pattern):
            registry.task("perplexity", [good, bad])
        cli_fails(capsys, ["perplexity", "--model", NO_MODEL, "--data", str(good), str(bad)], pattern)


def test_qa_files_without_a_usable_conversation_are_errors(tmp_path, capsys):
    good = jsonl(tmp_path / "good.jsonl", [{"messages": [{"role": "user", "content": "頭痛は？"},
                                                         {"role": "assistant", "content": "あります。"}]}])
    bad = jsonl(tmp_path / "bad.jsonl", [{"prompt": "頭痛は？"}])
    with pytest.raises(BenchmarkError, match=r"bad\.jsonl"):
        registry.task("qa", [good, bad])
    cli_fails(capsys, ["qa", "--model", NO_MODEL, "--data", str(good), str(bad)], r"bad\.jsonl")
    assert len(registry.task("qa", [good]).data.conversations) == 1


def test_multiple_choice_files_without_a_usable_question_are_errors(tmp_path, capsys):
    bad = jsonl(tmp_path / "medqa.jsonl", [{"question": "Antidote for heparin?", "options": {"A": "x"}, "answer_idx": "A"}])
    with pytest.raises(MCQAError, match=r"medqa\.jsonl.*line 1: options must be 2 to 8"):
        registry.task("medqa", [bad])
    cli_fails(capsys, ["medqa", "--model", NO_MODEL, "--data", str(bad)], r"medqa\.jsonl")
    cli_fails(capsys, ["medqa", "--model", NO_MODEL, "--data", str(tmp_path / "none.jsonl")], r"none\.jsonl: no such file")
    good = jsonl(tmp_path / "good.jsonl", [{"question": "Antidote for heparin?", "answer_idx": "B",
                                            "options": {"A": "Vitamin K", "B": "Protamine", "C": "Naloxone"}}])
    with pytest.raises(MCQAError, match="2 few-shot examples asked for, but the training split"):
        registry.task("medqa", [good], {"shots": 2})


# ------------------------------------------------------------------ files that are not UTF-8

SJIS = "cp932"


def _encoding_cases(tmp_path):
    """(benchmark, data, options, prediction files or None, the file that is not UTF-8) for every reader."""
    ok_igaku = igakuqa(tmp_path / "ok")
    cases = [("igakuqa", igakuqa(tmp_path / "q", encoding=SJIS), {}, None, "112-A.jsonl")]
    root = igakuqa(tmp_path / "m", meta=[])
    jsonl(root / "data" / "2018" / "112-A_metadata.jsonl", [{"problem_id": "112A1", "kinki": "ｃ"}], SJIS)
    cases.append(("igakuqa", root, {}, None, "112-A_metadata.jsonl"))
    root = igakuqa(tmp_path / "s")
    jsonl(root / "prompts" / "prompt.jsonl", [question("800A1")], SJIS)
    cases.append(("igakuqa", root, {}, None, "prompt.jsonl"))
    preds = jsonl(tmp_path / "igaku-preds.jsonl", [{"problem_id": "112A1", "prediction": "ａ"}], SJIS)
    cases.append(("igakuqa", ok_igaku, {}, [preds], "igaku-preds.jsonl"))
    cases.append(("jmed-llm", jmed(tmp_path / "j", encoding=SJIS), {"tasks": ["smdis"]}, None, "smdis.csv"))
    preds = jsonl(tmp_path / "jmed-preds.jsonl", [{"task": "smdis", "index": 0, "output": "Ａ"}], SJIS)
    cases.append(("jmed-llm", jmed(tmp_path / "j2"), {}, [preds], "jmed-preds.jsonl"))
    text = tmp_path / "heldout.txt"
    text.write_bytes("発熱あり。\n".encode(SJIS))
    cases.append(("perplexity", [text], {}, None, "heldout.txt"))
    cases.append(("perplexity", [jsonl(tmp_path / "heldout.jsonl", [{"text": "発熱あり。"}], SJIS)], {}, None,
                  "heldout.jsonl"))
    conversation = {"messages": [{"role": "user", "content": "頭痛は？"}, {"role": "assistant", "content": "はい。"}]}
    cases.append(("qa", [jsonl(tmp_path / "qa.jsonl", [conversation], SJIS)], {}, None, "qa.jsonl"))
    medqa = {"question": "Drug for ＤＭ?", "options": {"A": "Insulin", "B": "Metformin"}, "answer_idx": "B"}
    cases.append(("medqa", [jsonl(tmp_path / "medqa.jsonl", [medqa], SJIS)], {}, None, "medqa.jsonl"))
    mmlu = write_csv(tmp_path / "anatomy_test.csv", ["Which bone？", "a", "b", "c", "d"], [], SJIS)
    cases.append(("mmlu", [mmlu], {}, None, "anatomy_test.csv"))
    pubmed = tmp_path / "ori_pqal.json"
    pubmed.write_bytes(json.dumps({"1": {"QUESTION": "効く？", "CONTEXTS": [], "final_decision": "yes"}},
                                  ensure_ascii=False).encode(SJIS))
    cases.append(("pubmedqa", [pubmed], {}, None, "ori_pqal.json"))
    return cases


def test_every_reader_names_a_file_that_is_not_utf8_and_the_fix(tmp_path, capsys):
    for name, data, options, predictions, file in _encoding_cases(tmp_path):
        pattern = rf"{re.escape(file)} line \d+: not valid utf-8 \(byte 0x[0-9a-f]{{2}} at column \d+.*re-save it as UTF-8"
        with pytest.raises(EncodingError, match=pattern):
            if predictions is None:
                registry.task(name, data, options)
            else:
                registry.score(name, data, predictions, options)
        many = data if isinstance(data, list) else [data]
        flags = [f"--{k}={v[0]}" if isinstance(v, list) else f"--{k}={v}" for k, v in options.items()]
        argv = ["score", name, "--data", *map(str, many), "--predictions", *map(str, predictions)] if predictions \
            else [name, "--model", NO_MODEL, "--data", *map(str, many)]
        cli_fails(capsys, argv + flags, pattern)


def test_a_utf8_byte_order_mark_is_fine_and_the_encoding_error_is_the_benchmarks_own(tmp_path):
    data = jmed(tmp_path, encoding="utf-8-sig")
    assert [r["answer"] for r in registry.task("jmed-llm", data, {"tasks": ["smdis"]}).data["smdis"]] == ["A", "C"]
    jmed(tmp_path, encoding=SJIS)
    with pytest.raises(JmedLLMError) as caught:
        registry.task("jmed-llm", data, {"tasks": ["smdis"]})
    assert isinstance(caught.value, EncodingError) and "Shift_JIS (cp932)" in str(caught.value)
    header, rows = read_csv(write_csv(tmp_path / "x.csv", ["a", "b"], [["1", "2"], ["", ""], ["3", "4"]]))
    assert header == ["a", "b"] and [n for n, _ in rows] == [2, 4]  # a blank row keeps its number


# ------------------------------------------------------------------ results folders

def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir())


SAMPLE_JMED = SAMPLE_BENCHMARKS / "jmed-llm"


def jmed_run(slm_dir, out, *extra, tasks=("smdis",)):
    return main(["jmed-llm", "--model", str(slm_dir), "--data", str(SAMPLE_JMED), "--tasks", *tasks, "--method",
                 "loglik", "--out", str(out), *extra])


def test_out_holding_results_is_refused_and_overwrite_replaces_them_once_complete(slm_dir, tmp_path, capsys):
    out = tmp_path / "runs" / "o"
    assert jmed_run(slm_dir, out) == 0
    before = _files(out)
    assert set(before) == {"predictions.jsonl", "metrics.json", "table.md"}
    capsys.readouterr()
    cli_fails(capsys, ["jmed-llm", "--model", str(slm_dir), "--data", str(SAMPLE_JMED), "--out", str(out)],
              r"o already holds results \(metrics\.json, predictions\.jsonl, table\.md\): pass --overwrite")
    assert _files(out) == before
    # a failing run with --overwrite changes nothing: a model folder that does not exist ...
    cli_fails(capsys, ["jmed-llm", "--model", str(tmp_path / NO_MODEL), "--data", str(SAMPLE_JMED), "--out", str(out),
                       "--overwrite"], NO_MODEL)
    # ... or a truncated checkpoint
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in slm_dir.iterdir():
        (broken / p.name).symlink_to(p)
    (broken / "model.safetensors").unlink()
    (broken / "model.safetensors").write_bytes((slm_dir / "model.safetensors").read_bytes()[:1000])
    cli_fails(capsys, ["jmed-llm", "--model", str(broken), "--data", str(SAMPLE_JMED), "--out", str(out),
                       "--overwrite"], r"broken/model\.safetensors")
    assert _files(out) == before and _siblings(out) == ["o"]
    assert jmed_run(slm_dir, out, "--overwrite", tasks=("smdis", "jcsts")) == 0
    printed = capsys.readouterr().out
    assert "holds results: they are replaced once the new ones are complete" in printed
    assert f"the earlier results in {out} were replaced" in printed
    assert set(json.loads((out / "metrics.json").read_text())) >= {"smdis", "jcsts"} and _siblings(out) == ["o"]


def test_the_default_out_follows_the_same_rule(slm_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["jmed-llm", "--model", str(slm_dir), "--data", str(SAMPLE_JMED), "--tasks", "smdis", "--method", "loglik"]
    assert main(args) == 0
    out = tmp_path / "runs" / "eval" / slm_dir.name / "jmed-llm"
    before = _files(out)
    capsys.readouterr()
    cli_fails(capsys, args, r"jmed-llm already holds results")
    assert _files(out) == before
    assert main(args + ["--overwrite"]) == 0


def test_score_out_follows_the_same_rule(tmp_path, capsys):
    root = igakuqa(tmp_path)
    preds = jsonl(tmp_path / "p.jsonl", [{"problem_id": "112A1", "prediction": "a"}])
    out = tmp_path / "scored"
    args = ["score", "igakuqa", "--data", str(root), "--predictions", str(preds), "--out", str(out)]
    assert main(args) == 0
    before = _files(out)
    capsys.readouterr()
    cli_fails(capsys, args, r"scored already holds results")
    jsonl(preds, [{"problem_id": "112A2", "prediction": "a"}])
    assert _files(out) == before
    assert main(args + ["--overwrite"]) == 0
    assert _files(out) != before and "were replaced" in capsys.readouterr().out


class RaisingLM(ScriptedLM):
    def generate(self, prompts, **kwargs):
        raise RuntimeError("the model broke mid-run")


def test_a_run_that_fails_part_way_leaves_the_old_results_untouched(tmp_path):
    task = registry.task("jmed-llm", SAMPLE_JMED, {"tasks": ["smdis", "nrner"]})
    out = tmp_path / "o"
    registry.run(task, ScriptedLM({"": "A"}), out, harness.Context(progress=False))
    before = _files(out)
    with pytest.raises(RuntimeError, match="mid-run"):
        registry.run(task, RaisingLM(), out, harness.Context(progress=False))
    assert _files(out) == before and _siblings(out) == ["o"]


def test_write_results_is_atomic_and_never_writes_into_a_foreign_folder(tmp_path, monkeypatch):
    result = Result([{"id": 1}], {"accuracy": 0.5}, {"accuracy": 0.5}, "| a |\n")
    out = write_results(tmp_path / "o", result)
    before = _files(out)
    with pytest.raises(OutputError, match="already holds results"):
        write_results(out, Result([], {}, {}, ""), overwrite=False)
    calls = []

    def failing_fsync(fd):  # the disk fills up while the second file is written
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(folders.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space"):
        write_results(out, Result([{"id": 2}], {"accuracy": 1.0}, {}, "| b |\n"))
    monkeypatch.undo()
    assert _files(out) == before and _siblings(out) == ["o"]
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OutputError, match=r"holds files that do not belong to results \(notes\.txt\)"):
        write_results(out, result)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="a file, not a folder"):
        write_results(tmp_path / "file", result)


def test_leftovers_of_a_killed_writer_are_cleaned_or_put_back(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    result = Result([], {"n": 1}, {}, "")
    (tmp_path / f".tmp-o-{dead.pid}").mkdir()  # a half-written folder of a killed writer
    (tmp_path / f".tmp-o-{os.getppid()}").mkdir()  # a live writer's: left alone
    write_results(tmp_path / "o", result)
    assert _siblings(tmp_path / "o") == [f".tmp-o-{os.getppid()}", "o"]
    (tmp_path / f".tmp-o-{os.getppid()}").rmdir()
    # killed between moving the old results aside and moving the new ones in: the old go back
    os.replace(tmp_path / "o", tmp_path / f".old-o-{dead.pid}")
    write_results(tmp_path / "p", result)  # another folder's write leaves o's leftovers alone
    assert f".old-o-{dead.pid}" in _siblings(tmp_path / "o")
    write_results(tmp_path / "o", Result([], {"n": 2}, {}, ""))  # restored, then replaced
    assert json.loads((tmp_path / "o" / "metrics.json").read_text()) == {"n": 2}
    assert _siblings(tmp_path / "o") == ["o", "p"]


def test_a_forced_sweep_replaces_a_checkpoint_only_once_its_new_results_are_complete(slm_dir, tok, tmp_path):
    run = fake_run(tmp_path / "run", slm_dir, tok, (10,))
    task = registry.task("jmed-llm", SAMPLE_JMED, {"tasks": ["smdis"], "method": "loglik"})

    def evaluate(lm, out):
        return registry.run(task, ScriptedLM({"": "A"}), out, harness.Context(progress=False)).headline

    def failing(lm, out):
        raise RuntimeError("killed")

    sweep(run, {"jmed-llm": evaluate}, load=lambda c: None, progress=False)
    folder = run / "eval" / "step-0000010" / "jmed-llm"
    before = _files(folder)
    assert set(before) == {"predictions.jsonl", "metrics.json", "table.md", "headline.json"}
    sweep(run, {"jmed-llm": failing}, load=lambda c: None, progress=False)  # cached: read back, not run
    with pytest.raises(RuntimeError, match="killed"):
        sweep(run, {"jmed-llm": failing}, load=lambda c: None, force=True, progress=False)
    assert _files(folder) == before and _siblings(folder) == ["jmed-llm"]
    sweep(run, {"jmed-llm": evaluate}, load=lambda c: None, force=True, progress=False)
    assert set(_files(folder)) == set(before) and _siblings(folder) == ["jmed-llm"]


# ------------------------------------------------------------------ names and the command line

@pytest.mark.parametrize("name", ["a/b", "..", "../x", "", "-x", "a b"])
def test_a_benchmark_name_must_be_a_safe_folder_name(name):
    benchmark = Benchmark(name=name, options=registry.get("qa").options, load=lambda d, o: d,
                          run=lambda *a: None)
    with pytest.raises(BenchmarkError, match="must be a (single file or folder|non-empty) name"):
        registry.register(benchmark)
    assert name not in registry.names()


def test_model_failures_are_one_line_and_debug_shows_the_traceback(slm_dir, tmp_path, capsys):
    data = ["--data", str(SAMPLE_JMED), "--tasks", "smdis", "--out", str(tmp_path / "o")]
    bad_config = tmp_path / "bad-config"
    bad_config.mkdir()
    for p in slm_dir.iterdir():
        (bad_config / p.name).symlink_to(p)
    (bad_config / "config.json").unlink()
    (bad_config / "config.json").write_text('{"d_model": ', encoding="utf-8")
    cli_fails(capsys, ["jmed-llm", "--model", str(bad_config), *data], r"bad-config/config\.json")
    cli_fails(capsys, ["jmed-llm", "--model", str(tmp_path), *data], r"config\.json is missing")
    with pytest.raises(Exception):
        main(["--debug", "jmed-llm", "--model", str(bad_config), *data])
    assert not (tmp_path / "o").exists()
