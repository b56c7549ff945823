"""Typed configuration: the model config and its named presets.

One config system for the whole library: dataclasses
that load from and save to YAML or JSON, reject unknown keys, check types, and
validate their values at construction with a message that names the field.
Later stages (training, fine-tuning, evaluation) subclass `Config` the same way.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml

C = TypeVar("C", bound="Config")


class ConfigError(ValueError):
    """A config value or file is invalid; the message names the field (and file)."""


_NAME_CHAR = re.compile(r"[\w.-]")  # \w: letters (any script), digits and '_'


def safe_name(value: str, where: str) -> str:
    """`value`, checked to be usable as one file or folder name inside another folder.

    Config-supplied names that become paths (data sources, fine-tuning stages, benchmarks)
    pass through here, so none can escape its folder: letters, digits, '-', '_' and '.' only,
    not starting with '.' (so never '.', '..' or a hidden name) or '-' (it would read as an
    option on a command line), at most 255 bytes. `where` names the field in the error, e.g.
    "SourceConfig.name".
    """
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty name, got {value!r}")
    bad = sorted({c for c in value if not _NAME_CHAR.fullmatch(c)})
    if bad or value[0] in ".-" or len(value.encode("utf-8")) > 255:
        why = (f"contains {''.join(bad)!r}" if bad else f"starts with {value[0]!r}" if value[0] in ".-"
               else "is longer than 255 bytes")
        raise ConfigError(f"{where} must be a single file or folder name (letters, digits, '-', '_', '.'; "
                          f"not starting with '.' or '-'), got {value!r}, which {why}")
    return value


def _coerce(cls_name: str, name: str, value: Any, tp: Any) -> Any:
    """Check `value` against the annotation `tp`, converting only where lossless.

    YAML 1.1 reads `1e-3` (no dot) as a string, a trap every researcher falls
    into, so numeric strings are accepted for float fields.
    """
    where = f"{cls_name}.{name}"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(cls_name, name, value, arg)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where} must be one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{where} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if origin is list or tp is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [v if item_tp is Any else _coerce(cls_name, f"{name}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp) and isinstance(tp, type) and issubclass(tp, Config):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return tp.from_dict(value)
    return value


@dataclasses.dataclass
class Config:
    """Base class: typed fields, unknown keys rejected, YAML/JSON round trip."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(type(self).__name__, f.name, getattr(self, f.name), hints[f.name]))
        self.validate()

    def validate(self) -> None:
        """Subclasses check value ranges here and raise ConfigError naming the field."""

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any], source: str | None = None) -> C:
        if not isinstance(d, dict):
            raise ConfigError(f"{source or cls.__name__}: expected a mapping of fields, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            where = f"{source}: " if source else ""
            raise ConfigError(f"{where}unknown {cls.__name__} field(s) {unknown}; known fields: {sorted(known)}")
        try:
            return cls(**d)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}" if source else str(e)) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def load(cls: type[C], path: str | Path, overrides: list[str] | None = None) -> C:
        """Load from a .yaml/.yml or .json file, then apply dotted overrides (`["--optim.lr", "3e-4"]`)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text at byte {e.start} (save the config as UTF-8)") from None
        try:
            d = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot parse: {e}") from None
        d = d if d is not None else {}
        for key, value in parse_overrides(overrides or []):
            set_dotted(d, key, value)
        return cls.from_dict(d, source=str(path))

    def save(self, path: str | Path) -> None:
        """Save as YAML or JSON by the file's suffix."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".json":
            text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        else:
            text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        path.write_text(text, encoding="utf-8")

    def replace(self: C, **changes: Any) -> C:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def parse_overrides(args: list[str]) -> list[tuple[str, Any]]:
    """`--a.b value` or `--a.b=value` pairs; values are read as YAML (numbers, booleans, lists)."""
    pairs, i = [], 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(f"override {arg!r} must look like --section.field value")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args):
                raise ConfigError(f"override {arg} has no value")
            value, i = args[i + 1], i + 1
        pairs.append((key.replace("-", "_"), yaml.safe_load(value)))
        i += 1
    return pairs


