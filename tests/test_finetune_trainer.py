"""Instruction tuning end to end on a tiny base: masks, chat tokens, LoRA, selection by answers."""

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import SAMPLE_CORPUS
from slm.config import ConfigError, ModelConfig
from slm.chat import USER
from slm.finetune.instructions import load_conversations, to_messages
from slm.finetune.data import ChatLoader, held_out_batches
from slm.finetune.trainer import FinetuneConfig, FinetuneTrainer, finetune, score
from slm.data.readers import ReadErrors
from slm.lm import load_lm
from slm.model import SLM
from tokenizer import JapaneseTokenizer
from tokenizer.unigram import train_tokenizer

SYSTEM = "医療の質問に答えてください。"
QUESTIONS = ["発熱はありますか", "咳はありますか", "頭痛はありますか", "腹痛はありますか", "嘔吐はありますか",
             "下痢はありますか", "めまいはありますか", "胸痛はありますか"]


def chat(q, a):
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q},
                         {"role": "assistant", "content": a}]}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A random tiny base whose tokenizer has no chat tokens (the report's path: they are added)."""
    root = tmp_path_factory.mktemp("base")
    train_tokenizer([SAMPLE_CORPUS], root / "tok", vocab_size=2500, chat_tokens=False, num_workers=1, progress=False)
    tok = JapaneseTokenizer.load(root / "tok")
    torch.manual_seed(0)
    model = SLM(ModelConfig.from_preset("tiny", vocab_size=tok.vocab_size, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id))
    model.save_pretrained(root / "model")
    tok.save(root / "model" / "tokenizer")
    return root / "model"


@pytest.fixture()
def files(tmp_path):
    train = tmp_path / "train.jsonl"
    # one answer to learn: a tiny random base learns it in a few dozen steps
    lines = [json.dumps(chat(q + "?" * k, "はい"), ensure_ascii=False) for k in range(3) for q in QUESTIONS]
    lines += ['{"broken": ', json.dumps({"instruction": "症状は?", "output": "なし"}, ensure_ascii=False),
              json.dumps({"messages": [{"role": "user", "content": "答えのない質問"}]}, ensure_ascii=False)]
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    held = tmp_path / "eval.jsonl"
    held.write_text("\n".join(json.dumps(chat(q, "はい"), ensure_ascii=False) for q in QUESTIONS) + "\n",
                    encoding="utf-8")
    return train, held


def config(tmp_path, base, files, **kw):
    fields = dict(out=str(tmp_path / "sft"), init_from=str(base), train_files=[str(files[0])],
                  eval_files=[str(files[1])], seq_len=64, micro_batch=4, global_batch=8, steps=60, log_every=1,
                  tensorboard=False, optim={"lr": 3e-3, "warmup_steps": 5, "weight_decay": 0.01},
                  checkpoint={"every": 30, "keep_last": 1}, eval_max_new_tokens=4)
    return FinetuneConfig.from_dict({**fields, **kw})


def records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_full_finetune_adds_chat_tokens_learns_the_answers_and_keeps_the_best(tmp_path, base, files):
    result = finetune(config(tmp_path, base, files))
    run = tmp_path / "sft"
    assert result["read_errors"] == 2  # the broken line and the conversation without an answer
    selects = [r for r in records(run) if r["kind"] == "select"]
    assert [s["step"] for s in selects] == [30, 60] and selects[-1]["exact"] == 1.0
    best = json.loads((run / "checkpoints" / "best").read_text())
    assert best["exact"] == 1.0 and (run / "checkpoints" / best["checkpoint"]).is_dir()
    ckpt = run / "checkpoints" / "step-0000060"
    model, tok = SLM.from_pretrained(ckpt), JapaneseTokenizer.load(ckpt / "tokenizer")
    assert model.config.vocab_size == tok.vocab_size == 2503 and tok.token_id(USER) == 2501
    # evaluation finds the best checkpoint from the run folder and answers in the chat format
    lm = load_lm(run)
    assert lm.chat and lm.name == best["checkpoint"]
    assert [c.text for c in lm.generate([chat(QUESTIONS[0], "")["messages"][:-1]], max_new_tokens=4)] == ["はい"]


def test_lora_finetune_saves_only_the_adapter_and_new_rows(tmp_path, base, files):
    finetune(config(tmp_path, base, files, lora=True, lora_config={"rank": 4, "alpha": 8, "dropout": 0.0},
                    steps=10, checkpoint={"every": 10}, optim={"lr": 1e-2, "warmup_steps": 2}))
    ckpt = tmp_path / "sft" / "checkpoints" / "step-0000010"
    saved = load_file(ckpt / "adapter.safetensors")
    assert not (ckpt / "model.safetensors").exists()
    assert saved["embed.new_rows"].shape == (3, 64) and "embed.weight" not in saved
    assert all(".lora_" in k or k.endswith("new_rows") for k in saved)
    train_losses = [r["loss"] for r in records(tmp_path / "sft") if r["kind"] == "train"]
    assert train_losses[-1] < train_losses[0]
    lm = load_lm(ckpt)  # the adapter on its base (the run's init_from), merged
    assert lm.chat and lm.model.config.vocab_size == 2503 and not any(".lora_" in n for n, _ in lm.model.named_parameters())


def test_resumed_finetune_repeats_the_losses(tmp_path, base, files):
    straight = finetune(config(tmp_path, base, files, steps=8, checkpoint={"every": 4}, out=str(tmp_path / "a")))
    assert straight["step"] == 8
    finetune(config(tmp_path, base, files, steps=4, checkpoint={"every": 4}, out=str(tmp_path / "b")))
    finetune(config(tmp_path, base, files, steps=8, checkpoint={"every": 4}, out=str(tmp_path / "b")), resume=True)
    losses = lambda run: [r["loss"] for r in records(run) if r["kind"] == "train"]
    assert losses(tmp_path / "a") == losses(tmp_path / "b")


def test_chat_loader_is_resumable_and_ranks_are_disjoint():
    from slm.chat import Encoded

    rows = [[Encoded([i, i, i], [-100, i, i])] for i in range(10)]
    one = ChatLoader(rows, max_len=4, micro_batch=2, pad_id=0, seed=3)
    seq = [next(one)["input_ids"][:, 0].tolist() for _ in range(6)]
    a, b = (ChatLoader(rows, max_len=4, micro_batch=1, pad_id=0, rank=r, world_size=2, seed=3) for r in (0, 1))
    assert [x for _ in range(6) for x in next(a)["input_ids"][:, 0].tolist() + next(b)["input_ids"][:, 0].tolist()] == \
        [x for s in seq for x in s]
    again = ChatLoader(rows, max_len=4, micro_batch=2, pad_id=0, seed=3)
    again.load_state_dict({"step": 3, "rows": 10, "seed": 3})
    assert next(again)["input_ids"][:, 0].tolist() == seq[3]


def test_held_out_rows_split_over_ranks_once_each():
    from slm.chat import Encoded

    rows = [[Encoded([i, i], [-100, i])] for i in range(7)]
    firsts = lambda batches: [x for b in batches for x in b["input_ids"][:, 0].tolist()]
    ranks = [firsts(held_out_batches(rows, max_len=3, micro_batch=2, pad_id=0, rank=r, world_size=2)) for r in (0, 1)]
    assert ranks == [[0, 1, 4, 5], [2, 3, 6]]  # micro-batches interleaved as in training; the last one short
    assert firsts(held_out_batches(rows, max_len=3, micro_batch=2, pad_id=0)) == list(range(7))
    assert firsts(held_out_batches(rows[:2], max_len=3, micro_batch=2, pad_id=0, rank=1, world_size=2)) == []


def test_held_out_loss_weighs_every_answer_token_alike_in_the_shared_loop(tmp_path, base, files):
    """8 held-out conversations in micro-batches of 3, 3 and 2: the loss is the mean over all
    scored tokens (not over batches), from the one evaluation loop pretraining uses too."""
    import torch.nn.functional as F

    from slm.chat import encode_chat
    from slm.finetune.data import truncate
    from slm.train.trainer import Trainer

    assert FinetuneTrainer.evaluate is Trainer.evaluate
    trainer = FinetuneTrainer(config(tmp_path, base, files, micro_batch=3, global_batch=3))
    model = trainer.model.eval()
    total = count = 0
    with torch.no_grad():
        for conversation in trainer.eval_conversations:  # one at a time, unpadded
            ex = truncate(encode_chat(trainer.tok, conversation), 64)
            logits = model(torch.tensor([ex.input_ids])).logits[0, :-1]
            target = torch.tensor(ex.labels[1:])
            scored = target != -100
            total += F.cross_entropy(logits[scored], target[scored], reduction="sum").item()
            count += scored.sum().item()
    assert len(trainer.eval_conversations) == 8 and count > 0
    assert trainer.evaluate() == pytest.approx(total / count, rel=1e-5)


@pytest.mark.parametrize("key, value", [("model_overrides", {"resid_dropout": 0.0}), ("doc_masking", True),
                                        ("data", "runs/data/sample"), ("eval", {"every": 10}), ("model", "tiny")])
def test_pretraining_fields_are_unknown_keys_to_fine_tuning(tmp_path, key, value):
    import yaml

    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump({"init_from": "x", "train_files": ["a.jsonl"], key: value}))
    with pytest.raises(ConfigError, match=rf"ft\.yaml: unknown FinetuneConfig field\(s\) \['{key}'\]"):
        FinetuneConfig.load(path)


