import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import small_config, small_model
from slm.config import ModelConfig
from slm.model import SLM, doc_position_ids


def test_report_model_size_on_meta_device():
    with torch.device("meta"):
        model = SLM(ModelConfig.from_preset("ncvc-slm-1b"))
    n = model.num_params()
    assert 1.15e9 <= n <= 1.25e9
    assert 2.2e9 <= n * 2 <= 2.4e9  # bf16 bytes
    # untied head: embedding and head are separate 32768 x 2048 matrices
    assert model.lm_head.weight is not model.embed.weight


def test_preset_ladder_sizes():
    sizes = {}
    for name in ("slm-25m", "slm-125m", "slm-350m"):
        with torch.device("meta"):
            sizes[name] = SLM(ModelConfig.from_preset(name)).num_params()
    assert 20e6 <= sizes["slm-25m"] <= 30e6
    assert 110e6 <= sizes["slm-125m"] <= 140e6
    assert 320e6 <= sizes["slm-350m"] <= 380e6


def test_init_statistics_follow_the_report():
    # d = 2048 as in the report; fewer layers and a smaller vocabulary keep it fast.
    config = ModelConfig.from_preset("ncvc-slm-1b", n_layers=2, vocab_size=8192)
    model = SLM(config)
    sigma = math.sqrt(2 / (5 * 2048))
    expected = {
        "embed": sigma,
        "q_proj": sigma, "k_proj": sigma, "v_proj": sigma, "up_proj": sigma,
        "o_proj": sigma / math.sqrt(2 * 2), "down_proj": sigma / math.sqrt(2 * 2),
        "lm_head": math.sqrt(2 / (2048 + 8192)),  # Xavier normal
    }
    seen = set()
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            assert torch.all(p == 1), name
            continue
        family = name.split(".")[-2]
        assert p.mean().abs().item() < 1e-3, name
        assert p.std().item() == pytest.approx(expected[family], rel=0.01), name
        seen.add(family)
    assert seen == set(expected)


def test_gated_mlp_adds_a_gate_projection():
    plain, gated = SLM(small_config()), SLM(small_config(mlp_gated=True))
    c = plain.config
    assert plain.layers[0].mlp.gate_proj is None
    assert gated.num_params() - plain.num_params() == c.n_layers * c.d_model * c.d_mlp
    assert gated.layers[0].mlp.gate_proj.weight.std().item() == pytest.approx(c.std, rel=0.05)


def test_no_biases_anywhere():
    assert not [n for n, _ in SLM(small_config()).named_parameters() if n.endswith("bias")]


def test_forward_returns_logits_and_shifted_masked_loss():
    model = small_model()
    ids = torch.randint(0, 256, (2, 12))
    labels = ids.clone()
    labels[0, :5] = -100
    out = model(ids, labels=labels)
    assert out.logits.shape == (2, 12, 256)
    expected = F.cross_entropy(out.logits[:, :-1].reshape(-1, 256), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert model(ids).loss is None


def test_loss_is_zero_with_a_gradient_when_nothing_is_scored():
    model = small_model()
    ids = torch.randint(0, 256, (1, 8))
    out = model(ids, labels=torch.full_like(ids, -100))
    assert out.loss.item() == 0.0
    out.loss.backward()  # must not fail: an all-masked micro-batch happens in fine-tuning


def test_document_masking_equals_running_documents_separately():
    model = small_model()
    docs = [torch.randint(0, 256, (1, n)) for n in (5, 7, 4)]
    packed = torch.cat(docs, dim=1)
    doc_ids = torch.cat([torch.full((1, d.shape[1]), i) for i, d in enumerate(docs)], dim=1)
    logits = model(packed, doc_ids=doc_ids).logits
    separate = torch.cat([model(d).logits for d in docs], dim=1)
    torch.testing.assert_close(logits, separate, atol=1e-5, rtol=1e-5)
    # Opt-in: without doc_ids the row is one sequence (the report's plain packing).
    assert not torch.allclose(model(packed).logits, separate, atol=1e-3)


def test_doc_position_ids_restart_at_each_document():
    doc_ids = torch.tensor([[0, 0, 0, 1, 1, 2], [5, 5, 5, 5, 5, 5]])
    assert doc_position_ids(doc_ids).tolist() == [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]]


