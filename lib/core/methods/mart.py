"""MART (Wang, Zou, Yi, Bailey, Ma, Gu, ICLR 2020, "Improving Adversarial Robustness Requires Revisiting
Misclassified Examples"; official code YisenWang/MART, `mart.py`, `train_wideresnet.py`).

Loss (paper Eq. 11, official `mart_loss`), with p = softmax(f(x)), p' = softmax(f(x')):

    BCE(p'_i, y_i) = CE(f(x'_i), y_i) − log(1.0001 − max_{k≠y_i} p'_ik + 1e-12)
    loss = mean_i BCE + β · (1/N) Σ_i KL(p_i ‖ p'_i) · (1.0000001 − p_{i,y_i})

The constants 1.0001, 1e-12 (also inside log p' of the KL) and 1.0000001 are the official code's; the
weight (1 − p_y(x)) is not detached, as in the official code. x' is CE-PGD-10 in eval mode
(`lib.core.attacks.pgd`, start x + 0.001·N(0, 1)), ε = 0.031, step 0.007 (official `train_wideresnet.py`).

Where the kit departs from the official code, and why:
- The random start x + 0.001·N(0, 1) is clipped to [0, 1] before the first step (`lib.core.attacks.pgd`'s start
  rule, shared with AT-BSL and TAET); the official code clips only after each step.
- The most probable wrong class max_{k≠y} p'_k is a masked argmax; the official code takes the top two of an
  argsort. They agree except on exact ties, where the loss value is the same either way.
- The KL's p·log p is computed as p·log_softmax(z) (same value as the official `KLDivLoss` on softmax(z); no
  0·log 0 = NaN gradient when a probability underflows).
- β = 6.0 is the WRN-34-10 script's value (`train_wideresnet.py`); the official ResNet-18 script
  (`train_resnet.py`) uses β = 5.0 with lr 0.01 and wd 3.5e-3. Optimiser, epochs and LR schedule are the
  kit's (official WRN: 90 epochs, wd 7e-4, lr × 0.1 at 75).
- `StepOutput.logits` are those of x'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lib.core.config import ConfigError
from lib.core.methods.base import Method, StepOutput, check_range, register_method
from lib.core.methods.common import check_attack_args, train_pgd

# Official mart.py constants.
_MARGIN_ONE = 1.0001
_LOG_TINY = 1e-12
_WEIGHT_ONE = 1.0000001


def mart_loss(logits_nat: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    """Official `mart_loss` on given logits: BCE on x' + β · mean_i KL(p_i ‖ p'_i)·(1 − p_{i,y_i})."""
    n = logits_nat.shape[0]
    adv_probs = F.softmax(logits_adv, dim=1)
    true_mask = F.one_hot(y, logits_adv.shape[1]).bool()
    wrong = adv_probs.detach().masked_fill(true_mask, -math.inf).argmax(1)  # most probable k != y
    margin = -torch.log(_MARGIN_ONE - adv_probs.gather(1, wrong[:, None]).squeeze(1) + _LOG_TINY)
    loss_adv = F.cross_entropy(logits_adv, y) + margin.mean()

    nat_probs = F.softmax(logits_nat, dim=1)
    log_nat = F.log_softmax(logits_nat, dim=1)
    kl = (nat_probs * (log_nat - torch.log(adv_probs + _LOG_TINY))).sum(1)
    true_probs = nat_probs.gather(1, y[:, None]).squeeze(1)
    loss_robust = (kl * (_WEIGHT_ONE - true_probs)).sum() / n
    return loss_adv + beta * loss_robust


@register_method
class MART(Method):
    name = "mart"
    summary = "MART: BCE on PGD-10 examples + beta * KL weighted by (1 - p_y(x))"

    @dataclass
    class Args:
        beta: float = 6.0  # official train_wideresnet.py --beta 6.0 (train_resnet.py: 5.0)
        eps: float = 0.031  # official train_wideresnet.py --epsilon 0.031
        step_size: float = 0.007  # official train_wideresnet.py --step-size 0.007
        steps: int = 10  # official train_wideresnet.py --num-steps 10
        start: str = "normal"  # official mart.py: x + 0.001 * randn
        start_std: float = 0.001  # official mart.py: 0.001

    def check(self, epochs: int) -> None:
        check_attack_args(self.args)
        check_range("beta", self.args.beta, 0.0, float("inf"), hint="MART uses 6.0")
        if self.args.start not in ("normal", "uniform", "none"):
            raise ConfigError(f"start={self.args.start!r} is not one of ['normal', 'uniform', 'none'] "
                              "(official MART: normal)")

    def step(self, model, x, y, epoch, generator) -> StepOutput:
        x_adv = train_pgd(model, x, y, self.args, generator)
        logits_nat = model(x)
        logits_adv = model(x_adv)
        return StepOutput(mart_loss(logits_nat, logits_adv, y, self.args.beta), logits_adv)
