"""What every attack shares: argument checks (before any forward pass), :func:`trusted_inputs`, eval mode,
the l_inf ball projection and the one noise source, :func:`random_like`. Public names are re-exported by
:mod:`lib.core.attacks`, where users find them."""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator

import torch
from torch import nn

from lib.core.config import ConfigError

_EPS_HINT = "in [0, 1] pixel units on [0, 1] images (e.g. 8/255 = 0.0314)"


# ---------------------------------------------------------------------------------------------------
# Argument checks: cheap, and before any forward pass.
# ---------------------------------------------------------------------------------------------------
def _check_unit(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name} must be {_EPS_HINT}; got {value!r}")


def _check_steps(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be an integer >= 0; got {value!r}")


def _check_nonneg(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < math.inf:
        raise ConfigError(f"{name} must be a finite number >= 0; got {value!r}")


def _check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{name} must be one of {list(valid)}; got {value!r}")


_TRUSTED_INPUTS: contextvars.ContextVar[bool] = contextvars.ContextVar("lib_attacks_trusted_inputs", default=False)


@contextlib.contextmanager
def trusted_inputs(enabled: bool = True) -> Iterator[None]:
    """Inside this block attacks skip the value check x ∈ [0, 1] (on a GPU one host-device sync per call)
    and keep every other check (dtype, shape, labels, arguments).

    For loops whose x comes from ``lib.core.data`` (uint8 / 255, in [0, 1] by construction): the trainer and the
    evaluation suite enter it; a user's own call outside it keeps the full check. Scoped like
    ``torch.no_grad`` (a context variable, restored on exit, per thread / task)."""
    token = _TRUSTED_INPUTS.set(bool(enabled))
    try:
        yield
    finally:
        _TRUSTED_INPUTS.reset(token)


def _check_batch(x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise ConfigError("x must be a floating tensor of images (N, C, H, W) with values in [0, 1]")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != x.shape[:1]:
        raise ConfigError(f"y must be an int64 tensor of shape ({x.shape[0]},); got "
                          f"{getattr(y, 'dtype', type(y))} {tuple(getattr(y, 'shape', ()))}")
    if x.numel() and not _TRUSTED_INPUTS.get():
        lo, hi = torch.aminmax(x.detach())
        lo, hi = float(lo), float(hi)  # one device sync
        if lo < 0.0 or hi > 1.0:
            raise ConfigError(f"attacks expect x in [0, 1] (normalise inside the model); got values in "
                              f"[{lo:.4g}, {hi:.4g}]")


# ---------------------------------------------------------------------------------------------------
# Shared pieces.
# ---------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode; give back each one's own flag (mixed train/eval survives)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, was_training in flags:
            m.training = was_training


@contextlib.contextmanager
def _frozen_params(model: nn.Module) -> Iterator[None]:
    """Stop parameters from requiring grad (for third-party code that calls ``.backward()``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _input_grad(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.autograd.grad(loss, x)[0]


def _project_linf(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Clip to the l_inf ball of radius eps around x, then to [0, 1]."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def random_like(x: torch.Tensor, kind: str, generator: torch.Generator | None,
                shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """U[0, 1) or N(0, 1) noise shaped like x (or `shape`), on x's device and dtype: the kit's one noise source
    for attack starts and sampling. Drawn in float32 from `generator` on its own device, then moved, so a
    CPU generator gives the same draws whatever x's device; from the global RNG when `generator` is None."""
    sample = torch.rand if kind == "uniform" else torch.randn
    shape = x.shape if shape is None else shape
    if generator is None:
        return sample(shape, device=x.device, dtype=x.dtype)
    noise = sample(shape, generator=generator, device=generator.device, dtype=torch.float32)
    return noise.to(device=x.device, dtype=x.dtype)
