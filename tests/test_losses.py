"""HEL and BSL against hand-computed values (TAET Sec. 4; AT-BSL's balanced softmax)."""

import pytest
import torch
import torch.nn.functional as F

from lib.core.config import ConfigError
from lib.core.losses import balanced_softmax_loss, class_mean_losses, hel_loss, hel_terms

# Per-sample losses 1, 3 (class 0), 2 (class 1), 4 (class 2); class 3 absent from the batch.
LOSS = torch.tensor([1.0, 3.0, 2.0, 4.0])
Y = torch.tensor([0, 0, 1, 2])


def test_class_means_by_hand():
    lc, present = class_mean_losses(LOSS, Y, 4)
    assert torch.allclose(lc, torch.tensor([2.0, 2.0, 4.0, 0.0]))
    assert present.tolist() == [True, True, True, False]


def test_hel_terms_absent_zero_by_hand():
    # L_c = [2, 2, 4, 0]: BCL = 8/4 = 2; HDL = (0 + 0 + 4 + 4)/4 = 2; RCEL = .25² + .25² + .5² = 0.375
    bcl, hdl, rcel = hel_terms(LOSS, Y, 4)
    assert bcl.item() == pytest.approx(2.0, abs=1e-6)
    assert hdl.item() == pytest.approx(2.0, abs=1e-6)
    assert rcel.item() == pytest.approx(0.375, abs=1e-6)
    assert hel_loss(LOSS, Y, 4).item() == pytest.approx(0.1 * 2 + 0.1 * 2 + 0.1 * 0.375, abs=1e-6)
    assert hel_loss(LOSS, Y, 4, alpha=1.0, beta=0.5, gamma=2.0).item() == pytest.approx(2 + 1 + 0.75, abs=1e-6)


def test_hel_terms_absent_exclude_by_hand():
    # L_c = [2, 2, 4] over the 3 present classes: BCL = 8/3; HDL = (2·(2/3)² + (4/3)²)/3 = 8/9; RCEL = 0.375
    bcl, hdl, rcel = hel_terms(LOSS, Y, 4, absent="exclude")
    assert bcl.item() == pytest.approx(8 / 3, abs=1e-6)
    assert hdl.item() == pytest.approx(8 / 9, abs=1e-6)
    assert rcel.item() == pytest.approx(0.375, abs=1e-6)
    assert hel_loss(LOSS, Y, 4, absent="exclude").item() == pytest.approx(0.1 * (8 / 3 + 8 / 9 + 0.375), abs=1e-6)


def _hel_reference_loop(per_sample, y, num_classes, a=0.1, b=0.1, g=0.1):
    """The official code's formulation: a Python loop over classes (for comparison only)."""
    lc = torch.zeros(num_classes)
    for c in range(num_classes):
        m = (y == c).float()
        lc[c] = (per_sample * m).sum() / (m.sum() + 1e-10)
    mean = lc.mean()
    return a * mean + b * ((lc - mean) ** 2).mean() + g * ((lc / (lc.sum() + 1e-10)) ** 2).sum()


def test_hel_matches_class_loop_on_random_batches():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        logits = torch.randn(64, 10, generator=g)
        y = torch.randint(0, 7, (64,), generator=g)  # classes 7..9 absent
        ps = F.cross_entropy(logits, y, reduction="none")
        assert torch.allclose(hel_loss(ps, y, 10), _hel_reference_loop(ps, y, 10), atol=1e-6)


def test_hel_gradient_flows_to_logits():
    logits = torch.randn(16, 5, requires_grad=True)
    y = torch.arange(16) % 5
    hel_loss(F.cross_entropy(logits, y, reduction="none"), y, 5).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_hel_rejects_reduced_loss_and_bad_rule():
    with pytest.raises(ConfigError, match="reduction='none'"):
        hel_loss(LOSS.mean(), Y, 4)
    with pytest.raises(ConfigError, match="absent"):
        hel_loss(LOSS, Y, 4, absent="ignore")


def test_balanced_softmax_equals_ce_on_shifted_logits():
    logits = torch.randn(8, 3)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0])
    counts = [100, 20, 5]
    expected = F.cross_entropy(logits + torch.log(torch.tensor([100.0, 20.0, 5.0])), y)
    assert torch.allclose(balanced_softmax_loss(logits, y, counts), expected)
    # by hand for one sample: z=[0,0,0], n=[100,20,5], y=2 -> -log(5/125)
    assert balanced_softmax_loss(torch.zeros(1, 3), torch.tensor([2]), counts).item() == pytest.approx(
        -torch.log(torch.tensor(5 / 125)).item(), abs=1e-6)


def test_balanced_softmax_bad_counts():
    with pytest.raises(ConfigError, match="one train count per class"):
        balanced_softmax_loss(torch.zeros(2, 3), torch.tensor([0, 1]), [1, 2])
    with pytest.raises(ConfigError, match="> 0"):
        balanced_softmax_loss(torch.zeros(2, 3), torch.tensor([0, 1]), [1, 0, 2])