def test_left_padding_does_not_change_real_tokens():
    model = small_model()
    ids = torch.randint(2, 256, (1, 6))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 1]])
    torch.testing.assert_close(model(padded, attention_mask=mask).logits[:, 3:], model(ids).logits, atol=1e-5, rtol=1e-5)


def test_kv_cache_forward_equals_full_forward():
    model = small_model()
    ids = torch.randint(0, 256, (2, 10))
    full = model(ids).logits
    cache = model.new_kv_cache(2, 10)
    pieces = []
    for start, end in [(0, 4), (4, 7), (7, 8), (8, 10)]:  # prefill, a chunk, single tokens
        pieces.append(model(ids[:, start:end], kv_cache=cache).logits)
        cache.advance(end - start)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_dropout_acts_in_training_only():
    model = SLM(small_config(attn_dropout=0.1, resid_dropout=0.1))
    ids = torch.randint(0, 256, (2, 16))
    model.train()
    assert not torch.equal(model(ids).logits, model(ids).logits)
    model.eval()
    assert torch.equal(model(ids).logits, model(ids).logits)


def test_embedding_is_scaled_by_sqrt_d_model():
    model = small_model()
    unscaled = SLM(small_config(scale_embeddings=False)).eval()
    unscaled.load_state_dict(model.state_dict())
    unscaled.embed.weight.data *= math.sqrt(model.config.d_model)
    ids = torch.randint(0, 256, (1, 8))
    torch.testing.assert_close(model(ids).logits, unscaled(ids).logits)


def test_tied_embeddings_share_one_matrix():
    model = SLM(small_config(tie_embeddings=True))
    assert model.lm_head.weight is model.embed.weight
    assert model.num_params() == SLM(small_config()).num_params() - 256 * 64


def test_flops_per_token_follows_palm_formula():
    with torch.device("meta"):
        model = SLM(ModelConfig.from_preset("ncvc-slm-1b"))
    n_matmul = model.num_params() - 32768 * 2048
    assert model.flops_per_token(2048) == 6 * n_matmul + 12 * 24 * 32 * 64 * 2048
    assert 7.9e9 < model.flops_per_token(2048) < 8.0e9


def test_longer_than_max_seq_len_is_refused():
    model = small_model(max_seq_len=16)
    with pytest.raises(ValueError, match="exceeds max_seq_len=16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def imported_modules_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter has imported after running `code`."""
    code += "; import sys; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    return set(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split())


def test_flash_attn_is_never_imported_on_cpu():
    code = (
        "import torch; from slm.model import SLM; from slm.config import ModelConfig;"
        "SLM(ModelConfig.from_preset('tiny', vocab_size=64))(torch.zeros(1, 4, dtype=torch.long))"
    )
    assert "flash_attn" not in imported_modules_after(code)


def test_flash_backend_on_cpu_is_a_clear_error():
    model = small_model(attn_backend="flash")
    with pytest.raises(RuntimeError, match="attn_backend='flash' needs CUDA"):
        model(torch.zeros(1, 4, dtype=torch.long))


def test_model_and_trainer_import_without_the_mecab_stack_or_transformers():
    # the GPU machines that benchmark these have neither fugashi nor sentencepiece
    loaded = imported_modules_after("import slm.model, slm.generate, slm.checkpoint, slm.train.trainer")
    assert not {"fugashi", "sentencepiece", "tokenizer", "transformers", "deepspeed"} & loaded


def test_logits_to_keep_computes_only_the_last_positions():
    model = small_model()
    ids = torch.randint(0, 256, (2, 10))
    torch.testing.assert_close(model(ids, logits_to_keep=1).logits, model(ids).logits[:, -1:])
    with pytest.raises(ValueError, match="cannot be combined with labels"):
        model(ids, labels=ids, logits_to_keep=1)


def test_bf16_forward_stays_close_to_float32():
    model = small_model()
    ids = torch.randint(0, 256, (1, 8))
    ref = model(ids).logits
    low = SLM(model.config).eval()
    low.load_state_dict(model.state_dict())
    out = low.to(torch.bfloat16)(ids).logits
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max().item() < 0.1 * ref.abs().max().item()
