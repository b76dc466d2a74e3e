"""GAIRAT (Zhang, Zhu, Niu, Han, Sugiyama, Kankanhalli, ICLR 2021, "Geometry-aware Instance-reweighted
Adversarial Training"; official code zjfheart/Geometry-aware-Instance-reweighted-Adversarial-Training,
`GAIRAT.py`, `GAIR.py`, `attack_generator.py`).

Geometry-aware PGD (official `GA_PGD`, category "Madry"): start x + U(−ε, ε) clipped to [0, 1], K = 10
CE steps of 0.007 in the ε = 0.031 ball, eval mode. Before each step the batch is classified; the geometry
value κ_i counts the steps at which sample i is still classified correctly (0 ≤ κ_i ≤ K). The loss is the
CE on x', each sample weighted by (official `GAIR`, K/2 meaning int(K/2)):

    tanh:     ω_i = (1 + tanh(λ + 5·(K/2 − κ_i)/(K/2))) / 2      (= 1/2·(1 + tanh(λ + 5(1 − 2κ_i/K))), K even)
    sigmoid:  ω_i = sigmoid(λ + 5·(K/2 − κ_i)/(K/2))
    discrete: ω_i = (K + 1 − κ_i) / (K + 1)

then normalised to sum to the batch size, ω_i <- N·ω_i / Σ_j ω_j; loss = (1/N) Σ_i ω_i·CE(f(x'_i), y_i).
Before the burn-in ends the loss is plain AT (mean CE on the same x'). Large λ flattens the weights
(λ = inf is standard AT); small λ concentrates them on samples that are easy to attack (small κ).

λ schedule (official `adjust_Lambda`, 1-indexed epoch e of E): "fixed" λ = Lambda; "linear"
λ = Lambda_max − (e/E)·(Lambda_max − Lambda) (needs a finite Lambda_max); "piecewise" λ = Lambda, then
Lambda − 1.0 from e = 0.75·E and Lambda − 1.5 from e = 11/12·E (the thresholds 90 and 110 of 120 of the
official WRN branch).

Where the kit departs from the official code, and why:
- Burn-in as a fraction of the run: the official code reweights from 1-indexed epoch `begin_epoch` = 60 of
  120; the kit reweights from 1-indexed epoch round(begin_frac · E) with begin_frac = 0.5, so the official
  run is reproduced at E = 120 (59 plain epochs, then GAIR) and shorter runs keep the shape.
- The official code switches λ at a hard-coded epoch 60 (30 for runs under 110 epochs) independently of
  `--begin_epoch`; before the switch λ = Lambda_max. The kit uses the one burn-in fraction for both.
- The official "piecewise" schedule tests `epoch >= 60` first in an if/elif chain, so its later drops are
  unreachable and it behaves as "fixed"; the kit applies the drops the thresholds describe. The default,
  "fixed", is unaffected.
- (1 + tanh(a))/2 is evaluated as sigmoid(2a), the same number without the cancellation to 0 that makes the
  normalisation 0/0 for very negative a.
- κ is counted per step on the whole batch at once (the official code loops over samples). `kappa="first"`
  offers the paper's wording instead (steps before the first misclassification; a sample that flips back
  to correct is not counted again); the default "count" is the official code's.
- Optimiser, epochs and LR schedule are the kit's (official: WRN-32-10, 120 epochs, wd 2e-4, piecewise lr).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lib.core.attacks import eval_mode, linf_ascent, random_like
from lib.core.config import ConfigError
from lib.core.methods.base import Method, StepOutput, check_range, register_method
from lib.core.methods.common import check_attack_args

LAMBDA_SCHEDULES = ("fixed", "linear", "piecewise")
WEIGHT_FUNCTIONS = ("tanh", "sigmoid", "discrete")
KAPPA_RULES = ("count", "first")
# Official WRN branch of adjust_Lambda: drops at epochs 90 and 110 of 120.
_PIECEWISE = ((0.75, 1.0), (11.0 / 12.0, 1.5))


def _round_half_up(v: float) -> int:
    return int(math.floor(v + 0.5))



def ga_pgd(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, step_size: float, steps: int,
           generator: torch.Generator | None = None, kappa: str = "count") -> tuple[torch.Tensor, torch.Tensor]:
    """Geometry-aware PGD (official `GA_PGD`, CE, uniform start): (x', κ).

    κ_i ("count"): number of the K steps at whose start sample i is classified correctly. ("first"): number
    of steps before its first misclassification. Gradients are taken with respect to x' only."""
    x = x.detach()
    correct_steps = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    still_correct = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)

    def objective(logits: torch.Tensor, t: int) -> torch.Tensor:
        nonlocal still_correct
        correct = logits.detach().argmax(1) == y
        if kappa == "first":
            still_correct &= correct
            correct = still_correct
        correct_steps.add_(correct)
        return F.cross_entropy(logits, y, reduction="sum")

    x_start = (x + eps * (2.0 * random_like(x, "uniform", generator) - 1.0)).clamp(0.0, 1.0)
    with eval_mode(model):
        x_adv = linf_ascent(model, x, x_start, eps=eps, step_size=step_size, steps=steps, objective=objective)
    return x_adv, correct_steps

