import pytest
import torch

from slm.config import ModelConfig
from slm.model import SLM


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def small_config(**overrides) -> ModelConfig:
    """The tiny preset with a small vocabulary, no dropout, and an init wide enough that
    greedy choices are not near-ties (so numerically equal paths pick equal tokens)."""
    fields = dict(vocab_size=256, attn_dropout=0.0, resid_dropout=0.0, init_std=0.08, eos_token_id=1, pad_token_id=0)
    return ModelConfig.from_preset("tiny", **{**fields, **overrides})


def small_model(**overrides) -> SLM:
    return SLM(small_config(**overrides)).eval()
