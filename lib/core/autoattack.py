"""The attacks other packages run, with the kit's calling convention; re-exported by :mod:`lib.core.attacks`.
AutoAttack (Croce & Hein 2020) twice: `autoattack`, the official code (PyPI `pyautoattack`, fra31's standard
version), and `autoattack_ta`, torchattacks' version, as the official TAET and AT-BSL evaluations ran it; and
`deepfool_ta`, torchattacks' DeepFool (Moosavi-Dezfooli et al. 2016), as the official TAET notebook runs it."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from lib.core.attack_base import (
    _check_batch,
    _check_choice,
    _check_nonneg,
    _check_steps,
    _check_unit,
    _frozen_params,
    _project_linf,
    eval_mode,
)
from lib.core.config import ConfigError

AUTOATTACK_VERSIONS = ("standard", "rand")
AUTOATTACK_NORMS = ("Linf", "L2", "L1")
AUTOATTACK_BATCH_SIZE = 250  # run_standard_evaluation's default
_AA_MIN_CLASSES = {"standard": 4, "rand": 3}  # targeted DLR reads the 4th-largest logit, DLR the 3rd


def autoattack_available() -> bool:
    """True when the official AutoAttack package (`pyautoattack`) can be imported."""
    try:
        import pyautoattack  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _strict_fp32(device: torch.device) -> Iterator[None]:
    """Disable TF32 for cuDNN convolutions and CUDA matmuls (true fp32), restoring the settings after."""
    if device.type != "cuda":
        yield
        return
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    saved = (conv.fp32_precision, matmul.fp32_precision)
    conv.fp32_precision, matmul.fp32_precision = "ieee", "ieee"
    try:
        yield
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved


@contextlib.contextmanager
def _keep_tracer() -> Iterator[None]:
    """pyautoattack's dynamic-defense check calls sys.settrace(None); give back a coverage/debugger tracer."""
    tracer = sys.gettrace()
    try:
        yield
    finally:
        if sys.gettrace() is not tracer:
            sys.settrace(tracer)


@contextlib.contextmanager
def _aa_logging(verbose: bool) -> Iterator[None]:
    logger = logging.getLogger("auto-attack")
    if not verbose:
        yield
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[autoattack] %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@contextlib.contextmanager
def _fp32_eval(model: nn.Module, device: torch.device) -> Iterator[contextlib.ExitStack]:
    """What both AutoAttacks run under: eval mode, frozen weights, fp32 (no autocast, no TF32), and the caller's
    global RNG given back afterwards (the libraries draw from it)."""
    fork_devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with contextlib.ExitStack() as stack:
        stack.enter_context(eval_mode(model))
        stack.enter_context(_frozen_params(model))
        stack.enter_context(torch.autocast(device.type, enabled=False))
        stack.enter_context(_strict_fp32(device))
        stack.enter_context(torch.random.fork_rng(devices=fork_devices))
        yield stack


def autoattack_settings(num_classes: int, version: str = "standard") -> dict[str, Any]:
    """The attacks and target counts the adapter runs for `num_classes` (official: 9 targets)."""
    attacks = ["apgd-ce", "apgd-t", "fab-t", "square"] if version == "standard" else ["apgd-ce", "apgd-dlr"]
    settings: dict[str, Any] = {"attacks": attacks}
    if version == "standard":
        settings["n_target_classes"] = min(9, num_classes - 1)
    else:
        settings["eot_iter"] = 20
    return settings


TINY_TARGETS = 2  # target classes of APGD-T and FAB-T under max_steps (--tiny); official: min(9, C - 1)


def autoattack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    version: str = "standard",
    norm: str = "Linf",
    batch_size: int | None = None,
    seed: int = 0,
    verbose: bool = False,
    max_steps: int | None = None,
) -> torch.Tensor:
    """AutoAttack (Croce & Hein 2020) through the official code, returning its per-point worst case.

    ``version="standard"``: APGD-CE, APGD-T, FAB-T, Square; ``"rand"``: APGD-CE and APGD-DLR with EOT
    (for randomised models). Runs in fp32 (TF32 off on CUDA, autocast off) on x's device. With fewer than
    10 classes the targeted attacks get C - 1 target classes instead of the official 9. x may be the whole
    test set: pyautoattack batches it internally (``batch_size=None`` = its default, 250). The global
    torch RNG (which pyautoattack reseeds) is left as found. ``max_steps`` caps every sub-attack's
    iterations (Square's queries) and the targeted ones at TINY_TARGETS classes: `--tiny` only, never a result.
    """
    if norm == "Linf":
        _check_unit("eps", eps)
    else:
        _check_nonneg("eps", eps)
    _check_choice("version", version, AUTOATTACK_VERSIONS)
    _check_choice("norm", norm, AUTOATTACK_NORMS)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ConfigError(f"batch_size must be a positive integer or None; got {batch_size!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed must be an integer; got {seed!r}")
    _check_batch(x, y)
    not_fp32 = sorted({str(p.dtype) for p in model.parameters() if p.is_floating_point()} - {"torch.float32"})
    if not_fp32:
        raise ConfigError(f"AutoAttack runs in fp32 but the model has {not_fp32} parameters; call model.float()")
    try:
        from pyautoattack import AutoAttack
    except ImportError:
        raise ConfigError("AutoAttack needs the official code: pip install pyautoattack "
                          "(or drop 'autoattack' from the attack list)") from None
    x = x.detach().float()
    if x.shape[0] == 0:
        return x.clone()
    device = x.device
    with _fp32_eval(model, device) as stack:
        stack.enter_context(_keep_tracer())
        stack.enter_context(_aa_logging(verbose))
        with torch.no_grad():
            num_classes = model(x[:1]).shape[1]
        if num_classes < _AA_MIN_CLASSES[version]:
            raise ConfigError(f"AutoAttack version {version!r} needs at least {_AA_MIN_CLASSES[version]} classes "
                              f"(its DLR losses read the top logits); the model has {num_classes}")
        aa = AutoAttack(model, device=device, eps=float(eps), norm=norm, seed=seed, version=version)
        aa.verbose = verbose
        if num_classes < 10:
            aa.apgd_targeted.n_target_classes = num_classes - 1
            aa.fab.n_target_classes = num_classes - 1
        if max_steps is not None:  # --tiny: every code path, few iterations and TINY_TARGETS target classes
            for sub in (aa.apgd, aa.apgd_targeted, aa.fab):
                sub.n_iter = min(sub.n_iter, max_steps)
            aa.square.n_queries = min(aa.square.n_queries, max_steps)
            for sub in (aa.apgd_targeted, aa.fab):
                sub.n_target_classes = min(sub.n_target_classes, TINY_TARGETS)
        x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=batch_size or AUTOATTACK_BATCH_SIZE)
    x_adv = x_adv.detach().to(device)
    if norm == "Linf":
        return _project_linf(x_adv, x, float(eps))
    return x_adv.clamp_(0.0, 1.0)