def test_a_pretraining_mixture_is_no_instruction_mixture(tmp_path):
    """Fine-tuning's mixture blends tasks: a pretraining mixture's epochs or curriculum are unknown
    keys of it, and its source weights name tasks the data does not have (see test_finetune_mixture)."""
    import yaml

    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump({"init_from": "x", "train_files": ["a.jsonl"], "mixture": {"epochs": {"a": 1.0}}}))
    with pytest.raises(ConfigError, match=r"unknown InstructionMixture field\(s\) \['epochs'\]"):
        FinetuneConfig.load(path)


def test_each_trainer_config_is_the_loop_config_plus_its_own_fields():
    import dataclasses

    from slm.train.config import LoopConfig, TrainConfig

    names = lambda cls: {f.name for f in dataclasses.fields(cls)}
    pretraining, finetuning = names(TrainConfig) - names(LoopConfig), names(FinetuneConfig) - names(LoopConfig)
    assert pretraining == {"data", "mixture", "model", "model_overrides", "doc_masking", "eval"}
    # the one name both have is a mixture of each stage's own kind: sources there, tasks here
    assert pretraining & finetuning == {"mixture"} and {"train_files", "lora", "eval_every"} <= finetuning
    hints = lambda cls: {f.name: f.type for f in dataclasses.fields(cls)}  # noqa: E731
    assert hints(TrainConfig)["mixture"] != hints(FinetuneConfig)["mixture"]
    assert issubclass(FinetuneConfig, LoopConfig) and not issubclass(FinetuneConfig, TrainConfig)
    assert (FinetuneConfig(init_from="x", train_files=["a"]).out, TrainConfig(data="x").out) == ("runs/finetune", "runs/pretrain")


