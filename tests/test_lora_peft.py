"""slm's LoRA written as a PEFT adapter: PEFT on the transformers export computes what slm computes."""

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import small_model
from slm import hf
from slm.chat import resize_token_embeddings
from slm.lora import LoRAConfig, apply_lora, save_peft_adapter

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

ADDED = 3  # the chat tokens: 256, 257, 258 on the 256-token base
IDS = torch.tensor([[2, 40, 256, 41, 257, 42, 258, 7], [9, 258, 3, 256, 11, 12, 13, 14]])


def lora_model(base_state: dict, *, new_rows: int = 0, **overrides):
    """The base with LoRA on every projection, B random (so the adapter matters) and, with
    `new_rows`, trained-looking new embedding/head rows (not the mean rows a resize starts from)."""
    model = small_model(**overrides)
    model.load_state_dict(base_state)
    if new_rows:
        resize_token_embeddings(model, model.config.vocab_size + new_rows)
    apply_lora(model, LoRAConfig(rank=4, alpha=8.0, dropout=0.0), new_token_rows=new_rows)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_b"):
                p.normal_(0, 0.05)
        if new_rows:
            model.embed.weight[-new_rows:].normal_(0, 0.1)
            model.lm_head.weight[-new_rows:].normal_(0, 0.1)  # the embedding's own rows when tied
    return model.eval()


def peft_model(base_dir, adapter_dir, vocab_size: int | None = None):
    """The exported base (grown to `vocab_size` by transformers when given) with the adapter on it."""
    base = transformers.AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    if vocab_size is not None:
        base.resize_token_embeddings(vocab_size, mean_resizing=False)
    return peft.PeftModel.from_pretrained(base, adapter_dir).eval()


@pytest.mark.parametrize("gated", [False, True])  # Arcee, Llama
def test_peft_on_the_exported_base_gives_the_lora_models_logits(tmp_path, gated):
    base = small_model(mlp_gated=gated)
    hf.export(base, tmp_path / "base")
    model = lora_model(base.state_dict(), mlp_gated=gated)
    save_peft_adapter(model, tmp_path / "adapter", base_model=str(tmp_path / "base"))
    ids = IDS.clamp(max=255)
    expected = model(ids).logits
    assert (expected - base(ids).logits).abs().max() > 1e-3  # the adapter changes the output
    theirs = peft_model(tmp_path / "base", tmp_path / "adapter")(ids).logits
    torch.testing.assert_close(theirs, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tied, scaled", [(False, True), (True, True), (True, False)])
@pytest.mark.parametrize("grown_by", ["slm", "transformers"])
def test_added_token_rows_travel_as_trainable_tokens(tmp_path, tied, scaled, grown_by):
    # (True, True): the export unties the head (the scale is folded into the embedding only);
    # (True, False): the export stays tied and PEFT ties the head's rows to the embedding's.
    base = small_model(tie_embeddings=tied, scale_embeddings=scaled)
    model = lora_model(base.state_dict(), new_rows=ADDED, tie_embeddings=tied, scale_embeddings=scaled)
    save_peft_adapter(model, tmp_path / "adapter")
    if grown_by == "slm":  # the base exported with slots for the new rows (what they hold does not matter)
        resize_token_embeddings(base, 256 + ADDED)
    hf.export(base, tmp_path / "base")
    theirs = peft_model(tmp_path / "base", tmp_path / "adapter", 256 + ADDED if grown_by == "transformers" else None)
    torch.testing.assert_close(theirs(IDS).logits, model(IDS).logits, atol=1e-5, rtol=1e-5)


def test_the_adapter_holds_only_lora_matrices_and_the_new_rows(tmp_path):
    model = lora_model(small_model().state_dict(), new_rows=ADDED)
    save_peft_adapter(model, tmp_path, base_model="org/base")
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    rows = {k: v.shape for k, v in tensors.items() if "lora_" not in k}
    assert rows == {"base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta": (ADDED, 64),
                    "base_model.model.lm_head.token_adapter.trainable_tokens_delta": (ADDED, 64)}
    lora = [k for k in tensors if "lora_" in k]
    assert len(lora) == 2 * 6 * 2  # A and B on q k v o up down in two layers
    assert "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight" in lora
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["trainable_token_indices"] == {"embed_tokens": [256, 257, 258], "lm_head": [256, 257, 258]}
    assert (config["r"], config["lora_alpha"], config["use_rslora"]) == (4, 8.0, False)
    assert config["target_modules"] == ["down_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert config["base_model_name_or_path"] == "org/base"
    assert peft.LoraConfig.from_pretrained(tmp_path).trainable_token_indices == config["trainable_token_indices"]


def test_a_model_without_lora_is_refused(tmp_path):
    with pytest.raises(ValueError, match="apply_lora"):
        save_peft_adapter(small_model(), tmp_path)
