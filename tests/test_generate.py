import pytest
import torch

from conftest import small_model
from slm.generate import _filter_top_k_top_p, left_pad

PROMPTS = [[5, 17, 99, 23, 4, 8, 61], [42, 7], [3, 200, 11, 12]]


def test_cached_greedy_equals_recomputing_on_padded_batch():
    model = small_model()
    cached = model.generate(PROMPTS, max_new_tokens=24, eos_token_id=[])
    recomputed = model.generate(PROMPTS, max_new_tokens=24, eos_token_id=[], use_cache=False)
    assert cached.shape == (3, 7 + 24)
    assert torch.equal(cached, recomputed)


def test_batching_with_padding_equals_one_prompt_at_a_time():
    model = small_model()
    batch = model.generate(PROMPTS, max_new_tokens=16, eos_token_id=[])
    for i, prompt in enumerate(PROMPTS):
        alone = model.generate([prompt], max_new_tokens=16, eos_token_id=[])
        assert batch[i, -16:].tolist() == alone[0, -16:].tolist()


def test_output_is_left_padded_prompt_then_new_tokens():
    model = small_model()
    out = model.generate(PROMPTS, max_new_tokens=3, eos_token_id=[], pad_token_id=0)
    ids, mask = left_pad(PROMPTS, 0)
    assert torch.equal(out[:, :7], ids)
    assert mask[1].tolist() == [0, 0, 0, 0, 0, 1, 1]


def test_tensor_input_with_attention_mask_matches_list_input():
    model = small_model()
    ids, mask = left_pad(PROMPTS, 0)
    assert torch.equal(model.generate(ids, attention_mask=mask, max_new_tokens=8), model.generate(PROMPTS, max_new_tokens=8))


def test_same_seed_same_sample_and_global_rng_untouched():
    model = small_model()
    kwargs = dict(max_new_tokens=20, do_sample=True, temperature=1.5, top_k=50, top_p=0.95, eos_token_id=[])
    state = torch.get_rng_state()
    a = model.generate(PROMPTS, seed=1, **kwargs)
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(a, model.generate(PROMPTS, seed=1, **kwargs))
    assert not torch.equal(a, model.generate(PROMPTS, seed=2, **kwargs))


def test_top_k_1_and_tiny_top_p_sample_the_greedy_path():
    model = small_model()
    greedy = model.generate(PROMPTS, max_new_tokens=12, eos_token_id=[])
    assert torch.equal(greedy, model.generate(PROMPTS, max_new_tokens=12, eos_token_id=[], do_sample=True, top_k=1, seed=0))
    assert torch.equal(greedy, model.generate(PROMPTS, max_new_tokens=12, eos_token_id=[], do_sample=True, top_p=1e-6, seed=0))


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = _filter_top_k_top_p(logits, None, 0.8).isfinite()
    assert kept.tolist() == [[True, True, False, False]]
    kept = _filter_top_k_top_p(logits, None, 0.81).isfinite()
    assert kept.tolist() == [[True, True, True, False]]
    assert _filter_top_k_top_p(logits, 2, None).isfinite().tolist() == [[True, True, False, False]]


def test_eos_stops_a_row_and_pads_it():
    model = small_model()
    free = model.generate(PROMPTS, max_new_tokens=10, eos_token_id=[])
    stop = int(free[0, 7 + 2])  # make the 3rd token of row 0 a stop token
    out = model.generate(PROMPTS, max_new_tokens=10, eos_token_id=[stop, 255], pad_token_id=0)
    new = out[0, 7:].tolist()
    assert new[:3] == free[0, 7:10].tolist()
    assert all(t == 0 for t in new[3:])


def test_generation_ends_early_when_every_row_stopped():
    model = small_model()
    first = model.generate(PROMPTS, max_new_tokens=1, eos_token_id=[])[:, -1].tolist()
    out = model.generate(PROMPTS, max_new_tokens=50, eos_token_id=first)
    assert out.shape[1] == 7 + 1


def test_repetition_penalty_discourages_repeats():
    model = small_model()
    plain = model.generate([[5, 6]], max_new_tokens=40, eos_token_id=[])[0, 2:].tolist()
    penalised = model.generate([[5, 6]], max_new_tokens=40, eos_token_id=[], repetition_penalty=1e4)[0].tolist()
    assert len(set(plain)) < len(plain)  # the random model repeats itself ...
    assert len(set(penalised)) == len(penalised)  # ... and a huge penalty forbids it (prompt included)


def test_training_mode_is_restored():
    model = small_model().train()
    model.generate([[1, 2]], max_new_tokens=2)
    assert model.training


def test_max_new_tokens_is_cut_at_the_context_length():
    model = small_model(max_seq_len=16)
    with pytest.warns(UserWarning, match="cut to 6"):
        out = model.generate([list(range(2, 12))], max_new_tokens=20, eos_token_id=[])
    assert out.shape == (1, 16)
    with pytest.raises(ValueError, match="no room"):
        model.generate([list(range(2, 18))], max_new_tokens=1)
