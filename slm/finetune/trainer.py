"""Instruction tuning (report §2.4.2) on the shared training loop (slm.train.trainer): chat-formatted
examples with the assistant-only loss, NEFTune, full fine-tuning or LoRA, and checkpoints judged
by what the model answers on a held-out set (greedy), not by loss: published medical fine-tunes
found that the lowest-loss checkpoint answered worse and degenerated into endless lists. With
`metric: task` each held-out conversation that names its benchmark task is scored by that task's
own metric (Cohen's kappa of the answer letters, F1 of the entity lists), macro-averaged over the
tasks: on an imbalanced selection set, exact match rewards a model that always answers the
majority label, where kappa gives it 0.

Here: `FinetuneConfig` (the loop's LoopConfig plus fine-tuning fields), `FinetuneTrainer` (the
loop's hooks for chat data; the held-out loss is the loop's own), answer scoring, and staged
fine-tuning. The rows, their loader and the held-out batches are in slm.finetune.data; the
per-task mixture and the stratified selection split in slm.finetune.mixture.

    python finetune.py --config configs/finetune/sample.yaml --init_from runs/pretrain/x/checkpoints/step-0000300
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Iterable, Literal

import torch

from slm import runs
from slm.chat import encode_chat, ensure_chat_tokens, render
from slm.checkpoint import atomic_write, read_safetensors
from slm.config import Config, ConfigError, safe_name
from slm.data.readers import ReadErrors
from slm.finetune.data import ChatLoader, held_out_batches, pack, truncate
from slm.finetune.mixture import NO_TASK, InstructionMixture, Prepared, Tag, describe, prepare, write_report
from slm.finetune.neftune import NEFTune
from slm.hf import load_model_folder
from slm.lm import SLMAdapter, check_tokenizer
from slm.lora import (ADAPTER_WEIGHTS, LoRAConfig, apply_lora, copy_adapter_tensors, load_adapter, merge_lora,
                      no_decay_parameters, save_adapter)
from slm.metrics import (JMED_CHOICE_TASKS, JMED_NER_TASKS, NO_LETTER, cohen_kappa, exact_f1, exact_match, normalize,
                         parse_list, standalone_letter, token_f1)
from slm.train.config import LoopConfig, OptimConfig
from slm.train.optim import param_groups
from slm.train.trainer import Trainer, run_to_end
from tokenizer.hf import load_tokenizer, model_tokenizer_dir


@dataclasses.dataclass
class StageConfig(Config):
    """One stage of staged fine-tuning (e.g. PubMedQA, then MedMCQA, then MedQA): its data, its
    length (steps, or epochs over its examples) and optionally its own learning rate."""

    name: str = ""
    train_files: list[str] = dataclasses.field(default_factory=list)
    eval_files: list[str] = dataclasses.field(default_factory=list)  # default: the run's eval_files
    steps: int | None = None
    epochs: float | None = None
    lr: float | None = None  # default: the run's optim.lr

    def validate(self) -> None:
        if not self.name or not self.train_files:
            raise ConfigError("every fine-tuning stage needs a name and train_files")
        safe_name(self.name, "StageConfig.name")  # it names the stage's run folder
        if (self.steps is None) == (self.epochs is None):
            raise ConfigError(f"stage {self.name!r}: give exactly one of steps and epochs")


@dataclasses.dataclass
class FinetuneConfig(LoopConfig):
    """The loop's settings (LoopConfig) with the report's instruction-tuning defaults: AdamW weight
    decay 0.01, β (0.9, 0.95), 50 warmup steps to 1e-4, cosine; NEFTune α = 5. The base model is
    `init_from` as it is (its tokenizer gains the chat tokens): pretraining's fields (data, model,
    model_overrides, doc_masking, eval) are not fields here, so setting one is an unknown-key
    error, not a silent no-op. `mixture` is this stage's own: it blends benchmark tasks (cap,
    weights, balance_labels), not prepared sources; a pretraining mixture (epochs, curriculum) is an
    unknown key of it, and a task it names must occur in the data."""

    out: str = "runs/finetune"
    train_files: list[str] = dataclasses.field(default_factory=list)  # chat/instruction JSONL
    eval_files: list[str] = dataclasses.field(default_factory=list)  # held out: judges the checkpoints
    # Without eval_files: this fraction of the training conversations held out instead, stratified
    # by (task, label) and never trained on. 0: no selection set (checkpoints are not judged).
    selection_fraction: float = 0.0
    mixture: InstructionMixture = dataclasses.field(default_factory=InstructionMixture)
    pack: bool = False  # several short examples per row, kept apart by document masking
    neftune_alpha: float = 5.0  # 0 switches NEFTune off
    lora: bool = False
    lora_config: LoRAConfig = dataclasses.field(default_factory=LoRAConfig)
    # task: each held-out conversation with a task by its benchmark's metric, macro-averaged over the
    # tasks (those without a task by exact); exact / char_f1: the mean over all answers.
    metric: Literal["task", "exact", "char_f1"] = "exact"
    eval_max_new_tokens: int = 64
    eval_every: int = 0  # steps between held-out losses; 0: only before and after training
    strict: bool = False  # stop at the first malformed record instead of counting it
    # Staged fine-tuning: each stage starts from the previous stage's result (its best checkpoint,
    # merged when LoRA), and its evaluation is recorded; top-level train_files are then unused.
    stages: list[StageConfig] = dataclasses.field(default_factory=list)
    optim: OptimConfig = dataclasses.field(default_factory=lambda: OptimConfig(lr=1e-4, weight_decay=0.01, warmup_steps=50))

    def validate(self) -> None:
        if not self.init_from:
            raise ConfigError("FinetuneConfig.init_from must name the base model's checkpoint folder")
        if not self.train_files and not self.stages:
            raise ConfigError("FinetuneConfig.train_files is empty (and there are no stages)")
        if not 0 <= self.selection_fraction < 1:
            raise ConfigError(f"FinetuneConfig.selection_fraction must be in [0, 1), got {self.selection_fraction}")
        if self.selection_fraction and self.eval_files:
            raise ConfigError("FinetuneConfig: give eval_files or selection_fraction, not both (the selection set "
                              "is either held out in files or split off the training files)")
        super().validate()


MIXTURE_FILE = "mixture.json"  # in the run folder: the task x label counts before and after the mixture

CHAT_EXAMPLE = [{"role": "system", "content": "{system}"}, {"role": "user", "content": "{user}"},
                {"role": "assistant", "content": "{answer}"}]


def score(prediction: str, reference: str, metric: str) -> float:
    """exact: equal after NFKC and without whitespace; char_f1: F1 over characters (Japanese has no words)."""
    return (exact_match if metric == "exact" else token_f1)(prediction, reference, unit="chars")


_OPTION_LINE = re.compile(r"^([A-H])\. ", re.MULTILINE)


def prompt_letters(conversation: list[dict]) -> str:
    """The option letters of a choice prompt: its `A. ...` lines (after 選択肢:, JMED-LLM's header
    of the options, where there is one)."""
    user = next((m["content"] for m in reversed(conversation) if m["role"] == "user"), "")
    return "".join(dict.fromkeys(_OPTION_LINE.findall(user.split("選択肢:")[-1])))


def task_score(task: str | None, conversations: list[list[dict]], tags: list[Tag], preds: list[str]) -> float:
    """One task's own metric over its held-out answers. An NER task (JMED-LLM's): exact F1 of the
    entity sets, each read as a Python list literal. A task whose conversations all have a label:
    Cohen's kappa of the labels read from the answers (as JMED-LLM weighs the task: linear for its
    ordinal scales), so a constant answer scores 0; option letters are read as JMED-LLM's corrected
    mode reads them (the first standing alone among the prompt's letters, else among the task's
    labels), other labels as the whole answer. No task, or no labels: exact match."""
    refs = [c[-1]["content"] for c in conversations]
    if task in JMED_NER_TASKS:
        return exact_f1([parse_list(r) for r in refs], [parse_list(p) for p in preds])
    if task is None or any(t.label is None for t in tags):
        return sum(score(p, r, "exact") for p, r in zip(preds, refs)) / len(refs)
    labels = sorted({t.label for t in tags})
    if all(re.fullmatch("[A-H]", label) for label in labels):
        read = [standalone_letter(p, prompt_letters(c) or "".join(labels)) for p, c in zip(preds, conversations)]
    else:
        names = {normalize(label, "chars"): label for label in labels}
        read = [names.get(normalize(p, "chars"), NO_LETTER) for p in preds]
    kappa = cohen_kappa([t.label for t in tags], read, JMED_CHOICE_TASKS.get(task))
    # NaN: one label throughout, answered perfectly; agreement beyond chance cannot show, so 0
    return 0.0 if math.isnan(kappa) else kappa


def judge_answers(conversations: list[list[dict]], tags: list[Tag], preds: list[str], metric: str) -> dict:
    """{metric: value}, and the value of each task ("per_task", NO_TASK for conversations without
    one) when the metric is `task` or the conversations have tasks. `task`: the mean over the tasks
    present (macro: a large task does not drown a small one); exact / char_f1: over all answers."""
    groups: dict[str, list[int]] = {}
    for i, tag in enumerate(tags):
        groups.setdefault(tag.task or NO_TASK, []).append(i)
    if metric == "task":
        per_task = {name: task_score(None if name == NO_TASK else name, [conversations[i] for i in members],
                                     [tags[i] for i in members], [preds[i] for i in members])
                    for name, members in sorted(groups.items())}
        value = sum(per_task.values()) / len(per_task)
    else:
        scores = [score(p, c[-1]["content"], metric) for p, c in zip(preds, conversations)]
        per_task = {name: sum(scores[i] for i in members) / len(members) for name, members in sorted(groups.items())}
        value = sum(scores) / len(scores)
    return {metric: value, **({"per_task": per_task} if metric == "task" or any(t.task for t in tags) else {})}


@torch.no_grad()
def answer(model, tok, conversations: list[list[dict]], max_new_tokens: int,
           batch_size: int = 16) -> list[str]:
    """Greedy answers to each conversation's last user turn (its reference answer left out), through
    the same chat path evaluation uses (slm.lm)."""
    completions = SLMAdapter(model, tok, chat=True, name="in-training").generate(
        [c[:-1] for c in conversations], max_new_tokens, batch_size=batch_size)
    return [c.text for c in completions]


def evaluate_answers(model, tok, conversations: list[list[dict]], tags: list[Tag], *, metric: str,
                     max_new_tokens: int) -> tuple[dict, list[str]]:
    """(`judge_answers` of the greedy answers, the answers)."""
    preds = answer(model, tok, conversations, max_new_tokens)
    return judge_answers(conversations, tags, preds, metric), preds


def prepared(config: FinetuneConfig, errors: ReadErrors) -> Prepared:
    """The run's training and held-out conversations (slm.finetune.mixture.prepare of its fields)."""
    return prepare(train_files=config.train_files, eval_files=config.eval_files, mixture=config.mixture,
                   selection_fraction=config.selection_fraction, seed=config.seed, errors=errors)