def test_scores():
    assert score(" はい ", "はい", "exact") == 1.0 and score("はい。", "はい", "exact") == 0.0
    assert score("C反応性蛋白", "C反応性たんぱく", "char_f1") == pytest.approx(2 * (4 / 6) * (4 / 8) / (4 / 6 + 4 / 8))
    assert score("", "はい", "char_f1") == 0.0


def test_instruction_styles_and_bad_configs(tmp_path, base, files):
    assert to_messages({"instruction": "要約して", "input": "本文", "output": "要約"})[0] == {"role": "user", "content": "要約して\n本文"}
    errors = ReadErrors()
    assert len(load_conversations([str(files[0])], errors)) == 25 and errors.total == 2
    with pytest.raises(ConfigError, match="init_from must name"):
        FinetuneConfig(train_files=["x"])
    with pytest.raises(ConfigError, match="train_files is empty"):
        FinetuneConfig(init_from="x")


def test_shipped_finetune_config_and_instruction_set_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    config = FinetuneConfig.load(root / "configs" / "finetune" / "sample.yaml")
    assert (config.optim.weight_decay, config.neftune_alpha) == (0.01, 5.0)
    errors = ReadErrors()
    assert len(load_conversations(config.train_files and [str(root / f) for f in config.train_files], errors)) == 240
    assert errors.total == 0