def gair_weights(kappa: torch.Tensor, steps: int, lam: float, fn: str = "tanh") -> torch.Tensor:
    """Official `GAIR`: per-sample weights from geometry values κ, normalised to sum to the batch size."""
    k = kappa.to(torch.float32) if not kappa.is_floating_point() else kappa
    if fn == "discrete":
        w = ((steps + 1) - k) / (steps + 1)
    else:
        half = steps // 2
        a = lam + (half - k) * 5.0 / half
        w = torch.sigmoid(2.0 * a) if fn == "tanh" else torch.sigmoid(a)  # (1 + tanh a)/2 = sigmoid(2a)
    return w * w.numel() / w.sum()


def gairat_loss(logits_adv: torch.Tensor, y: torch.Tensor, kappa: torch.Tensor, steps: int, lam: float,
                fn: str = "tanh") -> torch.Tensor:
    """(1/N) Σ_i ω_i · CE(f(x'_i), y_i) with ω = `gair_weights` (official GAIRAT.py train loop)."""
    w = gair_weights(kappa, steps, lam, fn).to(logits_adv.dtype)
    return (F.cross_entropy(logits_adv, y, reduction="none") * w).mean()


@register_method
class GAIRAT(Method):
    name = "gairat"
    summary = "GAIRAT: PGD-10 CE reweighted by geometry value kappa (plain AT during the burn-in)"

    @dataclass
    class Args:
        lam: float = -1.0  # official GAIRAT.py --Lambda '-1.0'
        lam_max: float = math.inf  # official GAIRAT.py --Lambda_max inf (only "linear" reads it)
        lam_schedule: str = "fixed"  # official GAIRAT.py --Lambda_schedule fixed
        weight_fn: str = "tanh"  # official GAIRAT.py --weight_assignment_function Tanh
        begin_frac: float = 0.5  # official GAIRAT.py --begin_epoch 60 of --epochs 120
        kappa: str = "count"  # official attack_generator.py GA_PGD: Kappa += 1 at every correct step
        eps: float = 0.031  # official GAIRAT.py --epsilon 0.031
        step_size: float = 0.007  # official GAIRAT.py --step-size 0.007
        steps: int = 10  # official GAIRAT.py --num-steps 10
        start: str = "uniform"  # official GA_PGD category "Madry": x + U(-eps, eps), clipped to [0, 1]

        def __post_init__(self):  # the CLI passes `--method-arg lam=inf` as the string "inf"
            self.lam = float(self.lam)
            self.lam_max = float(self.lam_max)

    def check(self, epochs: int) -> None:
        a = self.args
        check_attack_args(a)
        if a.start != "uniform":
            raise ConfigError(f"start={a.start!r}: GAIRAT's geometry-aware PGD starts at x + U(-eps, eps) "
                              "(official category 'Madry'); only 'uniform' is implemented")
        for field, value, valid in (("lam_schedule", a.lam_schedule, LAMBDA_SCHEDULES),
                                    ("weight_fn", a.weight_fn, WEIGHT_FUNCTIONS), ("kappa", a.kappa, KAPPA_RULES)):
            if value not in valid:
                raise ConfigError(f"{field}={value!r} is not one of {list(valid)}")
        check_range("begin_frac", a.begin_frac, 0.0, 1.0, hint="official: 60 of 120 epochs = 0.5")
        if math.isnan(a.lam) or a.lam == -math.inf:
            raise ConfigError(f"lam={a.lam} gives no usable weights; use a finite value (official -1.0) or inf "
                              "(standard AT)")
        if a.lam_schedule == "linear" and not math.isfinite(a.lam_max):
            raise ConfigError(f"lam_schedule='linear' needs a finite lam_max (got {a.lam_max}); e.g. "
                              "--method-arg lam_max=5")
        if a.weight_fn != "discrete" and a.steps < 2:
            raise ConfigError(f"steps={a.steps}: the {a.weight_fn} weights divide by int(steps/2); use steps >= 2")

    def begin_epoch(self) -> int:
        """1-indexed first epoch that reweights (official `begin_epoch`, 60 of 120)."""
        return _round_half_up(self.args.begin_frac * self.ctx.epochs)

    def reweights(self, epoch: int) -> bool:
        return epoch + 1 >= self.begin_epoch()  # official: `if (epoch + 1) >= args.begin_epoch`

    def stage(self, epoch: int) -> str:
        return "reweighted" if self.reweights(epoch) else "adversarial"

    def lam_at(self, epoch: int) -> float:
        """λ for 0-indexed `epoch` once the burn-in is over (official `adjust_Lambda(epoch + 1)`)."""
        a, e1, total = self.args, epoch + 1, self.ctx.epochs
        if a.lam_schedule == "linear":
            return a.lam_max - (e1 / total) * (a.lam_max - a.lam)
        if a.lam_schedule == "piecewise":
            drop = 0.0
            for frac, d in _PIECEWISE:
                if e1 >= _round_half_up(frac * total):
                    drop = d
            return a.lam - drop
        return a.lam

    def step(self, model, x, y, epoch, generator) -> StepOutput:
        a = self.args
        x_adv, kappa = ga_pgd(model, x, y, eps=a.eps, step_size=a.step_size, steps=a.steps, generator=generator,
                              kappa=a.kappa)
        logits = model(x_adv)
        if not self.reweights(epoch):
            return StepOutput(F.cross_entropy(logits, y), logits)
        return StepOutput(gairat_loss(logits, y, kappa, a.steps, self.lam_at(epoch), a.weight_fn), logits)
