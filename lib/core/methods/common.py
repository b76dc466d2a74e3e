"""Pieces the adversarial methods share: the training-time PGD attack and its settings, and the class-wise budgets
an enhancer (RobustLT, `methods/robustlt.py`) sets for it."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from lib.core.attacks import eval_mode, pgd
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


@contextlib.contextmanager
def frozen_bn_train_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Train mode, every BatchNorm on the batch's statistics and its running statistics untouched
    (``track_running_stats = False`` inside): how the RobustLT trainer crafts (``model.train()``, then
    ``track_bn_stats(model, False)``). Gives back every train flag and ``track_running_stats``; dropout is on."""
    flags = [(m, m.training) for m in model.modules()]
    bns = [(m, m.track_running_stats) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.train()
    for m, _ in bns:
        m.track_running_stats = False
    try:
        yield model
    finally:
        for m, tracked in bns:
            m.track_running_stats = tracked
        for m, was_training in flags:
            m.training = was_training


ATTACK_MODES = {"eval": eval_mode, "train_frozen_bn": frozen_bn_train_mode}
BUDGET_STARTS = ("base", "class")


@dataclass
class ClassBudget:
    """Class-wise sizes for :func:`train_pgd`: sample i is attacked with ε·scale[y_i] and step·scale[y_i] (ε and step:
    the method's own). `start` "base": the random start keeps the method's ε for every sample, so a sample with a
    smaller budget starts outside its ball and the first step projects it in (official RobustLT); "class": drawn in
    its own ball. `mode`: a key of ATTACK_MODES. `calls` counts the attacks run under it."""

    scale: torch.Tensor  # (C,) on the device
    start: str = "base"
    mode: str = "eval"
    calls: int = 0


_BUDGET: contextvars.ContextVar[ClassBudget | None] = contextvars.ContextVar("lib_class_budget", default=None)


@contextlib.contextmanager
def class_budget(budget: ClassBudget) -> Iterator[ClassBudget]:
    """Inside this block every :func:`train_pgd` uses `budget` (scoped like ``torch.no_grad``: a context variable,
    restored on exit). The methods themselves are unchanged: an enhancer wraps their `step` in it."""
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def train_pgd(model, x: torch.Tensor, y: torch.Tensor, args, generator) -> torch.Tensor:
    """PGD-k on CE with the method's start rule ("normal": x + std·N(0,1); "uniform": x + U(−ε, ε)); inside
    :func:`class_budget`, with each sample's class-wise ε and step (tensors on the device, indexed by y)."""
    b = _BUDGET.get()
    kw = dict(steps=args.steps, loss="ce", random_start=args.start != "none",
              start=args.start if args.start != "none" else "uniform", start_std=args.start_std, generator=generator)
    if b is None:
        return pgd(model, x, y, eps=args.eps, step_size=args.step_size, **kw)
    b.calls += 1
    r = b.scale.to(device=x.device, dtype=x.dtype)[y]
    return pgd(model, x, y, eps=args.eps * r, step_size=args.step_size * r, **kw, mode=ATTACK_MODES[b.mode],
               start_eps=args.eps if b.start == "base" else None)


def extra_clean_forward(model, x: torch.Tensor) -> None:
    """The official TAET notebook's (cell 7) ``outputs = model(inputs)`` in train mode before the stage branch, in
    both stages, and its AT-BSL baseline's: the output is never used, so only BatchNorm's running statistics change
    (one more update with the clean batch). No graph: the update is the same without one."""
    with torch.no_grad():
        model(x)
