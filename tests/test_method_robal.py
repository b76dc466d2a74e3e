"""RoBal: the loss by hand, the cosine head, the inference-time adjustment, reloading a run
(the contract every method keeps: test_methods_contract.py)."""

import math
from dataclasses import replace

import pytest
import torch

from lib.core.config import override
from lib.core.evaluate import evaluate_run
from lib.core.methods import MethodContext, build_method
from lib.core.methods.robal import (
    AdjustedLogits,
    CosineClassifier,
    class_margins,
    log_prior,
    pgd_one_sided_start,
    robal_loss,
    trades_kl,
)
from lib.core.models import create_model
from lib.core.train import load_run, train_run
from lib.profiles import profile_config

COUNTS = [4, 2, 1]  # prior π = (4/7, 2/7, 1/7), n / n_min = (4, 2, 1)


def _ctx(counts=COUNTS):
    return MethodContext(len(counts), list(counts), 3, torch.device("cpu"))


def _softmax(z):
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


def test_official_defaults():
    n = build_method("robal", {}, _ctx()).args
    assert (n.scale, n.gamma, n.s, n.m, n.tau_m, n.tau_b, n.beta_reg) == (1.0, 0.03125, 10.0, 0.1, 0.0, 1.2, 6.0)
    assert (n.tau_p, n.eval_scale, n.eps, n.step_size, n.steps, n.start) == (0.1, 10.0, 0.031, 0.0078, 5,
                                                                             "uniform_pos")
    r = build_method("robal_r", {}, _ctx()).args
    assert (r.tau_m, r.tau_b, r.tau_p, r.eval_scale, r.s, r.m) == (0.3, 1.5, 0.0, 1.0, 10.0, 0.1)


def test_class_margins_by_hand():
    # m_c = m + τ_m · log(n_c / n_min) / s
    got = class_margins(COUNTS, m=0.1, tau_m=0.3, s=10.0)
    want = [0.1 + 0.03 * math.log(4), 0.1 + 0.03 * math.log(2), 0.1]
    assert got.tolist() == pytest.approx(want, abs=1e-7)


def test_robal_loss_by_hand():
    adv = torch.tensor([[0.5, 0.2, -0.1], [0.0, 0.3, 0.1]])  # scale-1 cosines of x'
    nat = torch.tensor([[0.4, 0.1, 0.0], [0.1, 0.1, 0.1]])  # scale-1 cosines of x
    y = torch.tensor([0, 2])
    s, m, tau_m, tau_b, beta = 10.0, 0.1, 0.3, 1.2, 6.0
    lp = [math.log(4 / 7), math.log(2 / 7), math.log(1 / 7)]
    m0 = 0.1 + 0.3 * math.log(4) / 10  # margin of class 0 (n_0 / n_min = 4); class 2 (n_min): 0.1
    z1 = [10 * (0.5 - m0) + 1.2 * lp[0], 10 * 0.2 + 1.2 * lp[1], 10 * -0.1 + 1.2 * lp[2]]
    z2 = [10 * 0.0 + 1.2 * lp[0], 10 * 0.3 + 1.2 * lp[1], 10 * (0.1 - 0.1) + 1.2 * lp[2]]

    def ce(z, t):
        return -z[t] + math.log(sum(math.exp(v) for v in z))

    ce_mean = (ce(z1, 0) + ce(z2, 2)) / 2
    assert ce_mean == pytest.approx(2.0233172577, abs=1e-8)

    def kl(p, q):
        return sum(a * (math.log(a) - math.log(b + 1e-12)) for a, b in zip(p, q))

    kl_mean = (kl(_softmax([0.4, 0.1, 0.0]), _softmax([0.5, 0.2, -0.1]))
               + kl(_softmax([0.1, 0.1, 0.1]), _softmax([0.0, 0.3, 0.1]))) / 2
    assert kl_mean == pytest.approx(0.0058893106, abs=1e-9)
    assert float(trades_kl(nat, adv)) == pytest.approx(kl_mean, abs=1e-6)
    margins, lp_t = class_margins(COUNTS, m, tau_m, s), log_prior(COUNTS)
    assert lp_t.tolist() == pytest.approx(lp, abs=1e-6)
    got = robal_loss(adv, nat, y, margins, lp_t, s=s, tau_b=tau_b, beta_reg=beta)
    assert float(got) == pytest.approx(ce_mean + beta * kl_mean, abs=1e-5)
    # the method's own step uses the same pieces
    method = build_method("robal", {"tau_m": tau_m}, _ctx())
    assert torch.equal(method.margins, margins) and torch.equal(method.log_prior, lp_t)
    # without margins, balance or KL it is plain CE of s · z
    plain = robal_loss(adv, nat, y, class_margins(COUNTS, 0.0, 0.0, 1.0), lp_t, s=1.0, tau_b=0.0, beta_reg=0.0)
    assert float(plain) == pytest.approx(float(torch.nn.functional.cross_entropy(adv, y)), abs=1e-6)


