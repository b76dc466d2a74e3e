"""REAT: effective-number weights and the tail term by hand, the per-epoch state, exact resume
(the contract every method keeps: test_methods_contract.py)."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from lib.core.config import override
from lib.core.methods import MethodContext, build_method
from lib.core.methods.reat import (
    rbl_attack,
    rbl_loss,
    rbl_weights,
    tail_class_mask,
    tail_class_weights,
    tail_loss,
)
from lib.core.models import create_model
from lib.core.train import train_run
from lib.profiles import profile_config


def test_official_defaults():
    a = build_method("reat", {}, MethodContext(10, [10] * 10, 3, torch.device("cpu"))).args
    assert (a.eps, a.step_size, a.steps, a.tail_weight) == (8 / 255, 2 / 255, 10, 1.0)


def test_rbl_weights_by_hand():
    # β = (n − 1)/n = (0.75, 0.5, 0); E = (1 − β^a)/(1 − β) = ((1 − 0.75^4)/0.25, (1 − 0.5)/0.5, 1 − 0^1)
    #   = (2.734375, 1, 1); w = 1/(E + 1e-5), scaled to sum to C = 3.
    w = [1 / (2.734375 + 1e-5), 1 / (1 + 1e-5), 1 / (1 + 1e-5)]
    want = [v / sum(w) * 3 for v in w]
    assert want == pytest.approx([0.4637706, 1.2681147, 1.2681147], abs=1e-6)
    got = rbl_weights([4, 2, 1], [4, 1, 1])
    assert got.dtype == torch.float32 and got.tolist() == pytest.approx(want, abs=1e-6)
    # a class the model never predicted last epoch: β^0 = 1, E = 0, weight 1/1e-5 takes nearly all the mass
    edge = rbl_weights([4, 2, 1], [4, 1, 0])
    assert edge.tolist() == pytest.approx([1.0971239e-05, 2.9999290e-05, 2.9999590], rel=1e-5)
    # before the first epoch a_c = n_c: weights follow 1/n_c · 1/(1 − ((n−1)/n)^n)
    assert rbl_weights([100, 10], [100, 10])[1] > rbl_weights([100, 10], [100, 10])[0]


def test_rbl_loss_by_hand():
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    y = torch.tensor([0, 1])
    w = torch.tensor([0.5, 1.5, 1.0])
    ce1 = -1 + math.log(math.e + 2)
    ce2 = -2 + math.log(math.e ** 2 + 2)
    assert float(rbl_loss(logits, y, w)) == pytest.approx((0.5 * ce1 + 1.5 * ce2) / 2.0, abs=1e-6)


def test_tail_classes_follow_the_official_rule():
    assert tail_class_mask([50, 40, 30, 20, 10, 9, 8, 7, 6, 5]).nonzero().flatten().tolist() == [7, 8, 9]
    assert tail_class_mask([4, 2, 1, 1]).nonzero().flatten().tolist() == [3]
    assert not tail_class_mask([3, 2, 1]).any()  # C = 3: 3//3*2 + 1 = 3, no tail class
    assert tail_class_mask([1, 5, 3, 2]).nonzero().flatten().tolist() == [0]  # ranked by count, not index
    assert tail_class_weights([4, 2, 1, 1]).tolist() == pytest.approx([2 ** 0.5, 2.0, 8 ** 0.5, 8 ** 0.5])


def test_tail_loss_by_hand():
    # counts (4, 2, 1, 1): tail class 3, v = sqrt(8 / n_c) = (√2, 2, √8, √8).
    # features -> softmax: p0 = (3/4, 1/4) [y=3], p1 = (1/2, 1/2) [y=0], p2 = (1/4, 3/4) [y=3]
    counts = [4, 2, 1, 1]
    f = torch.tensor([[math.log(3), 0.0], [0.0, 0.0], [0.0, math.log(3)]])
    y = torch.tensor([3, 0, 3])
    kl01 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    kl02 = 0.75 * math.log(3) + 0.25 * math.log(1 / 3)
    k_mean = (0 + kl01 + kl02) / (3 * 2)  # 'mean' over N·D elements; the same for samples 0 and 2 by symmetry
    v3, v0 = 8 ** 0.5, 2 ** 0.5
    signed = (-(v3 + v3) + (v3 + v0) - (v3 + v3)) / 3  # same class −, other class +
    want = (k_mean * signed + k_mean * signed) / 2  # two tail samples
    assert want == pytest.approx(-0.2671756540, abs=1e-9)
    got = tail_loss(f, y, tail_class_mask(counts), tail_class_weights(counts))
    assert float(got) == pytest.approx(want, abs=1e-6)
    # no tail sample in the batch: 0
    assert float(tail_loss(f, torch.tensor([0, 1, 2]), tail_class_mask(counts), tail_class_weights(counts))) == 0.0


def _official_tail_loop(f, y, counts):
    """The official per-sample loop, written out (KLDivLoss(size_average='none') == reduction 'mean')."""
    c = len(counts)
    tail = range(c // 3 * 2 + 1, c)
    spc = torch.tensor(counts, dtype=f.dtype)
    weights = torch.sqrt(1.0 / (spc / spc.sum()))
    total, counter = 0.0, 0
    for i in range(len(y)):
        if int(y[i]) in tail:
            idt = torch.tensor([-1.0 if int(y[i]) == int(y[j]) else 1.0 for j in range(len(y))])
            w = torch.tensor([float(weights[y[i]] + weights[y[j]]) for j in range(len(y))])
            target = F.softmax(f[i].detach().view(1, -1).expand(len(y), -1), 1)
            kl_mean = F.kl_div(F.log_softmax(f, 1), target, reduction="sum") / target.numel()  # legacy 'mean'
            total = total + kl_mean * idt * w
            counter += 1
    return total.mean() / counter if counter else torch.tensor(0.0)


def test_tail_loss_matches_the_official_loop_and_its_gradient():
    g = torch.Generator().manual_seed(0)
    counts = [50, 30, 20, 12, 8, 5, 4, 3, 2, 2]
    f = torch.randn(12, 6, generator=g).requires_grad_(True)
    y = torch.tensor([0, 9, 8, 7, 1, 9, 2, 7, 3, 0, 8, 5])
    ref = _official_tail_loop(f, y, counts)
    (g_ref,) = torch.autograd.grad(ref, f)
    got = tail_loss(f, y, tail_class_mask(counts), tail_class_weights(counts))
    (g_got,) = torch.autograd.grad(got, f)
    assert float(got.detach()) == pytest.approx(float(ref.detach()), abs=1e-6)
    assert torch.allclose(g_got, g_ref, atol=1e-6)


def test_rbl_attack_equals_pgd_on_ce_and_stays_in_the_ball():
    torch.manual_seed(0)
    model = create_model("small_cnn", 3, in_channels=1, image_size=8, mean=0.5, std=0.25, width=4).eval()
    x = torch.rand(8, 1, 8, 8)
    y = torch.randint(0, 3, (8,))
    kw = dict(eps=8 / 255, step_size=2 / 255, steps=3)
    xa = rbl_attack(model, x, y, torch.tensor([0.1, 1.0, 1.9]), generator=torch.Generator().manual_seed(1), **kw)
    xb = rbl_attack(model, x, y, torch.ones(3), generator=torch.Generator().manual_seed(1), **kw)
    assert torch.equal(xa, xb)  # positive per-class weights do not change the sign of the input gradient
    assert (xa - x).abs().max() <= 8 / 255 + 1e-6 and xa.min() >= 0 and xa.max() <= 1


def _cfg(tmp_path, epochs=2):
    cfg = replace(profile_config("smoke", "reat"), method_args={})
    return override(cfg, {"out_dir": str(tmp_path / "runs"), "data.dataset": "synthetic", "train.epochs": epochs,
                          "train.device": "cpu", "train.progress": False, "train.track_every": 0})


def test_training_counts_adversarial_predictions(tmp_path):
    res = train_run(_cfg(tmp_path, epochs=2), verbose=False)
    state = res.method.state_dict()
    n = res.data.train_y.numel()
    # epoch 2 started from epoch 1's adversarial predictions; epoch 2's own are waiting for epoch 3
    assert int(state["adv_pred_counts"].sum()) == n and int(state["next_counts"].sum()) == n
    assert state["epoch"] == 1


def test_resume_restores_the_method_state_exactly(tmp_path):
    full = train_run(_cfg(tmp_path / "a", epochs=2), verbose=False)
    cfg = _cfg(tmp_path / "b", epochs=2)
    train_run(cfg, verbose=False, stop_after_epoch=1)  # epoch 2 rolls the restored counts over
    resumed = train_run(cfg, resume=True, verbose=False)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    sa, sb = full.method.state_dict(), resumed.method.state_dict()
    assert torch.equal(sa["adv_pred_counts"], sb["adv_pred_counts"]) and sa["epoch"] == sb["epoch"] == 1
    assert torch.equal(sa["next_counts"], sb["next_counts"])
