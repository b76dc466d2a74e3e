"""ADT-EXP (Dong, Deng, Pang, Su, Zhu, NeurIPS 2020, "Adversarial Distributional Training for Robust Deep
Learning"), the explicit variant.

For every batch an adversarial *distribution* over perturbations is fitted per pixel,

    δ = ε · tanh(μ + σ · z),   σ = softplus(ρ),   z ~ N(0, I),   μ = ρ = 0 at the start,

by ascending  E_z[CE(f(clip(x + δ)), y)] + λ · H(p(δ)), where the entropy is estimated
from the same samples as the mean over all pixels of  −log p(δ) = z²/2 + log σ + log(1 − tanh²(·))  up to
a constant. Each of the `steps` updates sums the gradients of `samples` Monte-Carlo draws and takes an Adam
step with β1 = β2 = 0, i.e. ``lr · g / (|g| + 1e-8)``, a per-coordinate sign step. The model is then
trained with CE on one fresh draw x + δ (clipped to [0, 1]).

Official code (dongyp13/Adversarial-Distributional-Training, `adt_exp.py`): ε = 8/255 (``--epsilon``),
lr 0.3 (``--step-size``, the Adam learning rate on μ and ρ), 7 steps (``--num-steps``), 5 samples per step
(``num_samples=5`` in ``train``), λ = 0.01 (``--lbd``), Adam ``betas=(0.0, 0.0)``, the model in eval mode while
the distribution is fitted, ``CE`` averaged over the batch and the entropy over every pixel.

Departures: the kit's schedule, model and data (official: WRN-28-10, batch 64, 76 epochs, weight decay 2e-4,
lr ×0.1 at epoch 75); the Adam step is written out in closed form (equal to ``torch.optim.Adam`` with
β = (0, 0), which a test checks); all noise comes from the run's generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lib.core.attacks import eval_mode, random_like
from lib.core.config import EPS_8, ConfigError
from lib.core.methods.base import Method, StepOutput, check_range, register_method
from lib.core.methods.common import EPS_HINT

_TINY = 1e-8  # official: the guard inside both logs and Adam's eps



def adt_sample(mu: torch.Tensor, rho: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, σ) with u = tanh(μ + softplus(ρ)·z) in (−1, 1) (δ = ε·u) and σ = softplus(ρ)."""
    std = F.softplus(rho)
    return torch.tanh(mu + z * std), std


def adt_entropy(z: torch.Tensor, std: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Monte-Carlo entropy estimate of the tanh-Gaussian: mean over all elements of
    −log p = z²/2 + log σ + log(1 − u²) (constants dropped; official ``negative_logp.mean()``)."""
    return (z.pow(2) / 2 + (std + _TINY).log() + (1 - u.pow(2) + _TINY).log()).mean()


def adt_exp_perturb(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, lr: float, steps: int, samples: int,
                    lbd: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fit the ADT-EXP distribution on (x, y) and return one adversarial sample clip(x + ε·u, 0, 1)."""
    x = x.detach()
    mu = torch.zeros_like(x)
    rho = torch.zeros_like(x)
    with eval_mode(model), torch.enable_grad():
        for _ in range(steps):
            mu.requires_grad_(True)
            rho.requires_grad_(True)
            g_mu = torch.zeros_like(x)
            g_rho = torch.zeros_like(x)
            for _ in range(samples):  # Monte-Carlo draws (not a loop over the batch)
                z = random_like(x, "normal", generator)
                u, std = adt_sample(mu, rho, z)
                x_adv = (x + eps * u).clamp(0.0, 1.0)
                objective = F.cross_entropy(model(x_adv), y) + lbd * adt_entropy(z, std, u)
                gm, gr = torch.autograd.grad(objective, (mu, rho))
                g_mu += gm
                g_rho += gr
            # Adam with betas (0, 0) on the minimised −objective: a normalised ascent step.
            mu = (mu.detach() + lr * g_mu / (g_mu.abs() + _TINY))
            rho = (rho.detach() + lr * g_rho / (g_rho.abs() + _TINY))
        with torch.no_grad():
            u, _ = adt_sample(mu.detach(), rho.detach(), random_like(x, "normal", generator))
            return (x + eps * u).clamp(0.0, 1.0).detach()


@register_method
class ADT(Method):
    name = "adt"
    summary = "ADT-EXP: CE on a sample of a learned tanh-Gaussian adversarial distribution (entropy-regularised)"

    @dataclass
    class Args:
        eps: float = EPS_8  # official adt_exp.py --epsilon 8/255
        lr: float = 0.3  # official adt_exp.py --step-size 0.3 (Adam lr on μ and ρ, betas (0, 0))
        steps: int = 7  # official adt_exp.py --num-steps 7
        samples: int = 5  # official adt_exp.py train(): num_samples=5 per step
        lbd: float = 0.01  # official adt_exp.py --lbd 0.01 (entropy weight λ)

    def check(self, epochs: int) -> None:
        check_range("eps", self.args.eps, hint=EPS_HINT)
        if not self.args.lr > 0:
            raise ConfigError(f"lr={self.args.lr} must be > 0 (Adam step on μ, ρ; official: 0.3)")
        if self.args.steps < 0 or self.args.samples < 1:
            raise ConfigError(f"steps={self.args.steps} must be >= 0 and samples={self.args.samples} >= 1 "
                              "(official: 7 steps of 5 samples)")
        if self.args.lbd < 0:
            raise ConfigError(f"lbd={self.args.lbd} must be >= 0 (entropy weight; official: 0.01)")

    def step(self, model, x, y, epoch, generator) -> StepOutput:
        a = self.args
        x_adv = adt_exp_perturb(model, x, y, eps=a.eps, lr=a.lr, steps=a.steps, samples=a.samples, lbd=a.lbd,
                                generator=generator)
        logits = model(x_adv)
        return StepOutput(F.cross_entropy(logits, y), logits)
