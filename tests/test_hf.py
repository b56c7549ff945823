"""Parity with Hugging Face transformers' implementations of the same architecture."""

import json
import math

import pytest
import torch

from conftest import small_model
from slm import hf
from slm.config import ConfigError
from slm.generate import left_pad

transformers = pytest.importorskip("transformers")

PROMPTS = [[5, 17, 99, 23, 4, 8, 61], [42, 7], [3, 200, 11, 12]]


def hf_model(path):
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@pytest.mark.parametrize("gated, arch", [(False, "ArceeForCausalLM"), (True, "LlamaForCausalLM")])
def test_exported_model_gives_the_same_logits_loss_and_greedy_tokens(tmp_path, gated, arch):
    model = small_model(mlp_gated=gated)
    hf.export(model, tmp_path)
    ref = hf_model(tmp_path)
    assert type(ref).__name__ == arch

    ids = torch.randint(2, 256, (3, 20))
    ours, theirs = model(ids, labels=ids), ref(ids, labels=ids)
    assert (ours.logits - theirs.logits).abs().max().item() < 1e-4
    assert ours.loss.item() == pytest.approx(theirs.loss.item(), abs=1e-5)

    ids, mask = left_pad(PROMPTS, 0)
    assert (model(ids, attention_mask=mask).logits - ref(ids, attention_mask=mask).logits)[mask.bool()].abs().max() < 1e-4
    ours = model.generate(ids, attention_mask=mask, max_new_tokens=20, eos_token_id=1, pad_token_id=0)
    theirs = ref.generate(ids, attention_mask=mask, max_new_tokens=20, do_sample=False, eos_token_id=1, pad_token_id=0)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("tied", [False, True])
def test_export_then_load_is_exact(tmp_path, tied):
    model = small_model(tie_embeddings=tied)
    hf.export(model, tmp_path)
    back = hf.load(tmp_path)
    assert not back.config.scale_embeddings  # the scale now lives in the embedding matrix
    torch.testing.assert_close(back.embed.weight, model.embed.weight * math.sqrt(64), rtol=0, atol=0)
    for name, p in model.state_dict().items():
        if name != "embed.weight":
            assert torch.equal(p, back.state_dict()[name]), name
    ids = torch.randint(0, 256, (2, 16))
    assert torch.equal(model(ids).logits, back(ids).logits)


def test_export_in_bf16(tmp_path):
    hf.export(small_model(), tmp_path, dtype=torch.bfloat16)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    assert hf.load(tmp_path).embed.weight.dtype == torch.bfloat16


def test_import_llama_with_rope_scaling_tied_embeddings_and_shards(tmp_path):
    config = transformers.LlamaConfig(
        vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=True,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
    )
    torch.manual_seed(0)
    ref = transformers.LlamaForCausalLM(config).eval()
    ref.save_pretrained(tmp_path, max_shard_size="50KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    model = hf.load(tmp_path)
    assert model.config.rope_scaling["rope_type"] == "llama3" and model.config.tie_embeddings
    ids = torch.randint(0, 256, (2, 100))  # longer than the original 16 positions: scaling matters
    assert (model(ids).logits - ref(ids).logits).abs().max().item() < 1e-4


def test_import_mistral_with_sliding_window(tmp_path):
    config = transformers.MistralConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, sliding_window=64, head_dim=32,
    )
    ref = transformers.MistralForCausalLM(config).eval()
    ref.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="sliding_window=64"):
        model = hf.load(tmp_path, resid_dropout=0.1)
    assert (model.config.max_seq_len, model.config.dim_head, model.config.resid_dropout) == (64, 32, 0.1)
    ids = torch.randint(0, 256, (2, 64))
    assert (model(ids).logits - ref(ids).logits).abs().max().item() < 1e-4


def test_unsupported_folder_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ConfigError, match="model_type 'gpt2' is not supported"):
        hf.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "attention_bias": True}))
    with pytest.raises(ConfigError, match="attention_bias=true"):
        hf.load(tmp_path)


def test_gated_export_needs_silu(tmp_path):
    with pytest.raises(ConfigError, match="needs mlp_act='silu'"):
        hf.export(small_model(mlp_gated=True, mlp_act="gelu"), tmp_path)


