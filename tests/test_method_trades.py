"""TRADES: the loss by hand, the official KL scaling, the KL attack's contract, the defaults
(the contract every method keeps: test_methods_contract.py)."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from lib.core.methods import MethodContext, build_method
from lib.core.methods.trades import kl_rows, trades_attack, trades_loss

LN2, LN3 = math.log(2.0), math.log(3.0)


def tiny_net() -> nn.Module:
    """A small conv net with BatchNorm on 1x8x8 inputs in [0, 1] (so train/eval mode matters)."""
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 8 * 8, 10))


def test_loss_by_hand():
    # sample 1: p = (1/2, 1/4, 1/4), p' = (1/4, 1/2, 1/4), y = 0: CE = ln 2, KL = 1/2 ln 2 - 1/4 ln 2 = 1/4 ln 2
    # sample 2: p = p' = (1/3, 1/3, 1/3), y = 2:                   CE = ln 3, KL = 0
    nat = torch.log(torch.tensor([[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]]))
    adv = torch.log(torch.tensor([[0.25, 0.5, 0.25], [1 / 3, 1 / 3, 1 / 3]]))
    y = torch.tensor([0, 2])
    assert torch.allclose(kl_rows(nat, adv), torch.tensor([0.25 * LN2, 0.0]), atol=1e-6)
    # (ln 2 + ln 3)/2 + 6 · (1/4 ln 2 + 0)/2 = 1.25 ln 2 + 0.5 ln 3 = 1.41574
    assert abs(trades_loss(nat, adv, y, beta=6.0).item() - 1.4157401) < 1e-5
    assert abs(trades_loss(nat, adv, y, beta=0.0).item() - (LN2 + LN3) / 2) < 1e-6


def test_kl_term_is_official_sum_over_batch_size_with_same_gradient():
    g = torch.Generator().manual_seed(0)
    nat = torch.randn(5, 4, generator=g).requires_grad_(True)
    adv = torch.randn(5, 4, generator=g).requires_grad_(True)
    y = torch.tensor([0, 1, 2, 3, 0])
    ours = trades_loss(nat, adv, y, beta=6.0)
    official = F.cross_entropy(nat, y) + 6.0 * (1.0 / 5) * nn.KLDivLoss(reduction="sum")(
        F.log_softmax(adv, dim=1), F.softmax(nat, dim=1))
    assert torch.allclose(ours, official, atol=1e-6)
    g1 = torch.autograd.grad(ours, [nat, adv])
    g2 = torch.autograd.grad(official, [nat, adv])
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-6)


def test_attack_raises_kl_stays_in_ball_leaves_no_grads_and_restores_train_mode():
    torch.manual_seed(0)
    model = tiny_net().train()
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    eps = 0.031
    x_adv = trades_attack(model, x, eps=eps, step_size=0.007, steps=10, start_std=0.001,
                          generator=torch.Generator().manual_seed(2))
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    again = trades_attack(model, x, eps=eps, step_size=0.007, steps=10, start_std=0.001,
                          generator=torch.Generator().manual_seed(2))
    assert torch.equal(x_adv, again)  # the generator drives all randomness
    with torch.no_grad():
        model.eval()
        kl_adv = kl_rows(model(x), model(x_adv)).sum()
        kl_start = kl_rows(model(x), model((x + 0.001 * torch.randn_like(x)).clamp(0, 1))).sum()
    assert kl_adv > 10 * kl_start


def test_defaults_are_official():
    m = build_method("trades", {}, MethodContext(10, [10] * 10, 2, torch.device("cpu")))
    assert (m.args.beta, m.args.eps, m.args.step_size, m.args.steps, m.args.start_std) == (6.0, 0.031, 0.007, 10,
                                                                                             0.001)
