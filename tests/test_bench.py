"""The speed benchmark and the speed switches: `python -m lib bench --quick` writes its JSON and its numerical
check holds (and fails when the kit computes something else); the attack's backward does no weight-gradient
work; the hot-path switches keep the public contracts."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import lib.core.attacks as A
from lib.core import speed
from lib.core.config import ConfigError, TrainConfig
from lib.core.models import create_model


def test_bench_quick_writes_json_and_the_numerical_check_holds(tmp_path):
    from lib.cli.main import main

    rc = main(["bench", "--quick", "--device", "cpu", "--threads", "1", "--models", "small_cnn:1x8:b64",
               "--rounds", "1", "--steps", "1", "--warmup", "0", "--no-variants", "--cost-methods", "taet",
               "--out-dir", str(tmp_path)])
    assert rc == 0
    files = list(tmp_path.glob("*-cpu.json"))
    assert len(files) == 1
    doc = json.loads(files[0].read_text())
    assert doc["numerical_check_passed"] is True
    m = doc["models"]["small_cnn 1x8x8 b64"]
    nc = m["numerical_check"]
    assert nc["passed"] and nc["hel"]["abs_diff"] <= 1e-4 and nc["taet_stage2"]["abs_diff"] <= 1e-4
    assert set(m["workloads"]) == {"taet_stage1", "taet_stage2", "atbsl", "pgd20"}
    for r in m["workloads"].values():
        assert r["reference"]["images_per_s"] > 0 and r["kit"]["images_per_s"] > 0
        assert r["ratio"] == pytest.approx(r["kit"]["images_per_s"] / r["reference"]["images_per_s"])
    assert doc["hardware"]["cpu"] and doc["hardware"]["torch_threads"] >= 1
    assert {"torch", "torchvision", "python"} <= set(doc["versions"])
    assert doc["method_costs"]["methods"]["taet"]["seconds_per_epoch"] > 0


@pytest.fixture(scope="module")
def harness():
    from lib.bench.runner import BenchSettings, Harness, load_reference, parse_model_spec

    st = BenchSettings(device="cpu", quick=True, costs=False)
    return Harness(parse_model_spec("small_cnn:1x8:b64", True), st, torch.device("cpu"), load_reference()), st


def test_numerical_check_compares_independent_code(harness):
    from lib.bench.checks import numerical_check

    h, st = harness
    nc = numerical_check(h, st)
    assert nc["passed"]
    assert nc["hel"]["absent_class"] is not None  # a class is missing from the HEL batch: absent="zero" matters
    # Where the kit clips the normal start to [0, 1] (the official code does not), the check reports by how much
    # the official rule moves the loss, next to the like-for-like comparison.
    assert ("official_unclipped_start" in nc["taet_stage2"]) == nc["kit_clips_normal_start"]


def test_numerical_check_fails_when_the_kit_computes_something_else(harness, monkeypatch):
    import lib.core.losses
    import lib.core.methods.taet
    from lib.bench.checks import numerical_check

    h, st = harness

    def hel_excluding_absent(per_sample, targets, num_classes, *args, **kwargs):
        kwargs["absent"] = "exclude"  # averages over present classes: a different loss when a class is missing
        return lib.core.losses.__dict__["_orig_hel"](per_sample, targets, num_classes, *args, **kwargs)

    monkeypatch.setitem(lib.core.losses.__dict__, "_orig_hel", lib.core.losses.hel_loss)
    monkeypatch.setattr(lib.core.losses, "hel_loss", hel_excluding_absent)
    monkeypatch.setattr(lib.core.methods.taet, "hel_loss", hel_excluding_absent)
    nc = numerical_check(h, st)
    assert not nc["passed"]
    assert nc["hel"]["abs_diff"] > 1e-4


class BackwardSpy(TorchDispatchMode):
    """Records the output masks of convolution / batch-norm backward and counts matrix products."""

    def __init__(self):
        super().__init__()
        self.masks: list[tuple[str, tuple[bool, ...]]] = []
        self.mm = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        aten = torch.ops.aten
        if func.overloadpacket in (aten.convolution_backward, aten.native_batch_norm_backward):
            self.masks.append((str(func.overloadpacket), tuple(args[-1])))
        if func.overloadpacket is aten.mm:
            self.mm += 1
        return func(*args, **(kwargs or {}))


def test_pgd_backward_does_no_weight_gradient_work():
    """autograd.grad w.r.t. the input only: every conv / BN backward computes grad_input alone (mask
    (True, False, False)) and the classifier's backward is one product (grad_input), not two."""
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, in_channels=1, image_size=8)
    x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,))
    spy = BackwardSpy()
    with spy:
        A.pgd(model, x, y, eps=0.03, step_size=0.01, steps=1, random_start=False)
    assert len(spy.masks) == 6  # 3 convolutions + 3 batch norms
    assert all(mask == (True, False, False) for _, mask in spy.masks)
    assert spy.mm == 1
    assert all(p.grad is None for p in model.parameters())