def randomize(model, seed=0):
    """Random values for every parameter, norm weights and biases too, so no switch hides behind an init of 0 or 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


FAMILIES = {
    "gemma": lambda: transformers.GemmaConfig(
        vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, head_dim=32, max_position_embeddings=128, rms_norm_eps=1e-6),
    "gemma3": lambda: transformers.Gemma3TextConfig(
        vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=6, num_attention_heads=4,
        num_key_value_heads=1, head_dim=32, max_position_embeddings=256, sliding_window=16, query_pre_attn_scalar=24,
        rms_norm_eps=1e-6),
    "qwen2": lambda: transformers.Qwen2Config(
        vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, rope_theta=1000000.0, tie_word_embeddings=True,
        sliding_window=32, use_sliding_window=False),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_import_gemma_gemma3_and_qwen2_with_logit_parity_and_export_back(tmp_path, family):
    config = FAMILIES[family]()
    ref = randomize(transformers.AutoModelForCausalLM.from_config(config).eval())
    ref.save_pretrained(tmp_path / "theirs")
    model = hf.load(tmp_path / "theirs")
    c = model.config
    if family == "gemma":  # GELU-tanh gated MLP, (1 + weight) norms, scaled and tied embeddings
        assert (c.mlp_gated, c.mlp_act, c.norm_unit_offset, c.scale_embeddings, c.tie_embeddings, c.dim_head) == \
            (True, "gelu_tanh", True, True, True, 32)
    elif family == "gemma3":  # also q/k norms, sandwich norms, a softmax scale, 5 sliding layers of 6
        assert (c.qk_norm, c.sandwich_norm, c.sliding_window, c.sliding_layers, c.rope_local_theta) == \
            (True, True, 16, [0, 1, 2, 3, 4], 10000.0)
        assert c.attn_scale == pytest.approx(24 ** -0.5) and c.rope_theta == 1000000.0
    else:  # q/k/v biases; the window is off, so the full context stays
        assert (c.qkv_bias, c.scale_embeddings, c.tie_embeddings, c.max_seq_len) == (True, False, True, 128)
        assert model.layers[0].attn.q_proj.bias is not None and model.layers[0].attn.o_proj.bias is None
    ids = torch.randint(0, 256, (2, 100))
    with torch.no_grad():
        assert (model(ids).logits - ref(ids).logits).abs().max().item() < 1e-4
        ids_, mask = left_pad(PROMPTS, 0)
        diff = (model(ids_, attention_mask=mask).logits - ref(ids_, attention_mask=mask).logits)[mask.bool()]
        assert diff.abs().max() < 1e-4
    # and back: transformers reads our export as the same family, with the same logits
    hf.export(model, tmp_path / "ours")
    back = hf_model(tmp_path / "ours")
    assert type(back).__name__ == type(ref).__name__
    with torch.no_grad():
        assert (back(ids).logits - model(ids).logits).abs().max().item() < 1e-4
    assert (hf.load(tmp_path / "ours").state_dict()["norm.weight"] == model.state_dict()["norm.weight"]).all()


def test_a_fresh_gemma_style_model_starts_with_unit_norm_scales():
    model = small_model(mlp_gated=True, mlp_act="gelu_tanh", norm_unit_offset=True, tie_embeddings=True)
    assert all((m.weight == 0).all() for m in model.modules() if type(m).__name__ == "RMSNorm")
    x = torch.randn(2, 5, 64)
    torch.testing.assert_close(model.norm(x), small_model().norm(x))  # (1 + 0) is the plain norm's 1
    with pytest.raises(ConfigError, match="Gemma"):
        hf.export(small_model(norm_unit_offset=True), "unused")  # a plain MLP has no transformers Gemma
    qwen = small_model(mlp_gated=True, qkv_bias=True)
    assert all((qwen.layers[0].attn.get_submodule(n).bias == 0).all() for n in ("q_proj", "k_proj", "v_proj"))


def test_gemma3_generation_past_the_window_matches_transformers(tmp_path):
    """The KV cache keeps every position; the sliding layers' mask must still forget what left the window."""
    ref = randomize(transformers.AutoModelForCausalLM.from_config(FAMILIES["gemma3"]()).eval(), seed=1)
    ref.save_pretrained(tmp_path)
    model = hf.load(tmp_path)
    ids = torch.randint(0, 256, (2, 20))  # already past the window of 16
    ours = model.generate(ids, max_new_tokens=12, eos_token_id=[])
    theirs = ref.generate(ids, max_new_tokens=12, min_new_tokens=12, do_sample=False, pad_token_id=0)
    assert torch.equal(ours, theirs)


def test_gemma3_config_as_published_with_a_pattern_and_linear_rope_scaling(tmp_path):
    """Google's config.json gives sliding_window_pattern, rope_theta, rope_local_base_freq and a legacy
    rope_scaling instead of layer_types and per-type rope_parameters: the same model must come out."""
    ref = randomize(transformers.AutoModelForCausalLM.from_config(FAMILIES["gemma3"]()).eval(), seed=2)
    ref.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for key in ("layer_types", "rope_parameters"):
        config.pop(key, None)
    config.update(sliding_window_pattern=3, rope_theta=1000000.0, rope_local_base_freq=10000.0,
                  rope_scaling={"rope_type": "linear", "factor": 8.0})
    (tmp_path / "config.json").write_text(json.dumps(config))
    ref = hf_model(tmp_path)  # transformers' own reading of the published style
    model = hf.load(tmp_path)
    assert model.config.sliding_layers == [0, 1, 3, 4] and model.config.rope_scaling["rope_type"] == "linear"
    ids = torch.randint(0, 256, (2, 100))
    with torch.no_grad():
        assert (model(ids).logits - ref(ids).logits).abs().max().item() < 1e-4
