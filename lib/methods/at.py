"""AT (Madry et al., ICLR 2018): CE on PGD-10 examples, ε = 8/255, step 2/255, uniform random start."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from ..config import EPS_8
from .base import Method, StepOutput, register_method
from .common import check_attack_args, train_pgd


@register_method
class AT(Method):
    name = "at"
    summary = "Madry PGD-AT: cross-entropy on PGD-10 adversarial examples"

    @dataclass
    class Args:
        eps: float = EPS_8  # paper: 8/255
        step_size: float = 2.0 / 255.0  # paper: 2/255
        steps: int = 10  # paper: 10
        start: str = "uniform"  # x + U(-eps, eps)
        start_std: float = 0.001  # only for start="normal"

    def check(self, epochs: int) -> None:
        check_attack_args(self.args)

    def step(self, model, x, y, epoch, generator) -> StepOutput:
        x_adv = train_pgd(model, x, y, self.args, generator)
        logits = model(x_adv)
        return StepOutput(F.cross_entropy(logits, y), logits)
