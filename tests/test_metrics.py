"""Balanced accuracy / robustness = mean per-class recall = scikit-learn's balanced_accuracy_score."""

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from lib.core.metrics import accuracy, balanced_accuracy, balanced_robustness, per_class_recall


def test_balanced_accuracy_matches_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(10):
        y = rng.integers(0, 6, size=200)
        p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 6, size=200))
        assert balanced_accuracy(torch.tensor(p), torch.tensor(y), 6) == pytest.approx(
            balanced_accuracy_score(y, p), abs=1e-12)


def test_per_class_recall_by_hand_and_missing_class():
    y = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    p = torch.tensor([0, 0, 0, 1, 1, 0, 2])
    r = per_class_recall(p, y, 4)
    assert r[:3].tolist() == [0.75, 0.5, 1.0]
    assert torch.isnan(r[3])  # no sample of class 3: left out of the balanced mean
    assert balanced_accuracy(p, y, 4) == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    assert balanced_robustness(p, y, 4) == balanced_accuracy(p, y, 4)
    assert accuracy(p, y) == pytest.approx(5 / 7)
