"""The contract of `Method.step` (lib/methods/base.py), checked for every registered method: listed in
`train --help`; a finite scalar loss and batch-shaped logits; no optimizer step and no parameter `.grad`;
randomness only from the generator; state through `state_dict`; training on a tiny fixed batch lowers the
loss; the stage schedule. Each method's own arithmetic against its official code lives in test_method_*.py."""

from __future__ import annotations

import copy
import dataclasses
import io
import math

import pytest
import torch

from lib.core.data import long_tail_counts
from lib.core.methods import METHODS, MethodContext, build_method
from lib.core.models import create_model

NAMES = sorted(METHODS)
EPOCHS = 4
COUNTS = long_tail_counts(100, 10, 10.0)  # 100 ... 10: the class counts the balanced losses see
# Only where a default would make the test slow or skip a code path: TAET needs ce_epochs <= EPOCHS, LAS-AT's
# strategy network is the small CNN (default: ResNet-18) and updates every 2nd batch (default 20) so that its
# REINFORCE step and its state are exercised.
ARGS = {"taet": {"ce_epochs": 2}, "robustlt_taet": {"ce_epochs": 2},
        "las_at": {"strategy_arch": "small_cnn", "interval": 2}}
STAGES = {
    "taet": ["clean", "clean", "adversarial", "adversarial"],  # clean CE for ce_epochs, then PGD + HEL
    "robustlt_taet": ["clean", "clean", "adversarial", "adversarial"],  # the wrapper keeps TAET's stages
    "ce": ["clean"] * EPOCHS,
    "gairat": ["adversarial"] + ["reweighted"] * 3,  # GAIR from 1-indexed epoch round(0.5 · 4) = 2
}


@pytest.fixture(scope="module")
def batch():
    """64 sklearn digits (every class present), pixels in [0, 1], and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images[:64] / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(d.target[:64], dtype=torch.int64)
    assert torch.bincount(y, minlength=10).min() > 0
    return x, y


def make(name: str, seed: int = 0):
    """(method, prepared small_cnn in train mode), both built from `seed`."""
    method = build_method(name, ARGS.get(name, {}), MethodContext(10, COUNTS, EPOCHS, torch.device("cpu")))
    method.current_lr = 0.05
    torch.manual_seed(seed)
    model = method.prepare_model(create_model("small_cnn", 10, in_channels=1, image_size=8, width=16))
    return method, model.train()


def last_epoch_step(method, model, x, y, seed: int):
    return method.step(model, x, y, EPOCHS - 1, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", NAMES)
def test_listed_in_train_help_with_every_default(name, train_help_text):
    cls = METHODS[name]
    assert f"  {name} " in train_help_text and cls.summary in train_help_text
    for f in dataclasses.fields(cls.Args):
        assert f"{f.name}={getattr(cls.Args(), f.name)!r}" in train_help_text, f.name


@pytest.mark.parametrize("name", NAMES)
def test_step_returns_loss_and_logits_and_leaves_the_parameters_alone(name, batch):
    x, y = batch
    method, model = make(name)
    before = copy.deepcopy(model)
    if name == "he":  # HE's declared re-parametrisation: step puts its head's weight back on the unit sphere
        before.classifier.project_()
    running_mean = [m.running_mean.clone() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    out = last_epoch_step(method, model, x, y, seed=0)
    assert out.loss.ndim == 0 and math.isfinite(out.loss.item()) and out.loss.requires_grad
    assert out.logits.shape == (64, 10)
    assert method.current_lr == 0.05  # an input the trainer sets; step only reads it
    assert model.training and all(m.training for m in model.modules())  # attacks give the train mode back
    assert all(p.grad is None for p in model.parameters())  # no attack gradient left on a parameter
    for (k, p), q in zip(model.named_parameters(), before.parameters()):
        assert torch.equal(p, q), k  # no optimizer step
    after = [m.running_mean for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert any(not torch.equal(a, b) for a, b in zip(running_mean, after))  # the loss's forward ran in train mode
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_randomness_comes_only_from_the_generator(name, batch):
    x, y = batch
    losses = []
    for global_seed, gen_seed in ((1, 7), (2, 7), (1, 8)):
        method, model = make(name)
        torch.manual_seed(global_seed)  # the global RNG differs between the first two runs
        out = last_epoch_step(method, model, x, y, seed=gen_seed)
        losses.append((out.loss.detach(), out.logits.detach()))
    assert torch.equal(losses[0][0], losses[1][0]) and torch.equal(losses[0][1], losses[1][1])
    if STAGES.get(name, ["adversarial"])[-1] != "clean":  # an adversarial stage draws its start from the generator
        assert not torch.equal(losses[0][0], losses[2][0])


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_resumes_the_same_steps(name, batch):
    x, y = batch
    a, model = make(name)
    g = torch.Generator().manual_seed(3)
    for epoch in (0, 0, 1, 1):  # REAT rolls its counts at the epoch change, LAS-AT updates its strategy twice
        a.step(model, x, y, epoch, g)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b, _ = make(name, seed=1)
    b.load_state_dict(torch.load(buf, weights_only=False))
    model_b = copy.deepcopy(model)
    ga, gb = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for epoch in (1, 2):  # one step of each more (LAS-AT: one with a strategy update), the next epoch included
        la, lb = a.step(model, x, y, epoch, ga).loss, b.step(model_b, x, y, epoch, gb).loss
        assert torch.equal(la, lb), epoch


@pytest.mark.parametrize("name", NAMES)
def test_a_few_steps_on_a_tiny_batch_lower_the_loss(name, batch):
    """16 SGD steps on one fixed batch: the method's own loss (same generator draws before and after) drops by
    10% or more (TAET's HEL, weighted 0.1, is the slowest: about 17%; most methods lose 70% or more)."""
    x, y = batch
    method, model = make(name)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def loss_now() -> float:
        with torch.random.fork_rng(devices=[]):
            probe, probe_model = copy.deepcopy(method), copy.deepcopy(model)  # the method's state is left alone
            return probe.step(probe_model, x, y, EPOCHS - 1, torch.Generator().manual_seed(0)).loss.item()

    first = loss_now()
    g = torch.Generator().manual_seed(1)
    for _ in range(16):
        out = method.step(model, x, y, EPOCHS - 1, g)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
    last = loss_now()
    assert last < 0.9 * first, (first, last)


@pytest.mark.parametrize("name", NAMES)
def test_stage_schedule(name, batch):
    """`stage(epoch)` per epoch; a clean stage is plain CE on x and draws nothing, any other stage draws."""
    x, y = batch
    method, model = make(name)
    stages = [method.stage(e) for e in range(EPOCHS)]
    assert stages == STAGES.get(name, ["adversarial"] * EPOCHS)
    for epoch, stage in enumerate(stages):
        g = torch.Generator().manual_seed(0)
        state = g.get_state()
        out = method.step(model, x, y, epoch, g)
        if stage == "clean":
            assert torch.equal(g.get_state(), state)
            assert torch.allclose(out.loss, torch.nn.functional.cross_entropy(out.logits, y))
            with torch.no_grad():
                assert torch.allclose(out.logits, model(x))  # on x itself (train mode: batch statistics)
        else:
            assert not torch.equal(g.get_state(), state)
