"""Checks a pipeline run passes before any notebook starts: its data sets are there (or may be downloaded),
and AutoAttack is not asked of a CPU on a test set it would take hours on. Each failure is one line saying
what is wrong and how to go on.
"""

from __future__ import annotations

import time
from typing import Any

from lib.core.config import ConfigError
from lib.profiles import get_profile, profile_config

AA_CPU_LIMIT_S = 3600.0  # longer than this, at the very least, and the pipeline asks for --allow-slow
AA_MIN_PASSES = 100  # AutoAttack's first attack alone (APGD-CE, 100 iterations): forward-backward passes per image


def check_pipeline(profile: str, *, tiny: bool = False, data_dir: str = "data", download: bool = False,
                   device: str = "auto", allow_slow: bool = False) -> None:
    """ConfigError (one line) when the run cannot work: a data set missing offline, or AutoAttack on the CPU
    over a test set that takes more than AA_CPU_LIMIT_S (unless `allow_slow`)."""
    from lib.orchestrate.tiny import tiny_data_dir, tiny_settings, with_jpeg_standin

    p = get_profile(profile)
    if tiny:
        tiny_data_dir(with_jpeg_standin(tiny_settings(p), data_dir), data_dir)  # ConfigError: cannot synthesise
        return
    check_data(profile, data_dir, download)
    if not allow_slow:
        check_autoattack_time(profile, device, data_dir)


def check_data(profile: str, data_dir: str = "data", download: bool = False) -> None:
    """Every data set the profile's runs read loads from `data_dir`; one with a stand-in may be missing."""
    from lib.core.data import DATASETS, DataError

    if download:
        return  # the loaders fetch what is missing, and say so if the download fails
    p = get_profile(profile)
    derma = p.notebooks.derma
    needed = [(profile_config(profile).data.dataset, "its runs")]
    if derma.get("dataset") and not derma.get("standin"):
        needed.append((derma["dataset"], "notebook 06"))
    for name, who in needed:
        try:
            DATASETS[name](data_dir, False)
        except DataError as e:
            raise ConfigError(f"profile {profile!r} needs {name} for {who} and it is not here offline ({e}). "
                              f"Run with --download online, or put the files in --data-dir (docs/paper-setting.md); "
                              f"`--tiny` runs every code path without it") from None


def seconds_per_pass(arch: str, shape: tuple[int, int, int], num_classes: int, device: str = "cpu") -> float:
    """Measured seconds of one forward-backward pass per image of `arch` here (batch of 8, after a warm-up)."""
    import torch

    from lib.core.models import create_model

    model = create_model(arch, num_classes, in_channels=shape[0], image_size=shape[1]).to(device).eval()
    x = torch.rand(8, *shape, device=device, requires_grad=True)
    y = torch.zeros(8, dtype=torch.long, device=device)
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        best = min(best, time.perf_counter() - t0)
    return best / 8


_SHAPES = {"cifar10": ((3, 32, 32), 10, 10000), "cifar100": ((3, 32, 32), 100, 10000),
           "fashion_mnist": ((1, 28, 28), 10, 10000), "digits": ((1, 8, 8), 10, 540),
           "dermamnist": ((3, 28, 28), 7, 2005)}


def check_autoattack_time(profile: str, device: str = "auto", data_dir: str = "data",
                          measure=seconds_per_pass) -> dict[str, Any] | None:
    """On a CPU run of `profile` whose suite has AutoAttack, estimate its time from a measured pass; ConfigError
    when even APGD-CE alone (AA_MIN_PASSES passes per test image) exceeds AA_CPU_LIMIT_S."""
    return check_run_autoattack(profile_config(profile), None, device, what=f"profile {profile!r} runs",
                                measure=measure)


def check_run_autoattack(cfg, attacks=None, device: str = "auto", *, what: str = "this run asks for",
                         measure=seconds_per_pass) -> dict[str, Any] | None:
    """The same check for one run config (`python -m lib evaluate`): None when there is nothing to check."""
    import torch

    if "autoattack" not in (attacks or cfg.eval.attacks):
        return None
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if dev != "cpu":
        return None
    shape, classes, n_test = _SHAPES.get(cfg.data.dataset, ((3, 32, 32), 10, 10000))
    n = min(n_test, cfg.data.max_test or n_test)
    per_pass = measure(cfg.model.arch, shape, classes)
    est = n * AA_MIN_PASSES * per_pass
    out = {"n_test": n, "seconds_per_pass": per_pass, "estimate_s": est}
    if est > AA_CPU_LIMIT_S:
        raise ConfigError(
            f"{what} AutoAttack on {n} test images on the CPU: at least {est / 3600:.1f} h per run here "
            f"(APGD-CE alone, {AA_MIN_PASSES} passes per image at {per_pass * 1000:.0f} ms; the full standard "
            f"suite takes several times that). Use a GPU (--device cuda), `--tiny` to check the code paths, or "
            f"--allow-slow to start anyway")
    return out
