"""The evaluation suite: every attack by name, ``(model, x, y, ecfg, generator) -> x_adv``, with the settings it
records in eval.json (:func:`describe_attack`: a cached result is reused only under the same settings) and the
optional package it needs (:func:`check_attack_available`, before any work). The algorithms live in
:mod:`lib.core.attacks` and :mod:`lib.core.autoattack`; DeepFool runs through torchattacks, as the official TAET
notebook evaluates it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lib.core.attacks import cw_l2, cw_linf, fgsm, pgd
from lib.core.autoattack import (
    TINY_TARGETS,
    TORCHATTACKS_INSTALL,
    autoattack,
    autoattack_available,
    autoattack_settings,
    autoattack_ta,
    deepfool_ta,
    torchattacks_available,
)
from lib.core.config import ConfigError, EvalConfig

# Optional packages an attack needs: checked by `check_attack_available` before any work starts.
_REQUIRES: dict[str, tuple[Callable[[], bool], str]] = {
    "autoattack": (autoattack_available, "autoattack needs the official AutoAttack code: pip install pyautoattack"),
    "autoattack_ta": (torchattacks_available, f"autoattack_ta needs torchattacks: {TORCHATTACKS_INSTALL}"),
    "deepfool": (torchattacks_available, f"deepfool needs torchattacks: {TORCHATTACKS_INSTALL}"),
}


def check_attack_available(name: str) -> None:
    """ConfigError naming the package and the pip command when attack `name` needs one that is missing."""
    if name in _REQUIRES and not _REQUIRES[name][0]():
        raise ConfigError(_REQUIRES[name][1] + f" (or drop {name!r} from the attack list)")


# ---------------------------------------------------------------------------------------------------
# Registry for the evaluation suite: name -> (model, x, y, ecfg, generator) -> x_adv.
# ---------------------------------------------------------------------------------------------------
SuiteAttack = Callable[[nn.Module, torch.Tensor, torch.Tensor, EvalConfig, "torch.Generator | None"], torch.Tensor]

ATTACKS: dict[str, SuiteAttack] = {}
_DESCRIBE: dict[str, Callable[[EvalConfig], dict[str, Any]]] = {}


def register_attack(name: str, describe: Callable[[EvalConfig], dict[str, Any]]):
    """Decorator: add a suite attack under `name`, with a function giving its settings for eval.json."""

    def wrap(fn: SuiteAttack) -> SuiteAttack:
        if name in ATTACKS:
            raise ValueError(f"attack {name!r} is already registered")
        ATTACKS[name] = fn
        _DESCRIBE[name] = describe
        return fn

    return wrap


def attack_names() -> list[str]:
    return list(ATTACKS)


def get_attack(name: str) -> SuiteAttack:
    """The suite attack called `name`; ConfigError listing the valid names otherwise."""
    try:
        return ATTACKS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown attack {name!r}; valid: {attack_names()}") from None


def describe_attack(name: str, ecfg: EvalConfig) -> dict[str, Any]:
    """JSON-ready settings that `name` uses under `ecfg` (what produced a number in eval.json)."""
    get_attack(name)
    return {"name": name, **_DESCRIBE[name](ecfg)}


def _steps(n: int, e: EvalConfig) -> int:
    """An attack's iteration count under `e.max_steps` (`--tiny`'s cap; None = the attack's own)."""
    return n if e.max_steps is None else min(n, e.max_steps)


def _pgd_desc(e: EvalConfig, steps: int, step_size: float, loss: str = "ce", kappa: float | None = None):
    d = {"attack": "pgd", "norm": "Linf", "eps": e.eps, "step_size": step_size, "steps": steps, "loss": loss,
         "random_start": "uniform", "restarts": 1}
    if kappa is not None:
        d["kappa"] = kappa
    return d


@register_attack("clean", describe=lambda e: {"attack": "none"})
def _clean(model, x, y, ecfg, generator=None):
    return x.detach()


@register_attack("fgsm", describe=lambda e: {"attack": "fgsm", "norm": "Linf", "eps": e.eps, "loss": "ce"})
def _fgsm(model, x, y, ecfg, generator=None):
    return fgsm(model, x, y, eps=ecfg.eps)


@register_attack("pgd20", describe=lambda e: _pgd_desc(e, _steps(20, e), e.pgd_step_size))
def _pgd20(model, x, y, ecfg, generator=None):
    return pgd(model, x, y, eps=ecfg.eps, step_size=ecfg.pgd_step_size, steps=_steps(20, ecfg), generator=generator)


@register_attack("pgd100", describe=lambda e: _pgd_desc(e, _steps(100, e), e.pgd_step_size))
def _pgd100(model, x, y, ecfg, generator=None):
    return pgd(model, x, y, eps=ecfg.eps, step_size=ecfg.pgd_step_size, steps=_steps(100, ecfg), generator=generator)


@register_attack("cw_linf", describe=lambda e: _pgd_desc(e, _steps(e.cw_linf_steps, e), e.cw_linf_step_size, "cw",
                                                          e.cw_linf_kappa))
