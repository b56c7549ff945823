"""The slm decoder (report §2.3), readable top to bottom.

Pre-norm transformer: token embedding (scaled by sqrt(d_model)) -> n_layers x
[RMSNorm -> grouped-query attention with RoPE -> dropout -> residual add,
 RMSNorm -> MLP -> dropout -> residual add] -> RMSNorm -> untied LM head.
No biases. Every weight's initialisation lives in `SLM.init_weights`.

Other open model families are config switches on the same code, for import (slm.hf):
Llama/Mistral (gated SiLU MLP, no embedding scale), Gemma (gated GELU-tanh MLP, RMSNorm
with (1 + weight), scaled and tied embeddings), Gemma 3 (also q/k norms, sandwich norms,
a softmax scale, sliding-window layers with their own RoPE base), Qwen2 (q/k/v biases).

The model holds no parallelism and no data logic: DDP, DeepSpeed, torch.compile
and activation checkpointing wrap it from outside (slm.train). Its entry points
`from_pretrained`, `save_pretrained` and `generate` call slm.checkpoint (the folder's
files) and slm.generate, which never import this module back.

Conventions (the same as Hugging Face transformers, so users moving between
the two are not surprised):
- `labels` are aligned with `input_ids`; the model shifts them, so position t
  is scored on predicting labels[t + 1]. -100 marks positions without loss.
- `attention_mask` is the padding mask, 1 for real tokens and 0 for padding,
  and covers the cached tokens plus the new ones when a KV cache is used.
- RoPE rotates the two halves of each head (`rotate_half`), so Llama-family
  weights copy over without permutation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

from slm.checkpoint import WEIGHTS_NAME, CheckpointError, read_model_folder, write_model_folder
from slm.config import ModelConfig
from slm.generate import generate


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 and cast back before the weight.

    unit_offset (Gemma): the scale is (1 + weight), the weight starting at 0, multiplied in
    float32 before the cast, as Gemma computes it (so imported weights give Gemma's logits)."""

    def __init__(self, dim: int, eps: float, unit_offset: bool = False):
        super().__init__()
        self.eps = eps
        self.unit_offset = unit_offset
        self.weight = nn.Parameter(torch.zeros(dim) if unit_offset else torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        if self.unit_offset:
            return (normed * (1.0 + self.weight.float())).to(x.dtype)
        return self.weight * normed.to(x.dtype)


# ---------------------------------------------------------------- rotary embedding


def rope_inv_freq(config: ModelConfig, device: torch.device | None = None, local: bool = False) -> torch.Tensor:
    """Inverse frequencies theta^(-2i/d); with Llama-3 scaling when the config asks for it.
    `local`: the sliding layers' own base (Gemma 3's rope_local_theta), unscaled.

    Computed on the fly rather than stored as a buffer, so `model.to(bfloat16)`
    can never round them.
    """
    hd = config.dim_head
    theta = config.rope_local_theta if local else config.rope_theta
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float, device=device) / hd))
    rs = config.rope_scaling
    if rs is None or local:
        return inv_freq
    if rs["rope_type"] == "linear":  # position interpolation: positions divided by the factor
        return inv_freq / rs["factor"]
    # Llama 3.1: keep high frequencies, divide low ones by `factor`, blend in between.
    factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old_len = rs["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_len / lo, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - lo) / (hi - lo)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = (wavelen >= old_len / hi) & (wavelen <= old_len / lo)
    return torch.where(is_medium, blended, scaled)


def rope_cos_sin(config: ModelConfig, position_ids: torch.Tensor, dtype: torch.dtype, local: bool = False):
    """cos and sin of shape (B, 1, T, head_dim) for the given positions, computed in float32."""
    inv_freq = rope_inv_freq(config, position_ids.device, local)
    freqs = position_ids[..., None].float() * inv_freq  # (B, T, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]  # (B, 1, T, hd)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


# ---------------------------------------------------------------- KV cache


class KVCache:
    """Preallocated keys and values for incremental decoding.

    Shape per layer (B, n_kv_heads, max_len, head_dim). `pos` counts the
    positions already written; every row shares it (prompts of different
    lengths are left-padded and the padding is masked).
    """

    def __init__(self, config: ModelConfig, batch_size: int, max_len: int, device=None, dtype=None):
        shape = (config.n_layers, batch_size, config.n_kv_heads, max_len, config.dim_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new keys/values at `pos` and return all keys/values so far."""
        end = self.pos + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache of length {self.max_len} cannot hold {end} positions")
        self.k[layer, :, :, self.pos : end] = k
        self.v[layer, :, :, self.pos : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, n: int) -> None:
        self.pos += n


# ---------------------------------------------------------------- attention


_flash_attn_module = None


def _flash_attn():
    """The flash_attn package (flash-attn 2), imported on first use on CUDA only (an optional extra)."""
    global _flash_attn_module
    if _flash_attn_module is None:
        try:
            import flash_attn  # optional extra: flash-attn, CUDA only
        except ImportError:
            flash_attn = False
        _flash_attn_module = flash_attn
    return _flash_attn_module or None


@dataclass
class Packed:
    """Documents packed in rows as variable-length sequences, for flash-attn's varlen kernel:
    cumulative start offsets over the flattened (B * T) tokens, and the longest document."""

    cu_seqlens: torch.Tensor
    max_len: int

    @classmethod
    def from_doc_ids(cls, doc_ids: torch.Tensor) -> Packed:
        B, T = doc_ids.shape
        starts = torch.ones_like(doc_ids, dtype=torch.bool)
        starts[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]  # every row starts a document
        offsets = starts.flatten().nonzero().flatten()
        cu = torch.cat([offsets, offsets.new_tensor([B * T])]).to(torch.int32)
        return cls(cu, int((cu[1:] - cu[:-1]).max()))


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.config = config
        self.layer = layer
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.dim_head
        d = config.d_model
        # q/k/v biases only for imported Qwen2-family models; the report's model has none
        self.q_proj = nn.Linear(d, self.n_heads * self.head_dim, bias=config.qkv_bias)
        self.k_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=config.qkv_bias)
        self.v_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=config.qkv_bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, d, bias=False)
        # Gemma 3: each head's q and k are normalised before RoPE
        self.q_norm = RMSNorm(self.head_dim, config.norm_eps, config.norm_unit_offset) if config.qk_norm else None
        self.k_norm = RMSNorm(self.head_dim, config.norm_eps, config.norm_unit_offset) if config.qk_norm else None
        self.scale = config.attn_scale if config.attn_scale is not None else self.head_dim**-0.5

    def queries_keys(self, x, cos, sin) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, heads, T, head_dim) queries and (B, kv_heads, T, head_dim) keys, normalised and rotated."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin)

    def forward(self, x, cos, sin, mask, is_causal, kv_cache: KVCache | None, packed: Packed | None = None):
        B, T, _ = x.shape
        q, k = self.queries_keys(x, cos, sin)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer, k, v)
        dropout = self.config.attn_dropout if self.training else 0.0

        flash = self._flash(q, mask, packed)
        if flash is not None and packed is not None:  # document-masked packing: one varlen call, no mask
            y = flash.flash_attn_varlen_func(*(t.transpose(1, 2).reshape(B * T, -1, self.head_dim) for t in (q, k, v)),
                                             packed.cu_seqlens, packed.cu_seqlens, packed.max_len, packed.max_len,
                                             dropout_p=dropout, softmax_scale=self.scale, causal=True)
            return self.o_proj(y.reshape(B, T, -1))
        if flash is not None:  # flash-attn takes (B, T, H, D) and handles GQA itself
            y = flash.flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), dropout_p=dropout,
                                      softmax_scale=self.scale, causal=is_causal)
            return self.o_proj(y.reshape(B, T, -1))
        if isinstance(mask, BlockMask):  # flex_attention: document masking without a dense (T, T) mask
            if dropout:
                raise RuntimeError("attn_backend='flex' has no attention dropout: set attn_dropout to 0 or use 'sdpa'")
            y = flex_attention(q, k, v, block_mask=mask, scale=self.scale, enable_gqa=True)
        elif mask is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=is_causal, scale=self.scale,
                                               enable_gqa=True)
        else:
            # With a mask, SDPA's GQA path falls back to the slow math kernel on CUDA,
            # so the KV heads are expanded to match the query heads instead.
            rep = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=self.scale)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))

    def _flash(self, q: torch.Tensor, mask, packed: Packed | None):
        """flash-attn where it applies (CUDA, bf16/fp16; plain causal, one-token decode, or packed
        documents as varlen sequences); else None."""
        backend = self.config.attn_backend
        if backend in ("sdpa", "flex"):
            return None
        flash = _flash_attn() if q.is_cuda else None
        if backend == "flash" and flash is None:
            raise RuntimeError("attn_backend='flash' needs CUDA and flash-attn (pip install -e '.[flash]')")
        if q.dtype not in (torch.float16, torch.bfloat16) or (mask is not None and packed is None):
            return None
        return flash


# ---------------------------------------------------------------- MLP and block


_ACTIVATIONS = {
    "silu": F.silu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu2": lambda x: F.relu(x).square(),
}


class MLP(nn.Module):
    """down(act(up(x))) as in the report; down(act(gate(x)) * up(x)) when gated (SwiGLU)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.act = _ACTIVATIONS[config.mlp_act]
        self.gate_proj = nn.Linear(config.d_model, config.d_mlp, bias=False) if config.mlp_gated else None
        self.up_proj = nn.Linear(config.d_model, config.d_mlp, bias=False)
        self.down_proj = nn.Linear(config.d_mlp, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_proj is None:
            return self.down_proj(self.act(self.up_proj(x)))
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model, config.norm_eps, config.norm_unit_offset)
        self.attn = Attention(config, layer)
        self.mlp_norm = RMSNorm(config.d_model, config.norm_eps, config.norm_unit_offset)
        self.mlp = MLP(config)
        self.dropout = nn.Dropout(config.resid_dropout)
        # Gemma 3's sandwich: the attention and MLP outputs are normalised too, before the residual add
        sandwich = lambda: RMSNorm(config.d_model, config.norm_eps, config.norm_unit_offset) if config.sandwich_norm else nn.Identity()  # noqa: E731
        self.post_attn_norm, self.post_mlp_norm = sandwich(), sandwich()

    def forward(self, x, cos, sin, mask, is_causal, kv_cache, packed=None):
        x = x + self.dropout(self.post_attn_norm(self.attn(self.attn_norm(x), cos, sin, mask, is_causal, kv_cache, packed)))
        return x + self.dropout(self.post_mlp_norm(self.mlp(self.mlp_norm(x))))


# ---------------------------------------------------------------- the model


@dataclass
class ModelOutput:
    logits: torch.Tensor | None  # None when the loss was computed in chunks (ce_chunk_size)
    loss: torch.Tensor | None = None


def _cross_entropy_sum(hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(F.linear(hidden, weight).float(), target, ignore_index=-100, reduction="sum")


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk: int) -> torch.Tensor:
    """The mean next-token loss, `chunk` positions at a time: each chunk's logits are made, reduced to
    a loss sum and dropped, and the backward pass makes them again (checkpointing), so the
    (B, T, vocab) logits, their float32 copy and their gradient never exist whole: at 32k vocabulary
    and 8 x 2048 tokens that is about 5 GB less at the peak. Same value as the plain loss."""
    target = F.pad(labels[:, 1:], (0, 1), value=-100).reshape(-1)
    flat = hidden.reshape(-1, hidden.shape[-1])
    total = sum(checkpoint(_cross_entropy_sum, h, weight, t, use_reentrant=False)
                for h, t in zip(flat.split(chunk), target.split(chunk)))
    return total / (target != -100).sum().clamp(min=1)


def _document_block_mask(doc_ids: torch.Tensor) -> BlockMask:
    """Causal attention within each packed document, as flex_attention's block-sparse mask."""
    B, T = doc_ids.shape

    def same_document_causal(b, h, q, k):
        return (k <= q) & (doc_ids[b, q] == doc_ids[b, k])

    return create_block_mask(same_document_causal, B, None, T, T, device=doc_ids.device)


def doc_position_ids(doc_ids: torch.Tensor) -> torch.Tensor:
    """Positions that restart at 0 wherever doc_ids changes along a packed row."""
    T = doc_ids.shape[-1]
    idx = torch.arange(T, device=doc_ids.device).expand_as(doc_ids)
    starts = torch.ones_like(doc_ids, dtype=torch.bool)
    starts[..., 1:] = doc_ids[..., 1:] != doc_ids[..., :-1]
    return idx - torch.where(starts, idx, 0).cummax(dim=-1).values


class SLM(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.norm = RMSNorm(config.d_model, config.norm_eps, config.norm_unit_offset)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Every weight's initialisation, in one place (report §2.3).

        - embedding and the q/k/v, MLP up/gate projections: N(0, sigma), sigma = sqrt(2 / (5 d))
          (about 0.014 at d = 2048; `config.init_std` overrides it);
        - the attention output and MLP down projections, which write into the
          residual stream: N(0, sigma / sqrt(2 n_layers)), so the residual's
          variance does not grow with depth;
        - the untied LM head: Xavier normal, std = sqrt(2 / (d + vocab));
        - RMSNorm weights: 1 (0 with Gemma's unit offset: the same scale of 1);
        - biases (imported Qwen2 models only): 0.
        """
        sigma = self.config.std
        out_sigma = sigma / math.sqrt(2 * self.config.n_layers)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.zeros_(p) if self.config.norm_unit_offset else nn.init.ones_(p)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)
            elif name == "lm_head.weight":
                nn.init.xavier_normal_(p)
            elif name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, 0.0, out_sigma)
            else:
                nn.init.normal_(p, 0.0, sigma)

    def num_params(self, embeddings: bool = True) -> int:
        """Parameter count; `embeddings=False` leaves out the token embedding (a lookup, not a matmul)."""
        n = sum(p.numel() for p in self.parameters())
        if not embeddings and not self.config.tie_embeddings:
            n -= self.embed.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward = 3 x forward), for MFU.

        PaLM's convention (Chowdhery et al. 2022, appendix B): 6 N for the
        matmul weights (everything but the embedding lookup, LM head included)
        plus 12 * n_layers * n_heads * head_dim * seq_len for attention scores
        and values, counted over the full sequence (no discount for causality).
        """
        c = self.config
        T = seq_len or c.max_seq_len
        return 6 * self.num_params(embeddings=False) + 12 * c.n_layers * c.n_heads * c.dim_head * T

    def _mask(self, B, T, offset, attention_mask, doc_ids, device, window: int | None = None):
        """The boolean attention mask (B, 1, T, S), or None with a flag for plain causal attention;
        `window`: keys at most window - 1 positions back (sliding-window layers)."""
        S = offset + T
        if window is not None and S <= window:
            window = None  # the window reaches the first token: ordinary causal attention
        if attention_mask is None and doc_ids is None and window is None:
            if offset == 0:
                return None, True  # plain causal: SDPA's is_causal, the fast path
            if T == 1:
                return None, False  # one new token attends to everything cached
        q_pos = torch.arange(offset, S, device=device)
        k_pos = torch.arange(S, device=device)
        mask = (k_pos[None, :] <= q_pos[:, None]).expand(B, 1, T, S)
        if attention_mask is not None:
            if attention_mask.shape != (B, S):
                raise ValueError(f"attention_mask must have shape {(B, S)} (cached + new tokens), got {tuple(attention_mask.shape)}")
            # Padding keys are hidden; a token may always see itself so padding rows stay finite.
            mask = mask & (attention_mask[:, None, None, :].bool() | (k_pos[None, :] == q_pos[:, None]))
        if doc_ids is not None:
            mask = mask & (doc_ids[:, None, :, None] == doc_ids[:, None, None, :])
        if window is not None:
            mask = mask & (k_pos[None, :] > q_pos[:, None] - window)
        return mask, False

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        doc_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        logits_to_keep: int = 0,
    ) -> ModelOutput:
        """Logits (B, T, vocab) and, with labels, the mean next-token cross-entropy.

        - doc_ids (B, T): opt-in document masking for packed rows (our addition; the
          report packs plainly). Tokens attend only within their document, and
          unless position_ids are given, positions restart at each document.
        - attention_mask (B, cached + T): padding mask; positions then count real tokens only.
        - kv_cache: keys/values are appended to it; the caller advances it.
        - logits_to_keep: if > 0, compute logits for the last n positions only (generation
          needs one; the LM head over a whole prompt is wasted work). Not with labels.
        """
        B, T = input_ids.shape
        offset = kv_cache.pos if kv_cache is not None else 0
        if doc_ids is not None and kv_cache is not None:
            raise ValueError("doc_ids (document masking) is for training on packed rows, not with a KV cache")
        if offset + T > self.config.max_seq_len:
            raise ValueError(f"sequence of {offset + T} tokens exceeds max_seq_len={self.config.max_seq_len}")
        if position_ids is None:
            if doc_ids is not None:
                position_ids = doc_position_ids(doc_ids)
            elif attention_mask is not None:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, offset:]
            else:
                position_ids = torch.arange(offset, offset + T, device=input_ids.device).expand(B, T)

        x = self.embed(input_ids)
        if self.config.scale_embeddings:
            x = x * math.sqrt(self.config.d_model)
        rope = rope_cos_sin(self.config, position_ids, x.dtype)
        if self.config.attn_backend == "flex" and doc_ids is not None and attention_mask is None:
            mask, is_causal = _document_block_mask(doc_ids), False
        else:
            mask, is_causal = self._mask(B, T, offset, attention_mask, doc_ids, input_ids.device)
        packed = None
        if doc_ids is not None and attention_mask is None and input_ids.is_cuda and self.config.attn_backend in (
                "auto", "flash") and _flash_attn() is not None:
            packed = Packed.from_doc_ids(doc_ids)  # flash-attn varlen: each document its own sequence
        sliding = set(self.config.sliding_layers)
        if sliding:  # Gemma 3: local layers see a window, with their own RoPE base
            local_mask = self._mask(B, T, offset, attention_mask, doc_ids, input_ids.device, self.config.sliding_window)
            local_rope = rope_cos_sin(self.config, position_ids, x.dtype, local=True) if self.config.rope_local_theta else rope
        for i, block in enumerate(self.layers):
            if i in sliding:
                x = block(x, *local_rope, *local_mask, kv_cache)
            else:
                x = block(x, *rope, mask, is_causal, kv_cache, packed)
        if labels is not None and self.config.ce_chunk_size:
            if logits_to_keep > 0:
                raise ValueError("logits_to_keep cannot be combined with labels (the loss needs every position)")
            return ModelOutput(logits=None, loss=chunked_cross_entropy(self.norm(x), self.lm_head.weight, labels,
                                                                       self.config.ce_chunk_size))
        if logits_to_keep > 0:
            if labels is not None:
                raise ValueError("logits_to_keep cannot be combined with labels (the loss needs every position)")
            x = x[:, -logits_to_keep:]
        logits = self.lm_head(self.norm(x))

        loss = None
        if labels is not None:
            # Shift the labels rather than slicing the logits: the (B, T, vocab) logits stay one
            # contiguous block, with no copy in the forward and no zero-filled slice gradient.
            target = F.pad(labels[:, 1:], (0, 1), value=-100).reshape(-1)
            total = F.cross_entropy(logits.view(-1, logits.shape[-1]).float(), target, ignore_index=-100, reduction="sum")
            # Sum over scored positions / their count; 0 (with a gradient) when none are scored.
            loss = total / (target != -100).sum().clamp(min=1)
        return ModelOutput(logits=logits, loss=loss)

    # Persistence and generation live in their own modules (slm.checkpoint, slm.generate), which
    # never import this one; these are the entry points.

    def new_kv_cache(self, batch_size: int, max_len: int) -> KVCache:
        """An empty KV cache for incremental decoding, on the model's device and in its dtype."""
        weight = next(self.parameters())
        return KVCache(self.config, batch_size, max_len, weight.device, weight.dtype)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors as saved: contiguous, on CPU, a tied LM head stored once (as the embedding)."""
        state = self.state_dict()
        if self.config.tie_embeddings:
            state.pop("lm_head.weight")
        return {k: v.detach().contiguous().cpu() for k, v in state.items()}

    @classmethod
    def from_tensors(cls, config: ModelConfig, tensors: dict[str, torch.Tensor], source: str, device=None,
                     dtype=None) -> SLM:
        """A model with the given tensors as its weights, in eval mode; every tensor's name and shape
        is checked against the config first (CheckpointError naming `source`), and nothing is
        allocated twice or randomly initialised."""
        with torch.device("meta"):
            model = cls(config)
        _check_tensors(model, tensors, source)
        model.load_state_dict(tensors, strict=not config.tie_embeddings, assign=True)
        if config.tie_embeddings:
            model.lm_head.weight = model.embed.weight
        model.to(device=device, dtype=dtype)
        return model.eval()  # dropout off; a trainer calls .train()

    def save_pretrained(self, directory) -> None:
        write_model_folder(directory, self.state_tensors(), self.config)

    @classmethod
    def from_pretrained(cls, directory, device=None, dtype=None) -> SLM:
        """A folder written by `save_pretrained`, in eval mode, in the saved dtype unless `dtype` is given."""
        config, tensors = read_model_folder(directory, device)
        return cls.from_tensors(config, tensors, str(Path(directory) / WEIGHTS_NAME), device=device, dtype=dtype)

    def generate(self, input_ids, **kwargs) -> torch.Tensor:
        return generate(self, input_ids, **kwargs)


def _check_tensors(model: SLM, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError listing every missing, unexpected or mis-shaped tensor."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        expected.pop("lm_head.weight")
    problems = []
    for name, shape in expected.items():
        if name not in tensors:
            problems.append(f"missing tensor {name!r} (config expects shape {shape})")
        elif tuple(tensors[name].shape) != shape:
            problems.append(f"tensor {name!r} has shape {tuple(tensors[name].shape)}, config expects {shape}")
    problems += [f"unexpected tensor {name!r} with shape {tuple(t.shape)}" for name, t in tensors.items() if name not in expected]
    if problems:
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise CheckpointError(f"{source} does not match its config:\n  " + "\n  ".join(problems[:10]) + more)