@pytest.mark.parametrize("engine", ["ddp", "deepspeed"])
def test_two_process_finetune_matches_one_process(tmp_path, base, files, engine):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    extra = []
    if engine == "deepspeed":
        pytest.importorskip("deepspeed")
        extra = ["--deepspeed", str(root / "configs" / "deepspeed" / "zero2.json")]
    quiet = tmp_path / "quiet"  # no dropout: the two runs draw different random numbers
    model = SLM.from_pretrained(base)
    SLM(model.config.replace(attn_dropout=0.0, resid_dropout=0.0)).save_pretrained(quiet)
    JapaneseTokenizer.load(base / "tokenizer").save(quiet / "tokenizer")
    losses = {}
    for name, launcher in (("one", []), ("two", ["-m", "torch.distributed.run", "--nproc_per_node", "2",
                                                  "--master_port", str(29900 + os.getpid() % 90)])):
        cfg = config(tmp_path, quiet, files, out=str(tmp_path / name), steps=4, neftune_alpha=0.0, eval_files=[],
                     checkpoint={"every": 4})
        cfg.save(tmp_path / f"{name}.yaml")
        args = extra if name == "two" else []
        proc = subprocess.run([sys.executable, *launcher, str(root / "finetune.py"), "--config", str(tmp_path / f"{name}.yaml"),
                               *args], cwd=root, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        losses[name] = [r["loss"] for r in records(tmp_path / name) if r["kind"] == "train"]
    assert len(losses["one"]) == 4
    assert max(abs(a - b) for a, b in zip(losses["one"], losses["two"])) < 1e-6


def test_jmed_llm_config_and_base_flag():
    from pathlib import Path

    from slm.train.cli import parse

    root = Path(__file__).resolve().parents[1]
    config, args = parse("", FinetuneConfig, ["--config", str(root / "configs" / "finetune" / "jmed-llm.yaml"),
                                              "--base", "runs/x", "--resume"])
    assert (config.init_from, args.resume, config.optim.lr, config.optim.warmup_steps) == ("runs/x", True, 1e-4, 50)


def test_resumed_lora_finetune_repeats_the_losses(tmp_path, base, files, monkeypatch):
    from slm.finetune.trainer import FinetuneTrainer

    lora = dict(lora=True, lora_config={"rank": 4, "alpha": 8, "dropout": 0.0}, checkpoint={"every": 3},
                optim={"lr": 1e-2, "warmup_steps": 1}, steps=6)
    finetune(config(tmp_path, base, files, out=str(tmp_path / "a"), **lora))

    def crash_after_first_checkpoint(self, final):
        raise KeyboardInterrupt("killed after step 3's checkpoint")

    with monkeypatch.context() as m:  # the same run, stopped after its first checkpoint
        m.setattr(FinetuneTrainer, "after_save", crash_after_first_checkpoint)
        with pytest.raises(KeyboardInterrupt):
            finetune(config(tmp_path, base, files, out=str(tmp_path / "b"), **lora))
    finetune(config(tmp_path, base, files, out=str(tmp_path / "b"), **lora), resume=True)
    losses = lambda run: [r["loss"] for r in records(run) if r["kind"] == "train"]
    assert losses(tmp_path / "a") == losses(tmp_path / "b")


@pytest.mark.parametrize("lora", [False, True])
def test_staged_finetuning_starts_each_stage_from_the_last_and_records_each(tmp_path, base, files, lora):
    """PubMedQA -> MedMCQA -> MedQA style: three stages, each from the previous stage's result."""
    stages = [{"name": "first", "train_files": [str(files[0])], "steps": 4},
              {"name": "second", "train_files": [str(files[0])], "epochs": 0.5, "lr": 5e-4}]
    extra = {"lora": True, "lora_config": {"rank": 2, "alpha": 4, "dropout": 0.0}} if lora else {}
    result = finetune(config(tmp_path, base, files, train_files=[], stages=stages, checkpoint={"every": 2},
                             **extra))
    first, second = result["stages"]
    assert first["steps"] == 4 and second["steps"] == 2  # 0.5 epoch of 25 usable examples at 8 a step: ceil(1.56)
    run2 = tmp_path / "sft" / "2-second"
    import yaml

    second_config = yaml.safe_load((run2 / "config.yaml").read_text())
    assert second_config["init_from"] == first["checkpoint"] and second_config["optim"]["lr"] == 5e-4
    if lora:  # the next stage adapts the merged model
        assert first["checkpoint"].endswith("1-first/merged") and (tmp_path / "sft" / "1-first" / "merged" / "chat.json").is_file()
    assert all(r["exact"] is not None and r["final_eval_loss"] is not None for r in result["stages"])
    assert (tmp_path / "sft" / "stages.md").read_text().count("\n") == 4
    assert load_lm(result["final"]).chat
    with pytest.raises(ConfigError, match="exactly one of steps and epochs"):
        config(tmp_path, base, files, stages=[{"name": "x", "train_files": ["a"]}])


def _judged_run(tmp_path, base, files, out):
    return config(tmp_path, base, files, out=str(tmp_path / out), steps=40, checkpoint={"every": 10, "keep_last": 1})


def _selection(run):
    best = json.loads((run / "checkpoints" / "best").read_text())
    return best, [(r["step"], r["exact"]) for r in records(run) if r["kind"] == "select"]


@pytest.mark.parametrize("where", ["while judging", "between the commit and the best pointer"])
def test_a_kill_during_checkpoint_selection_then_resume_chooses_the_same_best(tmp_path, base, files, monkeypatch,
                                                                              where):
    import slm.finetune.trainer as ft
    from slm import runs

    finetune(_judged_run(tmp_path, base, files, "a"))
    judge, point = ft.evaluate_answers, runs.write_pointer
    calls = []

    def killed_judging(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the checkpoint of step 30
            raise KeyboardInterrupt("killed while judging")
        return judge(*args, **kwargs)

    def killed_pointing(checkpoints, name, checkpoint, **fields):
        if name == runs.BEST:  # the first best: the checkpoint is committed, the pointer not written
            raise KeyboardInterrupt("killed before the best pointer")
        return point(checkpoints, name, checkpoint, **fields)

    with monkeypatch.context() as m:
        if where == "while judging":
            m.setattr(ft, "evaluate_answers", killed_judging)
        else:
            m.setattr(runs, "write_pointer", killed_pointing)
        with pytest.raises(KeyboardInterrupt):
            finetune(_judged_run(tmp_path, base, files, "b"))
    finetune(_judged_run(tmp_path, base, files, "b"), resume=True)
    assert _selection(tmp_path / "a") == _selection(tmp_path / "b")  # never judged twice, none skipped
    assert [s for s, _ in _selection(tmp_path / "b")[1]] == [10, 20, 30, 40]
    best = _selection(tmp_path / "b")[0]["checkpoint"]
    assert (tmp_path / "b" / "checkpoints" / best / "model.safetensors").is_file()  # retention kept it


def test_a_fresh_finetune_never_starts_in_another_runs_folder(tmp_path, base, files, capsys):
    from finetune import main

    path = tmp_path / "sft.yaml"
    config(tmp_path, base, files, steps=2, checkpoint={"every": 2}).save(path)
    assert main(["--config", str(path)]) == 0
    best = (tmp_path / "sft" / "checkpoints" / "best").read_bytes()
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "Traceback" not in err
    assert (tmp_path / "sft" / "checkpoints" / "best").read_bytes() == best  # untouched
    assert main(["--config", str(path), "--overwrite"]) == 0
    assert len(list(tmp_path.glob("sft.replaced-*"))) == 1


def test_a_chat_marker_needs_the_chat_tokens_and_the_vocabulary_must_fit(tmp_path, base):
    from slm import runs
    from slm.checkpoint import CheckpointError

    chat = tmp_path / "chat"
    SLM.from_pretrained(base).save_pretrained(chat)
    JapaneseTokenizer.load(base / "tokenizer").save(chat / "tokenizer")  # no chat tokens
    runs.mark_chat(chat, "<|user|>")
    with pytest.raises(CheckpointError, match=r"marked as a chat model .* has no <\|system\|>"):
        load_lm(chat)
    small = tmp_path / "small"
    SLM(SLM.from_pretrained(base).config.replace(vocab_size=100)).save_pretrained(small)
    JapaneseTokenizer.load(base / "tokenizer").save(small / "tokenizer")
    with pytest.raises(CheckpointError, match=r"2500 tokens, the model's embedding only 100 rows"):
        load_lm(small)


@pytest.mark.parametrize("name", ["..", "a/b", ".hidden"])
def test_a_stage_name_never_escapes_the_run_folder(tmp_path, base, files, name):
    with pytest.raises(ConfigError, match="StageConfig.name must be a single file or folder name"):
        config(tmp_path, base, files, train_files=[], stages=[{"name": name, "train_files": [str(files[0])], "steps": 1}])


# ------------------------------------------------------------------ selection by the task's own metric

def choice(question, letter, task="smdis"):
    """A JMED-LLM-style choice row as the converters write it: the prompt's options, the answer letter,
    and the task and label beside the messages."""
    user = f"質問: {question}\n選択肢:\nA. はい\nB. いいえ\nC. 不明\n"
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user},
                         {"role": "assistant", "content": letter}], "task": task, "label": letter}


