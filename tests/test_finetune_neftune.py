import math

import pytest
import torch

from conftest import small_model
from slm.finetune.neftune import NEFTune


def embedding_noise(model, ids, lengths, train=True):
    captured = []
    handle = model.embed.register_forward_hook(lambda m, i, o: captured.append(o))
    model.train(train)
    model(ids)
    handle.remove()
    return captured[0] - model.embed.weight[ids]


def test_noise_scale_follows_each_examples_own_length():
    model = small_model()
    d = model.config.d_model
    neft = NEFTune(model, alpha=5.0, generator=torch.Generator().manual_seed(0))
    ids = torch.randint(0, 256, (1, 120))
    lengths = torch.tensor([[100] * 100 + [20] * 20])  # two packed examples
    neft.lengths = lengths
    noise = embedding_noise(model, ids, lengths)
    for span, length in ((slice(0, 100), 100), (slice(100, 120), 20)):
        bound = 5.0 / math.sqrt(length * d)
        part = noise[0, span].abs()
        assert part.max().item() <= bound * (1 + 1e-5)
        assert part.max().item() > 0.95 * bound  # uniform noise reaches its bound
        assert part.mean().item() == pytest.approx(bound / 2, rel=0.05)  # |U(-b, b)| has mean b/2


def test_no_noise_in_eval_mode_or_without_the_hook():
    model = small_model()
    neft = NEFTune(model, alpha=5.0)
    ids = torch.randint(0, 256, (2, 10))
    neft.lengths = torch.full((2, 10), 10)
    assert embedding_noise(model, ids, None, train=False).abs().max().item() == 0.0
    neft.remove()
    assert embedding_noise(model, ids, None, train=True).abs().max().item() == 0.0


def test_training_without_lengths_is_an_error():
    model = small_model().train()
    NEFTune(model)
    with pytest.raises(ValueError, match="example length"):
        model(torch.randint(0, 256, (1, 4)))
