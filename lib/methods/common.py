"""Pieces the adversarial methods share: the training-time PGD attack and its settings."""

from __future__ import annotations

import torch

from ..attacks import pgd
from .base import check_range

EPS_HINT = "attack sizes are in [0, 1] pixel units: 8/255 = 0.0314"


def check_attack_args(args) -> None:
    check_range("eps", args.eps, hint=EPS_HINT)
    check_range("step_size", args.step_size, hint=EPS_HINT)
    if args.steps < 1:
        from ..config import ConfigError

        raise ConfigError(f"steps={args.steps} must be >= 1 (the papers use 10)")


def train_pgd(model, x: torch.Tensor, y: torch.Tensor, args, generator) -> torch.Tensor:
    """PGD-k on CE with the method's start rule ("normal": x + std·N(0,1); "uniform": x + U(−ε, ε))."""
    return pgd(model, x, y, eps=args.eps, step_size=args.step_size, steps=args.steps, loss="ce",
               random_start=args.start != "none", start=args.start if args.start != "none" else "uniform",
               start_std=args.start_std, generator=generator)
