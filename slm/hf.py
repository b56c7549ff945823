"""Hugging Face interop: export SLM to transformers folders, import Llama, Gemma and Qwen2 ones.

The report's architecture is a Llama-style decoder with a plain (non-gated)
SiLU MLP and a sqrt(d_model)-scaled embedding. transformers has it as
`ArceeForCausalLM` (non-gated MLP with a configurable activation); the gated
option is `LlamaForCausalLM`. The embedding scale has no transformers
equivalent, so export folds it into the embedding matrix (exactly the product
the model computes at run time). Residual dropout has none either: it only acts
in training, so inference is identical.

Import reads local folders only (config.json + safetensors, sharded or not):
Llama, Mistral and Arcee model types, including Llama-3 rope scaling and tied
embeddings; Gemma (GELU-tanh gated MLP, RMSNorm with (1 + weight), scaled and
tied embeddings), Gemma 3 text models (also q/k norms, sandwich norms, a softmax
scale, sliding-window layers with their own RoPE base) and Qwen2 (q/k/v biases)
through the model's config switches. That is how clinical continued-pretraining
work starts from an open model. Export writes the matching architecture back.
Nothing is downloaded. Gemma 2's logit soft-capping is not supported and says so.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file

from slm.checkpoint import CONFIG_NAME, atomic_write, read_safetensors
from slm.config import ConfigError, ModelConfig
from slm.model import SLM

# Our activation names <-> transformers' ACT2FN names.
_ACT_TO_HF = {"silu": "silu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu2": "relu2"}
_ACT_FROM_HF = {**{v: k for k, v in _ACT_TO_HF.items()}, "swish": "silu"}
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "arcee", "gemma", "gemma3_text", "qwen2")

# Our parameter names <-> transformers' (Llama layout); {} is the layer index and the
# rest of each name (q_proj.weight, ...) is shared.
_NAMES = [
    ("embed.", "model.embed_tokens."),
    ("norm.", "model.norm."),
    ("layers.{}.attn_norm.", "model.layers.{}.input_layernorm."),
    ("layers.{}.mlp_norm.", "model.layers.{}.post_attention_layernorm."),
    ("layers.{}.attn.", "model.layers.{}.self_attn."),
    ("layers.{}.mlp.", "model.layers.{}.mlp."),
]


# Gemma 3 names its four norms per layer differently: its post_attention_layernorm is the norm of
# the attention output (the sandwich), and pre_feedforward_layernorm is Llama's post_attention one.
_SANDWICH_NAMES = [
    ("embed.", "model.embed_tokens."),
    ("norm.", "model.norm."),
    ("layers.{}.attn_norm.", "model.layers.{}.input_layernorm."),
    ("layers.{}.post_attn_norm.", "model.layers.{}.post_attention_layernorm."),
    ("layers.{}.mlp_norm.", "model.layers.{}.pre_feedforward_layernorm."),
    ("layers.{}.post_mlp_norm.", "model.layers.{}.post_feedforward_layernorm."),
    ("layers.{}.attn.", "model.layers.{}.self_attn."),
    ("layers.{}.mlp.", "model.layers.{}.mlp."),
]


def _rename(name: str, to_hf: bool, sandwich: bool = False) -> str:
    for ours, theirs in _SANDWICH_NAMES if sandwich else _NAMES:
        src, dst = (ours, theirs) if to_hf else (theirs, ours)
        m = re.match(re.escape(src).replace(r"\{\}", r"(\d+)"), name)
        if m:
            return dst.format(*m.groups()) + name[m.end() :]
    return name


def _architecture(config: ModelConfig) -> tuple[str, str]:
    """The transformers architecture that computes what this config computes."""
    if config.sandwich_norm or config.qk_norm or config.sliding_layers:
        if not (config.sandwich_norm and config.qk_norm and config.norm_unit_offset and config.mlp_gated
                and config.mlp_act == "gelu_tanh" and config.scale_embeddings and not config.qkv_bias):
            raise ConfigError("sandwich norms, q/k norms or sliding layers export as Gemma 3, which needs all of "
                              "them with (1 + weight) norms, a gated gelu_tanh MLP and scaled embeddings")
        return "Gemma3ForCausalLM", "gemma3_text"
    if config.norm_unit_offset:
        if not (config.mlp_gated and config.mlp_act == "gelu_tanh" and config.scale_embeddings and not config.qkv_bias):
            raise ConfigError("(1 + weight) norms export as Gemma, which needs a gated gelu_tanh MLP, scaled embeddings "
                              "and no biases")
        return "GemmaForCausalLM", "gemma"
    if config.qkv_bias:
        if not (config.mlp_gated and config.mlp_act == "silu" and not config.scale_embeddings):
            raise ConfigError("q/k/v biases export as Qwen2, which needs a gated silu MLP and unscaled embeddings")
        return "Qwen2ForCausalLM", "qwen2"
    if config.mlp_gated:
        if config.mlp_act != "silu":
            raise ConfigError(f"a gated MLP exports as Llama (SwiGLU), which needs mlp_act='silu', not {config.mlp_act!r}")
        return "LlamaForCausalLM", "llama"
    return "ArceeForCausalLM", "arcee"


def hf_config(config: ModelConfig, dtype: torch.dtype) -> dict:
    """The transformers config.json for an SLM config: Arcee (plain MLP, the report's model), Llama
    (gated SiLU), Gemma ((1 + weight) norms) or Qwen2 (q/k/v biases)."""
    arch, model_type = _architecture(config)
    rope = {"rope_type": "default", "rope_theta": config.rope_theta}
    if config.rope_scaling is not None:
        rope = {**config.rope_scaling, "rope_theta": config.rope_theta}
    return {
        "architectures": [arch],
        "model_type": model_type,
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "intermediate_size": config.d_mlp,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.dim_head,
        "hidden_act": _ACT_TO_HF[config.mlp_act],
        "hidden_activation": _ACT_TO_HF[config.mlp_act],  # Gemma's name for it
        "max_position_embeddings": config.max_seq_len,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "rope_parameters": rope,
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": config.attn_dropout,
        **(_gemma3_fields(config) if model_type == "gemma3_text" else {}),
        "initializer_range": config.std,
        # A scaled embedding cannot be shared with the head once the scale is folded in (Gemma scales itself).
        "tie_word_embeddings": config.tie_embeddings and (model_type.startswith("gemma") or not config.scale_embeddings),
        "use_sliding_window": False,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "pad_token_id": config.pad_token_id,
        "dtype": str(dtype).removeprefix("torch."),
        "use_cache": True,
    }


def _gemma3_fields(config: ModelConfig) -> dict:
    """Gemma 3's per-layer attention: which layers slide, their window and RoPE bases, the softmax scale."""
    scalar = (config.attn_scale or config.dim_head**-0.5) ** -2  # transformers stores it as an integer
    if abs(scalar - round(scalar)) > 1e-6 * scalar:
        raise ConfigError(f"attn_scale={config.attn_scale} is not 1/sqrt of an integer: Gemma 3 cannot express it")
    global_rope = {**(config.rope_scaling or {"rope_type": "default"}), "rope_theta": config.rope_theta}
    local_rope = {"rope_type": "default", "rope_theta": config.rope_local_theta or config.rope_theta}
    return {"layer_types": ["sliding_attention" if i in config.sliding_layers else "full_attention"
                            for i in range(config.n_layers)],
            "sliding_window": config.sliding_window,
            "query_pre_attn_scalar": round(scalar),
            "rope_parameters": {"full_attention": global_rope, "sliding_attention": local_rope},
            "final_logit_softcapping": None, "attn_logit_softcapping": None}


def export_embedding_scale(config: ModelConfig) -> float:
    """What export multiplies the embedding by: sqrt(d_model) for a model that scales its embedding
    exported as an architecture that does not (Gemma scales its embedding itself), else 1."""
    if config.scale_embeddings and not _architecture(config)[1].startswith("gemma"):
        return math.sqrt(config.d_model)
    return 1.0


def export(model: SLM, directory: str | Path, dtype: torch.dtype | None = None, *,
           max_shard_size: int | None = None) -> None:
    """Write `directory` so that `transformers.AutoModelForCausalLM.from_pretrained(directory)` loads it:
    config.json and the weights, in shards of at most `max_shard_size` bytes with an index when
    they are larger (transformers' layout), else one model.safetensors."""
    config = model.config
    tensors = model.state_tensors()
    if dtype is not None:
        tensors = {k: v.to(dtype) for k, v in tensors.items()}
    out_dtype = tensors["embed.weight"].dtype
    scale = export_embedding_scale(config)
    if scale != 1.0:
        if config.tie_embeddings:
            tensors["lm_head.weight"] = tensors["embed.weight"]
        # The same multiplication the forward pass does, so logits stay bit-identical.
        tensors["embed.weight"] = tensors["embed.weight"] * scale
    hf_tensors = {_rename(k, to_hf=True, sandwich=config.sandwich_norm): v.contiguous() for k, v in tensors.items()}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_weights(hf_tensors, directory, max_shard_size)
    text = json.dumps(hf_config(config, out_dtype), indent=2) + "\n"
    atomic_write(directory / "config.json", lambda p: p.write_text(text, encoding="utf-8"))


def write_weights(tensors: dict[str, torch.Tensor], directory: Path, max_shard_size: int | None = None,
                  stem: str = "model") -> None:
    """`<stem>.safetensors`, or `<stem>-00001-of-0000N.safetensors` shards of at most `max_shard_size`
    bytes (a tensor larger than that gets a shard of its own) and `<stem>.safetensors.index.json`."""
    size = {name: t.numel() * t.element_size() for name, t in tensors.items()}
    shards: list[dict[str, torch.Tensor]] = [{}]
    for name, t in tensors.items():
        if max_shard_size and shards[-1] and sum(size[n] for n in shards[-1]) + size[name] > max_shard_size:
            shards.append({})
        shards[-1][name] = t
    if len(shards) == 1:
        atomic_write(directory / f"{stem}.safetensors", lambda p: save_file(tensors, p, metadata={"format": "pt"}))
        return
    weight_map = {}
    for n, shard in enumerate(shards, start=1):
        file = f"{stem}-{n:05d}-of-{len(shards):05d}.safetensors"
        atomic_write(directory / file, lambda p, shard=shard: save_file(shard, p, metadata={"format": "pt"}))
        weight_map.update(dict.fromkeys(shard, file))
    index = {"metadata": {"total_size": sum(size.values())}, "weight_map": weight_map}
    text = json.dumps(index, indent=2) + "\n"
    atomic_write(directory / f"{stem}.safetensors.index.json", lambda p: p.write_text(text, encoding="utf-8"))


def _read_safetensors(directory: Path) -> dict[str, torch.Tensor]:
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (directory / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise FileNotFoundError(f"{directory}: no model.safetensors or model.safetensors.index.json")
    tensors = {}
    for f in files:
        tensors.update(read_safetensors(directory / f))
    return tensors


def config_from_hf(hf: dict, source: str = "config.json", **overrides) -> ModelConfig:
    """Translate a transformers Llama/Mistral/Arcee/Gemma/Qwen2 config dict into a ModelConfig."""
    model_type = hf.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(f"{source}: model_type {model_type!r} is not supported; supported: {list(SUPPORTED_MODEL_TYPES)}")
    for key in ("attention_bias", "mlp_bias"):
        if hf.get(key):
            raise ConfigError(f"{source}: {key}=true, but SLM has biases on q/k/v only (Qwen2)")
    gemma3 = model_type == "gemma3_text"
    gemma, qwen2 = model_type == "gemma" or gemma3, model_type == "qwen2"
    act = (hf.get("hidden_activation") if gemma else None) or hf.get("hidden_act", "silu")
    if gemma3:
        for key in ("attn_logit_softcapping", "final_logit_softcapping"):
            if hf.get(key) is not None:
                raise ConfigError(f"{source}: {key}={hf[key]} (logit soft-capping, Gemma 2) is not supported")
        if hf.get("use_bidirectional_attention"):
            raise ConfigError(f"{source}: use_bidirectional_attention (an encoder) is not supported")
    if act not in _ACT_FROM_HF:
        raise ConfigError(f"{source}: hidden_act {act!r} is not supported; supported: {sorted(_ACT_FROM_HF)}")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    local_rope = None
    if gemma3:  # a RoPE per layer type: the global layers' is the model's, the sliding layers' apart
        if "full_attention" in rope:  # transformers 5 writes one entry per layer type
            local_rope, rope = rope.get("sliding_attention") or {}, rope["full_attention"]
        else:  # as Google published the configs: rope_theta (+ rope_scaling) and rope_local_base_freq
            local_rope = {"rope_theta": hf.get("rope_local_base_freq", 10000.0)}
            rope = {**(hf.get("rope_scaling") or {}), "rope_theta": hf.get("rope_theta", 1000000.0)}
        if local_rope.get("rope_type", "default") != "default":
            raise ConfigError(f"{source}: sliding layers' rope type {local_rope['rope_type']!r} is not supported")
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", "llama3", "linear"):
        raise ConfigError(f"{source}: rope type {rope_type!r} is not supported; supported: default, llama3, linear")
    max_len = hf.get("max_position_embeddings", 2048)
    window = hf.get("sliding_window") if not qwen2 or hf.get("use_sliding_window") else None
    layer_types = hf.get("layer_types")
    if gemma3 and not layer_types:  # published configs give a pattern: every n-th layer is global (as transformers reads it)
        pattern = hf.get("sliding_window_pattern", 6)
        layer_types = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(hf["num_hidden_layers"])]
    sliding_layers = [i for i, t in enumerate(layer_types or []) if t == "sliding_attention"] if gemma3 else []
    if not gemma3 and window is not None and window < max_len:
        # Within one window, sliding-window attention is ordinary causal attention.
        warnings.warn(f"{source}: sliding_window={window} < max_position_embeddings={max_len}; max_seq_len set to {window}",
                      stacklevel=2)
        max_len = window
    d, h = hf["hidden_size"], hf["num_attention_heads"]
    head_dim = hf.get("head_dim")
    fields = dict(
        vocab_size=hf["vocab_size"],
        max_seq_len=max_len,
        d_model=d,
        n_layers=hf["num_hidden_layers"],
        n_heads=h,
        n_kv_heads=hf.get("num_key_value_heads") or h,
        head_dim=head_dim if head_dim not in (None, d // h) else None,
        d_mlp=hf["intermediate_size"],
        mlp_act=_ACT_FROM_HF[act],
        mlp_gated=model_type != "arcee",
        rope_theta=rope.get("rope_theta", hf.get("rope_theta", 10000.0)),
        rope_scaling={**{k: v for k, v in rope.items() if k not in ("rope_theta", "type")}, "rope_type": rope_type}
        if rope_type != "default" else None,
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        attn_dropout=hf.get("attention_dropout", 0.0),
        resid_dropout=0.0,  # transformers' Llama family has none
        scale_embeddings=gemma,  # Gemma multiplies its embedding by sqrt(hidden_size)
        norm_unit_offset=gemma,
        qkv_bias=qwen2,
        qk_norm=gemma3,
        sandwich_norm=gemma3,
        attn_scale=hf["query_pre_attn_scalar"] ** -0.5 if gemma3 else None,
        sliding_window=window if sliding_layers else None,
        sliding_layers=sliding_layers,
        rope_local_theta=local_rope["rope_theta"] if local_rope else None,
        tie_embeddings=hf.get("tie_word_embeddings", gemma),
        bos_token_id=hf.get("bos_token_id"),
        eos_token_id=hf.get("eos_token_id"),
        pad_token_id=hf.get("pad_token_id"),
    )
    return ModelConfig.from_dict({**fields, **overrides}, source=source)


def load(directory: str | Path, device=None, dtype=None, **overrides) -> SLM:
    """Import a local transformers folder (Llama, Mistral, Arcee, Gemma, Qwen2) as an SLM.

    `overrides` change ModelConfig fields of the result, e.g. `resid_dropout=0.1`
    to continue pretraining with the report's dropout.
    """
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory} is not a transformers model folder: config.json is missing")
    config = config_from_hf(json.loads(config_path.read_text(encoding="utf-8")), str(config_path), **overrides)
    tensors = {}
    for name, t in _read_safetensors(directory).items():
        if name.endswith("rotary_emb.inv_freq"):
            continue  # a buffer some older checkpoints saved; recomputed from the config
        if name == "lm_head.weight" and config.tie_embeddings:
            continue  # some tied checkpoints still store the head; the embedding is used
        tensors[_rename(name, to_hf=False, sandwich=config.sandwich_norm)] = t
    return SLM.from_tensors(config, tensors, str(directory), device=device, dtype=dtype)


def load_model_folder(directory: str | Path, device=None, dtype=None, **overrides) -> SLM:
    """Ours (config.json with d_model) or a transformers Llama/Mistral/Arcee/Gemma/Qwen2 folder
    (config.json with model_type), as an SLM; `overrides` change config fields (e.g. dropout)."""
    directory = Path(directory)
    if "model_type" in json.loads((directory / CONFIG_NAME).read_text(encoding="utf-8")):
        return load(directory, device=device, dtype=dtype, **overrides)
    model = SLM.from_pretrained(directory, device=device, dtype=dtype)
    if overrides:  # the same weights under a changed config (dropout, attention backend, ...)
        changed = SLM(model.config.replace(**overrides)).to(device=device, dtype=next(model.parameters()).dtype)
        changed.load_state_dict(model.state_dict())
        model = changed
    return model
