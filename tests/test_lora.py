import pytest
import torch
from safetensors.torch import load_file

from conftest import small_model
from slm.config import ModelConfig
from slm.chat import resize_token_embeddings
from slm.lora import LoRAConfig, apply_lora, count_adapter_bytes, load_adapter, merge_lora, save_adapter
from slm.model import SLM


def test_adapter_for_the_1b_preset_is_under_100_mb():
    config = ModelConfig.from_preset("ncvc-slm-1b")
    size = count_adapter_bytes(config, LoRAConfig(), new_token_rows=3)
    assert size < 100e6
    with torch.device("meta"):
        model = SLM(config)
    resize_token_embeddings(model, config.vocab_size + 3)
    apply_lora(model, LoRAConfig(), new_token_rows=3)
    counted = sum(p.numel() for n, p in model.named_parameters() if ".lora_" in n) + 3 * config.d_model * 2
    assert counted * 4 == size


def test_lora_starts_at_the_base_trains_only_adapters_and_merges_exactly(tmp_path):
    model = small_model()
    ids = torch.randint(0, 256, (2, 12))
    before = model(ids).logits
    names = apply_lora(model, LoRAConfig(rank=4, alpha=8, dropout=0.0))
    assert len(names) == 2 * 6  # q k v o up down in two layers
    assert torch.equal(model(ids).logits, before)  # B = 0: identical to the base
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        model(ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    tuned = model(ids).logits
    save_adapter(model, tmp_path / "adapter")
    assert set(load_file(tmp_path / "adapter" / "adapter.safetensors")) == {n for n in trainable}
    merged = merge_lora(model)
    torch.testing.assert_close(merged(ids).logits, tuned, atol=1e-5, rtol=1e-5)
    assert not any(".lora_" in n for n, _ in merged.named_parameters())


def test_added_tokens_train_only_new_rows_and_the_adapter_holds_only_them(tmp_path):
    base = small_model()
    state = {k: v.clone() for k, v in base.state_dict().items()}
    model = small_model()
    model.load_state_dict(state)
    resize_token_embeddings(model, 259)
    apply_lora(model, LoRAConfig(rank=2, dropout=0.0), new_token_rows=3)
    groups = [{"params": [model.embed.weight, model.lm_head.weight], "weight_decay": 0.0},
              {"params": [p for n, p in model.named_parameters() if ".lora_" in n], "weight_decay": 0.1}]
    opt = torch.optim.AdamW(groups, lr=1e-2)
    ids = torch.tensor([[1, 5, 256, 257, 258, 9]])
    for _ in range(3):
        model(ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    assert torch.equal(model.embed.weight[:256], state["embed.weight"])  # old rows untouched
    assert not torch.equal(model.embed.weight[256:], model.embed.weight[:256].mean(0).expand(3, -1))
    save_adapter(model, tmp_path / "a", added_tokens=["<|system|>", "<|user|>", "<|assistant|>"])
    saved = load_file(tmp_path / "a" / "adapter.safetensors")
    assert saved["embed.new_rows"].shape == (3, 64) and "embed.weight" not in saved
    expected = model(ids).logits

    fresh = small_model()
    fresh.load_state_dict(state)
    reloaded = load_adapter(fresh, tmp_path / "a")
    torch.testing.assert_close(reloaded.eval()(ids).logits, model.eval()(ids).logits)
    torch.testing.assert_close(merge_lora(reloaded)(ids).logits, expected)


def test_adapter_for_another_base_is_refused(tmp_path):
    model = small_model()
    apply_lora(model, LoRAConfig(rank=2))
    save_adapter(model, tmp_path / "a")
    with pytest.raises(ValueError, match="vocab_size=256"):
        load_adapter(small_model(vocab_size=300), tmp_path / "a")
