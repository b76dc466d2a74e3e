"""Running the training and attack loops close to the hardware: precision, memory layout, optimizer, compile.

Every switch here is measured side by side with the reference-style loop by ``python -m lib bench``
(``lib.bench.runner``); docs/performance.md has the numbers and what did not help.

- ``amp``: ``"off"`` (fp32), ``"bf16"`` (autocast to bfloat16 for the forward passes of training and of the
  training attack; weights, optimizer state and gradients stay fp32) or ``"auto"``. ``"auto"`` resolves to
  fp32 everywhere until bf16 has passed its accuracy check on a GPU (a short bf16 run's balanced robustness
  within 1 point of fp32's, ``python -m lib bench --bf16-check``); then :data:`AUTO_BF16_ON_CUDA` flips.
  AutoAttack always runs in fp32 (``lib.core.attacks.autoattack`` turns autocast off).
- ``channels_last``: NHWC weights and activations (cuDNN / oneDNN convolutions prefer them); "auto" is on for
  CUDA, off for CPU (see :data:`AUTO_CHANNELS_LAST`).
- the optimizer: SGD with the fused kernel where PyTorch has one (CUDA and CPU), else foreach.
- ``compile``: ``torch.compile`` of the model (off by default; the bench reports compile time vs the
  steady-state gain).
- threads: PyTorch's default (one per core) measured best on CPU; ``threads`` overrides it.

The resolved choices (``resolve_amp``) are what a run's config hash should cover: ``"auto"`` means different
arithmetic on different devices.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from lib.core.config import ConfigError

AMP_CHOICES = ("auto", "off", "bf16")
LAYOUT_CHOICES = ("auto", "on", "off")

# Flip to True once `python -m lib bench --bf16-check` on a GPU shows bf16 within 1 point of fp32's balanced
# robustness (docs/performance.md). Until then "auto" is fp32 on every device.
AUTO_BF16_ON_CUDA = False
# channels_last (docs/performance.md): on CUDA the layout tensor cores and cuDNN's NHWC kernels want. On CPU it
# makes the attack's passes 10-50% faster, but PyTorch's channels_last batch-norm backward in train mode is
# 5-15x less accurate where its sums cancel (weight gradients of the small CNN differ from fp64 by ~1e-2 relative
# instead of ~1e-6): opt-in there (channels_last="on"), not the default.
AUTO_CHANNELS_LAST = {"cuda": True, "cpu": False}
# Evaluation runs the model in eval mode only (no batch-norm backward in train mode): channels_last is as accurate
# as NCHW there (input gradients within 2e-6) and 10-100% faster on CPU.
AUTO_CHANNELS_LAST_EVAL = {"cuda": True, "cpu": True}


@dataclass(frozen=True)
class SpeedPlan:
    """The resolved speed settings of a run on one device."""

    device: torch.device
    amp: str  # "off" | "bf16"
    channels_last: bool
    compile: bool = False
    threads: int | None = None

    def autocast(self):
        """Context manager for forward passes (method.step): bf16 autocast or nothing."""
        return autocast_ctx(self.device, self.amp)

    def describe(self) -> dict:
        return {"amp": self.amp, "channels_last": self.channels_last, "compile": self.compile,
                "threads": self.threads or torch.get_num_threads(), "optimizer": optimizer_kind(self.device)}


def check_choice(name: str, value, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{name} must be one of {list(valid)}; got {value!r}")


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu"


def resolve_amp(amp: str, device: torch.device | str) -> str:
    """"auto" | "off" | "bf16" -> "off" | "bf16" for `device` (ConfigError for bf16 where it cannot run)."""
    check_choice("amp", amp, AMP_CHOICES)
    device = torch.device(device)
    if amp == "auto":
        return "bf16" if device.type == "cuda" and AUTO_BF16_ON_CUDA and bf16_supported(device) else "off"
    if amp == "bf16" and not bf16_supported(device):
        raise ConfigError(f"amp='bf16' but {device} has no bfloat16 support; use amp='off'")
    return amp


def resolve_channels_last(flag: str | bool, device: torch.device | str, training: bool = True) -> bool:
    """"auto" | "on" | "off" (or a bool) -> bool; `training=False` for a model that only runs in eval mode
    (evaluation), where "auto" is on for CPU too."""
    if isinstance(flag, bool):
        return flag
    check_choice("channels_last", flag, LAYOUT_CHOICES)
    if flag == "auto":
        table = AUTO_CHANNELS_LAST if training else AUTO_CHANNELS_LAST_EVAL
        return table.get(torch.device(device).type, False)
    return flag == "on"


def plan(device: torch.device | str, amp: str = "auto", channels_last: str | bool = "auto", compile: bool = False,
         threads: int | None = None) -> SpeedPlan:
    """Resolve the speed settings for `device` (cheap; raises ConfigError on bad values)."""
    device = torch.device(device)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be a positive integer or None (= one per core); got {threads!r}")
    if not isinstance(compile, bool):
        raise ConfigError(f"compile must be true or false; got {compile!r}")
    return SpeedPlan(device, resolve_amp(amp, device), resolve_channels_last(channels_last, device), compile, threads)


def plan_for(train_cfg, device: torch.device | str) -> SpeedPlan:
    """:func:`plan` from a TrainConfig's amp / channels_last / compile / threads."""
    t = train_cfg
    return plan(device, amp=t.amp, channels_last=t.channels_last, compile=t.compile, threads=t.threads)


