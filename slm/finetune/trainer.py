"""Instruction tuning (report §2.4.2) on the pretraining loop: chat-formatted examples with the
assistant-only loss, NEFTune, full fine-tuning or LoRA, and checkpoints judged by what the
model answers on a held-out set (greedy), not by loss: published medical fine-tunes found
that the lowest-loss checkpoint answered worse and degenerated into endless lists.

    python finetune.py --config configs/finetune/sample.yaml --init_from runs/pretrain/x/checkpoints/step-0000300
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from slm.checkpoint import load_pretrained, save_pretrained
from slm.config import ConfigError
from slm.data.readers import ReadErrors
from slm.finetune.chat import encode_chat, ensure_chat_tokens, render
from slm.finetune.data import collate, pack, truncate
from slm.finetune.instructions import load_conversations
from slm.finetune.lora import (ADAPTER_WEIGHTS, LoRAConfig, apply_lora, copy_adapter_tensors, no_decay_parameters,
                               save_adapter)
from slm.eval.text_metrics import exact_match, token_f1
from slm.finetune.neftune import NEFTune
from slm.lm import CHAT_MARKER
from slm.train.config import OptimConfig, TrainConfig
from slm.train.optim import param_groups
from slm.train.trainer import Trainer, run_to_end
from tokenizer import JapaneseTokenizer


@dataclasses.dataclass
class FinetuneConfig(TrainConfig):
    """TrainConfig's loop settings with the report's instruction-tuning defaults: AdamW weight
    decay 0.01, β (0.9, 0.95), 50 warmup steps to 1e-4, cosine; NEFTune α = 5."""

    train_files: list[str] = dataclasses.field(default_factory=list)  # chat/instruction JSONL
    eval_files: list[str] = dataclasses.field(default_factory=list)  # held out: judges the checkpoints
    pack: bool = False  # several short examples per row, kept apart by document masking
    neftune_alpha: float = 5.0  # 0 switches NEFTune off
    lora: bool = False
    lora_config: LoRAConfig = dataclasses.field(default_factory=LoRAConfig)
    metric: Literal["exact", "char_f1"] = "exact"
    eval_max_new_tokens: int = 64
    strict: bool = False  # stop at the first malformed record instead of counting it
    optim: OptimConfig = dataclasses.field(default_factory=lambda: OptimConfig(lr=1e-4, weight_decay=0.01, warmup_steps=50))

    def validate(self) -> None:
        if not self.init_from:
            raise ConfigError("FinetuneConfig.init_from must name the base model's checkpoint folder")
        if not self.train_files:
            raise ConfigError("FinetuneConfig.train_files is empty")
        super().validate()

    def validate_data(self) -> None:
        """Instruction tuning reads JSONL files, not a prepared data folder."""


CHAT_EXAMPLE = [{"role": "system", "content": "{system}"}, {"role": "user", "content": "{user}"},
                {"role": "assistant", "content": "{answer}"}]


class ChatLoader:
    """Deterministic, resumable micro-batches of chat rows; ranks take disjoint rows.

    Row g of the global sequence is row perm_e[g mod n] with e = g div n (a new order each
    epoch, seeded), micro-batch t of rank r takes rows [(t * world + r) * B, ... + B).
    """

    def __init__(self, rows: list, max_len: int, micro_batch: int, pad_id: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0):
        if not rows:
            raise ValueError("no instruction examples to train on")
        self.rows, self.max_len, self.micro_batch, self.pad_id = rows, max_len, micro_batch, pad_id
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.step = 0
        self._perm: tuple[int, np.ndarray] | None = None

    def _row(self, g: int):
        n = len(self.rows)
        epoch = g // n
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(n))
        return self.rows[int(self._perm[1][g % n])]

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        first = (self.step * self.world_size + self.rank) * self.micro_batch
        self.step += 1
        return collate([self._row(g) for g in range(first, first + self.micro_batch)], self.max_len, self.pad_id)

    def state_dict(self) -> dict:
        return {"step": self.step, "rows": len(self.rows), "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if (state["rows"], state["seed"]) != (len(self.rows), self.seed):
            raise ValueError(f"loader state was saved for {state['rows']} rows and seed {state['seed']}, "
                             f"this data has {len(self.rows)} rows and seed {self.seed}")
        self.step = state["step"]


def score(prediction: str, reference: str, metric: str) -> float:
    """exact: equal after NFKC and without whitespace; char_f1: F1 over characters (Japanese has no words)."""
    return (exact_match if metric == "exact" else token_f1)(prediction, reference, unit="chars")


@torch.no_grad()
def answer(model, tok: JapaneseTokenizer, conversations: list[list[dict]], max_new_tokens: int,
           batch_size: int = 16) -> list[str]:
    """Greedy answers to each conversation's last user turn (its reference answer left out)."""
    answers = []
    for i in range(0, len(conversations), batch_size):
        prompts = [encode_chat(tok, c[:-1], add_generation_prompt=True).input_ids for c in conversations[i : i + batch_size]]
        width = max(map(len, prompts))
        out = model.generate(prompts, max_new_tokens=max_new_tokens, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
        answers += [tok.decode(row[width:], skip_special_tokens=True) for row in out.tolist()]
    return answers


def evaluate_answers(model, tok, conversations, metric: str, max_new_tokens: int) -> tuple[float, list[str]]:
    preds = answer(model, tok, conversations, max_new_tokens)
    refs = [c[-1]["content"] for c in conversations]
    return sum(score(p, r, metric) for p, r in zip(preds, refs)) / len(refs), preds


class FinetuneTrainer(Trainer):
    config: FinetuneConfig

    def setup(self) -> None:
        config = self.config
        base = Path(config.init_from)
        self.tok = JapaneseTokenizer.load(base / "tokenizer")
        self.model = load_pretrained(base).float()
        if config.model_overrides:
            raise ConfigError("FinetuneConfig.model_overrides is not supported; change the base model instead")
        self.added_tokens = ensure_chat_tokens(self.tok, self.model)  # the report's 32768 -> 32771 path
        self.tokenizer_dir = self.out / "tokenizer"
        if self.run.main:
            self.tok.save(self.tokenizer_dir)
        if config.lora:
            apply_lora(self.model, config.lora_config, new_token_rows=len(self.added_tokens))
        errors = ReadErrors(strict=config.strict)
        train = load_conversations(config.train_files, errors)
        self.eval_conversations = load_conversations(config.eval_files, errors) if config.eval_files else []
        self.read_errors = errors
        examples = [encode_chat(self.tok, c) for c in train]
        rows = pack(examples, config.seq_len) if config.pack else [[truncate(e, config.seq_len)] for e in examples]
        self.loader = ChatLoader(rows, config.seq_len, config.micro_batch, self.tok.pad_id, self.run.rank,
                                 self.run.world_size, config.seed)
        self.neftune = NEFTune(self.model, config.neftune_alpha) if config.neftune_alpha > 0 else None
        best = self.checkpoints / "best"  # resuming: the best so far is still the one to beat
        record = json.loads(best.read_text()) if best.is_file() else None
        self.best = (record[config.metric], record["checkpoint"]) if record else None
        if self.run.main:
            print(f"instruction tuning: {len(train)} conversations in {len(rows)} rows, {len(self.eval_conversations)} "
                  f"held out; {errors.total} malformed records skipped" + "".join(f"\n  {e}" for e in errors.examples[:5]))

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
            save_pretrained(self.model, directory)
        # marks a model that answers in the chat format, for evaluation (slm.lm.SLMAdapter)
        (directory / CHAT_MARKER).write_text(json.dumps({"template": render(CHAT_EXAMPLE)}, ensure_ascii=False) + "\n")

    def restore_model(self, directory: Path) -> None:
        if self.config.lora:
            from safetensors.torch import load_file

            copy_adapter_tensors(self.model, load_file(directory / ADAPTER_WEIGHTS), str(directory))
        else:
            super().restore_model(directory)

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Held-out loss on the eval conversations (assistant tokens only)."""
        if not self.eval_conversations:
            return None
        self.model.eval()
        rows = [[truncate(encode_chat(self.tok, c), self.config.seq_len)] for c in self.eval_conversations]
        total = count = 0.0
        for i in range(0, len(rows), self.config.micro_batch):
            batch = {k: v.to(self.run.device) for k, v in
                     collate(rows[i : i + self.config.micro_batch], self.config.seq_len, self.tok.pad_id).items()}
            n = (batch["labels"][:, 1:] != -100).sum().item()
            total += self.model(batch["input_ids"], labels=batch["labels"], doc_ids=batch["doc_ids"]).loss.item() * n
            count += n
        self.model.train()
        return total / max(count, 1)

    def after_save(self, final: Path) -> None:
        """Judge the checkpoint by its greedy answers; `checkpoints/best` names the best so far."""
        if not self.eval_conversations:
            return
        self.model.eval()
        value, preds = evaluate_answers(self.model, self.tok, self.eval_conversations, self.config.metric,
                                        self.config.eval_max_new_tokens)
        self.model.train()
        self.monitor.log({"kind": "select", "step": self.step, self.config.metric: value,
                          "examples": [{"answer": p, "reference": c[-1]["content"]}
                                       for p, c in zip(preds[:3], self.eval_conversations[:3])]})
        if self.best is None or value > self.best[0]:
            self.best = (value, final.name)
            (self.checkpoints / "best").write_text(json.dumps({"checkpoint": final.name, self.config.metric: value}) + "\n")


def finetune(config: FinetuneConfig, resume: bool = False) -> dict:
    """Run (or resume) instruction tuning; a notebook can call this as finetune.py does."""
    trainer = FinetuneTrainer(config, resume=resume)
    result = run_to_end(trainer)
    return {**result, "best": trainer.best, "read_errors": trainer.read_errors.total}
