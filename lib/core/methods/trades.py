"""TRADES (Zhang, Yu, Jiao, Xing, El Ghaoui, Jordan, ICML 2019, "Theoretically Principled Trade-off between
Robustness and Accuracy"; official code yaodongyu/TRADES, `trades.py`, `train_trades_cifar10.py`).

Loss (paper Eq. 5, official `trades_loss`):

    CE(f(x), y) + β · (1/N) · Σ_i KL(p(x_i) ‖ p(x'_i))

with the KL summed over the batch and divided by the batch size, as the official
`nn.KLDivLoss(size_average=False)` / batch_size. The inner maximisation is PGD on that KL (not on CE),
run in eval mode: start x + 0.001·N(0, 1) (not clipped before the first step, as the official code), then
10 steps x' <- clip_[0,1](clip_ball(x' + 0.007·sign(∇_x' KL))), ε = 0.031. Gradients are taken with respect
to x' only, so the parameters gain no `.grad` during the attack.

Where the kit departs from the official code, and why:
- The clean forward pass runs once (train mode) and serves both the CE term and the KL target; the official
  code runs it twice, which gives the same loss and gradient but updates BatchNorm running statistics twice
  (the kit's TAET makes the same choice).
- The KL is computed from log-softmax of both sides (`log_target=True`): the same value as the official
  `KLDivLoss(log_softmax(z'), softmax(z))`, without the 0·log 0 = NaN gradient when a probability underflows.
- The clean-image target of the attack, p(x) in eval mode, is computed once per batch rather than at every
  step (it does not change during the attack).
- Optimiser, epochs and LR schedule are the kit's (official: WRN-34-10, 76 epochs, wd 2e-4, lr × 0.1 at 75).
- `StepOutput.logits` are those of x' (train accuracy = accuracy on the training attack's examples, as the
  kit's other adversarial methods report).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lib.core.attacks import eval_mode, linf_ascent, random_like
from lib.core.methods.base import Method, StepOutput, check_range, register_method
from lib.core.methods.common import check_attack_args


def kl_rows(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(softmax(logits_p) ‖ softmax(logits_q)), shape (N,)."""
    return F.kl_div(F.log_softmax(logits_q, dim=1), F.log_softmax(logits_p, dim=1), reduction="none",
                    log_target=True).sum(1)


def trades_loss(logits_nat: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    """CE(z, y) + β · Σ_i KL(p_i ‖ p'_i) / N (official `trades_loss`; gradient flows through both sides)."""
    n = logits_nat.shape[0]
    return F.cross_entropy(logits_nat, y) + beta * kl_rows(logits_nat, logits_adv).sum() / n


def trades_attack(model, x: torch.Tensor, *, eps: float, step_size: float, steps: int, start_std: float,
                  generator: torch.Generator | None) -> torch.Tensor:
    """l_inf PGD maximising Σ_i KL(p(x_i) ‖ p(x'_i)) in eval mode (official `trades_loss`, distance='l_inf')."""
    x = x.detach()
    with eval_mode(model):
        with torch.no_grad():
            log_p_nat = F.log_softmax(model(x), dim=1)

        def objective(logits: torch.Tensor, t: int) -> torch.Tensor:
            return F.kl_div(F.log_softmax(logits, dim=1), log_p_nat, reduction="sum", log_target=True)

        x_start = x + start_std * random_like(x, "normal", generator)  # official: no clip before the first step
        x_adv = linf_ascent(model, x, x_start, eps=eps, step_size=step_size, steps=steps, objective=objective)
    return x_adv.clamp(0.0, 1.0)

@register_method
class TRADES(Method):
    name = "trades"
    summary = "TRADES: clean CE + beta * KL(p(x) || p(x')), x' by PGD-10 on the KL"

    @dataclass
    class Args:
        beta: float = 6.0  # official train_trades_cifar10.py --beta 6.0 (1/λ in the paper)
        eps: float = 0.031  # official train_trades_cifar10.py --epsilon 0.031
        step_size: float = 0.007  # official train_trades_cifar10.py --step-size 0.007
        steps: int = 10  # official train_trades_cifar10.py --num-steps 10
        start_std: float = 0.001  # official trades.py: x + 0.001 * randn

    def check(self, epochs: int) -> None:
        check_attack_args(self.args)
        check_range("beta", self.args.beta, 0.0, float("inf"), hint="TRADES uses 6.0")
        check_range("start_std", self.args.start_std, 0.0, 1.0, hint="official: 0.001")

    def step(self, model, x, y, epoch, generator) -> StepOutput:
        a = self.args
        x_adv = trades_attack(model, x, eps=a.eps, step_size=a.step_size, steps=a.steps, start_std=a.start_std,
                              generator=generator)
        logits_nat = model(x)
        logits_adv = model(x_adv)
        return StepOutput(trades_loss(logits_nat, logits_adv, y, a.beta), logits_adv)