def set_dotted(d: dict, key: str, value: Any) -> None:
    """d["a"]["b"] = value for key "a.b" (unknown keys are caught when the config is built)."""
    *parents, last = key.split(".")
    for p in parents:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise ConfigError(f"override {key}: {p!r} is not a section")
    d[last] = value




@dataclasses.dataclass
class ModelConfig(Config):
    """The decoder's shape (report §2.3). Defaults are the report's 1.2B model."""

    vocab_size: int = 32768
    max_seq_len: int = 2048
    d_model: int = 2048
    n_layers: int = 24
    n_heads: int = 32
    n_kv_heads: int = 8  # grouped-query attention: 4 query heads share each KV head
    head_dim: int | None = None  # None: d_model // n_heads (64 for the report's model)
    d_mlp: int = 8192
    mlp_act: Literal["silu", "gelu", "gelu_tanh", "relu2"] = "silu"
    # The report's MLP is plain up -> SiLU -> down; gated (SwiGLU with silu) is an option.
    mlp_gated: bool = False
    rope_theta: float = 10000.0
    # Frequency scaling for imported checkpoints: Llama 3's {"rope_type": "llama3", "factor": ...,
    # "low_freq_factor": ..., "high_freq_factor": ..., "original_max_position_embeddings": ...}, or
    # linear position interpolation {"rope_type": "linear", "factor": ...} (Gemma 3's global layers).
    rope_scaling: dict | None = None
    norm_eps: float = 1e-5
    attn_dropout: float = 0.1  # report §2.3: dropout 0.1 on attention ...
    resid_dropout: float = 0.1  # ... and on the residual branches
    scale_embeddings: bool = True  # token embedding multiplied by sqrt(d_model) (report §2.3)
    # Switches for imported model families (slm.hf); the report's model uses neither.
    norm_unit_offset: bool = False  # Gemma: RMSNorm scales by (1 + weight)
    qkv_bias: bool = False  # Qwen2: biases on the q, k and v projections
    qk_norm: bool = False  # Gemma 3: RMSNorm over each head of q and k, before RoPE
    sandwich_norm: bool = False  # Gemma 3: also a norm on the attention and MLP outputs, before the residual add
    attn_scale: float | None = None  # softmax scale; None: 1/sqrt(head_dim) (Gemma 3: query_pre_attn_scalar^-0.5)
    sliding_window: int | None = None  # local attention span of the layers in sliding_layers (Gemma 3: 512)
    sliding_layers: list[int] = dataclasses.field(default_factory=list)
    rope_local_theta: float | None = None  # RoPE base of the sliding layers (Gemma 3: 10000; global 1e6)
    tie_embeddings: bool = False  # the report's LM head is untied
    init_std: float | None = None  # None: sqrt(2 / (5 d_model)), the report's init
    # Attention kernel: "auto" uses flash-attn 2 on CUDA in bf16/fp16 when it is installed (plain
    # causal, or packed documents through its varlen kernel), SDPA otherwise; "sdpa" never imports
    # flash-attn; "flex" runs document masking through flex_attention's block-sparse mask (compile
    # the model; no attention dropout). All compute the same attention (tests compare them).
    attn_backend: Literal["auto", "sdpa", "flash", "flex"] = "auto"
    # Training loss over chunks of this many positions, the logits of one chunk alive at a time
    # (recomputed in the backward pass); 0 computes the whole (B, T, vocab) logits at once.
    ce_chunk_size: int = 0
    # Special ids, so a checkpoint can generate on its own; set from the tokenizer.
    # Several eos ids are allowed (chat models stop on more than one token).
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None

    def validate(self) -> None:
        for name in ("vocab_size", "max_seq_len", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_mlp"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"ModelConfig.{name} must be positive, got {getattr(self, name)}")
        if self.head_dim is None:
            if self.d_model % self.n_heads:
                raise ConfigError(
                    f"ModelConfig.n_heads={self.n_heads} must divide d_model={self.d_model} "
                    "(or set head_dim explicitly)"
                )
        elif self.head_dim <= 0:
            raise ConfigError(f"ModelConfig.head_dim must be positive, got {self.head_dim}")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"ModelConfig.n_kv_heads={self.n_kv_heads} must divide n_heads={self.n_heads}")
        if self.dim_head % 2:
            raise ConfigError(f"ModelConfig.head_dim={self.dim_head} must be even for rotary embeddings")
        if self.sliding_layers and not self.sliding_window:
            raise ConfigError("ModelConfig.sliding_layers needs a sliding_window")
        if any(not 0 <= i < self.n_layers for i in self.sliding_layers):
            raise ConfigError(f"ModelConfig.sliding_layers {self.sliding_layers} must be layer indices below {self.n_layers}")
        if self.ce_chunk_size < 0:
            raise ConfigError(f"ModelConfig.ce_chunk_size must be 0 (off) or positive, got {self.ce_chunk_size}")
        for name in ("attn_dropout", "resid_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"ModelConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("rope_theta", "norm_eps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"ModelConfig.{name} must be positive, got {getattr(self, name)}")
        if self.init_std is not None and self.init_std <= 0:
            raise ConfigError(f"ModelConfig.init_std must be positive, got {self.init_std}")
        if self.rope_scaling is not None:
            kind = self.rope_scaling.get("rope_type")
            need = {"llama3": {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"},
                    "linear": {"factor"}}
            if kind not in need or not need[kind] <= set(self.rope_scaling):
                raise ConfigError(
                    f"ModelConfig.rope_scaling supports rope_type 'llama3' with keys {sorted(need['llama3'])} "
                    f"and 'linear' with a factor, got {self.rope_scaling}"
                )
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            ids = getattr(self, name)
            for tok in ids if isinstance(ids, list) else [] if ids is None else [ids]:
                if not 0 <= tok < self.vocab_size:
                    raise ConfigError(f"ModelConfig.{name}={ids} is outside the vocabulary [0, {self.vocab_size})")

    @property
    def dim_head(self) -> int:
        return self.head_dim if self.head_dim is not None else self.d_model // self.n_heads

    @property
    def std(self) -> float:
        """Base init std: N(0, sqrt(2 / (5 d))) (report §2.3), about 0.014 at d = 2048."""
        return self.init_std if self.init_std is not None else math.sqrt(2.0 / (5.0 * self.d_model))

    # Named presets. The report's model plus a ladder for CPU work and scaling studies
    # (totals include the untied 32k-vocab embedding and head, which dominate small models).
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "ncvc-slm-1b": {},
        "slm-350m": dict(d_model=1024, n_layers=26, n_heads=16, n_kv_heads=4, d_mlp=4096),
        "slm-125m": dict(d_model=768, n_layers=12, n_heads=12, n_kv_heads=4, d_mlp=3072),
        "slm-25m": dict(d_model=256, n_layers=10, n_heads=4, n_kv_heads=2, d_mlp=1024),
        "tiny": dict(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_mlp=256, max_seq_len=256),
    }

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> ModelConfig:
        if name not in cls.PRESETS:
            raise ConfigError(f"unknown model preset {name!r}; presets: {sorted(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[name], **overrides})

    @classmethod
    def resolve(cls, name_or_path: str | Path) -> ModelConfig:
        """A preset name, or a path to a YAML/JSON config file."""
        if str(name_or_path) in cls.PRESETS:
            return cls.from_preset(str(name_or_path))
        path = Path(name_or_path)
        if not path.exists():
            raise ConfigError(f"{name_or_path!r} is neither a model preset {sorted(cls.PRESETS)} nor a file")
        return cls.load(path)
