"""The fast paths against the plain path they replace, on CPU where they run there: chunked loss,
flex_attention document masking, packed-document offsets for flash-attn's varlen kernel, fused
AdamW, and a model that torch.compile traces without graph breaks."""

import pytest
import torch

from conftest import small_config
from slm.config import ConfigError, ModelConfig
from slm.model import SLM, Packed
from slm.train.config import OptimConfig
from slm.train.optim import build_optimizer, param_groups


def pair(**fast):
    """The plain model and a fast-path copy with the same weights."""
    torch.manual_seed(0)
    plain = SLM(small_config())
    other = SLM(small_config(**fast))
    other.load_state_dict(plain.state_dict())
    return plain, other


def batch(T=96, docs=True):
    torch.manual_seed(1)
    ids = torch.randint(0, 256, (2, T))
    labels = ids.clone()
    labels[0, :10] = -100  # unscored positions (padding, prompts) must stay out of both
    doc_ids = torch.stack([torch.arange(T) // 30, torch.arange(T) // 50]) if docs else None
    return ids, labels, doc_ids


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("chunk", [1, 64, 1000])
def test_chunked_loss_equals_the_plain_loss_and_gradients(chunk):
    plain, chunked = pair(ce_chunk_size=chunk)
    ids, labels, doc_ids = batch()
    a = plain(ids, labels=labels, doc_ids=doc_ids)
    b = chunked(ids, labels=labels, doc_ids=doc_ids)
    assert b.logits is None
    torch.testing.assert_close(b.loss, a.loss, atol=1e-6, rtol=1e-6)
    a.loss.backward()
    b.loss.backward()
    for name, g in grads(plain).items():
        torch.testing.assert_close(grads(chunked)[name], g, atol=1e-6, rtol=1e-5, msg=name)
    assert chunked(ids).logits.shape == (2, 96, 256)  # without labels: logits as usual
    with pytest.raises(ConfigError, match="ce_chunk_size"):
        ModelConfig.from_preset("tiny", ce_chunk_size=-1)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_document_masking_equals_sdpa_with_a_dense_mask():
    plain, flex = pair(attn_backend="flex")
    ids, labels, doc_ids = batch(T=128)
    plain.eval(), flex.eval()
    with torch.no_grad():
        torch.testing.assert_close(flex(ids, doc_ids=doc_ids).logits, plain(ids, doc_ids=doc_ids).logits,
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(flex(ids).logits, plain(ids).logits)  # no documents: the usual causal path
    with pytest.raises(RuntimeError, match="no attention dropout"):
        SLM(ModelConfig.from_preset("tiny", vocab_size=256, attn_backend="flex")).train()(ids, doc_ids=doc_ids)


def test_packed_offsets_for_the_varlen_kernel():
    doc_ids = torch.tensor([[0, 0, 0, 1, 1, 2], [5, 5, 5, 5, 5, 5]])
    packed = Packed.from_doc_ids(doc_ids)
    # documents of lengths 3, 2, 1 in row 0 and one of 6 in row 1, over the flattened 12 tokens
    assert packed.cu_seqlens.tolist() == [0, 3, 5, 6, 12] and packed.cu_seqlens.dtype == torch.int32
    assert packed.max_len == 6
    # the same id in two rows is two documents: every row starts one
    assert Packed.from_doc_ids(torch.zeros(2, 4, dtype=torch.long)).cu_seqlens.tolist() == [0, 4, 8]


def test_fused_adamw_makes_the_same_update():
    updated = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = SLM(small_config())
        optimizer = build_optimizer(param_groups(model, 0.1), OptimConfig(lr=1e-2, fused=fused))
        assert optimizer.defaults["fused"] is fused
        ids, labels, _ = batch()
        for _ in range(3):
            model(ids, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        updated.append(model.state_dict())
    for name, p in updated[0].items():
        torch.testing.assert_close(updated[1][name], p, atol=1e-6, rtol=1e-5, msg=name)
    assert not build_optimizer(param_groups(model, 0.1), OptimConfig(), torch.device("cpu")).defaults["fused"]


@pytest.mark.parametrize("fast", [{}, {"ce_chunk_size": 64}])
@pytest.mark.parametrize("docs", [False, True])
def test_compile_traces_the_training_forward_without_graph_breaks(fast, docs):
    torch._dynamo.reset()
    model = SLM(small_config(**fast)).train()
    ids, labels, doc_ids = batch(docs=docs)
    explained = torch._dynamo.explain(lambda: model(ids, labels=labels, doc_ids=doc_ids).loss)()
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


@pytest.mark.parametrize("docs", [False, True])
def test_the_compiled_model_computes_the_same_loss_and_gradients(docs):
    """torch.compile's tracing (dynamo + AOT autograd, without inductor's C++ build) against eager."""
    torch._dynamo.reset()
    plain, compiled = pair(ce_chunk_size=64)
    ids, labels, doc_ids = batch(docs=docs)
    fn = torch.compile(compiled, backend="aot_eager", fullgraph=True)
    a = plain(ids, labels=labels, doc_ids=doc_ids).loss
    b = fn(ids, labels=labels, doc_ids=doc_ids).loss
    torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-6)
    a.backward()
    b.backward()
    for name, g in grads(plain).items():
        torch.testing.assert_close(grads(compiled)[name], g, atol=1e-6, rtol=1e-5, msg=name)
