"""slm: small language models for Japanese clinical and medical text.

Pipeline (one way): tokenizer -> slm.data -> slm.train -> slm.finetune -> slm.eval.
"""

from slm.config import ConfigError, ModelConfig
from slm.model import SLM

__all__ = ["SLM", "ModelConfig", "ConfigError"]
