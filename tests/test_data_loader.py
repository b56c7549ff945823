"""Shards and the packed loader: exact resume, disjoint ranks, mixtures, document ids."""

import numpy as np
import pytest
import torch

from slm.config import ConfigError
from slm.data.loader import MixtureConfig, PackedLoader
from slm.data.shards import TokenStream, shard_stem, token_dtype, write_manifest, write_shard


def make_source(root, name, n_docs, doc_len, start_token, docs_per_shard=7, vocab=1000):
    """Documents of known tokens: doc i is [start + i] * doc_len, so every row is traceable."""
    d = root / name
    d.mkdir(parents=True)
    dtype = token_dtype(vocab)
    docs = [[(start_token + i) % vocab] * doc_len for i in range(n_docs)]
    n_shards = 0
    for k in range(0, n_docs, docs_per_shard):
        write_shard(shard_stem(d, n_shards), docs[k : k + docs_per_shard], dtype)
        n_shards += 1
    write_manifest(d, n_shards, n_docs, n_docs * doc_len, dtype)
    return docs


@pytest.fixture()
def data(tmp_path):
    make_source(tmp_path, "general", n_docs=60, doc_len=5, start_token=100)
    make_source(tmp_path, "textbooks", n_docs=20, doc_len=3, start_token=500)
    return tmp_path


def test_token_stream_reads_across_shards_with_document_ids(data):
    s = TokenStream(data / "general")
    assert s.n_tokens == 300 and s.manifest["shards"] == 9
    assert s.tokens(33, 38).tolist() == [106, 106, 107, 107, 107]
    assert s.doc_ids(33, 38).tolist() == [6, 6, 7, 7, 7]
    assert token_dtype(32768) == np.uint16 and token_dtype(70000) == np.uint32


def take(loader, n):
    return [next(loader) for _ in range(n)]


def test_rows_are_packed_and_doc_ids_mark_boundaries(data):
    loader = PackedLoader(data, seq_len=8, micro_batch=2, mixture=MixtureConfig(weights={"general": 1.0}))
    batch = next(loader)
    assert batch["input_ids"].shape == (2, 8) and batch["input_ids"].dtype == torch.int64
    assert torch.equal(batch["labels"], batch["input_ids"])
    for ids, docs in zip(batch["input_ids"], batch["doc_ids"]):
        changes = (ids[1:] != ids[:-1]).nonzero().flatten() + 1
        assert docs[0] == 0 and torch.equal((docs[1:] != docs[:-1]).nonzero().flatten() + 1, changes)


CURRICULUM = MixtureConfig(curriculum=[{"until_row": 10, "weights": {"general": 1}},
                                        {"weights": {"general": 1, "textbooks": 2}}])


@pytest.mark.parametrize("mixture", [MixtureConfig(weights={"general": 3, "textbooks": 1}), CURRICULUM])
@pytest.mark.parametrize("stop", [0, 1, 3, 5, 13])
def test_resume_from_saved_state_gives_exactly_the_same_rows(data, stop, mixture):
    kwargs = dict(seq_len=4, micro_batch=3, seed=7, mixture=mixture)
    straight = take(PackedLoader(data, **kwargs), stop + 10)
    first = PackedLoader(data, **kwargs)
    take(first, stop)
    state = first.state_dict()
    resumed = PackedLoader(data, **kwargs)
    resumed.load_state_dict(state)
    for a, b in zip(take(resumed, 10), straight[stop:]):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["doc_ids"], b["doc_ids"])


