"""NEFTune (Jain et al. 2023; report §2.4.2 uses alpha = 5): noise on the token embeddings while
training, uniform in [-1, 1] scaled by alpha / sqrt(L * d), where L is the token's own example
length and d the model width. Off in eval mode, so generation and evaluation never see it.

The noise goes on the embedding lookup's output, before SLM multiplies it by sqrt(d_model),
exactly where NEFTune puts it in models without that scale: relative to the embedding
entries it has the size the method was tuned for.
"""

from __future__ import annotations

import torch

from slm.model import SLM


class NEFTune:
    def __init__(self, model: SLM, alpha: float = 5.0, generator: torch.Generator | None = None):
        self.alpha, self.d = alpha, model.config.d_model
        self.lengths: torch.Tensor | None = None  # (B, T) example length of each position, set per batch
        self.generator = generator
        self._handle = model.embed.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if not module.training or self.alpha == 0:
            return output
        if self.lengths is None or self.lengths.shape != output.shape[:2]:
            raise ValueError("NEFTune needs each position's example length: set .lengths to the batch's (B, T) lengths")
        scale = self.alpha / torch.sqrt(self.lengths.to(output.device, torch.float32) * self.d)
        noise = torch.rand(output.shape, generator=self.generator, device=output.device, dtype=torch.float32) * 2 - 1
        return output + (noise * scale[..., None]).to(output.dtype)

    def remove(self) -> None:
        self._handle.remove()
