"""Adversarial attacks with one calling convention: ``attack(model, x, y, *, ...) -> x_adv``.

Inputs live in [0, 1] (normalisation belongs inside the model); ``eps`` and step sizes are in the same
pixel units (8/255 = 0.0314). Every attack

- checks its arguments before touching the model (bad values raise :class:`lib.core.config.ConfigError`; inside
  :func:`trusted_inputs`, the trainer's and evaluator's hot loops, the x ∈ [0, 1] value check is skipped),
- runs the model in eval mode and gives back the train/eval flag of every submodule it found,
- differentiates with respect to the input only (``torch.autograd.grad``), so parameters never gain ``.grad``,
- works on the whole batch at once, on ``x``'s device, and returns a detached tensor in [0, 1]
  (and, for l_inf attacks, inside the ε-ball around ``x``).

PGD and every training attack of :mod:`lib.core.methods` run one ascent loop, :func:`linf_ascent`, each with its
own start and objective. The evaluation suite (attacks by name, with the settings that produced a number) is
:mod:`lib.core.suite`. The argument checks, eval mode and the noise source live in :mod:`lib.core.attack_base`, the
AutoAttack adapters in :mod:`lib.core.autoattack`; the public names of both are importable from here.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lib.core.attack_base import (  # noqa: F401  (_frozen_params: re-exported for lib.bench)
    _EPS_HINT,
    _TRUSTED_INPUTS,
    _check_batch,
    _check_choice,
    _check_nonneg,
    _check_steps,
    _check_unit,
    _frozen_params,
    _input_grad,
    _project_linf,
    eval_mode,
    random_like,
    trusted_inputs,
)
from lib.core.autoattack import (  # noqa: F401 (_strict_fp32: re-exported for lib.bench)
    TINY_TARGETS,
    TORCHATTACKS_INSTALL,
    _strict_fp32,
    autoattack,
    autoattack_available,
    autoattack_settings,
    autoattack_ta,
    torchattacks_available,
)
from lib.core.config import ConfigError

__all__ = [
    "autoattack",
    "autoattack_available",
    "autoattack_ta",
    "cw_l2",
    "cw_linf",
    "cw_margin",
    "eval_mode",
    "fgsm",
    "linf_ascent",
    "pgd",
    "random_like",
    "torchattacks_available",
    "trusted_inputs",
]


# ---------------------------------------------------------------------------------------------------
# The Carlini-Wagner margin (the "cw" PGD loss and CW-L2's f).
# ---------------------------------------------------------------------------------------------------
def cw_margin(logits: torch.Tensor, y: torch.Tensor, kappa: float = 0.0) -> torch.Tensor:
    """Per-sample ``clamp(z_y - max_{j != y} z_j, min=-kappa)`` (Carlini & Wagner's f, untargeted).

    Positive while the sample is classified correctly; the attacks drive it down to ``-kappa``.
    """
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), -math.inf).amax(1)
    return (true - other).clamp(min=-kappa)


# ---------------------------------------------------------------------------------------------------
# The l_inf ascent loop every PGD-style attack runs (evaluation and training attacks alike).
# ---------------------------------------------------------------------------------------------------
CLAMP_ORDERS = ("ball_then_unit", "fused")


def linf_ascent(
    model: nn.Module,
    x: torch.Tensor,
    x_start: torch.Tensor,
    *,
    eps: float | torch.Tensor,
    step_size: float | torch.Tensor | Callable[[int], float | torch.Tensor],
    steps: int,
    objective: Callable[[torch.Tensor, int], torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
    clamp_order: str = "ball_then_unit",
) -> torch.Tensor:
    """Sign-gradient ascent in the l_inf ball around x (Madry et al. 2018), from the caller's own start.

    ``steps`` times: ``logits = model(x')``, then ``x' <- clip(x' + step·sign(∇_x' objective(logits, t)))``.
    The clip is ``clamp_order="ball_then_unit"``, ``min(max(·, x − ε), x + ε)`` then [0, 1] (the order of the
    official TRADES, MART, RoBal, REAT, GAIRAT and LAS-AT code), or ``"fused"``, one clamp to
    [max(x − ε, 0), min(x + ε, 1)] (the same numbers in one kernel; :func:`pgd`'s). ``eps`` and ``step_size``
    may be tensors broadcastable to x (per-example values); ``step_size`` may be a function of the step index t.
    ``objective`` returns the scalar to ascend, or ``(scalar, moving)`` with a bool mask of shape (N,): only
    the samples where ``moving`` is set take the step, and the loop ends once none is (early stopping).

    The start (noise, clipped or not) is the caller's, and so is the model's train/eval mode (training
    attacks enter :func:`eval_mode`). Gradients are taken with respect to x' only, so parameters gain no
    ``.grad``. Returns x' detached, not clipped again (an unclipped start comes back as it is when steps = 0).
    """
    _check_steps("steps", steps)
    _check_choice("clamp_order", clamp_order, CLAMP_ORDERS)
    x = x.detach()
    if clamp_order == "fused":
        lo, hi = (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)
    else:
        lo, hi = x - eps, x + eps
    x_adv = x_start.detach()
    view = (-1,) + (1,) * (x.dim() - 1)
    with torch.enable_grad():
        for t in range(steps):
            x_adv.requires_grad_(True)
            out = objective(model(x_adv), t)
            loss, moving = out if isinstance(out, tuple) else (out, None)
            if moving is not None and not bool(moving.any()):
                break
            grad = _input_grad(loss, x_adv)
            step = step_size(t) if callable(step_size) else step_size
            moved = x_adv.detach() + step * grad.sign()
            if clamp_order == "fused":
                moved = torch.clamp(moved, lo, hi)
            else:
                moved = torch.min(torch.max(moved, lo), hi).clamp(0.0, 1.0)
            x_adv = moved if moving is None else torch.where(moving.view(view), moved, x_adv.detach())
    return x_adv.detach()


# ---------------------------------------------------------------------------------------------------
# FGSM and PGD (l_inf).
# ---------------------------------------------------------------------------------------------------
def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): ``clip(x + eps·sign(∇_x CE))``, as torchattacks.FGSM."""
    _check_unit("eps", eps)
    _check_batch(x, y)
    x = x.detach()
    with eval_mode(model), torch.enable_grad():
        x_req = x.clone().requires_grad_(True)
        loss = F.cross_entropy(model(x_req), y, reduction="sum")
        grad = _input_grad(loss, x_req)
    return _project_linf(x + eps * grad.sign(), x, eps).detach()


PGD_LOSSES = ("ce", "cw")
PGD_STARTS = ("uniform", "normal")


def _per_sample(name: str, value: float | torch.Tensor, x: torch.Tensor) -> float | torch.Tensor:
    """A number as it is (checked by the caller); a floating tensor of one value per sample, (N,) or (N, 1, ..., 1),
    as (N, 1, ..., 1) on x's device and dtype, its values in [0, 1] (one sync; skipped under `trusted_inputs`)."""
    if not isinstance(value, torch.Tensor):
        return value
    n = x.shape[0]
    if not value.is_floating_point() or value.dim() < 1 or value.shape[0] != n or value.numel() != n:
        raise ConfigError(f"{name} as a tensor must be floating, one value per sample: ({n},) or ({n}, 1, 1, 1); got "
                          f"{value.dtype} {tuple(value.shape)}")
    v = value.detach().to(device=x.device, dtype=x.dtype).reshape((n,) + (1,) * (x.dim() - 1))
    if n and not _TRUSTED_INPUTS.get():
        lo, hi = (float(t) for t in torch.aminmax(v))
        if not 0.0 <= lo <= hi <= 1.0:
            raise ConfigError(f"{name} must be {_EPS_HINT} for every sample; got values in [{lo:.4g}, {hi:.4g}]")
    return v


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float | torch.Tensor,
    step_size: float | torch.Tensor,
    steps: int,
    loss: str = "ce",
    random_start: bool = True,
    start: str = "uniform",
    start_std: float = 0.001,
    kappa: float = 0.0,
    generator: torch.Generator | None = None,
    start_eps: float | torch.Tensor | None = None,
    mode: Callable[[nn.Module], contextlib.AbstractContextManager] = eval_mode,
) -> torch.Tensor:
    """l_inf projected gradient ascent (Madry et al. 2018) on CE or the CW margin.

    ``loss="ce"`` maximises cross-entropy; ``loss="cw"`` maximises ``-cw_margin(z, y, kappa)`` (AT-BSL's
    "CW" column: 20 steps, kappa=50). Random start: ``start="uniform"`` is ``x + U(-eps, eps)``
    (torchattacks.PGD, Madry); ``start="normal"`` is ``x + start_std·N(0, 1)`` (the training attack of the
    official TAET, AT-BSL and TRADES code). Either start is clipped to the ball and to [0, 1].
    ``random_start=False`` starts at x. Each step (:func:`linf_ascent`):
    ``x' <- clip_ball(x' + step_size·sign(∇ loss))``.
    Noise comes from ``generator`` when given (it may live on another device than x).

    ``eps``, ``step_size`` may be per-sample tensors (N,) (RobustLT's class-wise budgets): sample i stays in its
    ball of radius eps[i]. ``start_eps`` (default ``eps``): the radius the start is drawn in and clipped to; a wider
    one (RobustLT: the base ε) is projected into the eps-ball by the first step. ``mode(model)``: the context the
    ascent runs in, which gives the model's mode back (default :func:`eval_mode`; RobustLT's trainer crafts in train
    mode with BatchNorm statistics frozen, ``lib.core.methods.common.frozen_bn_train_mode``).
    """
    for name, v in (("eps", eps), ("step_size", step_size), ("start_eps", start_eps)):
        if v is not None and not isinstance(v, torch.Tensor):
            _check_unit(name, v)
    _check_steps("steps", steps)
    _check_choice("loss", loss, PGD_LOSSES)
    _check_choice("start", start, PGD_STARTS)
    _check_nonneg("start_std", start_std)
    _check_nonneg("kappa", kappa)
    _check_batch(x, y)
    wide_start = start_eps is not None
    eps, step_size = _per_sample("eps", eps, x), _per_sample("step_size", step_size, x)
    start_eps = _per_sample("start_eps", start_eps, x) if wide_start else eps
    x = x.detach()
    if not random_start:
        x_start = x.clone()
    elif start == "uniform":
        x_start = _project_linf(x + start_eps * (2.0 * random_like(x, "uniform", generator) - 1.0), x, start_eps)
    else:
        x_start = _project_linf(x + start_std * random_like(x, "normal", generator), x, start_eps)

    def objective(logits: torch.Tensor, t: int) -> torch.Tensor:
        return F.cross_entropy(logits, y, reduction="sum") if loss == "ce" else -cw_margin(logits, y, kappa).sum()

    with mode(model):
        x_adv = linf_ascent(model, x, x_start, eps=eps, step_size=step_size, steps=steps, objective=objective,
                            clamp_order="fused")
    return _project_linf(x_adv, x, eps) if wide_start else x_adv


def cw_linf(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int = 20,
    kappa: float = 50.0,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """AT-BSL's "CW": l_inf PGD on the CW margin loss with confidence kappa (uniform random start)."""
    return pgd(model, x, y, eps=eps, step_size=step_size, steps=steps, loss="cw", kappa=kappa,
               random_start=random_start, generator=generator)


# ---------------------------------------------------------------------------------------------------
# Carlini-Wagner L2.
# ---------------------------------------------------------------------------------------------------
CW_MARGINS = ("exact", "torchattacks")


def _cw_margin_torchattacks(logits: torch.Tensor, y: torch.Tensor, kappa: float = 0.0) -> torch.Tensor:
    """torchattacks.CW.f: masked logits are read as 0, so 'other' is max(max_{j!=y} z_j, 0) (and z_y likewise)."""
    onehot = F.one_hot(y, logits.shape[1]).to(logits.dtype)
    other = ((1.0 - onehot) * logits).amax(1)
    true = (onehot * logits).amax(1)
    return (true - other).clamp(min=-kappa)


def cw_l2(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    c: float = 10.0,
    kappa: float = 0.0,
    steps: int = 100,
    lr: float = 0.01,
    margin: str = "exact",
) -> torch.Tensor:
    """Carlini & Wagner (2017) L2 attack, fixed c, no binary search: the algorithm of torchattacks.CW.

    Optimises w with x' = (tanh(w) + 1)/2 by Adam(lr) on Σ_i ||x'_i - x_i||² + c·Σ_i f(x'_i), with
    f = cw_margin(z(x'), y, kappa). Per sample it keeps the misclassified x' of smallest L2 seen so far
    (samples never fooled come back unchanged). Every ``max(steps // 10, 1)`` steps it stops early once
    the batch cost has risen since the last check. Like torchattacks, w starts at atanh(2x - 1), so pixels
    at exactly 0 or 1 start at ∓inf and stay put.

    ``margin="exact"`` (default) uses the paper's f: max over j != y of z_j. torchattacks 3.5.1 instead
    takes max_j((1 - onehot)·z)_j and max_j(onehot·z)_j, which reads a masked-out logit as 0, so
    negative logits are compared with 0 (a weaker attack when the other logits are all negative);
    ``margin="torchattacks"`` reproduces that to float precision (the official TAET "CW" column).
    """
    _check_nonneg("c", c)
    _check_nonneg("kappa", kappa)
    _check_steps("steps", steps)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0.0 < float(lr) < math.inf:
        raise ConfigError(f"lr must be a finite number > 0 (Adam learning rate on tanh-space w); got {lr!r}")
    _check_choice("margin", margin, CW_MARGINS)
    _check_batch(x, y)
    f = cw_margin if margin == "exact" else _cw_margin_torchattacks
    x = x.detach()
    view = (-1,) + (1,) * (x.dim() - 1)
    best_adv = x.clone()
    best_l2 = torch.full((x.shape[0],), 1e10, device=x.device, dtype=x.dtype)
    with eval_mode(model), torch.enable_grad():
        w = torch.atanh((2.0 * x - 1.0).clamp(-1.0, 1.0)).requires_grad_(True)
        optimizer = torch.optim.Adam([w], lr=lr)
        prev_cost = math.inf
        check_every = max(steps // 10, 1)
        for step in range(steps):
            x_adv = 0.5 * (torch.tanh(w) + 1.0)
            l2 = (x_adv - x).pow(2).flatten(1).sum(1)
            logits = model(x_adv)
            cost = l2.sum() + c * f(logits, y, kappa).sum()
            w.grad = _input_grad(cost, w)
            optimizer.step()  # Adam on the attack's variable w, not on the model

            improved = (logits.detach().argmax(1) != y) & (l2.detach() < best_l2)
            best_l2 = torch.where(improved, l2.detach(), best_l2)
            best_adv = torch.where(improved.view(view), x_adv.detach(), best_adv)

            if step % check_every == 0:
                cost_now = cost.item()
                if cost_now > prev_cost:
                    break
                prev_cost = cost_now
    return best_adv.clamp_(0.0, 1.0).detach()
