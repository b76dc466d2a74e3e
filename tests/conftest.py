"""Shared pytest fixtures. Others may append fixtures below; keep each one small and seeded."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def pytest_runtest_setup(item):
    """`@pytest.mark.fashion_mnist`: the test reads Fashion-MNIST's real files, from data/ or the Debian package
    dataset-fashion-mnist; it skips, with that reason, where neither has them (a fresh machine, CI's first pass)."""
    if item.get_closest_marker("fashion_mnist") is None:
        return
    from lib.core import data

    if data._find_fashion("data") is None:
        hidden = f" ({data.NO_SYSTEM_DATA_ENV} is set)" if not data.system_data_dirs() else ""
        pytest.skip(f"needs Fashion-MNIST's IDX files in data/ or `apt-get install dataset-fashion-mnist`{hidden}")


class DigitsNet(nn.Module):
    """A tiny conv net for 8x8 one-channel images in [0, 1]; normalisation lives inside the model."""

    def __init__(self, num_classes: int = 10, mean: float = 0.3, std: float = 0.4):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(),
        )
        self.head = nn.Linear(32 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - self.mean) / self.std))


def _digits_tensors(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    y = torch.tensor(d.target, dtype=torch.int64)
    idx_tr, idx_te = train_test_split(torch.arange(len(y)).numpy(), test_size=0.3, random_state=seed,
                                      stratify=y.numpy())
    return x[idx_tr], y[idx_tr], x[idx_te], y[idx_te]


@pytest.fixture(scope="session")
def digits_data():
    """sklearn digits as tensors: (x_train, y_train, x_test, y_test), pixels /16 in [0, 1], 70/30 stratified."""
    return _digits_tensors()


@pytest.fixture(scope="session")
def trained_digits_model(digits_data):
    """(model, x_test, y_test): DigitsNet trained a few seconds on digits (>90% clean test accuracy), eval mode."""
    x_tr, y_tr, x_te, y_te = digits_data
    with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's RNG
        torch.manual_seed(0)
        model = DigitsNet(mean=float(x_tr.mean()), std=float(x_tr.std()))
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(0)
        for _ in range(15):
            perm = torch.randperm(len(y_tr), generator=g)
            for i in range(0, len(perm), 64):
                b = perm[i:i + 64]
                loss = nn.functional.cross_entropy(model(x_tr[b]), y_tr[b])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    model.eval()
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        acc = (model(x_te).argmax(1) == y_te).float().mean().item()
    assert acc > 0.9, f"fixture model trained to only {acc:.3f} clean accuracy"
    return model, x_te, y_te


@pytest.fixture(scope="session")
def small_cfg():
    """small_cfg(root, method, epochs=3, max_train=None, **method_args) -> RunConfig: the smoke profile on
    synthetic data, on the CPU, quiet, no per-class tracking, run folders under root/runs."""
    from dataclasses import replace

    from lib.core.config import override
    from lib.profiles import profile_config

    def make(root, method, epochs=3, max_train=None, **method_args):
        cfg = replace(profile_config("smoke", method), method_args={})  # only the arguments given here
        return override(cfg, {"out_dir": str(root / "runs"), "data.dataset": "synthetic", "data.max_train": max_train,
                              "train.epochs": epochs, "train.device": "cpu", "train.progress": False,
                              "train.track_every": 0, **{f"method_args.{k}": v for k, v in method_args.items()}})

    return make


@pytest.fixture(scope="session")
def train_help_text():
    """The text of `python -m lib train --help` (it lists every registered method and its defaults)."""
    from lib.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices["train"].format_help()