def test_ranks_get_disjoint_rows_that_together_are_the_single_process_stream(data):
    kwargs = dict(seq_len=5, micro_batch=2, seed=1)
    single = torch.cat([b["input_ids"] for b in take(PackedLoader(data, **kwargs), 12)])
    ranks = [take(PackedLoader(data, rank=r, world_size=3, **kwargs), 4) for r in range(3)]
    interleaved = torch.cat([ranks[r][t]["input_ids"] for t in range(4) for r in range(3)])
    assert torch.equal(interleaved, single)
    # a state saved on rank 2 resumes rank 0 correctly too
    r2 = PackedLoader(data, rank=2, world_size=3, **kwargs)
    take(r2, 2)
    r0 = PackedLoader(data, rank=0, world_size=3, **kwargs)
    r0.load_state_dict(r2.state_dict())
    assert torch.equal(next(r0)["input_ids"], ranks[0][2]["input_ids"])


def test_both_training_loaders_are_loaders_and_split_ranks_by_one_rule(data):
    from slm.chat import Encoded
    from slm.data.loader import Loader, rank_rows
    from slm.finetune.data import ChatLoader

    assert isinstance(PackedLoader(data, seq_len=5, micro_batch=2), Loader)
    assert isinstance(ChatLoader([[Encoded([1, 2], [-100, 2])]], max_len=2, micro_batch=1, pad_id=0), Loader)
    taken = [list(rank_rows(t, rank=r, world_size=2, micro_batch=3)) for t in range(2) for r in range(2)]
    assert taken == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]  # step by step, rank by rank: the global rows


def test_mixture_shares_are_exact_and_epochs_reshuffle(data):
    loader = PackedLoader(data, seq_len=5, micro_batch=10, seed=0,
                          mixture=MixtureConfig(weights={"general": 3.0, "textbooks": 1.0}))
    rows = torch.cat([b["input_ids"] for b in take(loader, 12)])  # 120 rows
    from_textbooks = (rows[:, 0] >= 500).sum().item()
    assert from_textbooks == 30
    # textbooks has 60 tokens / 5 = 12 rows: 30 draws span 3 epochs, each a full permutation
    tb = [tuple(r.tolist()) for r in rows if r[0] >= 500]
    assert len(set(tb[:12])) == 12 and set(tb[:12]) == set(tb[12:24]) and tb[:12] != tb[12:24]


def test_epochs_set_weights_by_source_size(data):
    loader = PackedLoader(data, seq_len=5, micro_batch=1, mixture=MixtureConfig(epochs={"general": 1, "textbooks": 2}))
    info = loader.describe(total_rows=84)
    assert info["general"]["rows"] == 60 and info["textbooks"]["rows"] == 12
    assert info["general"]["epochs"] == pytest.approx(1.0) and info["textbooks"]["epochs"] == pytest.approx(2.0)


def test_curriculum_changes_the_mixture_at_a_row(data):
    mixture = MixtureConfig(curriculum=[{"until_row": 20, "weights": {"general": 1.0}},
                                        {"weights": {"general": 1.0, "textbooks": 1.0}}])
    rows = torch.cat([b["input_ids"] for b in take(PackedLoader(data, seq_len=5, micro_batch=10, mixture=mixture), 4)])
    assert (rows[:20, 0] < 500).all()
    assert (rows[20:, 0] >= 500).sum().item() == 10  # the second phase is half textbooks


def test_bad_mixtures_are_clear_errors(data):
    with pytest.raises(ConfigError, match="not prepared"):
        PackedLoader(data, mixture=MixtureConfig(weights={"wikipedia": 1.0}))
    with pytest.raises(ConfigError, match="both a weight and epochs"):
        MixtureConfig(weights={"general": 1}, epochs={"general": 1})
    with pytest.raises(ConfigError, match="needs until_row"):
        MixtureConfig(curriculum=[{"weights": {"a": 1}}, {"weights": {"b": 1}}])
    with pytest.raises(ValueError, match="fewer than seq_len"):
        PackedLoader(data, seq_len=1000)


def test_shipped_mixture_configs_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs" / "data"
    assert MixtureConfig.load(root / "mixture-ncvc.yaml").epochs["oscar"] == 1
    assert len(MixtureConfig.load(root / "mixture-clinical-cpt.yaml").curriculum) == 3