class FinetuneTrainer(Trainer):
    config: FinetuneConfig
    stage = "finetune"

    def setup(self) -> None:
        config = self.config
        errors = ReadErrors(strict=config.strict)  # the data first: a bad file stops the run before any model work
        data = prepared(config, errors)
        train, self.eval_conversations, self.eval_tags = data.train, data.held_out, data.held_out_tags
        self.read_errors = errors
        if self.run.main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_report(data.report, self.out / MIXTURE_FILE)
        base = Path(config.init_from)
        self.tok = load_tokenizer(model_tokenizer_dir(base))  # ours, or a transformers model's own
        self.model = load_model_folder(base).float()
        check_tokenizer(self.model.config, self.tok, base, chat=runs.is_chat(base))
        self.added_tokens = ensure_chat_tokens(self.tok, self.model)  # the report's 32768 -> 32771 path
        self.tokenizer_dir = self.out / runs.TOKENIZER_DIR
        if self.run.main:
            self.tok.save(self.tokenizer_dir)
        if config.lora:
            apply_lora(self.model, config.lora_config, new_token_rows=len(self.added_tokens))
        examples = [encode_chat(self.tok, c) for c in train]
        rows = pack(examples, config.seq_len) if config.pack else [[truncate(e, config.seq_len)] for e in examples]
        self.loader = ChatLoader(rows, max_len=config.seq_len, micro_batch=config.micro_batch, pad_id=self.tok.pad_id,
                                 rank=self.run.rank, world_size=self.run.world_size, seed=config.seed)
        # one example a row, packed or not: the held-out loss should not depend on how training packs
        self.eval_rows = [[truncate(encode_chat(self.tok, c), config.seq_len)] for c in self.eval_conversations]
        self.neftune = NEFTune(self.model, config.neftune_alpha) if config.neftune_alpha > 0 else None
        self.best = self._best_so_far()  # resuming: the best so far is still the one to beat
        if self.run.main:
            held = "split off the training files" if config.selection_fraction else "held out"
            print(f"instruction tuning: {len(train)} conversations in {len(rows)} rows, {len(self.eval_conversations)} "
                  f"{held}; {errors.total} malformed records skipped" + "".join(f"\n  {e}" for e in errors.examples[:5]))
            if any(t.task for t in data.train_tags + data.held_out_tags):
                print(f"tasks (label: conversations before -> after the mixture; {MIXTURE_FILE}):\n"
                      + describe(data.report))

    def protected_checkpoints(self) -> frozenset[str]:
        return frozenset([self.best[1]]) if self.best else frozenset()

    def param_groups(self) -> list[dict]:
        groups = param_groups(self.model, self.config.optim.weight_decay)
        keep = no_decay_parameters(self.model)  # LoRA with added tokens: old rows must not decay
        groups[1]["params"] += [p for p in groups[0]["params"] if id(p) in keep]
        groups[0]["params"] = [p for p in groups[0]["params"] if id(p) not in keep]
        return groups

    def model_inputs(self, batch: dict) -> dict:
        if self.neftune is not None:
            self.neftune.lengths = batch["lengths"]
        # doc_ids always: padding (and packed examples) must stay out of each other's attention
        return {"labels": batch["labels"], "doc_ids": batch["doc_ids"]}

    def save_model(self, directory: Path) -> None:
        if self.config.lora:
            save_adapter(self.model, directory, self.added_tokens)
        else:
            self.model.save_pretrained(directory)
        runs.mark_chat(directory, render(CHAT_EXAMPLE))  # it answers in the chat format (slm.lm reads this)

    def restore_model(self, directory: Path) -> None:
        if self.config.lora:
            copy_adapter_tensors(self.model, read_safetensors(directory / ADAPTER_WEIGHTS), str(directory))
        else:
            super().restore_model(directory)

    def eval_batches(self) -> Iterable[dict] | None:
        """The held-out conversations (assistant tokens scored), split over the ranks."""
        if not self.eval_rows:
            return None
        return held_out_batches(self.eval_rows, max_len=self.config.seq_len, micro_batch=self.config.micro_batch,
                                pad_id=self.tok.pad_id, rank=self.run.rank, world_size=self.run.world_size)

    def eval_every(self) -> int:
        return self.config.eval_every

    def _best_so_far(self) -> tuple[float, str] | None:
        """(score, checkpoint) of the best judged checkpoint on disk: the judgments saved in the
        checkpoints themselves (a kill between a commit and the `best` pointer loses nothing), else
        the pointer of a run written before they were saved."""
        best = None
        for checkpoint, judgment in runs.selections(self.checkpoints):
            if best is None or judgment[self.config.metric] > best[0]:  # ties: the earlier checkpoint, as in the run
                best = (judgment[self.config.metric], checkpoint.name)
        record = runs.read_pointer(self.checkpoints, runs.BEST)
        return best or ((record[self.config.metric], record["checkpoint"]) if record else None)

    def judge(self, checkpoint: Path) -> dict | None:
        """The checkpoint's greedy answers on the held-out conversations, scored; it becomes the best
        (and is kept by retention) when it beats the best so far."""
        if not self.eval_conversations:
            return None
        self.model.eval()
        values, preds = evaluate_answers(self.model, self.tok, self.eval_conversations, self.eval_tags,
                                         metric=self.config.metric, max_new_tokens=self.config.eval_max_new_tokens)
        self.model.train()
        value = values[self.config.metric]
        if self.best is None or value > self.best[0]:
            self.best = (value, runs.step_dir(self.checkpoints, self.step).name)
        return {"kind": "select", "step": self.step, "metric": self.config.metric, **values,
                "examples": [{"answer": p, "reference": c[-1]["content"]}
                             for p, c in zip(preds[:3], self.eval_conversations[:3])]}

    def _point_best(self) -> None:
        """`checkpoints/best`: the best checkpoint so far, the metric it was chosen by, its value (the
        number compared) and, where judged so, its per-task values."""
        value, name = self.best
        judgment = runs.read_selection(self.checkpoints / name) or {}  # none: a run from before judgments were saved
        per_task = {"per_task": judgment["per_task"]} if "per_task" in judgment else {}
        runs.write_pointer(self.checkpoints, runs.BEST, name, metric=self.config.metric,
                           **{self.config.metric: value}, **per_task)

    def resumed(self, checkpoint: Path) -> None:
        """A kill between a commit and its log line or `best` pointer loses nothing: the judgment is
        logged from the checkpoint, and the pointer written from the judgments on disk."""
        judged = runs.read_selection(checkpoint)
        if judged is not None and not any(r["step"] == judged["step"] for r in runs.read_log(self.out, "select")):
            self.monitor.log(judged)
        pointer = runs.read_pointer(self.checkpoints, runs.BEST)
        if self.best is not None and (pointer or {}).get("checkpoint") != self.best[1]:
            self._point_best()

    def after_save(self, final: Path) -> None:
        """Log the checkpoint's judgment, and point `checkpoints/best` at the best so far."""
        judgment = runs.read_selection(final)
        if judgment is None:
            return
        self.monitor.log(judgment)
        if self.best[1] == final.name:
            self._point_best()