def _cw_linf(model, x, y, ecfg, generator=None):
    return cw_linf(model, x, y, eps=ecfg.eps, step_size=ecfg.cw_linf_step_size, steps=_steps(ecfg.cw_linf_steps, ecfg),
                   kappa=ecfg.cw_linf_kappa, generator=generator)


EVAL_ORDERS = ("as_drawn", "class_sorted")
DEFAULT_BATCHING = {"batch_size": EvalConfig.batch_size, "order": EvalConfig.order}


def _batching(e: EvalConfig) -> dict[str, Any]:
    """How the test set was cut into batches, for an attack whose result depends on it (CW-L2 stops early on a
    batch's summed cost): recorded only when it is not the default, so results made before it was recorded stay
    current."""
    batching = {"batch_size": e.batch_size, "order": e.order}
    return {} if batching == DEFAULT_BATCHING else {"batching": batching}


@register_attack("cw_l2", describe=lambda e: {
    "attack": "cw_l2", "norm": "L2", "c": e.cw_l2_c, "kappa": e.cw_l2_kappa, "steps": _steps(e.cw_l2_steps, e),
    "lr": e.cw_l2_lr, "margin": e.cw_l2_margin, "optimizer": "adam", "binary_search": False,
    "reference": "torchattacks.CW", **_batching(e)})
def _cw_l2(model, x, y, ecfg, generator=None):
    return cw_l2(model, x, y, c=ecfg.cw_l2_c, kappa=ecfg.cw_l2_kappa, steps=_steps(ecfg.cw_l2_steps, ecfg),
                 lr=ecfg.cw_l2_lr, margin=ecfg.cw_l2_margin)


def _aa_desc(e: EvalConfig) -> dict[str, Any]:
    try:
        from importlib.metadata import version as _pkg_version

        impl = f"pyautoattack {_pkg_version('pyautoattack')}"
    except Exception:  # metadata is informative only
        impl = "pyautoattack (not installed)"
    settings = autoattack_settings(10, e.autoattack_version)
    if "n_target_classes" in settings:
        settings["n_target_classes"] = "min(9, num_classes - 1)"
    if e.max_steps is not None:
        settings["max_steps"] = e.max_steps  # every sub-attack's iterations (Square: queries), --tiny only
        if "n_target_classes" in settings:
            settings["n_target_classes"] = f"min({TINY_TARGETS}, num_classes - 1)"
    return {"attack": "autoattack", "norm": "Linf", "eps": e.eps, "version": e.autoattack_version,
            "seed": e.seed, "implementation": impl, "precision": "fp32", **settings}


@register_attack("autoattack", describe=_aa_desc)
def _autoattack(model, x, y, ecfg, generator=None):
    return autoattack(model, x, y, eps=ecfg.eps, version=ecfg.autoattack_version, seed=ecfg.seed,
                      batch_size=ecfg.batch_size, max_steps=ecfg.max_steps)


def _ta_version() -> str:
    try:
        from importlib.metadata import version as _pkg_version

        return f"torchattacks {_pkg_version('torchattacks')}"
    except Exception:  # metadata is informative only
        return "torchattacks (not installed)"


def _aa_ta_desc(e: EvalConfig) -> dict[str, Any]:
    impl = _ta_version()
    attacks = ["apgd-ce", "apgd-t", "fab-t", "square"] if e.autoattack_ta_version == "standard" else \
        ["apgd-ce", "apgd-dlr"]
    d = {"attack": "autoattack", "norm": "Linf", "eps": e.eps, "version": e.autoattack_ta_version, "seed": e.seed,
         "implementation": impl, "precision": "fp32", "attacks": attacks, "apgd_steps": 10, "square_queries": 5000,
         "n_target_classes": "num_classes - 1", "batch_size": e.batch_size,
         **({} if e.order == EvalConfig.order else {"order": e.order}),
         "reference": "official TAET notebook cell 12, AT-BSL eval.py"}
    if e.max_steps is not None:
        d["max_steps"] = e.max_steps  # every sub-attack's iterations (Square: queries), --tiny only
    return d


@register_attack("autoattack_ta", describe=_aa_ta_desc)
def _autoattack_ta(model, x, y, ecfg, generator=None):
    return autoattack_ta(model, x, y, eps=ecfg.eps, version=ecfg.autoattack_ta_version, seed=ecfg.seed,
                         max_steps=ecfg.max_steps)


@register_attack("deepfool", describe=lambda e: {
    "attack": "deepfool", "norm": "L2", "steps": _steps(e.deepfool_steps, e), "overshoot": e.deepfool_overshoot,
    "implementation": _ta_version(), "precision": "fp32", "reference": "official TAET notebook cell 12"})
def _deepfool(model, x, y, ecfg, generator=None):
    return deepfool_ta(model, x, y, steps=_steps(ecfg.deepfool_steps, ecfg), overshoot=ecfg.deepfool_overshoot)