def test_pgd_single_clamp_equals_ball_then_unit_projection():
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, in_channels=1, image_size=8).eval()
    x = torch.rand(16, 1, 8, 8)
    x[:4] = 0.0  # pixels on both edges of [0, 1]
    x[4:8] = 1.0
    y = torch.randint(0, 10, (16,))
    eps, step = 0.05, 0.02
    got = A.pgd(model, x, y, eps=eps, step_size=step, steps=4, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    want = A._project_linf(x + eps * (2.0 * torch.rand(x.shape, generator=g) - 1.0), x, eps)
    for _ in range(4):
        want.requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(want), y, reduction="sum"), want)
        want = A._project_linf(want.detach() + step * grad.sign(), x, eps)
    assert torch.equal(got, want)


def test_trusted_inputs_skips_only_the_value_check():
    model = create_model("small_cnn", 10, in_channels=1, image_size=8)
    x, y = torch.full((2, 1, 8, 8), 2.0), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        A.pgd(model, x, y, eps=0.03, step_size=0.01, steps=1)
    with A.trusted_inputs():
        A.pgd(model, x, y, eps=0.03, step_size=0.01, steps=1)  # no value check inside
        with pytest.raises(ConfigError, match="int64"):
            A.pgd(model, x, y.int(), eps=0.03, step_size=0.01, steps=1)  # the other checks stay
        with A.trusted_inputs(False), pytest.raises(ConfigError, match=r"\[0, 1\]"):
            A.fgsm(model, x, y, eps=0.03)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        A.fgsm(model, x, y, eps=0.03)  # restored on exit


def test_speed_plan_resolution_and_errors():
    cpu = torch.device("cpu")
    assert speed.resolve_amp("auto", cpu) == "off"
    assert speed.resolve_amp("bf16", cpu) == "bf16"
    with pytest.raises(ConfigError, match="amp"):
        speed.resolve_amp("fp8", cpu)
    with pytest.raises(ConfigError, match="channels_last"):
        speed.plan(cpu, channels_last="yes")
    with pytest.raises(ConfigError, match="threads"):
        speed.plan(cpu, threads=0)
    p = speed.plan(cpu, amp="off", channels_last="on")
    assert p.channels_last and p.amp == "off" and not p.compile
    with speed.autocast_ctx(cpu, "bf16"):
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.bfloat16
    with speed.autocast_ctx(cpu, "off"):
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.float32


