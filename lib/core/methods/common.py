"""Pieces the adversarial methods share: the training-time PGD attack and its settings."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lib.core.attacks import pgd
from lib.core.config import EPS_8
from lib.core.methods.base import check_range

EPS_HINT = "attack sizes are in [0, 1] pixel units: 8/255 = 0.0314"


@dataclass
class PGDArgs:
    """The training attack shared by PGD-AT and AT-BSL (both papers and official codes): ε = 8/255, step 2/255,
    10 steps; `start` "uniform" (x + U(−ε, ε)), "normal" (x + start_std·N(0, 1)) or "none"."""

    eps: float = EPS_8
    step_size: float = 2.0 / 255.0
    steps: int = 10
    start: str = "uniform"
    start_std: float = 0.001  # only for start="normal"


def check_attack_args(args) -> None:
    check_range("eps", args.eps, hint=EPS_HINT)
    check_range("step_size", args.step_size, hint=EPS_HINT)
    if args.steps < 1:
        from lib.core.config import ConfigError

        raise ConfigError(f"steps={args.steps} must be >= 1 (the papers use 10)")


def train_pgd(model, x: torch.Tensor, y: torch.Tensor, args, generator) -> torch.Tensor:
    """PGD-k on CE with the method's start rule ("normal": x + std·N(0,1); "uniform": x + U(−ε, ε))."""
    return pgd(model, x, y, eps=args.eps, step_size=args.step_size, steps=args.steps, loss="ce",
               random_start=args.start != "none", start=args.start if args.start != "none" else "uniform",
               start_std=args.start_std, generator=generator)


def extra_clean_forward(model, x: torch.Tensor) -> None:
    """The official TAET notebook's (cell 7) ``outputs = model(inputs)`` in train mode before the stage branch, in
    both stages, and its AT-BSL baseline's: the output is never used, so only BatchNorm's running statistics change
    (one more update with the clean batch). No graph: the update is the same without one."""
    with torch.no_grad():
        model(x)
