"""AT (Madry et al., ICLR 2018): CE on PGD-10 examples, ε = 8/255, step 2/255, uniform random start."""

from __future__ import annotations

import torch.nn.functional as F

from lib.core.methods.base import Method, StepOutput, register_method
from lib.core.methods.common import PGDArgs, check_attack_args, train_pgd


@register_method
class AT(Method):
    name = "at"
    summary = "Madry PGD-AT: cross-entropy on PGD-10 adversarial examples"

    class Args(PGDArgs):
        """Madry et al.: ε = 8/255, step 2/255, 10 steps, start x + U(−ε, ε)."""

    def check(self, epochs: int) -> None:
        check_attack_args(self.args)

    def step(self, model, x, y, epoch, generator) -> StepOutput:
        x_adv = train_pgd(model, x, y, self.args, generator)
        logits = model(x_adv)
        return StepOutput(F.cross_entropy(logits, y), logits)
