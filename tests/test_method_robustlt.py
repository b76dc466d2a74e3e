"""RobustLT against a small copy of its official arithmetic (zhang-lilin/RobustLT, core/methods/robustlt.py and the
base attack in core/methods/utils.py): the class-wise budget ε_c for given counts, the warm-up over the epochs, the
per-sample budgets of one batch, the attack inside each sample's own ball and in [0, 1], the bad inputs refused in
one line (the contract every method keeps: test_methods_contract.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from lib.core import attacks
from lib.core.config import EPS_8, ConfigError
from lib.core.data import long_tail_counts
from lib.core.methods import METHODS, MethodContext, build_method, common
from lib.core.methods.robustlt import class_scale, intensity, wrap
from lib.core.models import create_model

CIFAR10_IR50 = long_tail_counts(5000, 10, 50.0)  # 5000 ... 100, the official configurations' train counts


# ---- the official arithmetic, written out as the official code computes it (float32 tensors, 1-indexed epochs) ----
def official_eps_max(counts, eps, alpha):
    spc = torch.tensor(counts)
    n_max, n = spc.max(), spc.sum()
    tau = alpha / ((spc / n) * (n_max / spc).log().sqrt()).sum()
    return (1 - alpha) * eps + tau * (n_max / spc).log().sqrt() * eps


def official_intensity(epoch_1, epochs, beta):
    return min((epoch_1 - 1) / (beta * epochs), 1) if beta > 0 else 1.0


def official_attack(model, x, y, noise, eps_i, eps, step, steps):
    """The base attack: train mode, BatchNorm not tracking, x + U(−ε, ε) of the base ε clipped to [0, 1], then
    sign steps of step·ε_i/ε projected to each sample's ball and [0, 1] (mean CE: the sign is the kit's sum's)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    model.train()
    for m in bns:
        m.track_running_stats = False
    eps_i = eps_i.view(-1, 1, 1, 1)
    step_i = eps_i / eps * step
    x_adv = torch.clamp(x + noise, 0.0, 1.0)
    for _ in range(steps):
        x_adv.requires_grad_()
        grad = torch.autograd.grad(F.cross_entropy(model(x_adv), y), [x_adv])[0]
        x_adv = x_adv.detach() + step_i * torch.sign(grad)
        x_adv = torch.clamp(torch.min(torch.max(x_adv, x - eps_i), x + eps_i), 0.0, 1.0)
    for m in bns:
        m.track_running_stats = True
    return x_adv


