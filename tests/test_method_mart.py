"""MART: the loss by hand, agreement with the official formula (value and gradient), the defaults
(the contract every method keeps: test_methods_contract.py)."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from lib.core.methods import MethodContext, build_method
from lib.core.methods.mart import mart_loss


def test_loss_by_hand():
    # sample 1, y = 0: p = (1/2, 1/4, 1/4), p' = (1/4, 1/2, 1/4)
    #   CE(x') = ln 4; most probable wrong class k = 1, margin = -ln(1.0001 - 1/2); KL(p||p') = 1/4 ln 2,
    #   weight 1.0000001 - 1/2
    # sample 2, y = 2: p = p' = (1/3, 1/3, 1/3)
    #   CE(x') = ln 3; margin = -ln(1.0001 - 1/3); KL = 0
    nat = torch.log(torch.tensor([[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]]))
    adv = torch.log(torch.tensor([[0.25, 0.5, 0.25], [1 / 3, 1 / 3, 1 / 3]]))
    y = torch.tensor([0, 2])
    bce = (math.log(4) + math.log(3)) / 2 + (-math.log(0.5001) - math.log(1.0001 - 1 / 3)) / 2
    kl = (0.25 * math.log(2) * 0.5000001 + 0.0) / 2
    assert abs(mart_loss(nat, adv, y, beta=6.0).item() - (bce + 6.0 * kl)) < 1e-5
    assert abs(mart_loss(nat, adv, y, beta=0.0).item() - bce) < 1e-5
    # bce = 1.2424533 (CE) + 0.5491312 (margin) = 1.7915845; β·KL = 6 × 0.0433217 = 0.2599302; loss 2.0515147
    assert abs(mart_loss(nat, adv, y, beta=6.0).item() - 2.0515147) < 1e-5


def _official_form(nat, adv, y, beta):
    """The official formula spelled out: top-2 of an argsort, KLDivLoss on probabilities, undetached weight."""
    adv_probs = F.softmax(adv, dim=1)
    top2 = torch.argsort(adv_probs, dim=1)[:, -2:]
    wrong = torch.where(top2[:, -1] == y, top2[:, -2], top2[:, -1])
    loss_adv = F.cross_entropy(adv, y) + F.nll_loss(torch.log(1.0001 - adv_probs + 1e-12), wrong)
    nat_probs = F.softmax(nat, dim=1)
    true_probs = nat_probs.gather(1, y[:, None]).squeeze(1)
    kl = nn.KLDivLoss(reduction="none")(torch.log(adv_probs + 1e-12), nat_probs).sum(1)
    return loss_adv + beta * (kl * (1.0000001 - true_probs)).sum() / len(y)


def test_matches_official_formula_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    nat = (2 * torch.randn(6, 5, generator=g)).requires_grad_(True)
    adv = (2 * torch.randn(6, 5, generator=g)).requires_grad_(True)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    ours, ref = mart_loss(nat, adv, y, 6.0), _official_form(nat, adv, y, 6.0)
    assert torch.allclose(ours, ref, atol=1e-6)
    for a, b in zip(torch.autograd.grad(ours, [nat, adv]), torch.autograd.grad(ref, [nat, adv])):
        assert torch.allclose(a, b, atol=1e-6)  # the (1 - p_y) weight is not detached, as official


def test_defaults_are_official():
    a = build_method("mart", {}, MethodContext(10, [10] * 10, 2, torch.device("cpu"))).args
    assert (a.beta, a.eps, a.step_size, a.steps, a.start, a.start_std) == (6.0, 0.031, 0.007, 10, "normal", 0.001)
