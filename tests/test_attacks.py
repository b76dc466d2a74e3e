"""Attacks: stay in their ball, hurt a trained model, agree with torchattacks, and leave the model as found."""

from __future__ import annotations

import json
import logging
import warnings

import pytest
import torch
from torch import nn

from lib.core import attacks as A
from lib.core import suite as S
from lib.core.config import ConfigError, EvalConfig

EPS = 0.1


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


LINF_ATTACKS = {
    "fgsm": lambda m, x, y: A.fgsm(m, x, y, eps=EPS),
    "pgd_uniform": lambda m, x, y: A.pgd(m, x, y, eps=EPS, step_size=0.03, steps=5, generator=gen()),
    "pgd_normal": lambda m, x, y: A.pgd(m, x, y, eps=EPS, step_size=0.03, steps=5, start="normal", start_std=0.2),
    "pgd_no_start": lambda m, x, y: A.pgd(m, x, y, eps=EPS, step_size=0.03, steps=5, random_start=False),
    "pgd_cw_loss": lambda m, x, y: A.pgd(m, x, y, eps=EPS, step_size=0.03, steps=5, loss="cw", kappa=5.0),
    "pgd_zero_steps": lambda m, x, y: A.pgd(m, x, y, eps=EPS, step_size=0.03, steps=0),
    "cw_linf": lambda m, x, y: A.cw_linf(m, x, y, eps=EPS, step_size=0.03, steps=5),
}
ALL_ATTACKS = {**LINF_ATTACKS, "cw_l2": lambda m, x, y: A.cw_l2(m, x, y, steps=10)}


@pytest.fixture(scope="module")
def small(trained_digits_model):
    model, x, y = trained_digits_model
    return model, x[:128], y[:128]


