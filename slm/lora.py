"""LoRA (Hu et al. 2021): low-rank adapters on chosen linear layers, the base weights frozen.

An adapter file holds the A and B matrices and, when fine-tuning added tokens
(the chat tokens on a base tokenizer without them), only the new rows of the
embedding and LM head: never the whole embedding. (A published medical
fine-tune of Llama 3.2 saved a 3 GB "adapter" instead of about 50 MB because it
added a pad token and saved the resized embedding.) While training, the old
rows get no gradient and no weight decay, so they stay exactly the base's.

save_peft_adapter writes the same adapter in PEFT's format (adapter_model.safetensors +
adapter_config.json, plain safetensors and JSON: peft is not needed to write it), for
`peft.PeftModel.from_pretrained` on the base's transformers export (slm.hf.export). Its
adapter_config.json has the same file name as ours, so the two go in different folders.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from slm.chat import resize_token_embeddings
from slm.checkpoint import atomic_write, read_safetensors
from slm.config import Config, ConfigError
from slm.hf import _rename, export_embedding_scale, hf_config
from slm.model import SLM

ADAPTER_WEIGHTS, ADAPTER_CONFIG = "adapter.safetensors", "adapter_config.json"
PEFT_WEIGHTS, PEFT_CONFIG = "adapter_model.safetensors", "adapter_config.json"
_PEFT_PREFIX = "base_model.model."  # PeftModel -> LoraModel -> the transformers model's own names


@dataclasses.dataclass
class LoRAConfig(Config):
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    # Attention projections and MLP layers by name (the last part of the module name).
    targets: list[str] = dataclasses.field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])

    def validate(self) -> None:
        if self.rank <= 0:
            raise ConfigError(f"LoRAConfig.rank must be positive, got {self.rank}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"LoRAConfig.dropout must be in [0, 1), got {self.dropout}")
        if not self.targets:
            raise ConfigError("LoRAConfig.targets is empty")


class LoRALinear(nn.Module):
    """base(x) + dropout(x) A^T B^T * alpha / rank; B starts at zero, so training starts from the base."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float):
        super().__init__()
        self.base = base
        self.base.weight.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as nn.Linear initialises its weight
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (self.dropout(x) @ self.lora_a.T @ self.lora_b.T) * self.scaling

    def merged(self) -> nn.Linear:
        merged = nn.Linear(self.base.in_features, self.base.out_features, bias=False, device=self.base.weight.device,
                           dtype=self.base.weight.dtype)
        with torch.no_grad():
            merged.weight.copy_(self.base.weight + (self.lora_b @ self.lora_a).to(self.base.weight.dtype) * self.scaling)
        return merged


def _targets(model: nn.Module, config: LoRAConfig) -> list[str]:
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.split(".")[-1] in config.targets]
    if not names:
        raise ConfigError(f"LoRAConfig.targets {config.targets} match no linear layer of the model")
    return names


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def apply_lora(model: SLM, config: LoRAConfig, new_token_rows: int = 0) -> list[str]:
    """Freeze the model, wrap the target layers, and (if tokens were added) let only the last
    `new_token_rows` rows of the embedding and LM head learn. Returns the wrapped layer names."""
    for p in model.parameters():
        p.requires_grad_(False)
    names = _targets(model, config)
    for name in names:
        _set(model, name, LoRALinear(model.get_submodule(name), config.rank, config.alpha, config.dropout))
    model.lora_config = config
    model.lora_new_rows = new_token_rows
    if new_token_rows:
        first = model.config.vocab_size - new_token_rows
        for weight in {id(w): w for w in (model.embed.weight, model.lm_head.weight)}.values():
            weight.requires_grad_(True)
            mask = torch.zeros(weight.shape[0], 1, device=weight.device, dtype=weight.dtype)
            mask[first:] = 1
            weight.register_hook(lambda grad, m=mask: grad * m)  # old rows: no gradient, so no update
    return names


