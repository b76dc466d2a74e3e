"""AT-BSL (Yue et al., CVPR 2024, "Revisiting Adversarial Training under Long-Tailed Distributions").

Balanced softmax loss CE(z + log n_c, y) on PGD-10 examples. Official code (`train_at_bsl_cifar10.py`,
`at_bsl_loss.py`): ε = 8/255, step 2/255, 10 steps, start x + 0.001·N(0,1), no temperature on log n_c.
The official default augmentation is AutoAugment (`--aug aua`); plain AT-BSL (`--aug none`) is crop+flip,
which is what the kit trains.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import EPS_8
from ..losses import balanced_softmax_loss
from .base import Method, StepOutput, register_method
from .common import check_attack_args, train_pgd


@register_method
class ATBSL(Method):
    name = "atbsl"
    summary = "AT-BSL: balanced softmax loss on PGD-10 adversarial examples"

    @dataclass
    class Args:
        eps: float = EPS_8  # official: 8/255
        step_size: float = 2.0 / 255.0  # official: 2/255
        steps: int = 10  # official: 10
        start: str = "normal"  # official: x + 0.001·N(0, 1)
        start_std: float = 0.001

    def check(self, epochs: int) -> None:
        check_attack_args(self.args)

    def step(self, model, x, y, epoch, generator) -> StepOutput:
        x_adv = train_pgd(model, x, y, self.args, generator)
        logits = model(x_adv)
        return StepOutput(balanced_softmax_loss(logits, y, self.ctx.class_counts), logits)