def _model(num_classes=3):
    torch.manual_seed(0)
    return create_model("small_cnn", num_classes, in_channels=1, image_size=8, mean=0.5, std=0.25, width=4)


def test_prepare_model_swaps_in_a_cosine_head():
    method = build_method("robal", {}, _ctx())
    model = method.prepare_model(_model())
    head = model.classifier
    assert isinstance(head, CosineClassifier) and head.scale == 1.0 and model.feature_dim == 16
    x = torch.rand(5, 1, 8, 8)
    f = model.features(x)
    w = head.weight / (head.weight.norm(dim=1, keepdim=True) + 0.03125)
    want = (f / f.norm(dim=1, keepdim=True)) @ w.t()
    assert torch.allclose(model(x), want, atol=1e-6)
    assert model(x).abs().max() <= 1.0  # scale-invariant: cosines at scale 1


def test_eval_model_applies_exactly_the_documented_adjustment():
    method = build_method("robal", {}, _ctx())
    model = method.prepare_model(_model()).eval()
    adjusted = method.eval_model(model)
    assert isinstance(adjusted, AdjustedLogits)
    x = torch.rand(6, 1, 8, 8)
    with torch.no_grad():
        cos = model(x)  # scale 1
        # official RoBal-N eval: 10 · cos − 0.1 · log π
        want = 10.0 * cos - 0.1 * torch.tensor([math.log(4 / 7), math.log(2 / 7), math.log(1 / 7)])
        assert torch.allclose(adjusted(x), want, atol=1e-5)
    # the adjustment changes decisions towards the tail and gradients flow through it (attacks see it)
    xr = x.clone().requires_grad_(True)
    adjusted(xr).sum().backward()
    assert xr.grad is not None and xr.grad.abs().sum() > 0
    # eval() on the wrapper reaches the model
    adjusted.train()
    assert model.training
    adjusted.eval()
    assert not model.training
    # RoBal-R evaluates the trained model as it is
    method_r = build_method("robal_r", {}, _ctx())
    model_r = method_r.prepare_model(_model())
    assert method_r.eval_model(model_r) is model_r


def test_one_sided_start_and_ball():
    model = _model().eval()
    x = torch.rand(8, 1, 8, 8) * 0.8  # away from 1, so the start is not clipped
    y = torch.randint(0, 3, (8,))
    g = torch.Generator().manual_seed(0)
    x0 = pgd_one_sided_start(model, x, y, eps=0.031, step_size=0.0078, steps=0, generator=g)
    d = x0 - x
    assert d.min() >= 0 and d.max() <= 0.031 + 1e-7 and d.mean() > 0.01  # x + ε·U[0, 1)
    g = torch.Generator().manual_seed(0)
    xa = pgd_one_sided_start(model, x, y, eps=0.031, step_size=0.0078, steps=5, generator=g)
    assert (xa - x).abs().max() <= 0.031 + 1e-6 and xa.min() >= 0 and xa.max() <= 1
    g = torch.Generator().manual_seed(0)
    xb = pgd_one_sided_start(model, x, y, eps=0.031, step_size=0.0078, steps=5, generator=g)
    assert torch.equal(xa, xb)  # all randomness from the generator


def _cfg(tmp_path, method="robal", epochs=2, **method_args):
    cfg = replace(profile_config("smoke", method), method_args=method_args)
    return override(cfg, {"out_dir": str(tmp_path / "runs"), "data.dataset": "synthetic", "train.epochs": epochs,
                           "train.device": "cpu", "train.progress": False, "train.track_every": 0})


def test_checkpoint_reloads_into_a_prepared_model_and_evaluates_adjusted(tmp_path):
    res = train_run(_cfg(tmp_path, epochs=1), verbose=False)
    cfg, model, data, method, _ = load_run(res.run_dir, device="cpu")
    assert isinstance(model.classifier, CosineClassifier)
    x = data.test_x[:32].float() / 255.0
    res.model.eval()
    with torch.no_grad():
        before = res.method.eval_model(res.model)(x)
        after = method.eval_model(model)(x)
    # load_run lays evaluation models out channels_last (lib.core.speed): same function, other summation order
    assert torch.allclose(before, after, rtol=1e-5, atol=1e-5)
    # the evaluation suite attacks (and scores) the adjusted model
    doc = evaluate_run(res.run_dir, ["clean"], device="cpu", verbose=False)
    with torch.no_grad():
        preds = method.eval_model(model)(data.test_x.float() / 255.0).argmax(1)
    acc = int((preds == data.test_y).sum()) / data.test_y.numel()
    assert doc["results"]["clean"]["accuracy"] == pytest.approx(acc, abs=1e-9)


def test_bad_settings_are_refused():
    from lib.core.config import ConfigError

    with pytest.raises(ConfigError, match="start"):
        build_method("robal", {"start": "gaussian"}, _ctx())
    with pytest.raises(ConfigError, match="eval_scale"):
        build_method("robal", {"eval_scale": 0.0}, _ctx())