def finetune(config: FinetuneConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Run (or resume) instruction tuning, staged when the config lists stages; a notebook can call
    this as finetune.py does. A folder that holds another run is refused unless `resume` continues
    it or `overwrite` moves it aside."""
    if config.stages:
        return finetune_stages(config, resume, overwrite)
    trainer = FinetuneTrainer(config, resume=resume, overwrite=overwrite)
    result = run_to_end(trainer)
    return {**result, "best": trainer.best, "read_errors": trainer.read_errors.total}


def finetune_stages(config: FinetuneConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Each stage in its own run folder (<out>/<n>-<name>), starting from the previous stage's best
    checkpoint (a LoRA stage's adapter is merged first, so the next stage adapts the adapted model).
    After each stage its held-out answers are scored; <out>/stages.jsonl and stages.md record them."""
    out, start, records = Path(config.out), config.init_from, []
    aside = runs.claim(out, resume=resume, overwrite=overwrite)
    if aside:
        print(f"--overwrite: moved the staged run that was in {out} aside to {aside}")
    for n, stage in enumerate(config.stages, 1):
        # a stage with held-out files of its own is judged on them, not on a split of its training files
        run = config.replace(out=str(out / f"{n}-{stage.name}"), init_from=str(start), train_files=stage.train_files,
                             eval_files=stage.eval_files or config.eval_files, steps=stage.steps or config.steps,
                             selection_fraction=0.0 if stage.eval_files else config.selection_fraction, stages=[],
                             optim=config.optim.replace(lr=stage.lr or config.optim.lr))
        if stage.steps is None:  # epochs over the examples the stage trains on, one example a row
            if config.pack:
                raise ConfigError(f"stage {stage.name!r}: epochs assume one example a row; with pack: true give steps")
            examples = len(prepared(run, ReadErrors()).train)
            run = run.replace(steps=max(1, math.ceil(stage.epochs * examples / config.global_batch)))
        steps = run.steps
        checkpoints = runs.checkpoints_dir(run.out)
        result = finetune(run, resume=resume and checkpoints.is_dir())
        best = checkpoints / result["best"][1] if result["best"] else runs.latest_checkpoint(checkpoints)
        start = _merged(best, Path(run.out) / "merged", str(start)) if config.lora else best
        evals = runs.read_log(run.out, "eval")
        records.append({"stage": stage.name, "steps": steps, "checkpoint": str(start),
                        "final_eval_loss": evals[-1]["eval_loss"] if evals else None,
                        config.metric: result["best"][0] if result["best"] else None})
    show = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    # the loss is the stage's last evaluation; the answer score and checkpoint are the best ones
    table = (f"| stage | steps | final held-out loss | best {config.metric} | best checkpoint |\n|---|---|---|---|---|\n"
             + "".join(f"| {r['stage']} | {r['steps']} | {show(r['final_eval_loss'])} | {show(r[config.metric])} | "
                       f"{r['checkpoint']} |\n" for r in records))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "stages.jsonl", lambda p: p.write_text("".join(json.dumps(r) + "\n" for r in records)))
    atomic_write(out / "stages.md", lambda p: p.write_text(table))
    print(table, end="")
    return {"stages": records, "best": (records[-1][config.metric], records[-1]["checkpoint"]) if records else None,
            "final": str(start)}


def _merged(adapter: Path, target: Path, base: str) -> Path:
    """A full model folder from a LoRA checkpoint: the adapter merged into its base, with the tokenizer."""
    model = merge_lora(load_adapter(load_model_folder(base), adapter))
    model.save_pretrained(target)
    load_tokenizer(adapter / runs.TOKENIZER_DIR).save(target / runs.TOKENIZER_DIR)
    runs.mark_chat(target, render(CHAT_EXAMPLE))
    return target
