"""Every method's training attack runs through `lib.core.attacks.linf_ascent`; each must equal, bit for bit, its
official loop written out below the way the official code writes it (its own start, its own objective,
``x' + step·sign(g)`` clipped to the ε-ball and then to [0, 1])."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lib.core.methods.gairat import ga_pgd
from lib.core.methods.las_at import early_stop_pgd, per_example_pgd
from lib.core.methods.reat import rbl_attack, rbl_loss
from lib.core.methods.robal import pgd_one_sided_start
from lib.core.methods.trades import trades_attack
from lib.core.models import create_model

EPS, STEP, STEPS = 0.1, 0.02, 4


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, in_channels=1, image_size=8, width=8).eval()
    x = torch.rand(32, 1, 8, 8)
    x[:4] = 0.0  # pixels on both edges of [0, 1]
    x[4:8] = 1.0
    return model, x, torch.randint(0, 10, (32,))


def gen() -> torch.Generator:
    return torch.Generator().manual_seed(11)


def official_loop(model, x, x_adv, loss_fn, step=lambda t: STEP, steps=STEPS, lo=None, hi=None):
    lo = x - EPS if lo is None else lo
    hi = x + EPS if hi is None else hi
    for t in range(steps):
        x_adv.requires_grad_(True)
        grad = torch.autograd.grad(loss_fn(model(x_adv)), x_adv)[0]
        x_adv = x_adv.detach() + step(t) * grad.sign()
        x_adv = torch.min(torch.max(x_adv, lo), hi).clamp(0.0, 1.0)
    return x_adv.detach()


@pytest.mark.parametrize("steps", [0, STEPS])
def test_trades_robal_reat_gairat_attacks_are_their_official_loops(setup, steps):
    model, x, y = setup
    with torch.no_grad():
        log_p = F.log_softmax(model(x), 1)
    # TRADES: x + 0.001·N(0, 1), not clipped before the first step; ascends the summed KL
    got = trades_attack(model, x, eps=EPS, step_size=STEP, steps=steps, start_std=0.01, generator=gen())
    start = x + 0.01 * torch.randn(x.shape, generator=gen())
    want = official_loop(model, x, start, lambda z: F.kl_div(F.log_softmax(z, 1), log_p, reduction="sum",
                                                             log_target=True), steps=steps).clamp(0.0, 1.0)
    assert torch.equal(got, want)
    # RoBal: x + ε·U[0, 1), not clipped; mean CE
    got = pgd_one_sided_start(model, x, y, eps=EPS, step_size=STEP, steps=steps, generator=gen())
    start = x + EPS * torch.rand(x.shape, generator=gen())
    assert torch.equal(got, official_loop(model, x, start, lambda z: F.cross_entropy(z, y), steps=steps).clamp(0, 1))
    # REAT: x + U(−ε, ε), not clipped; class-weighted CE
    w = torch.linspace(0.5, 1.5, 10)
    got = rbl_attack(model, x, y, w, eps=EPS, step_size=STEP, steps=steps, generator=gen())
    start = x + EPS * (2.0 * torch.rand(x.shape, generator=gen()) - 1.0)
    assert torch.equal(got, official_loop(model, x, start, lambda z: rbl_loss(z, y, w), steps=steps).clamp(0, 1))
    # GAIRAT: x + U(−ε, ε) clipped to [0, 1]; summed CE; κ counts the steps that start correct
    got, kappa = ga_pgd(model, x, y, eps=EPS, step_size=STEP, steps=steps, generator=gen())
    start = (x + EPS * (2.0 * torch.rand(x.shape, generator=gen()) - 1.0)).clamp(0.0, 1.0)
    seen = []

    def ce_sum_counting(z):
        seen.append(z.argmax(1) == y)
        return F.cross_entropy(z, y, reduction="sum")

    want = official_loop(model, x, start, ce_sum_counting, steps=steps)
    assert torch.equal(got, want)
    assert torch.equal(kappa, torch.stack(seen).sum(0) if seen else torch.zeros_like(y))


def test_las_at_attacks_are_their_official_loops(setup):
    model, x, y = setup
    g = torch.Generator().manual_seed(2)
    eps = torch.randint(3, 16, (32,), generator=g).float() / 255
    step = torch.randint(1, 6, (32,), generator=g).float() / 255
    iters = torch.randint(1, 6, (32,), generator=g)
    view = (-1, 1, 1, 1)
    # per-example ε, step and iteration count; start x + U(−8/255, 8/255) clipped to [0, 1]
    got = per_example_pgd(model, x, y, eps, step, iters, init_eps=8 / 255, generator=gen())
    start = (x + 8 / 255 * (2.0 * torch.rand(x.shape, generator=gen()) - 1.0)).clamp(0.0, 1.0)
    want = official_loop(model, x, start, lambda z: F.cross_entropy(z, y),
                         step=lambda t: (iters > t).float().view(view) * step.view(view), steps=int(iters.max()),
                         lo=x - eps.view(view), hi=x + eps.view(view))
    assert torch.equal(got, want)
    # the reward's early-stopping PGD: only still-correct examples move; the restart of larger CE is kept
    got = early_stop_pgd(model, x, y, eps=EPS, step_size=STEP, steps=STEPS, restarts=2, generator=gen())
    g, best, best_loss = gen(), x.clone(), torch.zeros(32)
    for _ in range(2):
        x_adv = (x + EPS * (2.0 * torch.rand(x.shape, generator=g) - 1.0)).clamp(0.0, 1.0)
        for _ in range(STEPS):
            x_adv.requires_grad_(True)
            out = model(x_adv)
            correct = out.argmax(1) == y
            if not correct.any():
                break
            grad = torch.autograd.grad(F.cross_entropy(out, y), x_adv)[0]
            moved = torch.min(torch.max(x_adv.detach() + STEP * grad.sign(), x - EPS), x + EPS).clamp(0.0, 1.0)
            x_adv = torch.where(correct.view(view), moved, x_adv.detach())
        x_adv = x_adv.detach()
        with torch.no_grad():
            loss = F.cross_entropy(model(x_adv), y, reduction="none")
        best = torch.where((loss >= best_loss).view(view), x_adv, best)
        best_loss = torch.maximum(best_loss, loss)
    assert torch.equal(got, best)