def autocast_ctx(device: torch.device | str, amp: str):
    """bf16 autocast on `device` when amp resolves to "bf16", else a no-op context."""
    device = torch.device(device)
    if resolve_amp(amp, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_channels_last(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Convert 4-d weights to channels_last in place (inputs need no conversion: the first convolution's
    output follows its weight's layout)."""
    if enabled:
        model.to(memory_format=torch.channels_last)
    return model


def optimizer_kind(device: torch.device | str) -> str:
    device = torch.device(device)
    return "fused" if device.type in ("cuda", "cpu") else "foreach"


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg, device: torch.device | str) -> torch.optim.SGD:
    """SGD(lr, momentum, weight_decay) of the TrainConfig `cfg`, with the fused kernel (CUDA, CPU) or foreach.

    Same update rule as the default for-loop implementation (its state dict loads into either), one kernel
    over all parameters instead of one Python iteration per tensor.
    """
    kind = optimizer_kind(device)
    kw = {"fused": True} if kind == "fused" else {"foreach": True}
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **kw)


def maybe_compile(model: nn.Module, flag: bool, **kwargs) -> nn.Module:
    """``torch.compile(model)`` when `flag`, else `model`. Keep the original for ``state_dict()`` (the compiled
    wrapper prefixes its keys with ``_orig_mod.``); pass the returned module to ``method.step``."""
    return torch.compile(model, **kwargs) if flag else model


def configure_threads(threads: int | None) -> int:
    """Set PyTorch's intra-op threads (None: leave the default, one per core); returns the number in use."""
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def prepare_model(model: nn.Module, p: SpeedPlan) -> tuple[nn.Module, nn.Module]:
    """(model, forward_model): `model` converted in place (layout), `forward_model` the one to call
    (compiled or the same object). Save and load `model`'s state dict."""
    to_channels_last(model, p.channels_last)
    return model, maybe_compile(model, p.compile)


__all__ = ["AMP_CHOICES", "LAYOUT_CHOICES", "AUTO_BF16_ON_CUDA", "SpeedPlan", "plan", "resolve_amp",
           "resolve_channels_last", "autocast_ctx", "to_channels_last", "make_optimizer", "maybe_compile",
           "configure_threads", "prepare_model", "optimizer_kind", "bf16_supported"]
