"""AT-BSL (Yue et al., CVPR 2024, "Revisiting Adversarial Training under Long-Tailed Distributions").

Balanced softmax loss CE(z + log n_c, y) on PGD-10 examples. Official code (`train_at_bsl_cifar10.py`,
`at_bsl_loss.py`): ε = 8/255, step 2/255, 10 steps, start x + 0.001·N(0,1), no temperature on log n_c.
The official default augmentation is AutoAugment (`--aug aua`); plain AT-BSL (`--aug none`) is crop+flip,
which is what the kit trains. ``extra_clean_forward``: the TAET repository's AT-BSL baseline (`code/AT-BSL`) runs a
discarded train-mode forward on the clean batch before the attack (BatchNorm statistics only).
`clean_epochs` (default 0, not in the paper) prepends TAET's first stage, clean CE, for the claims check's
factorial; it is not called `ce_epochs` because profiles give that to every method.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from lib.core.config import ConfigError
from lib.core.losses import balanced_softmax_loss
from lib.core.methods.base import Method, StepOutput, register_method
from lib.core.methods.common import PGDArgs, check_attack_args, extra_clean_forward, train_pgd


@register_method
class ATBSL(Method):
    name = "atbsl"
    summary = "AT-BSL: balanced softmax loss on PGD-10 adversarial examples"

    @dataclass
    class Args(PGDArgs):
        """Official: ε = 8/255, step 2/255, 10 steps (the PGDArgs defaults), start x + 0.001·N(0, 1)."""

        start: str = "normal"
        extra_clean_forward: bool = False  # the TAET repository's AT-BSL baseline: True (BatchNorm stats only)
        clean_epochs: int = 0  # not in AT-BSL: epochs of clean CE first (TAET's stage 1); 0 = official AT-BSL

    def check(self, epochs: int) -> None:
        check_attack_args(self.args)
        if not 0 <= self.args.clean_epochs <= epochs:
            raise ConfigError(f"clean_epochs={self.args.clean_epochs} must be between 0 and epochs={epochs} "
                              "(0 = official AT-BSL)")

    def stage(self, epoch: int) -> str:
        return "clean" if epoch < self.args.clean_epochs else "adversarial"

    def step(self, model, x, y, epoch, generator) -> StepOutput:
        if self.args.extra_clean_forward:
            extra_clean_forward(model, x)
        if self.stage(epoch) == "clean":
            logits = model(x)
            return StepOutput(F.cross_entropy(logits, y), logits)
        x_adv = train_pgd(model, x, y, self.args, generator)
        logits = model(x_adv)
        return StepOutput(balanced_softmax_loss(logits, y, self.ctx.class_counts), logits)