def test_the_task_metric_prefers_a_model_that_learned_over_one_that_answers_the_majority():
    from slm.finetune.mixture import NO_TASK, Tag
    from slm.finetune.trainer import judge_answers

    golds = ["A"] * 8 + ["B", "C"]  # an imbalanced selection set: a constant "A" is right 8 times in 10
    rows = [choice(f"q{i}", g) for i, g in enumerate(golds)]
    ner = [{"messages": [{"role": "user", "content": "抽出"}, {"role": "assistant", "content": "['発熱', '咳']"}],
            "task": "nrner"}] * 2
    plain = [chat("発熱は?", "はい")]
    conversations = [r["messages"] for r in rows + ner] + [plain[0]["messages"]]
    tags = [Tag(r["task"], r.get("label") if r["task"] == "smdis" else None) for r in rows + ner] + [Tag()]
    constant = ["A"] * 10 + ["['発熱']"] * 2 + ["はい"]
    learned = ["A"] * 4 + ["B", "C", "B", "A"] + ["B", "C"] + ["['発熱']"] * 2 + ["はい"]  # 7 in 10, every label
    exact = lambda preds: judge_answers(conversations, tags, preds, "exact")["exact"]  # noqa: E731
    assert exact(constant) > exact(learned)  # exact match chooses the constant answer
    guess, good = judge_answers(conversations, tags, constant, "task"), judge_answers(conversations, tags, learned, "task")
    assert guess["per_task"]["smdis"] == 0.0 and good["per_task"]["smdis"] == pytest.approx((0.7 - 0.45) / 0.55)
    assert guess["per_task"]["nrner"] == pytest.approx(2 * 1 * 0.5 / 1.5) and guess["per_task"][NO_TASK] == 1.0
    assert good["task"] == pytest.approx(sum(good["per_task"].values()) / 3) and good["task"] > guess["task"]
    # the answer is read as JMED-LLM's corrected mode reads it: the letter standing alone, among the options
    answers = ["答えは A です"] * 8 + ["Answer: B", "C."] + ["['発熱', '咳']"] * 2 + ["はい"]
    assert judge_answers(conversations, tags, answers, "task")["task"] == 1.0
    assert judge_answers(conversations, tags, ["D"] * 10 + ["[]"] * 2 + ["no"], "task")["per_task"]["smdis"] == 0.0


