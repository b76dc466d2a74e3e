"""ADT-EXP: the entropy estimate by hand, the inner step equals the official Adam(β = 0), the ε-ball, the defaults
(the contract every method keeps: test_methods_contract.py)."""

import math

import torch
import torch.nn.functional as F

from lib.core.methods import MethodContext, build_method
from lib.core.methods.adt import adt_entropy, adt_exp_perturb, adt_sample
from lib.core.models import create_model


def test_entropy_estimate_by_hand():
    # μ = ρ = 0: σ = softplus(0) = ln 2; z = [0, 1] gives u = tanh(0) = 0 and tanh(ln 2) = 1.5/2.5 = 0.6.
    mu, rho, z = torch.zeros(2), torch.zeros(2), torch.tensor([0.0, 1.0])
    u, std = adt_sample(mu, rho, z)
    assert torch.allclose(u, torch.tensor([0.0, 0.6])) and torch.allclose(std, torch.full((2,), math.log(2)))
    # −log p = z²/2 + log σ + log(1 − u²): [ln ln 2, 0.5 + ln ln 2 + ln 0.64] = [−0.3665129, −0.3128000]
    assert math.isclose(float(adt_entropy(z, std, u)), (-0.3665129 - 0.3128000) / 2, abs_tol=1e-6)


def _net():
    torch.manual_seed(0)
    return create_model("small_cnn", 3, in_channels=1, width=4).eval()


def test_one_inner_step_is_the_official_adam_with_zero_betas():
    model = _net()
    x = torch.rand(4, 1, 8, 8) * 0.8 + 0.1
    y = torch.tensor([0, 1, 2, 0])
    eps, lr, lbd = 8 / 255, 0.3, 0.01
    got = adt_exp_perturb(model, x, y, eps=eps, lr=lr, steps=1, samples=2, lbd=lbd,
                          generator=torch.Generator().manual_seed(7))
    # the official loop: Adam(betas=(0, 0)) on (μ, ρ), backward of −CE − λ·H accumulated over the samples
    g = torch.Generator().manual_seed(7)
    mu = torch.zeros_like(x, requires_grad=True)
    rho = torch.zeros_like(x, requires_grad=True)
    opt = torch.optim.Adam([mu, rho], lr=lr, betas=(0.0, 0.0))
    for _ in range(2):
        z = torch.randn(x.shape, generator=g)
        std = F.softplus(rho)
        u = torch.tanh(mu + z * std)
        entropy = (z ** 2 / 2 + (std + 1e-8).log() + (1 - u ** 2 + 1e-8).log()).mean()
        (-F.cross_entropy(model((x + eps * u).clamp(0, 1)), y) - lbd * entropy).backward()
    opt.step()
    with torch.no_grad():
        want = (x + eps * torch.tanh(mu + F.softplus(rho) * torch.randn(x.shape, generator=g))).clamp(0, 1)
    assert torch.allclose(got, want, atol=1e-6)
    step = mu.detach().abs()
    assert step.max() <= lr + 1e-6 and step.median() > 0.99 * lr  # a sign-like step of size lr


def test_samples_stay_in_the_eps_ball_and_are_reproducible():
    model = _net()
    x = torch.rand(5, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 0, 1])
    a = adt_exp_perturb(model, x, y, eps=0.05, lr=0.3, steps=3, samples=2, lbd=0.01,
                        generator=torch.Generator().manual_seed(1))
    b = adt_exp_perturb(model, x, y, eps=0.05, lr=0.3, steps=3, samples=2, lbd=0.01,
                        generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert (a - x).abs().max() <= 0.05 + 1e-6 and a.min() >= 0 and a.max() <= 1
    assert model.training is False and all(p.grad is None for p in model.parameters())


def test_defaults_are_the_official_ones():
    m = build_method("adt", {}, MethodContext(10, [1] * 10, 1, torch.device("cpu")))
    assert (m.args.eps, m.args.lr, m.args.steps, m.args.samples, m.args.lbd) == (8 / 255, 0.3, 7, 5, 0.01)
