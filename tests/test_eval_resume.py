"""A run in parts (JMED-LLM's eight tasks) saves each finished part at once, and a rerun after a
kill reads them back: the finished tasks are not asked again and the final files are those of
an uninterrupted run, byte for byte."""

import json
import os
import shutil

import pytest

import evaluate
from conftest import SAMPLE_BENCHMARKS, ScriptedLM
from slm.eval import registry
from slm.eval.harness import PARTIAL_DIR, RESULT_FILES, Context, OutputError, Partial, check_out
from slm.eval.jmed_llm import TASKS

SAMPLE = SAMPLE_BENCHMARKS / "jmed-llm"
QUIET = Context(progress=False)
OUTPUTS = {"呼吸数": "B", "インスリン": "Answer: B", "ヘモグロビン": "C", "60歳男性。発熱": "['発熱', '咳嗽']",
           "45歳女性": "頭痛と嘔気"}


class Killed(ScriptedLM):
    """Answers like ScriptedLM, and is killed (Ctrl-C) at generate call number `kill_at`; each task
    is one generate call here (4 rows or fewer, batches of 8)."""

    def __init__(self, kill_at=None):
        super().__init__(OUTPUTS)
        self.calls, self.kill_at = 0, kill_at

    def generate(self, prompts, **kwargs):
        self.calls += 1
        if self.calls == self.kill_at:
            raise KeyboardInterrupt
        return super().generate(prompts, **kwargs)


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def asked(lm, task_rows):
    """Whether any prompt the model was given is one of the rows' questions."""
    return any(row["question"] in lm._last_user(p) for p in lm.generated for row in task_rows)


def test_a_killed_run_resumes_at_the_next_task_and_writes_the_same_files(tmp_path):
    task = registry.task("jmed-llm", SAMPLE)
    whole = tmp_path / "whole"
    uninterrupted = Killed()
    registry.run(task, uninterrupted, whole, QUIET, overwrite=False)
    assert uninterrupted.calls == len(TASKS)

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        registry.run(task, Killed(kill_at=4), out, QUIET, overwrite=False)
    assert sorted(p.name for p in out.iterdir()) == [PARTIAL_DIR]  # no results yet, the finished tasks kept
    assert sorted(p.stem for p in (out / PARTIAL_DIR).iterdir()) == sorted(TASKS[:3])

    assert check_out(out, overwrite=False) is False  # the partial folder is not results: no --overwrite needed
    rerun = Killed()
    result = registry.run(task, rerun, out, QUIET, overwrite=False)
    assert rerun.calls == len(TASKS) - 3
    assert not any(asked(rerun, task.data[t]) for t in TASKS[:3]) and all(asked(rerun, task.data[t]) for t in TASKS[3:])
    assert files(out) == files(whole) and sorted(files(out)) == sorted(RESULT_FILES)  # partial/ is gone
    assert f"{', '.join(TASKS[:3])}: read back from {out / PARTIAL_DIR}" in result.summary()
    with pytest.raises(OutputError, match="--overwrite"):  # finished results still need --overwrite
        check_out(out, overwrite=False)


def test_parts_of_another_model_options_or_data_are_run_again(tmp_path):
    data = tmp_path / "jmed"
    shutil.copytree(SAMPLE, data)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        registry.run(registry.task("jmed-llm", data), Killed(kill_at=3), out, QUIET)
    with pytest.raises(KeyboardInterrupt):  # other options: nothing read back, the old parts replaced
        registry.run(registry.task("jmed-llm", data, {"mode": "corrected"}), Killed(kill_at=2), out, QUIET)
    other = Killed()
    other.name = "another"
    result = registry.run(registry.task("jmed-llm", data, {"mode": "corrected"}), other, out, QUIET)
    assert other.calls == len(TASKS)
    assert f"{out / PARTIAL_DIR}: parts of an interrupted run were run again (different model, options)" in result.notes

    shutil.rmtree(out)
    with pytest.raises(KeyboardInterrupt):
        registry.run(registry.task("jmed-llm", data), Killed(kill_at=3), out, QUIET)
    first = data / f"{TASKS[0]}.csv"
    os.utime(first, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns + 10**9))  # the data set changed
    rerun = Killed()
    registry.run(registry.task("jmed-llm", data), rerun, out, QUIET)
    assert rerun.calls == len(TASKS)


def test_an_unreadable_part_is_run_again(tmp_path):
    out = tmp_path / "out"
    partial = Partial(out, lambda: {"model": "m"})
    partial.put("smdis", {"outputs": ["A"], "not_answered": []})
    assert Partial(out, lambda: {"model": "m"}).get("smdis") == {"outputs": ["A"], "not_answered": []}
    (out / PARTIAL_DIR / "smdis.json").write_text('{"fingerprint": {"model": "m"}, "val')  # torn by hand
    assert Partial(out, lambda: {"model": "m"}).get("smdis") is None
    with pytest.raises(ValueError, match="file name"):
        partial.put("../x", {})


def test_the_cli_resumes_without_overwrite_and_refuses_finished_results(slm_dir, tmp_path, monkeypatch, capsys):
    lms = []
    monkeypatch.setattr(evaluate, "load_model", lambda args, path: lms[-1])
    command = ["jmed-llm", "--model", str(slm_dir), "--data", str(SAMPLE), "--out", str(tmp_path / "o")]
    lms.append(Killed(kill_at=3))
    with pytest.raises(KeyboardInterrupt):
        evaluate.main(command)
    capsys.readouterr()
    lms.append(Killed())
    assert evaluate.main(command) == 0
    printed = capsys.readouterr().out
    assert f"holds 2 finished part(s) of an interrupted run ({', '.join(sorted(TASKS[:2]))})" in printed
    assert lms[-1].calls == len(TASKS) - 2 and "read back from" in printed
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["settings"]["model"] == "scripted"
    lms.append(Killed())
    assert evaluate.main(command) == 2 and "--overwrite" in capsys.readouterr().err
    assert evaluate.main(command + ["--overwrite"]) == 0 and lms[-1].calls == len(TASKS)