TORCHATTACKS_INSTALL = ("pip install --no-deps 'torchattacks==3.5.1' (the kit's optional extra `torchattacks`; "
                        "--no-deps: its `requests` pin does not apply)")
_TA_MIN_CLASSES = 4  # APGD-T's targeted DLR loss reads the 4th-largest logit


def torchattacks_available() -> bool:
    """True when torchattacks (the optional extra behind `autoattack_ta`) can be imported."""
    try:
        import torchattacks  # noqa: F401
    except ImportError:
        return False
    return True


def _torchattacks(attack: str):
    """The torchattacks module, or one ConfigError naming `attack` and the install command."""
    try:
        import torchattacks
    except ImportError:
        raise ConfigError(f"{attack} needs torchattacks: {TORCHATTACKS_INSTALL}") from None
    return torchattacks


def autoattack_ta(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, version: str = "standard",
                  seed: int = 0, max_steps: int | None = None) -> torch.Tensor:
    """AutoAttack as the official TAET notebook (cell 12) and AT-BSL's ``eval.py`` run it: ``torchattacks.AutoAttack(
    model, norm='Linf', eps, version, n_classes=C, seed)`` on the batch (standard: APGD-CE, APGD-T, FAB-T with 10
    iterations and C - 1 targets, Square with 5,000 queries; each attack only on the points the previous ones left
    correct). Weaker than fra31's `autoattack` (100 iterations). fp32, eval mode; the global RNG (which torchattacks
    reseeds per call) is left as found. ``max_steps`` caps every sub-attack's iterations (Square: queries; --tiny).
    Needs torchattacks (:data:`TORCHATTACKS_INSTALL`)."""
    _check_unit("eps", eps)
    _check_choice("version", version, AUTOATTACK_VERSIONS)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed must be an integer; got {seed!r}")
    if max_steps is not None:
        _check_steps("max_steps", max_steps)
    _check_batch(x, y)
    torchattacks = _torchattacks("autoattack_ta")
    x = x.detach().float()
    if x.shape[0] == 0:
        return x.clone()
    device = x.device
    with _fp32_eval(model, device):
        with torch.no_grad():
            num_classes = model(x[:1]).shape[1]
        if num_classes < _TA_MIN_CLASSES:
            raise ConfigError(f"autoattack_ta needs at least {_TA_MIN_CLASSES} classes (APGD-T's DLR loss reads the "
                              f"top logits); the model has {num_classes}")
        atk = torchattacks.AutoAttack(model, norm="Linf", eps=float(eps), version=version, n_classes=num_classes,
                                      seed=seed)
        if max_steps is not None:  # --tiny: every code path, few iterations
            for sub in atk._autoattack.attacks:
                for field in ("steps", "n_queries"):
                    if hasattr(sub, field):
                        setattr(sub, field, min(getattr(sub, field), max_steps))
        x_adv = atk(x, y)
    return _project_linf(x_adv.detach().to(device), x, float(eps))


def deepfool_ta(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 50,
                overshoot: float = 0.02) -> torch.Tensor:
    """DeepFool as the official TAET notebook (cell 12) runs it: ``torchattacks.DeepFool(model, steps=50,
    overshoot=0.02)`` on the batch. A minimal-L2 attack, unbounded: each image moves until its prediction changes
    (or `steps` run out), so accuracy under it measures how often `steps` linearised steps fail to cross the nearest
    boundary, not robustness within a budget. One image at a time inside torchattacks (slow: a Jacobian per image
    and step). fp32, eval mode, global RNG left as found. Needs torchattacks (:data:`TORCHATTACKS_INSTALL`)."""
    _check_steps("steps", steps)
    _check_nonneg("overshoot", overshoot)
    _check_batch(x, y)
    deepfool = _torchattacks("deepfool").DeepFool
    if x.shape[0] == 0:
        return x.detach().float().clone()
    with _fp32_eval(model, x.device):
        x_adv = deepfool(model, steps=steps, overshoot=float(overshoot))(x.detach().float(), y)
    return x_adv.detach().to(x.device).clamp_(0.0, 1.0)