class ModeRecorder(nn.Module):
    """Wraps a model; records the training flag it sees on every forward; has a submodule left in eval."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.frozen = nn.Dropout(0.5)
        self.seen: list[bool] = []

    def forward(self, x):
        self.seen.append(self.training)
        return self.inner(x)


# --- the contract every attack keeps --------------------------------------------------------------
@pytest.mark.parametrize("name", list(LINF_ATTACKS))
def test_linf_attacks_stay_in_eps_ball_and_unit_box(small, name):
    model, x, y = small
    x_adv = LINF_ATTACKS[name](model, x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert (x_adv - x).abs().max().item() <= EPS + 1e-6
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0


def test_cw_l2_stays_in_unit_box(small):
    model, x, y = small
    x_adv = A.cw_l2(model, x, y, steps=20)
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0


@pytest.mark.parametrize("name", list(ALL_ATTACKS))
def test_attacks_run_in_eval_mode_restore_modes_and_leave_no_param_grads(small, name):
    model, x, y = small
    wrapped = ModeRecorder(model)
    wrapped.train()
    wrapped.frozen.eval()  # a mixed state must come back as it was
    try:
        ALL_ATTACKS[name](wrapped, x[:16], y[:16])
        assert bool(wrapped.seen) == (name != "pgd_zero_steps")
        assert not any(wrapped.seen), "the attack ran the model in train mode"
        assert wrapped.training and wrapped.inner.training and not wrapped.frozen.training
        assert all(p.grad is None for p in wrapped.parameters())
    finally:
        model.eval()


def test_attacks_work_under_no_grad(small):
    model, x, y = small
    with torch.no_grad():
        x_adv = A.pgd(model, x, y, eps=EPS, step_size=0.03, steps=3, generator=gen())
    assert (x_adv != x).any()


# --- attacks hurt, and stronger attacks hurt more -------------------------------------------------
def test_pgd_hurts_more_than_fgsm_and_more_steps_hurt_more(trained_digits_model):
    model, x, y = trained_digits_model
    clean = accuracy(model, x, y)
    acc_fgsm = accuracy(model, A.fgsm(model, x, y, eps=EPS), y)
    acc_pgd5 = accuracy(model, A.pgd(model, x, y, eps=EPS, step_size=EPS / 4, steps=5, generator=gen()), y)
    acc_pgd20 = accuracy(model, A.pgd(model, x, y, eps=EPS, step_size=EPS / 4, steps=20, generator=gen()), y)
    assert acc_fgsm < clean - 0.1
    assert acc_pgd20 < acc_fgsm
    assert acc_pgd20 <= acc_pgd5


def test_cw_margin_loss_pgd_hurts(trained_digits_model):
    model, x, y = trained_digits_model
    acc = accuracy(model, A.cw_linf(model, x, y, eps=EPS, step_size=0.01, steps=20, generator=gen()), y)
    assert acc < accuracy(model, x, y) - 0.2


def test_cw_margin_matches_definition():
    logits = torch.tensor([[3.0, 1.0, -2.0], [-1.0, -3.0, -2.0], [0.0, 5.0, 1.0]])
    y = torch.tensor([0, 2, 1])
    # z_y - max_{j != y} z_j = 3-1, -2-(-1), 5-1, clamped below at -kappa
    assert torch.allclose(A.cw_margin(logits, y, kappa=5.0), torch.tensor([2.0, -1.0, 4.0]))
    assert torch.allclose(A.cw_margin(logits, y, kappa=0.5), torch.tensor([2.0, -0.5, 4.0]))
    assert torch.allclose(A.cw_margin(logits, y), torch.tensor([2.0, 0.0, 4.0]))


# --- agreement with torchattacks ------------------------------------------------------------------
torchattacks = pytest.importorskip("torchattacks")


def test_pgd_agrees_with_torchattacks(trained_digits_model):
    model, x, y = trained_digits_model
    ours = accuracy(model, A.pgd(model, x, y, eps=EPS, step_size=0.01, steps=20, generator=gen()), y)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ref = accuracy(model, torchattacks.PGD(model, eps=EPS, alpha=0.01, steps=20, random_start=True)(x, y), y)
    assert abs(ours - ref) <= 0.02, (ours, ref)


def test_fgsm_equals_torchattacks(small):
    model, x, y = small
    ref = torchattacks.FGSM(model, eps=EPS)(x, y)
    assert torch.allclose(A.fgsm(model, x, y, eps=EPS), ref, atol=1e-6)


def test_cw_l2_agrees_with_torchattacks(trained_digits_model):
    """margin='torchattacks' reproduces torchattacks.CW; the exact margin is at least as strong."""
    model, x, y = trained_digits_model
    settings = dict(c=10.0, kappa=0.0, steps=100, lr=0.01)
    try:
        ref = accuracy(model, torchattacks.CW(model, **settings)(x, y), y)
    finally:
        model.zero_grad(set_to_none=True)  # torchattacks.CW calls .backward() into the shared model
    x_ta = A.cw_l2(model, x, y, **settings, margin="torchattacks")
    x_exact = A.cw_l2(model, x, y, **settings)
    assert abs(accuracy(model, x_ta, y) - ref) <= 0.02
    assert accuracy(model, x_exact, y) <= ref + 0.02
    assert accuracy(model, x_exact, y) < accuracy(model, x, y) - 0.3
    for x_adv in (x_ta, x_exact):  # only fooled samples move; the rest come back untouched
        with torch.no_grad():
            fooled = model(x_adv).argmax(1) != y
        changed = (x_adv != x).flatten(1).any(1)
        assert not (changed & ~fooled).any()
        assert torch.equal(x_adv[~fooled], x[~fooled])


# --- the one l_inf ascent loop ---------------------------------------------------------------------
def ce_sum(y):
    return lambda logits, t: nn.functional.cross_entropy(logits, y, reduction="sum")


def test_linf_ascent_clamp_orders_agree_and_stay_in_ball(small):
    model, x, y = small
    x = x.clone()
    x[:4] = 0.0  # pixels on both edges of [0, 1]
    x[4:8] = 1.0
    start = (x + 0.05 * (2 * torch.rand(x.shape, generator=gen(1)) - 1)).clamp(0, 1)
    kw = dict(eps=EPS, step_size=0.03, steps=4, objective=ce_sum(y))
    with A.eval_mode(model):
        fused = A.linf_ascent(model, x, start, clamp_order="fused", **kw)
        ordered = A.linf_ascent(model, x, start, clamp_order="ball_then_unit", **kw)
    assert torch.equal(fused, ordered)
    assert (fused - x).abs().max() <= EPS + 1e-6 and fused.min() >= 0 and fused.max() <= 1
    assert accuracy(model, fused, y) < accuracy(model, x, y)
    assert all(p.grad is None for p in model.parameters())


def test_linf_ascent_per_example_eps_step_schedule_and_moving_mask(small):
    model, x, y = small
    n = x.shape[0]
    eps = torch.linspace(0.0, 0.2, n).view(-1, 1, 1, 1)  # the first example may not move at all
    with A.eval_mode(model):
        x_adv = A.linf_ascent(model, x, x, eps=eps, step_size=lambda t: 0.05 if t < 2 else 0.0, steps=5,
                              objective=ce_sum(y))
    assert ((x_adv - x).abs().flatten(1).amax(1) <= eps.flatten() + 1e-6).all()
    assert torch.equal(x_adv[0], x[0])
    # two steps of 0.05 reach the full ε = 0.1 in some pixel of the examples whose ball allows it
    big = eps.flatten() >= 0.1
    assert ((x_adv - x)[big].abs().flatten(1).amax(1) > 0.099).all()

    frozen = torch.arange(n) % 2 == 0  # the even examples never move
    with A.eval_mode(model):
        x_mask = A.linf_ascent(model, x, x, eps=EPS, step_size=0.03, steps=3,
                               objective=lambda z, t: (ce_sum(y)(z, t), ~frozen))
    assert torch.equal(x_mask[frozen], x[frozen]) and not torch.equal(x_mask[~frozen], x[~frozen])
    calls = []
    with A.eval_mode(model):
        stopped = A.linf_ascent(model, x, x, eps=EPS, step_size=0.03, steps=5,
                                objective=lambda z, t: (calls.append(t) or ce_sum(y)(z, t), torch.zeros_like(y).bool()))
    assert calls == [0] and torch.equal(stopped, x)  # no example moves: the loop ends at once


def test_random_like_draws_from_the_generator_in_float32():
    x = torch.zeros(3, 2, dtype=torch.float64)
    u = A.random_like(x, "uniform", gen(5))
    assert u.dtype == torch.float64 and torch.equal(u, torch.rand(3, 2, generator=gen(5)).double())
    n = A.random_like(x, "normal", gen(5), shape=(4, 1))
    assert n.shape == (4, 1) and torch.equal(n, torch.randn(4, 1, generator=gen(5)).double())


# --- reproducibility and argument checks ----------------------------------------------------------
def test_generator_makes_pgd_deterministic_and_leaves_global_rng_alone(small):
    model, x, y = small
    state = torch.get_rng_state()
    for start in ("uniform", "normal"):
        kw = dict(eps=EPS, step_size=0.02, steps=3, start=start, start_std=0.05)
        a = A.pgd(model, x, y, **kw, generator=gen(1))
        b = A.pgd(model, x, y, **kw, generator=gen(1))
        c = A.pgd(model, x, y, **kw, generator=gen(2))
        assert torch.equal(a, b)
        assert not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)
    g = gen(3)
    A.pgd(model, x, y, eps=EPS, step_size=0.02, steps=1, generator=g)
    saved = g.get_state()
    resumed = torch.Generator().manual_seed(99)
    resumed.set_state(saved)
    assert torch.equal(A.pgd(model, x, y, eps=EPS, step_size=0.02, steps=2, generator=g),
                       A.pgd(model, x, y, eps=EPS, step_size=0.02, steps=2, generator=resumed))


class Exploding(nn.Module):
    def forward(self, x):
        raise AssertionError("the model was called before the arguments were checked")


@pytest.mark.parametrize("call, match", [
    (lambda m, x, y: A.fgsm(m, x, y, eps=8), "8/255"),
    (lambda m, x, y: A.pgd(m, x, y, eps=8, step_size=2 / 255, steps=10), r"eps must be in \[0, 1\]"),
    (lambda m, x, y: A.pgd(m, x, y, eps=8 / 255, step_size=2, steps=10), "step_size"),
    (lambda m, x, y: A.pgd(m, x, y, eps=8 / 255, step_size=2 / 255, steps=-1), "steps"),
    (lambda m, x, y: A.pgd(m, x, y, eps=-0.1, step_size=2 / 255, steps=1), "eps"),
    (lambda m, x, y: A.pgd(m, x, y, eps=0.1, step_size=0.01, steps=1, loss="dlr"), "loss"),
    (lambda m, x, y: A.pgd(m, x, y, eps=0.1, step_size=0.01, steps=1, start="gauss"), "start"),
    (lambda m, x, y: A.cw_linf(m, x, y, eps=8, step_size=0.01), "eps"),
    (lambda m, x, y: A.cw_l2(m, x, y, steps=-5), "steps"),
    (lambda m, x, y: A.cw_l2(m, x, y, lr=0), "lr"),
    (lambda m, x, y: A.cw_l2(m, x, y, margin="paper"), "margin"),
    (lambda m, x, y: A.autoattack(m, x, y, eps=8), "8/255"),
    (lambda m, x, y: A.autoattack(m, x, y, eps=0.03, version="plus"), "version"),
    (lambda m, x, y: A.pgd(m, x * 255, y, eps=0.03, step_size=0.01, steps=1), r"x in \[0, 1\]"),
    (lambda m, x, y: A.pgd(m, x, y.int(), eps=0.03, step_size=0.01, steps=1), "int64"),
    (lambda m, x, y: A.linf_ascent(m, x, x, eps=0.03, step_size=0.01, steps=1, objective=None, clamp_order="x"),
     "clamp_order"),
])
def test_bad_arguments_raise_config_error_before_any_work(small, call, match):
    _, x, y = small
    with pytest.raises(ConfigError, match=match):
        call(Exploding(), x, y)


def test_eps_error_message_explains_units(small):
    _, x, y = small
    with pytest.raises(ConfigError) as err:
        A.pgd(Exploding(), x, y, eps=8, step_size=2 / 255, steps=10)
    msg = str(err.value)
    assert "\n" not in msg and "[0, 1]" in msg and "0.0314" in msg and "8" in msg


# --- the suite registry ---------------------------------------------------------------------------
SUITE = ("clean", "fgsm", "pgd20", "pgd100", "cw_l2", "cw_linf", "autoattack")


def test_registry_names_and_unknown_name():
    assert set(SUITE) <= set(S.ATTACKS)
    assert set(EvalConfig().attacks) <= set(S.ATTACKS)
    with pytest.raises(ConfigError, match="valid"):
        S.get_attack("pgd7")
    with pytest.raises(ConfigError, match="pgd20"):
        S.describe_attack("pgd7", EvalConfig())


@pytest.mark.parametrize("name", [n for n in SUITE if n != "autoattack"])
def test_registry_attacks_follow_eval_config(small, name):
    model, x, y = small
    ecfg = EvalConfig(eps=EPS, pgd_step_size=0.02, cw_l2_steps=10, cw_linf_step_size=0.02)
    x_adv = S.get_attack(name)(model, x, y, ecfg, gen())
    assert x_adv.shape == x.shape and x_adv.min() >= 0 and x_adv.max() <= 1
    if name != "cw_l2":
        assert (x_adv - x).abs().max().item() <= ecfg.eps + 1e-6
    if name == "clean":
        assert torch.equal(x_adv, x)
    desc = S.describe_attack(name, ecfg)
    assert desc["name"] == name
    json.dumps(desc)


def test_describe_attack_records_settings():
    e = EvalConfig()
    assert S.describe_attack("pgd20", e)["steps"] == 20
    assert S.describe_attack("pgd100", e)["step_size"] == e.pgd_step_size
    cw = S.describe_attack("cw_linf", e)
    assert (cw["loss"], cw["kappa"], cw["steps"], cw["step_size"]) == ("cw", 50.0, 20, e.cw_linf_step_size)
    assert S.describe_attack("cw_l2", e)["c"] == e.cw_l2_c
    aa = S.describe_attack("autoattack", e)
    assert aa["version"] == "standard" and aa["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    json.dumps(aa)


# --- AutoAttack adapter (official pyautoattack) ---------------------------------------------------
needs_aa = pytest.mark.skipif(not A.autoattack_available(), reason="pyautoattack is not installed")


class FirstClasses(nn.Module):
    """A k-class classifier made from the first k logits of a trained model."""

    def __init__(self, inner: nn.Module, k: int):
        super().__init__()
        self.inner, self.k = inner, k

    def forward(self, x):
        return self.inner(x)[:, : self.k]


@needs_aa
@pytest.mark.parametrize("num_classes, version, expected", [(10, "standard", 9), (5, "standard", 4),
                                                            (5, "rand", None)])
def test_autoattack_configures_target_classes(small, monkeypatch, num_classes, version, expected):
    import pyautoattack

    model, x, y = small
    seen = {}

    def fake_run(self, x_orig, y_orig, /, *, batch_size=250, state_path=None):
        seen.update(attacks=list(self.attacks_to_run), apgd_t=self.apgd_targeted.n_target_classes,
                    fab_t=self.fab.n_target_classes, device=self.device, eps=self.epsilon, bs=batch_size)
        return x_orig.clone(), y_orig.clone()

    monkeypatch.setattr(pyautoattack.AutoAttack, "run_standard_evaluation", fake_run)
    keep = y < num_classes
    A.autoattack(FirstClasses(model, num_classes), x[keep][:8], y[keep][:8], eps=0.05, version=version)
    assert seen["device"] == x.device and seen["eps"] == 0.05 and seen["bs"] == 250
    A.autoattack(FirstClasses(model, num_classes), x[keep][:8], y[keep][:8], eps=0.05, version=version,
                 batch_size=4)
    assert seen["bs"] == 4
    assert seen["attacks"] == A.autoattack_settings(num_classes, version)["attacks"]
    if expected is not None:
        assert seen["apgd_t"] == seen["fab_t"] == expected


@needs_aa
def test_autoattack_rejects_too_few_classes(small):
    model, x, y = small
    keep = y < 3
    with pytest.raises(ConfigError, match="at least 4 classes"):
        A.autoattack(FirstClasses(model, 3), x[keep][:4], y[keep][:4], eps=0.05)


@needs_aa
def test_autoattack_runs_on_cpu_with_few_classes(trained_digits_model, caplog):
    """Official standard AA on a 5-class model (targeted attacks with C-1 = 4 targets), 12 points."""
    model, x, y = trained_digits_model
    keep = y < 5
    model5 = FirstClasses(model, 5)
    x, y = x[keep][:12], y[keep][:12]
    model5.train()
    model.zero_grad(set_to_none=True)
    rng = torch.get_rng_state()
    with caplog.at_level(logging.WARNING, logger="auto-attack"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x_adv = A.autoattack(model5, x, y, eps=0.1, seed=0)
    assert not any("target classes" in r.getMessage() for r in caplog.records)
    assert model5.training and all(p.grad is None for p in model.parameters())
    model.eval()
    assert torch.equal(torch.get_rng_state(), rng), "pyautoattack's reseeding leaked into the global RNG"
    assert (x_adv - x).abs().max().item() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    robust = accuracy(model5, x_adv, y)
    pgd_acc = accuracy(model5, A.pgd(model5, x, y, eps=0.1, step_size=0.01, steps=20, generator=gen()), y)
    assert robust <= accuracy(model5, x, y)
    assert robust <= pgd_acc + 1 / 12
    assert robust < accuracy(model5, x, y)  # it found something at eps = 0.1