def no_decay_parameters(model: SLM) -> set[int]:
    """ids of parameters that must not be weight-decayed under LoRA: the embedding and head, whose
    old rows must stay exactly the base's (decoupled decay would shrink them without a gradient)."""
    return {id(model.embed.weight), id(model.lm_head.weight)} if getattr(model, "lora_new_rows", 0) else set()


def adapter_tensors(model: SLM) -> dict[str, torch.Tensor]:
    """What an adapter file holds: LoRA matrices, plus only the new embedding/head rows."""
    tensors = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if ".lora_" in n}
    rows = getattr(model, "lora_new_rows", 0)
    if rows:
        tensors["embed.new_rows"] = model.embed.weight[-rows:].detach().contiguous().cpu()
        if not model.config.tie_embeddings:
            tensors["lm_head.new_rows"] = model.lm_head.weight[-rows:].detach().contiguous().cpu()
    return tensors


def save_adapter(model: SLM, directory: str | Path, added_tokens: list[str] | None = None) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = adapter_tensors(model)
    atomic_write(directory / ADAPTER_WEIGHTS, lambda p: save_file(tensors, p, metadata={"format": "pt"}))
    meta = {"lora": model.lora_config.to_dict(), "new_token_rows": model.lora_new_rows,
            "base_vocab_size": model.config.vocab_size - model.lora_new_rows, "added_tokens": added_tokens or []}
    atomic_write(directory / ADAPTER_CONFIG, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))


def load_adapter(base: SLM, directory: str | Path) -> SLM:
    """Put a saved adapter onto a base model (growing its vocabulary if the adapter added tokens)."""
    directory = Path(directory)
    meta = json.loads((directory / ADAPTER_CONFIG).read_text())
    if base.config.vocab_size != meta["base_vocab_size"]:
        raise ValueError(f"{directory}: adapter made for a base with vocab_size={meta['base_vocab_size']}, "
                         f"this base has {base.config.vocab_size}")
    tensors = read_safetensors(directory / ADAPTER_WEIGHTS)
    rows = meta["new_token_rows"]
    if rows:
        resize_token_embeddings(base, base.config.vocab_size + rows)
    apply_lora(base, LoRAConfig.from_dict(meta["lora"]), rows)
    copy_adapter_tensors(base, tensors, str(directory))
    return base