def test_linear_kappa_for_the_ordinal_tasks():
    from slm.finetune.mixture import Tag
    from slm.finetune.trainer import task_score
    from slm.metrics import cohen_kappa

    rows = [choice(f"q{i}", g, task="crade") for i, g in enumerate("ABCCBA")]
    preds = list("ABBCAA")
    value = task_score("crade", [r["messages"] for r in rows], [Tag("crade", r["label"]) for r in rows], preds)
    assert value == pytest.approx(cohen_kappa(list("ABCCBA"), preds, "linear")) != cohen_kappa(list("ABCCBA"), preds, None)


def test_a_run_selects_by_the_task_metric_on_a_stratified_split_and_best_says_so(tmp_path, base):
    from slm.chat import encode_chat
    from slm.finetune.data import truncate
    from slm.finetune.mixture import NO_LABEL
    from slm.finetune.trainer import MIXTURE_FILE

    rows = [choice(q + "?" * k, "AB"[k % 2]) for k in range(4) for q in QUESTIONS]
    rows += [{**chat(q, "はい"), "task": "yesno"} for q in QUESTIONS]  # a task without labels: exact match
    path = tmp_path / "tagged.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    cfg = config(tmp_path, base, (path, None), eval_files=[], selection_fraction=0.25, metric="task", steps=8,
                 checkpoint={"every": 4, "keep_last": 1}, mixture={"cap": {"yesno": 4}})
    trainer = FinetuneTrainer(cfg)
    held = {tuple(truncate(encode_chat(trainer.tok, c), 64).input_ids) for c in trainer.eval_conversations}
    trained = {tuple(row[0].input_ids) for row in trainer.loader.rows}
    assert len(held) == 10 and [t.label for t in trainer.eval_tags].count("A") == 4  # 16 A, 16 B, 8 yesno: a quarter
    assert len(trained) == 24 + 4 and not held & trained  # the rest of the choice rows, yesno capped; never trained on
    report = json.loads((tmp_path / "sft" / MIXTURE_FILE).read_text())
    assert report["selection"] == {"smdis": {"A": 4, "B": 4}, "yesno": {NO_LABEL: 2}}
    assert report["before"]["smdis"] == {"A": 12, "B": 12} and report["after"]["yesno"] == {NO_LABEL: 4}
    finetune(cfg, overwrite=True)
    run = tmp_path / "sft"
    best = json.loads((run / "checkpoints" / "best").read_text())
    assert best["metric"] == "task" and set(best["per_task"]) == {"smdis", "yesno"}
    assert best["task"] == pytest.approx(sum(best["per_task"].values()) / 2)
    selects = [r for r in records(run) if r["kind"] == "select"]
    assert [s["step"] for s in selects] == [4, 8] and all(s["metric"] == "task" and "per_task" in s for s in selects)
    assert best["task"] == max(s["task"] for s in selects)


def test_selection_fraction_and_eval_files_are_one_or_the_other(tmp_path, base, files):
    with pytest.raises(ConfigError, match="give eval_files or selection_fraction, not both"):
        config(tmp_path, base, files, selection_fraction=0.1)
    with pytest.raises(ConfigError, match=r"selection_fraction must be in \[0, 1\)"):
        config(tmp_path, base, files, eval_files=[], selection_fraction=1.0)