def test_fast_optimizer_and_layout_match_the_plain_ones():
    torch.manual_seed(0)
    a = create_model("small_cnn", 10, in_channels=1, image_size=8)
    b = create_model("small_cnn", 10, in_channels=1, image_size=8)
    b.load_state_dict(a.state_dict())
    speed.to_channels_last(b)
    cfg = TrainConfig()
    opt_a = torch.optim.SGD(a.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    opt_b = speed.make_optimizer(b.parameters(), cfg, "cpu")
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    for _ in range(3):
        for m, o in ((a, opt_a), (b, opt_b)):
            o.zero_grad(set_to_none=True)
            F.cross_entropy(m(x), y).backward()
            o.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
    opt_a.load_state_dict(opt_b.state_dict())  # checkpoints move between the two


def test_paper_projection_counts_match_the_data_module():
    from lib.bench.report import PAPER
    from lib.core.data import long_tail_counts

    assert PAPER["train_images"] == sum(long_tail_counts(5000, 10, 10.0))  # CIFAR-10-LT, IR 10


def test_cost_measurements_are_set_up_side_by_side_and_timed_one_at_a_time(tmp_path):
    from lib.profiles import run_config
    from lib.study.costs import measure_costs

    cfgs = [run_config("smoke", m, device="cpu", train={"batch_size": 16}) for m in ("ce", "at", "taet")]
    costs = measure_costs(cfgs, steps=1, prepare_ahead=2)  # two groups: (ce, at), then taet
    assert list(costs) == ["ce", "at", "taet"]
    windows = sorted(c["timed"] for c in costs.values())
    assert all(a[1] <= b[0] for a, b in zip(windows, windows[1:]))  # no timing overlaps another
    assert set(costs["taet"]["seconds_per_step"]) == {"clean", "adversarial"}
    bad = run_config("smoke", "ce", device="cpu", data={"dataset": "cifar10", "data_dir": str(tmp_path)})
    with pytest.raises(RuntimeError, match="measuring ce failed: DataError: cifar10: no data in"):
        measure_costs([cfgs[1], bad], steps=1)
    with pytest.raises(ValueError, match="prepare_ahead=0"):
        measure_costs(cfgs, prepare_ahead=0)


@pytest.mark.parametrize("fp32, bf16, verdict", [
    ([0.50, 0.52, 0.48], [0.505, 0.525, 0.485], "equivalent"),  # +0.5 points at every seed: interval [0.5, 0.5]
    ([0.50, 0.52, 0.48], [0.53, 0.555, 0.52], "different"),  # +3, +3.5, +4: mean 3.5, t(2) interval [2.3, 4.7]
    ([0.50, 0.52, 0.48], [0.50, 0.54, 0.46], "inconclusive"),  # 0, +2, -2: mean 0, interval [-5.0, 5.0]
])
def test_bf16_check_reads_the_paired_difference_over_seeds(monkeypatch, fp32, bf16, verdict):
    import lib.bench.checks as checks

    asked = []

    def fake_runs(profile, variants, seeds, **kw):
        asked.append((profile, variants, list(seeds)))
        doc = {"fp32": fp32, "bf16": bf16}
        return {name: {s: {"results": {"clean": {"balanced": 0.9}, "pgd20": {"balanced": doc[name][s]}},
                           "history": [{"seconds": "1.5"}, {"seconds": "2.0"}]} for s in seeds} for name in variants}

    monkeypatch.setattr(checks, "precision_runs", fake_runs)
    out = checks.bf16_check("smoke", device="cpu", seeds=[0, 1, 2], verbose=False)
    (profile, variants, seeds), = asked
    assert profile == "smoke" and seeds == [0, 1, 2]
    assert variants == {"fp32": {"train": {"amp": "off"}}, "bf16": {"train": {"amp": "bf16"}}}  # profile's settings
    assert out["verdict"] == verdict and out["passed"] == (verdict == "equivalent")
    diffs = [b - f for b, f in zip(bf16, fp32)]
    assert out["pgd20_balanced_diff"]["mean"] == pytest.approx(sum(diffs) / 3)
    if verdict == "different":  # mean 0.035, std 0.005, t(0.975, 2) = 4.3027: half width 0.0124
        assert out["pgd20_balanced_diff"]["low"] == pytest.approx(0.035 - 4.302653 * 0.005 / 3 ** 0.5)
    assert out["fp32_seed_std"] == pytest.approx(0.02)
    assert out["clean_balanced_diff"]["mean"] == 0.0
    assert out["runs"]["bf16"][1]["train_seconds"] == 3.5  # summed over the run's history


def test_bf16_check_epochs_override_keeps_forty_percent_clean(monkeypatch):
    import lib.bench.checks as checks

    asked = []
    monkeypatch.setattr(checks, "precision_runs", lambda profile, variants, seeds, **kw: asked.append(variants)
                        or pytest.skip("variants seen"))
    with pytest.raises(pytest.skip.Exception):
        checks.bf16_check("demo", seeds=[0, 1], epochs=10, verbose=False)
    assert asked[0]["bf16"] == {"train": {"epochs": 10, "amp": "bf16"}, "method_args": {"ce_epochs": 4}}
    with pytest.raises(ConfigError, match="at least 1"):
        checks.bf16_check("demo", seeds=[0, 1], epochs=0, verbose=False)


def test_bf16_check_trains_through_the_run_cache_and_reuses_it(tmp_path, monkeypatch):
    """Both precisions are ordinary cached runs: the bf16 one hashes apart (its precision), the fp32 one is the
    profile's own run, and a second check trains nothing."""
    import lib.bench.checks as checks
    from lib.core import runs
    from lib.orchestrate import sweep
    from lib.profiles import run_config

    out = checks.bf16_check("smoke", device="cpu", seeds=[0, 1], epochs=1, verbose=False, out_dir=str(tmp_path),
                            workers=1)
    fp32_dir = out["runs"]["fp32"][0]["run_dir"]
    plain = run_config("smoke", "taet", device="cpu", out_dir=str(tmp_path), train={"epochs": 1, "seed": 0},
                       method_args={"ce_epochs": 0})
    assert fp32_dir == str(runs.run_dir(plain))  # fp32 = the profile's own run: the cache and evidence serve it
    assert out["runs"]["bf16"][0]["run_dir"] != fp32_dir
    assert runs.read_config(out["runs"]["bf16"][0]["run_dir"]).train.amp == "bf16"
    for name in ("fp32", "bf16"):
        for s in (0, 1):
            r = out["runs"][name][s]
            assert 0.0 <= r["pgd20_balanced"] <= r["clean_balanced"] + 0.05 and r["train_seconds"] > 0
    monkeypatch.setattr(sweep, "run_one", lambda *a, **k: pytest.fail("retrained a cached run"))
    again = checks.bf16_check("smoke", device="cpu", seeds=[0, 1], epochs=1, verbose=False,
                              out_dir=str(tmp_path), workers=1)
    assert again["pgd20_balanced_diff"] == out["pgd20_balanced_diff"]


def test_bf16_check_can_read_the_run_cache_alone(monkeypatch):
    """By default committed evidence stands in for fp32 runs; --bf16-check-no-evidence (evidence=False) reads the
    run cache alone, so both precisions are trained on this machine."""
    import lib.bench.checks as checks
    import lib.study.seeded as seeded
    from lib.cli.main import main

    asked = []

    def fake_sweep(profile, variants, seeds, **kw):
        asked.append(kw["evidence"])
        return {name: {s: {"results": {"clean": {"balanced": 0.9}, "pgd20": {"balanced": 0.5 + 0.01 * s}},
                           "history": []} for s in seeds} for name in variants}

    monkeypatch.setattr(seeded, "sweep_seeds", fake_sweep)
    checks.bf16_check("smoke", device="cpu", seeds=[0, 1], verbose=False)
    checks.bf16_check("smoke", device="cpu", seeds=[0, 1], verbose=False, evidence=False)
    assert asked == ["auto", None]
    assert main(["bench", "--bf16-check", "--bf16-check-profile", "smoke", "--bf16-check-seeds", "0,1",
                 "--bf16-check-no-evidence", "--device", "cpu"]) == 0  # bf16 = fp32 here: equivalent, passes
    assert asked[-1] is None


def test_bf16_check_needs_two_distinct_seeds_before_training(monkeypatch):
    import lib.bench.checks as checks
    from lib.cli.main import parse_seeds

    monkeypatch.setattr(checks, "precision_runs", lambda *a, **k: pytest.fail("trained despite bad seeds"))
    with pytest.raises(ConfigError, match="at least 2 seeds"):
        checks.bf16_check("smoke", seeds=[0])
    with pytest.raises(ConfigError, match=r"listed twice"):
        checks.bf16_check("smoke", seeds=[1, 1])
    with pytest.raises(ConfigError, match="'x' in '0,x' is not an integer"):
        parse_seeds("0,x")
