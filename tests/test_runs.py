"""The run folder's owner: pointers in one format (older runs still load), complete checkpoints,
the chat marker, the log read back past a torn last line."""

import json

import pytest

from slm import runs


def checkpoint(checkpoints, step):
    folder = runs.step_dir(checkpoints, step)
    (folder / runs.TRAINER_STATE).mkdir(parents=True)
    (folder / runs.TRAINER_STATE / runs.TRAINER_INFO).write_text(json.dumps({"step": step}))
    (folder / "model.safetensors").write_bytes(b"")  # the weights' presence is what is checked here
    return folder


def test_pointers_are_json_and_older_plain_pointers_still_load(tmp_path):
    checkpoints = tmp_path / "run" / "checkpoints"
    first, second = checkpoint(checkpoints, 100), checkpoint(checkpoints, 200)
    runs.write_pointer(checkpoints, runs.BEST, first.name, kappa=0.4)
    assert json.loads((checkpoints / "best").read_text()) == {"checkpoint": "step-0000100", "kappa": 0.4}
    (checkpoints / "latest").write_text("step-0000200\n")  # how runs before the JSON pointers wrote it
    assert runs.latest_checkpoint(checkpoints) == second and runs.best_checkpoint(checkpoints) == first
    assert runs.resolve_model_dir(tmp_path / "run") == first  # a run folder means its best checkpoint
    assert runs.trainer_info(second) == {"step": 200}
    assert not list(checkpoints.glob(".*tmp*"))  # atomic writes leave nothing behind
    with pytest.raises(ValueError, match="pointer must be one of"):
        runs.write_pointer(checkpoints, "newest", second.name)


def test_an_incomplete_checkpoint_is_never_listed(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    done = checkpoint(checkpoints, 1)
    (checkpoints / "step-0000002").mkdir()  # no trainer.json: a save that never finished
    assert runs.complete_checkpoints(checkpoints) == [done] and runs.latest_checkpoint(checkpoints) == done


def test_the_chat_marker_and_the_run_of_a_checkpoint(tmp_path):
    folder = checkpoint(tmp_path / "run" / "checkpoints", 5)
    assert not runs.is_chat(folder)
    runs.mark_chat(folder, "<|user|>{user}")
    assert runs.is_chat(folder) and runs.run_of(folder) == tmp_path / "run" and runs.run_of(tmp_path) is None
    (tmp_path / "run" / "config.yaml").write_text("init_from: base/\n")
    assert runs.run_config(runs.run_of(folder)) == {"init_from": "base/"}
    assert runs.display_name(folder) == "run-step-0000005"


def test_the_log_reads_back_past_a_torn_last_line_only(tmp_path):
    log = tmp_path / runs.METRICS_FILE
    log.write_text('{"kind": "train", "step": 0}\n{"kind": "eval", "step": 0}\n{"kind": "tra', encoding="utf-8")
    assert runs.read_log(tmp_path) == [{"kind": "train", "step": 0}, {"kind": "eval", "step": 0}]
    assert runs.read_log(tmp_path, "eval") == [{"kind": "eval", "step": 0}]
    log.write_text('{"kind": "tra\n{"kind": "eval", "step": 0}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: not JSON"):
        runs.read_log(tmp_path)
