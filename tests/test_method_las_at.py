"""LAS-AT: losses and reward by hand, strategies from the action sets, per-example ε-balls and iteration
counts, the strategy network's state through a checkpoint, and a run that resumes exactly (the contract every
method keeps: test_methods_contract.py)."""

import io
import math

import torch

from lib.core.methods import MethodContext, build_method
from lib.core.methods.las_at import label_smoothed_ce, las_reward, per_example_pgd, sample_actions
from lib.core.models import create_model
from lib.core.train import train_run

FAST = {"strategy_arch": "small_cnn", "interval": 3}


def _method(**args):
    return build_method("las_at", {**FAST, **args}, MethodContext(3, [5, 3, 2], 2, torch.device("cpu")))


def _net():
    torch.manual_seed(0)
    return create_model("small_cnn", 3, in_channels=1, width=4).eval()


def test_label_smoothed_loss_by_hand():
    # C = 3, factor 0.7: target 0.7 on the true class, 0.15 on each other.
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    y = torch.tensor([0, 0])
    # sample 1: −(0.7·(1 − log(e + 2)) + 0.3·(−log(e + 2))) = log(e + 2) − 0.7 = 0.8514447
    # sample 2: −(0.15·2 − log(e² + 2))                     = log(e² + 2) − 0.3 = 1.9395448
    assert math.isclose(float(label_smoothed_ce(logits, y, 0.7)), (0.8514447 + 1.9395448) / 2, rel_tol=1e-6)


def test_reward_by_hand():
    # R1 = CE 12 clamps to 10; R2 = 4 · 0.5 = 2; R3 = 2 · 0.75 = 1.5
    r = las_reward(torch.tensor(12.0), torch.tensor(0.5), torch.tensor(0.75))
    assert math.isclose(float(r), 13.5, rel_tol=1e-7)
    r = las_reward(torch.tensor(0.3), torch.tensor(0.25), torch.tensor(1.0), a=2.0, b=0.5, c=1.0)
    assert math.isclose(float(r), 2 * 0.3 + 0.5 * 4 * 0.25 + 1.0 * 2 * 1.0, rel_tol=1e-6)


def test_sampling_follows_the_softmax():
    probs = torch.tensor([0.1, 0.6, 0.3])
    logits = probs.log().expand(20000, 3)
    (a,), (lp,) = sample_actions([logits], torch.Generator().manual_seed(0))
    freq = torch.bincount(a, minlength=3).float() / a.numel()
    assert torch.allclose(freq, probs, atol=0.015), freq
    assert torch.allclose(lp, probs.log()[a])


def test_strategies_lie_in_the_official_action_sets():
    m = _method()
    assert m.args.eps_types == tuple(range(3, 16)) and m.args.step_size_types == tuple(range(1, 6))
    assert m.args.iters_types == tuple(range(3, 15)) and m.args.policy_lr == 1e-4 and m.args.interval == 3
    x = torch.rand(64, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    m._ensure_net(x, g)
    assert next(m.net.parameters()).device == m.ctx.device
    eps, step, iters, log_probs = m.strategy(x, g)
    assert set((eps * 255).round().long().tolist()) <= set(range(3, 16))
    assert set((step * 255).round().long().tolist()) <= set(range(1, 6))
    assert set(iters.tolist()) <= set(range(3, 15))
    assert len(set(iters.tolist())) > 1  # per-example, not one strategy for the batch
    assert all(lp.shape == (64,) and (lp <= 0).all() for lp in log_probs)


def test_per_example_eps_balls_and_iteration_counts():
    model = _net()
    x = torch.rand(4, 1, 8, 8) * 0.4 + 0.3  # away from 0 and 1: only the ε-balls clip
    y = torch.tensor([0, 1, 2, 0])
    eps = torch.tensor([1.0, 4.0, 8.0, 16.0]) / 255
    step = eps.clone()  # one step reaches the ball's surface
    iters = torch.tensor([1, 2, 3, 5])
    x_adv = per_example_pgd(model, x, y, eps, step, iters, init_eps=8 / 255, generator=torch.Generator().manual_seed(0))
    dist = (x_adv - x).abs().flatten(1).amax(1)
    assert (dist <= eps + 1e-6).all(), dist
    assert torch.allclose(dist, eps, atol=1e-6)  # each example uses its own ε, not the batch's
    assert model.training is False and all(p.grad is None for p in model.parameters())
    # an example stops after its own count: the batch result equals each example run alone (zero start)
    batch = per_example_pgd(model, x, y, eps / 2, step / 4, iters, init_eps=0.0)
    for i in range(4):
        alone = per_example_pgd(model, x[i:i + 1], y[i:i + 1], eps[i:i + 1] / 2, step[i:i + 1] / 4, iters[i:i + 1],
                                init_eps=0.0)
        assert torch.allclose(batch[i:i + 1], alone, atol=1e-6), i
    once = per_example_pgd(model, x, y, eps / 2, step / 4, torch.ones(4, dtype=torch.long), init_eps=0.0)
    assert torch.equal(batch[0], once[0]) and not torch.equal(batch[3], once[3])


def test_method_state_round_trip():
    model = _net().train()
    x = torch.rand(16, 1, 8, 8)
    y = torch.randint(0, 3, (16,))
    a = _method(interval=2, policy_momentum=0.9)
    g = torch.Generator().manual_seed(0)
    before = None
    for _ in range(4):  # two strategy updates
        if before is None and a.net is not None:
            before = [p.detach().clone() for p in a.net.parameters()]
        a.step(model, x, y, 0, g)
    assert any(not torch.equal(p0, p1) for p0, p1 in zip(before, a.net.parameters()))  # the strategy net learned
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = _method(interval=2, policy_momentum=0.9)
    b.load_state_dict(torch.load(buf, weights_only=False))
    assert b.batches == a.batches == 4
    for (k, t1), t2 in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.equal(t1, t2), k
    assert str(a.opt.state_dict()) == str(b.opt.state_dict())
    # the next steps (one with a strategy update) are identical
    ga, gb = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    import copy

    model_b = copy.deepcopy(model)
    for _ in range(2):
        la = a.step(model, x, y, 0, ga).loss
        lb = b.step(model_b, x, y, 0, gb).loss
        assert torch.equal(la, lb)
    for p1, p2 in zip(a.net.parameters(), b.net.parameters()):
        assert torch.equal(p1, p2)


def test_train_run_resumes_exactly(tmp_path, small_cfg):
    full = train_run(small_cfg(tmp_path / "a", "las_at", epochs=2, max_train=320, **FAST), verbose=False)
    losses = [r["loss"] for r in full.history]
    cfg = small_cfg(tmp_path / "b", "las_at", epochs=2, max_train=320, **FAST)
    train_run(cfg, verbose=False, stop_after_epoch=1)  # 5 batches: strategy updates at batches 3, 6 and 9
    resumed = train_run(cfg, resume=True, verbose=False)
    assert [r["loss"] for r in resumed.history] == losses
    for (k, t1), t2 in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(t1, t2), k
    for (k, t1), t2 in zip(full.method.net.state_dict().items(), resumed.method.net.state_dict().values()):
        assert torch.equal(t1, t2), k