@torch.no_grad()
def copy_adapter_tensors(model: SLM, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Put an adapter file's tensors into a model that already carries the adapter's layers."""
    tensors = dict(tensors)
    rows = getattr(model, "lora_new_rows", 0)
    if rows:
        model.embed.weight[-rows:] = tensors.pop("embed.new_rows")
        if "lm_head.new_rows" in tensors:
            model.lm_head.weight[-rows:] = tensors.pop("lm_head.new_rows")
    params = dict(model.named_parameters())
    missing = {n for n in params if ".lora_" in n} - set(tensors)
    if missing:
        raise ValueError(f"{source}: adapter lacks {sorted(missing)[:3]}...")
    for name, t in tensors.items():
        params[name].copy_(t)


def save_peft_adapter(model: SLM, directory: str | Path, *, base_model: str = "") -> None:
    """Write a LoRA model's adapter as a PEFT LoRA adapter for the transformers export of its base.

    `PeftModel.from_pretrained(base, directory)` then computes what `model` computes. The A and B
    matrices keep their values: PEFT scales by lora_alpha / r as we do (no rsLoRA). `base_model`
    goes into base_model_name_or_path (where AutoPeftModelForCausalLM finds the base; null when
    empty, as PEFT writes it).

    Added tokens (a vocabulary grown by `new_token_rows`) travel as PEFT's trainable tokens
    (LoraConfig.trainable_token_indices): only the new rows, as the exported model holds them
    (the embedding's multiplied by sqrt(d_model) where export folds the scale in; the LM head's
    as well unless the export ties it to the embedding), never the whole embedding. PEFT replaces
    those rows but cannot grow a
    vocabulary, so the base it loads onto must already have the adapter's vocab_size; what its
    new rows hold does not matter. Either export the base grown the same way
    (`slm.chat.resize_token_embeddings(base, vocab_size)` before `slm.hf.export`), or grow the
    transformers model (`hf_model.resize_token_embeddings(vocab_size)`) before loading. On the
    base as it was, the indices are out of range: PEFT fails loading it (IndexError).
    """
    if not hasattr(model, "lora_config"):
        raise ValueError("save_peft_adapter needs a model with LoRA applied (slm.lora.apply_lora)")
    tensors, token_indices = _peft_token_rows(model)
    tensors.update(_peft_lora_tensors(model))
    lora = model.lora_config
    targets = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, LoRALinear)})
    meta = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": lora.rank, "lora_alpha": lora.alpha,
            "lora_dropout": lora.dropout, "use_rslora": False, "target_modules": targets, "bias": "none",
            "fan_in_fan_out": False, "inference_mode": True, "base_model_name_or_path": base_model or None,
            "trainable_token_indices": token_indices or None, "modules_to_save": None}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / PEFT_WEIGHTS, lambda p: save_file(tensors, p, metadata={"format": "pt"}))
    atomic_write(directory / PEFT_CONFIG, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))


def _peft_lora_tensors(model: SLM) -> dict[str, torch.Tensor]:
    """A and B under the names PEFT gives them on the exported model (...q_proj.lora_A.weight)."""
    tensors = {}
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            prefix = _PEFT_PREFIX + _rename(name + ".", to_hf=True, sandwich=model.config.sandwich_norm)
            tensors[prefix + "lora_A.weight"] = module.lora_a.detach().cpu().clone()
            tensors[prefix + "lora_B.weight"] = module.lora_b.detach().cpu().clone()
    return tensors


def _peft_token_rows(model: SLM) -> tuple[dict[str, torch.Tensor], dict[str, list[int]]]:
    """The new embedding/head rows as slm.hf.export would write them, under the names of PEFT's
    trainable-tokens layers, and their indices per layer; nothing when no tokens were added."""
    rows, config = model.lora_new_rows, model.config
    if not rows:
        return {}, {}
    exported = hf_config(config, model.embed.weight.dtype)
    embed = model.embed.weight[-rows:].detach()
    embed = embed * export_embedding_scale(config)  # as export folds the embedding scale in
    layers = {_rename("embed.", to_hf=True): embed}
    if not exported["tie_word_embeddings"]:  # a tied export: PEFT ties the head's rows to the embedding's
        layers["lm_head."] = model.lm_head.weight[-rows:].detach()
    indices = list(range(config.vocab_size - rows, config.vocab_size))
    tensors = {f"{_PEFT_PREFIX}{name}token_adapter.trainable_tokens_delta": t.cpu().clone() for name, t in layers.items()}
    return tensors, {name.rstrip(".").rsplit(".", 1)[-1]: indices for name in layers}


def merge_lora(model: SLM) -> SLM:
    """Fold every adapter into its layer: a plain SLM again, for saving or export."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            _set(model, name, module.merged())
    for p in model.parameters():
        p.requires_grad_(True)
    for attr in ("lora_config", "lora_new_rows"):
        if hasattr(model, attr):
            delattr(model, attr)
    return model


def count_adapter_bytes(config, lora: LoRAConfig, new_token_rows: int = 0, bytes_per_param: int = 4) -> int:
    """Adapter size on disk for a model config, without building it."""
    c = config
    shapes = {"q_proj": (c.d_model, c.n_heads * c.dim_head), "k_proj": (c.d_model, c.n_kv_heads * c.dim_head),
              "v_proj": (c.d_model, c.n_kv_heads * c.dim_head), "o_proj": (c.n_heads * c.dim_head, c.d_model),
              "up_proj": (c.d_model, c.d_mlp), "down_proj": (c.d_mlp, c.d_model)}
    if c.mlp_gated:
        shapes["gate_proj"] = (c.d_model, c.d_mlp)
    per_layer = sum(lora.rank * (i + o) for name, (i, o) in shapes.items() if name in lora.targets)
    rows = new_token_rows * c.d_model * (1 if c.tie_embeddings else 2)
    return (per_layer * c.n_layers + rows) * bytes_per_param
