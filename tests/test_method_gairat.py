"""GAIRAT: the weights and the loss by hand, κ counted during PGD, the λ and burn-in schedule, a run's stages
(the contract every method keeps: test_methods_contract.py)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lib.core.config import ConfigError
from lib.core.methods import MethodContext, build_method, resolve_method_args
from lib.core.methods.gairat import ga_pgd, gair_weights, gairat_loss
from lib.core.train import train_run

LN2, LN3, LN4 = math.log(2.0), math.log(3.0), math.log(4.0)


def method(epochs=120, **args):
    return build_method("gairat", args, MethodContext(10, [10] * 10, epochs, torch.device("cpu")))


KAPPA = torch.tensor([0, 5, 10])  # K = 10, so K/2 = 5


def test_tanh_weights_by_hand():
    # λ = -1: a = λ + 5·(5 - κ)/5 = 4, -1, -6; ω = (1 + tanh a)/2 = 1/(1 + e^{-2a})
    #   = 0.99966465, 0.11920292, 0.0000061442; sum 1.11887371; normalised ×3/sum:
    w = gair_weights(KAPPA, 10, -1.0, "tanh")
    assert torch.allclose(w, torch.tensor([2.6803686, 0.3196149, 1.6474e-5]), rtol=1e-5, atol=1e-9)
    assert abs(w.sum().item() - 3.0) < 1e-5  # normalised to the batch size
    # λ = inf is standard AT: every weight 1
    assert torch.equal(gair_weights(KAPPA, 10, math.inf, "tanh"), torch.ones(3))


def test_sigmoid_and_discrete_weights_by_hand():
    # sigmoid(4), sigmoid(-1), sigmoid(-6) = 0.98201379, 0.26894142, 0.00247262 -> ×3/sum
    w = gair_weights(KAPPA, 10, -1.0, "sigmoid")
    assert torch.allclose(w, torch.tensor([2.3503877, 0.6436942, 0.0059181]), rtol=1e-5)
    # (K + 1 - κ)/(K + 1) = 11/11, 6/11, 1/11 -> ×3/(18/11) = 11/6, 1, 1/6
    w = gair_weights(KAPPA, 10, -1.0, "discrete")
    assert torch.allclose(w, torch.tensor([11 / 6, 1.0, 1 / 6]), atol=1e-6)
    # odd K uses int(K/2): K = 5, half = 2, κ = 2 -> a = λ; two samples with κ = 2 get weight 1 each
    assert torch.allclose(gair_weights(torch.tensor([2, 2]), 5, -1.0, "tanh"), torch.ones(2))


def test_loss_by_hand():
    # CE: sample 1 p' = (1/2, 1/4, 1/4), y = 0 -> ln 2; sample 2 uniform -> ln 3; sample 3 p' = (1/4, 1/2, 1/4),
    # y = 0 -> ln 4. Weights for κ = 0, 5, 10 at λ = -1 (tanh) from above.
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3], [0.25, 0.5, 0.25]]))
    y = torch.tensor([0, 2, 0])
    expected = (2.6803686 * LN2 + 0.3196149 * LN3 + 1.6474e-5 * LN4) / 3  # = 0.736349
    assert abs(gairat_loss(logits, y, KAPPA, 10, -1.0, "tanh").item() - expected) < 1e-5
    assert abs(gairat_loss(logits, y, KAPPA, 10, math.inf).item() - (LN2 + LN3 + LN4) / 3) < 1e-6


class Scripted(nn.Module):
    """Classifies sample i correctly at its k-th call iff pattern[k, i]; no gradient reaches the input."""

    def __init__(self, pattern: torch.Tensor, y: torch.Tensor, num_classes: int = 3):
        super().__init__()
        self.pattern, self.y, self.c, self.calls = pattern, y, num_classes, 0

    def forward(self, x):
        target = torch.where(self.pattern[self.calls], self.y, (self.y + 1) % self.c)
        self.calls += 1
        return 5.0 * F.one_hot(target, self.c).float() + 0.0 * x.flatten(1).sum(1, keepdim=True)


def test_kappa_counts_correct_steps_vectorised():
    pattern = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0]], dtype=torch.bool)  # (K = 4 steps, 3 samples)
    y = torch.tensor([0, 1, 2])
    x = torch.full((3, 1, 2, 2), 0.5)
    _, kappa = ga_pgd(Scripted(pattern, y), x, y, eps=0.1, step_size=0.01, steps=4,
                      generator=torch.Generator().manual_seed(0))
    assert kappa.tolist() == [2, 3, 0]  # official: +1 at every correct step (sample 2 flips back and counts)
    _, kappa = ga_pgd(Scripted(pattern, y), x, y, eps=0.1, step_size=0.01, steps=4,
                      generator=torch.Generator().manual_seed(0), kappa="first")
    assert kappa.tolist() == [2, 1, 0]  # steps before the first misclassification


def test_ga_pgd_stays_in_ball_is_reproducible_and_leaves_no_grads():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 8 * 8, 10)).train()
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    a, ka = ga_pgd(model, x, y, eps=0.031, step_size=0.007, steps=10, generator=torch.Generator().manual_seed(3))
    b, kb = ga_pgd(model, x, y, eps=0.031, step_size=0.007, steps=10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.equal(ka, kb)
    assert (a - x).abs().max() <= 0.031 + 1e-6 and a.min() >= 0 and a.max() <= 1
    assert ka.min() >= 0 and ka.max() <= 10
    assert model.training and all(p.grad is None for p in model.parameters())


def test_burn_in_and_lambda_schedule_follow_the_official_run():
    m = method(120)
    assert m.begin_epoch() == 60  # official --begin_epoch 60 of --epochs 120
    assert not m.reweights(58) and m.reweights(59)  # official: (epoch + 1) >= begin_epoch, 0-indexed epoch
    assert m.stage(0) == "adversarial" and m.stage(119) == "reweighted"
    assert m.lam_at(59) == m.lam_at(119) == -1.0  # fixed
    m = method(120, lam_schedule="piecewise")
    assert [m.lam_at(e - 1) for e in (60, 89, 90, 109, 110, 120)] == [-1.0, -1.0, -2.0, -2.0, -2.5, -2.5]
    m = method(120, lam_schedule="linear", lam_max=5.0)
    assert m.lam_at(59) == pytest.approx(2.0) and m.lam_at(119) == pytest.approx(-1.0)  # 5 - (e/E)·6
    m = method(10)  # short runs keep the shape: 4 plain epochs, then GAIR from 1-indexed epoch 5
    assert [m.stage(e) for e in range(10)] == ["adversarial"] * 4 + ["reweighted"] * 6


def test_defaults_are_official_and_bad_settings_fail_early():
    a = method().args
    assert (a.lam, a.lam_max, a.lam_schedule, a.weight_fn, a.begin_frac) == (-1.0, math.inf, "fixed", "tanh", 0.5)
    assert (a.eps, a.step_size, a.steps, a.start, a.kappa) == (0.031, 0.007, 10, "uniform", "count")
    assert resolve_method_args("gairat", {"lam": "inf"})["lam"] == math.inf  # `--method-arg lam=inf`
    with pytest.raises(ConfigError, match="finite lam_max"):
        method(lam_schedule="linear")
    with pytest.raises(ConfigError, match="weight_fn"):
        method(weight_fn="Tanh2")
    with pytest.raises(ConfigError, match="begin_frac"):
        method(begin_frac=1.5)


def test_a_run_records_its_stages_and_its_config_with_lam_max_inf_is_reused(tmp_path, small_cfg):
    res = train_run(small_cfg(tmp_path, "gairat", epochs=3), verbose=False)  # GAIR from 1-indexed epoch 2
    assert [r["stage"] for r in res.history] == ["adversarial"] + ["reweighted"] * 2
    again = train_run(small_cfg(tmp_path, "gairat", epochs=3), verbose=False)  # config with lam_max=inf re-reads
    assert again.reused
