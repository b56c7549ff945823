"""Pretraining: checkpoints, exact resume after SIGKILL, crash during a save, bad configs, DDP."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from slm.config import ConfigError
from slm.model import SLM
from slm.train.config import TrainConfig
from slm.train.trainer import train

ROOT = Path(__file__).resolve().parents[1]


def run_config(tmp_path, data_dir, name="run", **overrides) -> dict:
    config = {
        "out": str(tmp_path / name), "data": str(data_dir), "mixture": {"weights": {"clinical": 1.0}},
        "model": "tiny", "model_overrides": {"d_model": 32, "n_heads": 2, "n_kv_heads": 1, "d_mlp": 64},
        "seq_len": 32, "micro_batch": 2, "global_batch": 4, "steps": 12, "log_every": 1, "tensorboard": False,
        "optim": {"lr": 3e-3, "warmup_steps": 3}, "checkpoint": {"every": 3, "keep_last": 2},
        "eval": {"batches": 2, "mixture": {"weights": {"heldout": 1.0}}},
    }
    for key, value in overrides.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and isinstance(config.get(key), dict) else value
    return config


def losses(run: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if r["kind"] == "train"}


def write_config(tmp_path, config, name="train.yaml") -> Path:
    path = tmp_path / name
    TrainConfig.from_dict(config).save(path)
    return path


_ports = iter(range(29500 + os.getpid() % 500 * 20, 30000 + os.getpid() % 500 * 20))


def cli(config_path, *args, env=None, nproc=1) -> subprocess.Popen:
    """train.py in a new session (so a SIGKILL can reach torchrun and all its workers at once)."""
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", str(next(_ports))]
    return subprocess.Popen([*launcher, str(ROOT / "train.py"), "--config", str(config_path), *args], cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (torchrun starts its workers in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_after(proc, run: Path, steps: int) -> None:
    """SIGKILL the launcher and every worker once `steps` training steps are logged."""
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and not (metrics.exists() and len(losses(run)) >= steps):
        time.sleep(0.01)
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.communicate()


def finish(proc) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, "\n".join(line for line in err.splitlines() if not line.startswith("pretrain"))[-5000:]
    return out


def test_training_logs_checkpoints_and_lowers_the_loss(tmp_path, data_dir):
    result = train(TrainConfig.from_dict(run_config(tmp_path, data_dir, steps=30)))
    run = tmp_path / "run"
    assert result["step"] == 30
    steps = losses(run)
    assert sorted(steps) == list(range(30))
    assert sum(list(steps.values())[-5:]) < sum(list(steps.values())[:5])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [e["step"] for e in evals] == [0, 30] and evals[1]["eval_loss"] < evals[0]["eval_loss"]
    assert {"lr", "grad_norm", "tok_per_s", "tokens"} <= set(records[1])
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("step-*")) == ["step-0000027", "step-0000030"]
    assert json.loads((ckpts / "latest").read_text()) == {"checkpoint": "step-0000030"}  # one pointer format
    model = SLM.from_pretrained(ckpts / "step-0000030")
    assert model.config.eos_token_id is not None and (ckpts / "step-0000030" / "tokenizer" / "tokenizer.model").is_file()
    assert (run / "loss.png").stat().st_size > 5000 and (run / "config.yaml").is_file()


def test_killed_run_resumes_with_bitwise_identical_losses(tmp_path, data_dir):
    reference = write_config(tmp_path, run_config(tmp_path, data_dir, "straight"), "straight.yaml")
    finish(cli(reference))
    expected = losses(tmp_path / "straight")

    interrupted = write_config(tmp_path, run_config(tmp_path, data_dir, "killed"), "killed.yaml")
    kill_after(cli(interrupted), tmp_path / "killed", 8)
    assert len(losses(tmp_path / "killed")) < 12
    finish(cli(interrupted, "--resume"))
    assert losses(tmp_path / "killed") == expected  # float32 on one process: exactly the same numbers


def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, data_dir):
    path = write_config(tmp_path, run_config(tmp_path, data_dir, "crash"))
    proc = cli(path, env={"SLM_FAULT_IN_CHECKPOINT": "9"})
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    ckpts = tmp_path / "crash" / "checkpoints"
    assert json.loads((ckpts / "latest").read_text()) == {"checkpoint": "step-0000006"}
    assert (ckpts / ".tmp-step-0000009" / "model.safetensors").is_file()  # the half-committed one
    SLM.from_pretrained(ckpts / "step-0000006")
    finish(cli(path, "--resume"))
    assert sorted(losses(tmp_path / "crash")) == list(range(12))
    assert not list(ckpts.glob(".tmp-*"))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"optimm": {"lr": 1.0}}, r"unknown TrainConfig field\(s\) \['optimm'\]"),
        ({"optim": {"lr": 1e-3, "warmup_step": 5}}, r"unknown OptimConfig field\(s\) \['warmup_step'\]"),
        ({"global_batch": 5}, "micro_batch=2 must divide global_batch=5"),
        ({"data": "/nonexistent/data"}, "not a prepared data folder"),
        ({"mixture": {"weights": {"wikipedia": 1.0}}}, "not prepared"),
        ({"model_overrides": {"vocab_size": 100}}, "does not match the data's tokenizer"),
        ({"seq_len": 4096}, "exceeds the model's max_seq_len"),
    ],
)
def test_bad_configs_fail_before_training_naming_the_key(tmp_path, data_dir, change, message):
    with pytest.raises(ConfigError, match=message):
        train(TrainConfig.from_dict(run_config(tmp_path, data_dir, **change)))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_held_out_loss_is_the_mean_of_the_eval_micro_batches(tmp_path, data_dir):
    """Packed rows score every position but the last, so the token-weighted held-out loss of the
    shared loop is the plain mean of the model's loss on the eval mixture's first micro-batches."""
    from slm.data.loader import MixtureConfig, PackedLoader
    from slm.train.trainer import Trainer

    trainer = Trainer(TrainConfig.from_dict(run_config(tmp_path, data_dir)))
    loader = PackedLoader(data_dir, seq_len=32, micro_batch=2, seed=1, mixture=MixtureConfig(weights={"heldout": 1.0}))
    model = trainer.model.eval()
    with torch.no_grad():
        means = [model(b["input_ids"], labels=b["labels"]).loss.item() for b in (next(loader), next(loader))]
    assert trainer.evaluate() == pytest.approx(sum(means) / 2, rel=1e-12)
    assert trainer.evaluate() == trainer.evaluate()  # the same rows every time


def test_global_batch_must_split_over_processes():
    config = TrainConfig(data="x", micro_batch=2, global_batch=6)
    assert config.accumulation(1) == 3
    with pytest.raises(ConfigError, match="not a multiple of micro_batch x processes = 2 x 2"):
        config.accumulation(2)


def test_nonfinite_loss_skips_the_step(tmp_path, data_dir, monkeypatch):
    from slm.train import trainer as tr

    real = tr.Trainer._micro_loss
    calls = []

    def poisoned(self, batch, sync):
        calls.append(1)
        loss = real(self, batch, sync)
        return torch.tensor(float("nan")) if len(calls) in (3, 4) else loss  # step 1's micro-batches

    monkeypatch.setattr(tr.Trainer, "_micro_loss", poisoned)
    train(TrainConfig.from_dict(run_config(tmp_path, data_dir, steps=3)))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in records if r["kind"] == "train"] == [False, True, False]


NO_DROPOUT = {"d_model": 32, "n_heads": 2, "n_kv_heads": 1, "d_mlp": 64, "attn_dropout": 0.0, "resid_dropout": 0.0}
ZERO2 = str(ROOT / "configs" / "deepspeed" / "zero2.json")


def needs_deepspeed(engine):
    if engine == "deepspeed":
        pytest.importorskip("deepspeed")
        return ["--deepspeed", ZERO2]
    return []


@pytest.mark.parametrize("engine", ["ddp", "deepspeed"])
def test_two_processes_match_one_process_with_the_same_effective_batch(tmp_path, data_dir, engine):
    extra = needs_deepspeed(engine)
    single = write_config(tmp_path, run_config(tmp_path, data_dir, "single", steps=5, global_batch=8,
                                               model_overrides=NO_DROPOUT), "single.yaml")
    double = write_config(tmp_path, run_config(tmp_path, data_dir, engine, steps=5, global_batch=8,
                                               model_overrides=NO_DROPOUT), f"{engine}.yaml")
    finish(cli(single))
    finish(cli(double, *extra, nproc=2))
    a, b = losses(tmp_path / "single"), losses(tmp_path / engine)
    assert sorted(a) == sorted(b) == list(range(5))
    assert max(abs(a[s] - b[s]) for s in a) < 1e-6


@pytest.mark.parametrize("engine", ["ddp", "deepspeed"])
def test_killed_two_process_run_resumes_on_the_same_losses(tmp_path, data_dir, engine):
    extra = needs_deepspeed(engine)
    config = run_config(tmp_path, data_dir, "reference", steps=40, global_batch=8, model_overrides=NO_DROPOUT,
                        checkpoint={"every": 2, "keep_last": 2})
    finish(cli(write_config(tmp_path, config, "reference.yaml")))
    expected = losses(tmp_path / "reference")
    path = write_config(tmp_path, {**config, "out": str(tmp_path / "killed")}, "killed.yaml")
    kill_after(cli(path, *extra, nproc=2), tmp_path / "killed", 5)
    assert len(losses(tmp_path / "killed")) < 40
    finish(cli(path, "--resume", *extra, nproc=2))
    got = losses(tmp_path / "killed")
    assert sorted(got) == list(range(40))
    assert max(abs(got[s] - expected[s]) for s in expected) < 1e-6


@pytest.mark.parametrize("name", ["tiny-sample.yaml", "ncvc-slm-1b.yaml", "clinical-cpt-llama.yaml"])
def test_shipped_pretraining_configs_are_valid(name):
    config = TrainConfig.load(ROOT / "configs" / "pretrain" / name)
    assert config.global_batch % config.micro_batch == 0


def test_report_preset_batch_is_8_x_4_x_32():
    config = TrainConfig.load(ROOT / "configs" / "pretrain" / "ncvc-slm-1b.yaml")
    assert (config.micro_batch, config.accumulation(4), config.global_batch) == (8, 32, 1024)
    assert (config.warmup(), config.optim.lr, config.checkpoint.every) == (750, 1e-3, 3200)


def test_learning_rate_warms_up_then_decays_to_the_floor():
    from slm.train.optim import lr_at

    optim = TrainConfig(data="x").optim
    lrs = [lr_at(s, optim, 750, 24000) for s in range(24000)]
    assert lrs[0] == pytest.approx(1e-3 / 750) and lrs[749] == pytest.approx(1e-3)
    assert max(lrs) == pytest.approx(1e-3) and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert TrainConfig(data="x", steps=1000, optim={"warmup_steps": None, "warmup_fraction": 0.01}).warmup() == 10


def test_weight_decay_applies_to_matrices_only():
    from slm.config import ModelConfig
    from slm.train.optim import param_groups

    decay, no_decay = param_groups(SLM(ModelConfig.from_preset("tiny", vocab_size=64)), 0.1)
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)


def test_activation_checkpointing_gives_the_same_losses(tmp_path, data_dir):
    plain = run_config(tmp_path, data_dir, "plain", steps=4, model_overrides=NO_DROPOUT)
    train(TrainConfig.from_dict(plain))
    train(TrainConfig.from_dict({**plain, "out": str(tmp_path / "ac"), "activation_checkpointing": True}))
    assert losses(tmp_path / "plain") == losses(tmp_path / "ac")


def test_continued_pretraining_from_our_checkpoint_and_from_a_transformers_folder(tmp_path, data_dir, tok):
    from slm import hf

    train(TrainConfig.from_dict(run_config(tmp_path, data_dir, "base", steps=3)))
    base = tmp_path / "base" / "checkpoints" / "step-0000003"
    cont = train(TrainConfig.from_dict(run_config(tmp_path, data_dir, "cont", steps=2, init_from=str(base))))
    assert cont["step"] == 2 and losses(tmp_path / "cont")[0] < losses(tmp_path / "base")[0]
    hf.export(SLM.from_pretrained(base), tmp_path / "hf")
    train(TrainConfig.from_dict(run_config(tmp_path, data_dir, "from_hf", steps=2, init_from=str(tmp_path / "hf"),
                                           model_overrides={"resid_dropout": 0.0})))
    assert losses(tmp_path / "from_hf")[0] < losses(tmp_path / "base")[0]


@pytest.mark.parametrize("action", ["stop", "rollback"])
def test_a_loss_spike_stops_or_rolls_back(tmp_path, data_dir, monkeypatch, action):
    from slm.train import trainer as tr

    real, calls = tr.Trainer._micro_loss, []

    def spiky(self, batch, sync):
        calls.append(1)
        loss = real(self, batch, sync)
        return loss * 10 if len(calls) in (13, 14) else loss  # step 6 of 2 micro-batches each

    monkeypatch.setattr(tr.Trainer, "_micro_loss", spiky)
    config = run_config(tmp_path, data_dir, steps=9, spike={"action": action, "window": 4, "factor": 2.0})
    result = train(TrainConfig.from_dict(config))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r.get("spike")] == [6]
    if action == "stop":
        assert result["stopped"].startswith("loss spike at step 6") and result["step"] == 7
    else:
        assert [r["to"] for r in records if r["kind"] == "rollback"] == ["step-0000006"]
        assert result["step"] == 9 and result["stopped"] is None


def test_retention_keeps_the_last_and_every_nth(tmp_path):
    from slm import runs

    ckpts = tmp_path / "checkpoints"
    for step in range(1, 8):
        tmp = runs.begin(ckpts, step)
        (tmp / "trainer_state" / "trainer.json").write_text("{}")
        (tmp / "model.safetensors").write_bytes(b"")
        runs.commit(tmp, ckpts, step, keep_last=2, keep_every=3)
    assert sorted(p.name for p in ckpts.glob("step-*")) == ["step-0000003", "step-0000006", "step-0000007"]
    assert runs.latest_checkpoint(ckpts).name == "step-0000007"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_fresh_run_never_starts_in_another_runs_folder(tmp_path, data_dir, capsys):
    from train import main

    path = write_config(tmp_path, run_config(tmp_path, data_dir, steps=3))
    assert main(["--config", str(path)]) == 0
    before = snapshot(tmp_path / "run")
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err and "Traceback" not in err
    assert snapshot(tmp_path / "run") == before  # nothing of the old run changed
    assert main(["--config", str(path), "--overwrite"]) == 0
    (aside,) = tmp_path.glob("run.replaced-*")
    assert snapshot(aside) == before and "moved the run" in capsys.readouterr().out
    assert losses(tmp_path / "run") == losses(aside)  # the new run is whole, not mixed with the old


def test_resume_names_what_changed_and_refuses_what_changes_the_computation(tmp_path, data_dir, capsys):
    from train import main

    path = write_config(tmp_path, run_config(tmp_path, data_dir, steps=3))
    assert main(["--config", str(path)]) == 0
    assert main(["--config", str(path), "--resume", "--micro_batch", "4", "--optim.lr", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "micro_batch: 2 -> 4" in err and "optim.lr: 0.003 -> 0.01" in err and "Traceback" not in err
    assert main(["--config", str(path), "--resume", "--steps", "6"]) == 0  # running longer is allowed, and said
    assert "steps: 3 -> 6" in capsys.readouterr().out and sorted(losses(tmp_path / "run")) == list(range(6))


def test_a_torn_last_log_line_is_dropped_on_resume(tmp_path, data_dir):
    from train import main

    path = write_config(tmp_path, run_config(tmp_path, data_dir, steps=3))
    assert main(["--config", str(path)]) == 0
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "st')  # a crash (or a full disk) in the middle of an append
    assert main(["--config", str(path), "--resume", "--steps", "6"]) == 0
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines) and sorted(losses(tmp_path / "run")) == list(range(6))


def test_a_kill_between_the_steps_of_retention_never_lists_a_half_deleted_checkpoint(tmp_path, data_dir,
                                                                                      monkeypatch):
    from slm import runs

    config = run_config(tmp_path, data_dir, steps=6, checkpoint={"every": 3, "keep_last": 1})
    real = runs.shutil.rmtree

    def killed(path, *args, **kwargs):
        if ".trash-" in str(path):
            raise KeyboardInterrupt("killed while deleting an old checkpoint")
        return real(path, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(runs.shutil, "rmtree", killed)
        with pytest.raises(KeyboardInterrupt):
            train(TrainConfig.from_dict(config))
    ckpts = tmp_path / "run" / "checkpoints"
    assert [p.name for p in runs.complete_checkpoints(ckpts)] == ["step-0000006"]
    assert (ckpts / ".trash-step-0000003").is_dir()  # out of the listing before anything was deleted
    train(TrainConfig.from_dict({**config, "steps": 9}), resume=True)
    assert not list(ckpts.glob(".trash-*")) and [p.name for p in runs.complete_checkpoints(ckpts)] == ["step-0000009"]


def test_a_full_disk_during_a_save_is_named_and_the_last_checkpoint_stays(tmp_path, data_dir, capsys, monkeypatch):
    from slm import runs
    from slm.train import state
    from train import main

    path = write_config(tmp_path, run_config(tmp_path, data_dir, steps=6))
    real = state.torch.save

    def full(obj, f, *args, **kwargs):
        if "0000006" in str(f):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
        return real(obj, f, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(state.torch, "save", full)
        m.setattr(runs, "_low_space", lambda path: True)
        assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "no space left on the device" in err and "step 6" in err and "--resume" in err and "Traceback" not in err
    ckpts = tmp_path / "run" / "checkpoints"
    assert runs.latest_checkpoint(ckpts).name == "step-0000003"
    assert main(["--config", str(path), "--resume"]) == 0 and runs.latest_checkpoint(ckpts).name == "step-0000006"


def test_resuming_with_another_vocabulary_is_a_named_error(tmp_path, data_dir, capsys):
    import shutil

    from train import main

    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    path = write_config(tmp_path, {**run_config(tmp_path, data_dir, steps=3), "data": str(data)})
    assert main(["--config", str(path)]) == 0
    tokens = json.loads((data / "tokens.json").read_text())
    (data / "tokens.json").write_text(json.dumps({**tokens, "vocab_size": tokens["vocab_size"] + 8}))  # re-prepared
    assert main(["--config", str(path), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "step-0000003: cannot resume this run from it" in err and "vocabulary" in err and "Traceback" not in err


@pytest.mark.parametrize("problem", ["missing", "not utf-8", "every 0"])
def test_config_problems_end_in_one_line(tmp_path, data_dir, capsys, problem):
    from train import main

    path = write_config(tmp_path, run_config(tmp_path, data_dir))
    extra = []
    if problem == "missing":
        path = tmp_path / "nope.yaml"
    elif problem == "not utf-8":
        path.write_bytes(path.read_bytes() + "# 設定\n".encode("cp932"))
    else:
        extra = ["--checkpoint.every", "0"]
    assert main(["--config", str(path), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert {"missing": "no such config file", "not utf-8": "not UTF-8", "every 0": "every must be positive"}[problem] in err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_the_run_at_the_next_step_with_a_checkpoint(tmp_path, data_dir, sig):
    reference = write_config(tmp_path, run_config(tmp_path, data_dir, "straight"), "straight.yaml")
    finish(cli(reference))
    path = write_config(tmp_path, run_config(tmp_path, data_dir, "stopped", steps=12), "stopped.yaml")
    proc = cli(path)
    run = tmp_path / "stopped"
    deadline = time.time() + 180
    while time.time() < deadline and not ((run / "metrics.jsonl").exists() and len(losses(run)) >= 4):
        time.sleep(0.01)
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and f"{sig.name} at step" in err and "continue with --resume" in err
    stopped_at = runs_latest(run)
    assert 4 <= stopped_at < 12 and sorted(losses(run)) == list(range(stopped_at))  # a checkpoint where it stopped
    assert "pretrain step 3/12 loss" in out  # not a terminal: plain progress lines, no bar redraws
    finish(cli(path, "--resume"))
    assert losses(run) == losses(tmp_path / "straight")  # nothing lost, nothing repeated


def runs_latest(run: Path) -> int:
    from slm import runs

    return runs.trainer_info(runs.latest_checkpoint(run / "checkpoints"))["step"]