# ---- fixtures ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def batch():
    """64 sklearn digits (every class present) in [0, 1] and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images[:64] / 16.0, dtype=torch.float32).unsqueeze(1)
    return x, torch.tensor(d.target[:64], dtype=torch.int64)


def small_model(seed=0):
    torch.manual_seed(seed)
    return create_model("small_cnn", 10, in_channels=1, image_size=8, width=16).train()


def make(name="robustlt_atbsl", counts=CIFAR10_IR50, epochs=100, **args):
    return build_method(name, args, MethodContext(len(counts), list(counts), epochs, torch.device("cpu")))


@pytest.fixture
def spy(monkeypatch):
    """Every call train_pgd makes to pgd: its keyword arguments and its result."""
    calls = []

    def recording(model, x, y, **kw):
        out = attacks.pgd(model, x, y, **kw)
        calls.append({**kw, "x": x, "y": y, "out": out})
        return out

    monkeypatch.setattr(common, "pgd", recording)
    return calls


# ---- the budget ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("counts", [CIFAR10_IR50, [37, 500, 9, 120], long_tail_counts(500, 100, 10.0)])
@pytest.mark.parametrize("alpha", [0.3, 0.4, 0.0])
def test_class_budgets_match_the_official_formula(counts, alpha):
    ours = class_scale(counts, alpha) * EPS_8
    assert torch.allclose(ours.float(), official_eps_max(counts, EPS_8, alpha), rtol=1e-6, atol=0)
    n = torch.tensor(counts, dtype=torch.float64)
    assert ours[n.argmax()] == pytest.approx((1 - alpha) * EPS_8)  # the head class: (1 − α)·ε
    assert float((ours * n).sum() / n.sum()) == pytest.approx(EPS_8)  # the training-set mean stays ε
    assert torch.all(ours[n.argsort(descending=True)].diff() >= 0)  # rarer, larger


def test_the_cifar10_ir50_budgets_by_hand():
    # n = 5000, 3237, ..., 100 (N = 13,996): s_c = sqrt(ln(5000 / n_c)), Σ (n_c/N)·s_c = 0.652257, τ = 0.3 / 0.652257
    # = 0.459941; the tail class: 0.7 + 0.459941·sqrt(ln 50) = 0.7 + 0.459941·1.977883 = 1.609710, i.e. 12.88/255
    scale = class_scale(CIFAR10_IR50, 0.3)
    assert scale[0].item() == pytest.approx(0.7) and scale[-1].item() == pytest.approx(1.609710, abs=1e-6)
    assert (scale * 255 * EPS_8)[-1].item() == pytest.approx(12.878, abs=1e-3)  # ε_tail ≈ 12.9/255


def test_a_balanced_set_keeps_the_base_budget():
    assert torch.equal(class_scale([50] * 10, 0.3), torch.ones(10, dtype=torch.float64))  # official: 0/0


@pytest.mark.parametrize("beta,epochs", [(0.8, 100), (1.0, 100), (0.6, 7), (0.0, 10)])
def test_the_warm_up_is_the_official_one_a_kit_epoch_earlier(beta, epochs):
    """The kit's epoch is 0-indexed, the official trainer's 1-indexed: I(kit epoch e) = official I(e + 1)."""
    for e in range(epochs):
        assert intensity(e, epochs, beta) == official_intensity(e + 1, epochs, beta)
    assert intensity(0, epochs, beta) == (0.0 if beta > 0 else 1.0)  # the first epoch attacks with ε_c = 0


def test_the_official_schedules():
    assert [intensity(e, 100, 0.8) for e in (0, 40, 79, 80, 99)] == [0.0, 0.5, 79 / 80, 1.0, 1.0]  # full at e = 81
    assert intensity(99, 100, 1.0) == 0.99  # β = 1 (TAET) never reaches the full budget
    m = make(epochs=100)
    assert torch.allclose(m.budgets(40), class_scale(CIFAR10_IR50, 0.3) * 0.5 * EPS_8)


def test_official_defaults():
    a, t = make().args, make("robustlt_taet").args
    assert (a.robustlt_alpha, a.robustlt_beta, t.robustlt_alpha, t.robustlt_beta) == (0.3, 0.8, 0.3, 1.0)
    for args in (a, t):  # the official trainer's attack for every base
        assert (args.eps, args.step_size, args.steps, args.start) == (EPS_8, 2 / 255, 10, "uniform")
        assert (args.robustlt_start, args.attack_mode) == ("base", "train_frozen_bn")
    assert (t.ce_epochs, t.alpha, t.beta, t.gamma) == (40, 0.1, 0.1, 0.1)  # TAET's own, as the official config
    assert a.start_std == 0.001 and not a.extra_clean_forward and a.clean_epochs == 0


# ---- one batch -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("epoch", [0, 30, 99])
def test_the_per_sample_budgets_of_one_batch(batch, spy, epoch):
    x, y = batch
    m = make(epochs=100)
    m.step(small_model(), x, y, epoch, torch.Generator().manual_seed(0))
    (call,) = spy
    want = official_eps_max(CIFAR10_IR50, EPS_8, 0.3)[y] * official_intensity(epoch + 1, 100, 0.8)
    assert torch.allclose(call["eps"].flatten(), want, rtol=1e-6, atol=1e-9)
    assert torch.allclose(call["step_size"].flatten(), want / EPS_8 * (2 / 255), rtol=1e-6, atol=1e-9)
    assert call["start_eps"] == EPS_8 and call["start"] == "uniform" and call["steps"] == 10
    assert call["mode"] is common.frozen_bn_train_mode


def test_the_attack_stays_in_each_samples_own_ball_and_in_the_unit_box(batch, spy):
    x, y = batch
    model = small_model()
    make(epochs=10, robustlt_beta=0.0).step(model, x, y, 5, torch.Generator().manual_seed(1))
    delta = (spy[0]["out"] - x).abs().flatten(1).amax(1)
    eps_i = spy[0]["eps"].flatten()
    assert torch.all(delta <= eps_i + 1e-7) and spy[0]["out"].min() >= 0 and spy[0]["out"].max() <= 1
    assert (delta > 0.99 * eps_i).float().mean() > 0.9  # the ascent uses each sample's own budget
    assert len(set(eps_i.tolist())) == 10  # ten classes, ten budgets


def test_the_attack_is_the_official_one(batch):
    """The kit's attack (per-sample ε and step, base-ε start, train mode with frozen BatchNorm) against the official
    loop written out, from the same noise."""
    x, y = batch
    eps_i = official_eps_max(CIFAR10_IR50, EPS_8, 0.3)[y] * 0.75
    g = torch.Generator().manual_seed(3)
    noise = EPS_8 * (2.0 * torch.rand(x.shape, generator=g) - 1.0)
    ref = official_attack(small_model(), x, y, noise, eps_i, EPS_8, 2 / 255, 10)
    model = small_model()
    stats = [b.clone() for b in model.buffers()]
    ours = attacks.pgd(model, x, y, eps=EPS_8 * (eps_i / EPS_8), step_size=2 / 255 * (eps_i / EPS_8), steps=10,
                       start_eps=EPS_8, mode=common.frozen_bn_train_mode, generator=torch.Generator().manual_seed(3))
    assert (ours - ref).abs().max() < 1e-6
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers()))  # running statistics untouched
    assert model.training and all(m.track_running_stats for m in model.modules() if hasattr(m, "track_running_stats"))


def test_at_epoch_one_the_attack_returns_the_clean_batch(batch, spy):
    x, y = batch
    make().step(small_model(), x, y, 0, torch.Generator().manual_seed(0))
    assert torch.equal(spy[0]["out"], x)  # ε_c = 0: the base-ε start is projected back onto x


def test_a_tensor_budget_is_the_float_attack_sample_by_sample(batch):
    """pgd with per-sample ε and step (eval mode) gives each class's rows the attack with that class's float ε."""
    x, y = batch
    model = small_model().eval()
    scale = class_scale(CIFAR10_IR50, 0.3).float()[y]
    both = attacks.pgd(model, x, y, eps=EPS_8 * scale, step_size=(2 / 255) * scale, steps=5,
                       generator=torch.Generator().manual_seed(0))
    for c in (0, 9):
        e = (EPS_8 * scale)[y == c][0].item()
        alone = attacks.pgd(model, x, y, eps=e, step_size=e / EPS_8 * (2 / 255), steps=5,
                            generator=torch.Generator().manual_seed(0))
        assert torch.allclose(both[y == c], alone[y == c], atol=1e-6)
    same = attacks.pgd(model, x, y, eps=torch.full((64,), EPS_8), step_size=torch.full((64,), 2 / 255), steps=5,
                       generator=torch.Generator().manual_seed(0))
    assert torch.equal(same, attacks.pgd(model, x, y, eps=EPS_8, step_size=2 / 255, steps=5,
                                         generator=torch.Generator().manual_seed(0)))


def test_alpha_and_beta_zero_is_the_base_method_under_the_official_attack(batch):
    x, y = batch
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    wrapped = make(robustlt_alpha=0.0, robustlt_beta=0.0, attack_mode="eval", robustlt_start="class")
    base = build_method("atbsl", {"start": "uniform"}, wrapped.ctx)
    a, b = wrapped.step(small_model(), x, y, 0, g1), base.step(small_model(), x, y, 0, g2)
    assert torch.allclose(a.loss, b.loss, atol=1e-6) and torch.allclose(a.logits, b.logits, atol=1e-5)


def test_robustlt_taet_keeps_taets_stages(batch, spy):
    x, y = batch
    m = make("robustlt_taet", epochs=4, ce_epochs=2)
    assert [m.stage(e) for e in range(4)] == ["clean", "clean", "adversarial", "adversarial"]
    m.step(small_model(), x, y, 1, torch.Generator().manual_seed(0))
    assert spy == []  # the clean stage attacks nothing
    m.step(small_model(), x, y, 2, torch.Generator().manual_seed(0))
    assert torch.allclose(spy[0]["eps"].flatten(), official_eps_max(CIFAR10_IR50, EPS_8, 0.3)[y] * 0.5, rtol=1e-6)


# ---- bad input: one line, before any work ----------------------------------------------------------------------------
@pytest.mark.parametrize("base", ["trades", "gairat", "reat", "ce", "nope"])
def test_a_base_without_an_linf_pgd_is_refused(base):
    with pytest.raises(ConfigError, match="l_inf PGD") as e:
        wrap(base, register=False)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("args,message", [
    ({"robustlt_alpha": 1.0}, "robustlt_alpha=1.0 must be in \\[0, 1\\)"),
    ({"robustlt_alpha": -0.1}, "robustlt_alpha=-0.1 must be in \\[0, 1\\)"),
    ({"robustlt_beta": -0.5}, "robustlt_beta=-0.5 must be >= 0"),
    ({"robustlt_start": "own"}, "robustlt_start='own' is not one of"),
    ({"attack_mode": "train"}, "attack_mode='train' is not one of"),
])
def test_bad_hyperparameters_are_refused(args, message):
    from lib.core.config import RunConfig, override
    from lib.core.train import validate

    with pytest.raises(ConfigError, match=message):
        make(**args)
    cfg = override(RunConfig(method="robustlt_atbsl"), {f"method_args.{k}": v for k, v in args.items()})
    with pytest.raises(ConfigError, match=message):
        validate(cfg)  # what `train` runs first, before any data is loaded


def test_a_class_with_no_training_image_is_refused():
    with pytest.raises(ConfigError, match=r"class\(es\) \[2\] have none") as e:
        make(counts=[100, 40, 0, 7])
    assert "\n" not in str(e.value)


def test_wrap_makes_a_method_for_any_linf_pgd_base(batch, spy):
    cls = wrap("mart", alpha=0.4, beta=0.6, register=False)
    assert cls.name == "robustlt_mart" and "robustlt_mart" not in METHODS
    names = [f.name for f in dataclasses.fields(cls.Args)]
    assert names[:6] == ["beta", "eps", "step_size", "steps", "start", "start_std"] and "robustlt_alpha" in names
    x, y = batch
    m = cls(cls.Args(), MethodContext(10, CIFAR10_IR50, 10, torch.device("cpu")))
    m.check(10)
    m.step(small_model(), x, y, 9, torch.Generator().manual_seed(0))
    assert torch.allclose(spy[0]["eps"].flatten(), official_eps_max(CIFAR10_IR50, EPS_8, 0.4)[y], rtol=1e-6)


def test_listed_by_train_help_and_the_notebooks_tables():
    from lib.cli.flags import methods_epilog
    from lib.profiles import table_methods

    text = methods_epilog()
    assert "  robustlt_atbsl RobustLT on atbsl" in text and "robustlt_alpha=0.3, robustlt_beta=1.0" in text
    assert {"robustlt_atbsl", "robustlt_taet"} <= set(table_methods())


def test_the_robustlt_profile_declares_the_official_protocol():
    from lib.profiles import run_config

    cfg = run_config("robustlt", "robustlt_taet", device="cpu")
    assert (cfg.data.dataset, cfg.data.imbalance_ratio, cfg.data.test_protocol) == ("cifar10", 50.0, "balanced")
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.batch_size, cfg.train.milestones) == (100, 0.1, 128, (0.75, 0.9))
    assert cfg.model.normalize and cfg.eval.attacks == ("clean", "pgd20", "autoattack_ta")
    assert cfg.method_args["ce_epochs"] == 39 and cfg.method_args["extra_clean_forward"]  # 1-indexed epochs 1 ... 39
    for base in ("atbsl", "taet"):  # its baselines with its trainer's attack
        a = run_config("robustlt", base, device="cpu").method_args
        assert (a["eps"], a["step_size"], a["steps"], a["start"], a["extra_clean_forward"]) == (
            EPS_8, 2 / 255, 10, "uniform", True)
