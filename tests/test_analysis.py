"""The analysis helpers on the tiny model: neighbours, analogies on planted embeddings, projections,
attention weights equal to what the model computes, and document masking seen in them."""

import matplotlib
import numpy as np
import pytest
import torch

from conftest import small_config
from slm.analysis import (analogy, attention_weights, cross_document_attention, medical_terms, nearest_tokens, pack,
                          plot_attention, plot_embeddings, project, term_ids)
from slm.model import SLM

matplotlib.use("Agg")


@pytest.fixture()
def model(tok):
    return SLM(small_config(vocab_size=tok.vocab_size, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)).eval()


def single_piece(tok, words):
    return [w for w in words if len(tok.encode(w)) == 1]


def test_a_planted_analogy_is_found(model, tok):
    """脳出血 - 脳 + 消化管 lands on a planted 消化管出血 direction when the space is built that way."""
    words = single_piece(tok, ["出血", "脳", "胃", "肺", "心臓", "腎臓", "肝臓", "血圧", "発熱", "咳嗽"])
    assert len(words) >= 6
    bleed, brain, gut, target = (term_ids(tok, w)[0] for w in words[:4])
    d = model.config.d_model
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        w = model.embed.weight
        organ, event, base = (torch.randn(d, generator=g) for _ in range(3))
        w[brain] = base + organ  # "brain" = organ A
        w[bleed] = base + organ + event  # "brain bleed" = organ A + bleeding
        w[gut] = base - organ  # "gut" = organ B
        w[target] = base - organ + event  # the answer: organ B + bleeding
    top = analogy(model, tok, words[0], words[1], words[2], k=3)
    assert top[0].id == target and top[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert {bleed, brain, gut}.isdisjoint(n.id for n in top)  # the inputs are left out
    assert analogy(model, tok, words[0], words[1], words[2], k=1, exclude_inputs=False)[0].id in (target, bleed, gut, brain)


def test_nearest_tokens_rank_by_cosine_and_skip_special_tokens(model, tok):
    query = tok.encode("発熱")[0]
    top = nearest_tokens(model, tok, query, k=5)
    assert top[0].id == query and top[0].similarity == pytest.approx(1.0)
    assert all(a.similarity >= b.similarity for a, b in zip(top, top[1:]))
    w = model.embed.weight.detach()
    expected = torch.nn.functional.cosine_similarity(w, w[query][None], dim=-1)
    assert top[1].similarity == pytest.approx(float(expected[top[1].id]), abs=1e-5)
    assert not {tok.bos_id, tok.eos_id, tok.newline_id} & {n.id for n in nearest_tokens(model, tok, tok.eos_id, k=20)}
    assert len(nearest_tokens(model, tok, "糖尿病の既往", k=3)) == 3  # several pieces: their mean


def test_projections(model):
    x = torch.randn(30, 8)
    x[:, 0] *= 10  # the first direction dominates: PCA's first axis follows it
    coords = project(x)
    assert coords.shape == (30, 2)
    assert abs(np.corrcoef(coords[:, 0], x[:, 0].numpy())[0, 1]) > 0.99
    assert project(x, "tsne").shape == (30, 2)
    with pytest.raises(ValueError, match="method"):
        project(x, "mds")
    with pytest.raises(ValueError, match="at least 3"):
        project(x[:2])


def test_attention_weights_are_what_the_model_computes(tok):
    model = SLM(small_config(vocab_size=tok.vocab_size, n_layers=2)).eval()
    ids = torch.tensor([tok.encode("胸部X線で右下肺野に浸潤影を認めた。", add_bos=True)])
    weights = attention_weights(model, ids)
    L, B, H, T, _ = weights.shape
    assert (L, B, H, T) == (2, 1, model.config.n_heads, ids.shape[1])
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(L, B, H, T))
    assert torch.all(weights.triu(diagonal=1) == 0)  # causal
    # the first layer's output recomputed from the weights equals the model's own
    attn, x = model.layers[0].attn, None
    captured = {}
    handle = attn.register_forward_hook(lambda m, a, out: captured.update(x=a[0], out=out))
    model(ids)
    handle.remove()
    x = captured["x"]
    v = attn.v_proj(x).view(1, T, attn.n_kv_heads, attn.head_dim).transpose(1, 2)
    v = v.repeat_interleave(attn.n_heads // attn.n_kv_heads, dim=1)
    y = attn.o_proj((weights[0] @ v).transpose(1, 2).reshape(1, T, -1))
    torch.testing.assert_close(y, captured["out"], atol=1e-5, rtol=1e-4)
    assert not attn._forward_pre_hooks  # hooks removed


def test_packed_documents_attend_across_boundaries_unless_masked(model, tok):
    ids, docs = pack(tok, ["発熱あり。", "咳嗽なし。", "腹痛を認める。"])
    assert ids.shape == docs.shape and docs[0, -1] == 2 and (ids[0] == tok.eos_id).sum() == 3
    plain = cross_document_attention(attention_weights(model, ids), docs)
    masked_weights = attention_weights(model, ids, doc_ids=docs)
    masked = cross_document_attention(masked_weights, docs)
    assert plain.shape == (model.config.n_layers, model.config.n_heads) and torch.all(plain > 0)
    assert torch.all(masked == 0)  # exactly zero with document masking
    torch.testing.assert_close(masked_weights.sum(dim=-1), torch.ones_like(masked_weights.sum(dim=-1)))
    ids_cut, _ = pack(tok, ["発熱あり。", "咳嗽なし。"], max_len=4)
    assert ids_cut.shape == (1, 4)


def test_plots_are_written_with_japanese_labels(model, tok, tmp_path):
    groups = {k: v[:5] for k, v in medical_terms(per_category=5).items() if k in ("disease", "drug", "exam")}
    assert set(groups) == {"disease", "drug", "exam"} and all(len(v) == 5 for v in groups.values())
    plot_embeddings(model, tok, groups, path=tmp_path / "emb.png")
    ids, docs = pack(tok, ["発熱あり。", "咳嗽なし。"])
    plot_attention(attention_weights(model, ids), tok, ids, layer=0, path=tmp_path / "attn.png")
    plot_attention(attention_weights(model, ids), tok, ids, layer=1, head=0, path=tmp_path / "attn0.png")
    for name in ("emb.png", "attn.png", "attn0.png"):
        assert (tmp_path / name).stat().st_size > 10_000
