"""Standard training: cross-entropy on clean images (the reference point with no robustness)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from lib.core.methods.base import Method, StepOutput, register_method


@register_method
class CE(Method):
    name = "ce"
    summary = "standard training, clean cross-entropy (reference)"

    @dataclass
    class Args:
        pass

    def stage(self, epoch: int) -> str:
        return "clean"

    def step(self, model, x, y, epoch, generator) -> StepOutput:
        logits = model(x)
        return StepOutput(F.cross_entropy(logits, y), logits)
