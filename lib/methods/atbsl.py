"""AT-BSL (Yue et al., CVPR 2024, "Revisiting Adversarial Training under Long-Tailed Distributions").

Balanced softmax loss CE(z + log n_c, y) on PGD-10 examples. Official code (`train_at_bsl_cifar10.py`,
`at_bsl_loss.py`): ε = 8/255, step 2/255, 10 steps, start x + 0.001·N(0,1), no temperature on log n_c.
The official default augmentation is AutoAugment (`--aug aua`); plain AT-BSL (`--aug none`) is crop+flip,
which is what the kit trains. ``extra_clean_forward``: the TAET repository's AT-BSL baseline (`code/AT-BSL`) runs a
discarded train-mode forward on the clean batch before the attack (BatchNorm statistics only).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..losses import balanced_softmax_loss
from .base import Method, StepOutput, register_method
from .common import PGDArgs, check_attack_args, extra_clean_forward, train_pgd


@register_method
class ATBSL(Method):
    name = "atbsl"
    summary = "AT-BSL: balanced softmax loss on PGD-10 adversarial examples"

    @dataclass
    class Args(PGDArgs):
        """Official: ε = 8/255, step 2/255, 10 steps (the PGDArgs defaults), start x + 0.001·N(0, 1)."""

        start: str = "normal"
        extra_clean_forward: bool = False  # the TAET repository's AT-BSL baseline: True (BatchNorm stats only)

    def check(self, epochs: int) -> None:
        check_attack_args(self.args)

    def step(self, model, x, y, epoch, generator) -> StepOutput:
        if self.args.extra_clean_forward:
            extra_clean_forward(model, x)
        x_adv = train_pgd(model, x, y, self.args, generator)
        logits = model(x_adv)
        return StepOutput(balanced_softmax_loss(logits, y, self.ctx.class_counts), logits)
