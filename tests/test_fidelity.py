"""The official TAET notebook's protocol as switches (taet_notebook profile), and both AutoAttacks.

Each switch is checked against a small copy of the official arithmetic (benchmarks/reference.py), at tiny sizes
on the CPU: the extra train-mode clean forward (loss, gradient and BatchNorm statistics), the resize before the
crop (crop offsets at the resized scale), and `autoattack_ta` against a direct torchattacks.AutoAttack call.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from lib.core.attacks import autoattack_ta
from lib.core.config import ConfigError, DataConfig, EvalConfig, RunConfig
from lib.core.data import build_data, iterate_batches, resize_images
from lib.core.methods import MethodContext, build_method, resolve_method_args
from lib.core.models import create_model
from lib.core.runs import HASH_NEUTRAL, config_hash
from lib.core.suite import describe_attack
from lib.core.train import validate
from lib.profiles import profile_config

ROOT = Path(__file__).resolve().parents[1]


def _reference():
    name = "taet_fidelity_reference"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "reference.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def _kit_clips_start() -> bool:
    from lib.bench.checks import kit_clips_normal_start

    return kit_clips_normal_start()


# ---------------------------------------------------------------------------------------------------
# Hashes: the switches are neutral at their defaults, and enter the hash when set
# ---------------------------------------------------------------------------------------------------
# config_hash of these configs on the CPU before the switches existed (main at 1dde6ed; the demo's from
# tests/test_hashes.py, pinned before them too; the fashion profile has since changed scale on purpose).
HASHES_BEFORE = {("smoke", "taet"): "acdc6db661ba9ca7", ("smoke", "atbsl"): "ced2799cb0f1d384",
                 ("demo", "taet"): "5b3b20273b7e5d88", ("demo", "atbsl"): "9ab156a6853140b1",
                 ("paper", "taet"): "e76d057478d62b6c", ("paper", "at"): "d442ae035a421c32"}


def _cpu(cfg: RunConfig) -> RunConfig:
    return validate(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device="cpu")))


@pytest.mark.parametrize("profile,method", sorted(HASHES_BEFORE))
def test_switches_keep_todays_hashes(profile, method):
    cfg = profile_config(profile, method)
    # those hashes were taken when every profile tracked every run (now only notebook 01 asks for it)
    cfg = _cpu(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, track_every=1)))
    if profile == "demo":  # pinned when the demo trained 60 epochs (TAET 24 clean); it now trains 40 (16)
        args = {**cfg.method_args, "ce_epochs": 24} if "ce_epochs" in cfg.method_args else cfg.method_args
        cfg = _cpu(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=60), method_args=args))
    assert cfg.data.resize_before_crop is None
    assert cfg.method_args.get("extra_clean_forward", False) is False
    assert config_hash(cfg) == HASHES_BEFORE[(profile, method)]


def test_switches_are_registered_neutral_and_enter_the_hash():
    assert HASH_NEUTRAL[("data", "resize_before_crop")] is None
    assert HASH_NEUTRAL[("method_args", "extra_clean_forward")] is False
    base = _cpu(profile_config("smoke", "taet"))
    variants = [
        dataclasses.replace(base, data=dataclasses.replace(base.data, resize_before_crop=16)),
        dataclasses.replace(base, model=dataclasses.replace(base.model, normalize=False)),
        dataclasses.replace(base, method_args={**base.method_args, "extra_clean_forward": True}),
    ]
    hashes = {config_hash(base)} | {config_hash(_cpu(v)) for v in variants}
    assert len(hashes) == 4


# ---------------------------------------------------------------------------------------------------
# The profile
# ---------------------------------------------------------------------------------------------------
def test_taet_notebook_profile_is_the_official_protocol():
    taet, atbsl = profile_config("taet_notebook", "taet"), profile_config("taet_notebook", "atbsl")
    for cfg in (taet, atbsl):
        assert (cfg.model.arch, cfg.model.normalize, cfg.model.resize) == ("resnet50_tv", False, None)
        assert (cfg.data.resize_before_crop, cfg.data.crop_padding, cfg.data.flip) == (224, 4, True)
        assert (cfg.data.dataset, cfg.data.test_protocol, cfg.train.epochs) == ("cifar10", "long_tailed", 100)
        assert cfg.method_args["extra_clean_forward"] is True
        assert "autoattack_ta" in cfg.eval.attacks and "autoattack" in cfg.eval.attacks
    assert taet.method_args["ce_epochs"] == 40
    a = resolve_method_args("atbsl", atbsl.method_args)
    assert (a["eps"], a["step_size"], a["steps"], a["start"], a["start_std"]) == (0.031, 0.003, 10, "normal", 0.001)
    # AT-BSL's own default attack elsewhere is unchanged; a method without the clean pass drops the switch.
    assert resolve_method_args("atbsl", profile_config("paper", "atbsl").method_args)["eps"] == pytest.approx(8 / 255)
    assert "extra_clean_forward" not in profile_config("taet_notebook", "at").method_args


def test_cli_help_lists_the_profile_and_both_autoattacks(capsys):
    from lib.cli.main import main

    for argv in (["train", "--help"], ["evaluate", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
    out = " ".join(capsys.readouterr().out.split())
    assert "taet_notebook" in out
    assert "autoattack_ta = torchattacks.AutoAttack as the official TAET notebook" in out
    assert "autoattack = fra31's standard AutoAttack" in out


def test_switches_can_be_swept_by_dotted_keys():
    from lib.orchestrate.sweep import expand_points

    spec = {"profile": "smoke", "device": "cpu",
            "grid": {"method": ["taet", "at"], "method_args.extra_clean_forward": [False, True],
                     "data.resize_before_crop": [None, 16], "model.normalize": [True, False]}}
    cfgs = [cfg for _, cfg in expand_points(spec)]
    assert len(cfgs) == 16
    taet = [c for c in cfgs if c.method == "taet"]
    assert {(c.method_args["extra_clean_forward"], c.data.resize_before_crop, c.model.normalize) for c in taet} == {
        (e, r, n) for e in (False, True) for r in (None, 16) for n in (True, False)}
    assert len({config_hash(c) for c in taet}) == 8
    assert all("extra_clean_forward" not in c.method_args for c in cfgs if c.method == "at")


# ---------------------------------------------------------------------------------------------------
# The extra clean forward: the kit's step against the official cell-7 arithmetic
# ---------------------------------------------------------------------------------------------------
def _bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()
            if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def _grads(model: nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    return torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])


def _step_vs_reference(method: str, epoch: int, extra: bool):
    """(kit model, reference model, kit loss, reference loss, kit grads, reference grads) on one batch."""
    ref = _reference()
    torch.manual_seed(0)
    net = create_model("resnet50_tv", 4, in_channels=3, image_size=16, normalize=False).train()
    kit_m, ref_m = copy.deepcopy(net), copy.deepcopy(net)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(8, 3, 16, 16, generator=g)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3])
    counts = [40, 20, 10, 4]
    args = {**profile_config("taet_notebook", method).method_args, "extra_clean_forward": extra}
    m = build_method(method, args, MethodContext(4, counts, 100, torch.device("cpu")))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(11))
    out = m.step(kit_m, x, y, epoch, torch.Generator().manual_seed(11))
    a, clip = m.args, _kit_clips_start()
    if method == "taet":
        ref_loss, _ = ref.taet_notebook_loss(ref_m, x, y, 4, adversarial=m.stage(epoch) == "adversarial",
                                             noise=noise, clip_start=clip, eps=a.eps, step_size=a.step_size,
                                             steps=a.steps)
    else:
        ref_loss, _ = ref.atbsl_notebook_loss(ref_m, x, y, counts, noise=noise, clip_start=clip, eps=a.eps,
                                              step_size=a.step_size, steps=a.steps)
    return kit_m, ref_m, out.loss, ref_loss, _grads(kit_m, out.loss), _grads(ref_m, ref_loss)


@pytest.fixture
def one_thread():
    """Both loops on one intra-op thread: with several, the two sides' reductions may be split differently and their
    gradients differ by float rounding (seen: 2.5e-4 on 2 threads), which is not what these tests compare."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("method,epoch", [("taet", 0), ("taet", 40), ("atbsl", 0)])
def test_extra_clean_forward_matches_the_official_step(method, epoch, one_thread):
    kit_m, ref_m, kit_loss, ref_loss, kit_g, ref_g = _step_vs_reference(method, epoch, extra=True)
    assert kit_loss.item() == pytest.approx(ref_loss.item(), rel=1e-5, abs=1e-6)
    # each gradient to 1e-5 of its own scale: they reach ~570 here, where one fp32 ulp is 6e-5, and the two sides
    # sum in different orders on some CPUs (3.8e-4 on a gradient of 160, seen on a Xeon); without the switch they
    # differ by far more than that (test below)
    for a, b in zip(kit_g, ref_g):
        assert float((a - b).abs().max()) <= 1e-5 * max(1.0, float(b.abs().max()))
    kit_bn, ref_bn = _bn_state(kit_m), _bn_state(ref_m)
    for k in ref_bn:
        assert torch.allclose(kit_bn[k].float(), ref_bn[k].float(), atol=1e-6), k
    # the official loop updates BatchNorm once more per batch than the kit's default step
    n_official = int(ref_bn["inner.net.bn1.num_batches_tracked"])
    assert n_official == 2


def test_without_the_switch_batchnorm_statistics_differ_from_the_official_step():
    kit_m, ref_m, kit_loss, ref_loss, kit_g, ref_g = _step_vs_reference("taet", 40, extra=False)
    # the tolerance the test above allows is far below what the switch changes (seen: 280 on a gradient of 170)
    assert any(float((a - b).abs().max()) > 1e-2 * max(1.0, float(b.abs().max())) for a, b in zip(kit_g, ref_g))
    kit_bn, ref_bn = _bn_state(kit_m), _bn_state(ref_m)
    assert int(kit_bn["inner.net.bn1.num_batches_tracked"]) == int(ref_bn["inner.net.bn1.num_batches_tracked"]) - 1
    assert not torch.allclose(kit_bn["inner.net.bn1.running_mean"], ref_bn["inner.net.bn1.running_mean"])


def test_extra_clean_forward_is_refused_by_methods_without_a_clean_pass():
    with pytest.raises(ConfigError, match="extra_clean_forward: at has no clean pass.*atbsl.*taet"):
        resolve_method_args("at", {"extra_clean_forward": True})


# ---------------------------------------------------------------------------------------------------
# Resize before crop: offsets at the resized scale; the test set and every attack at N px
# ---------------------------------------------------------------------------------------------------
def _shift(img: torch.Tensor, dy: int, dx: int, pad: int) -> torch.Tensor:
    """img (C, H, W) zero-padded by `pad` and cropped back at offset (pad + dy, pad + dx)."""
    H, W = img.shape[-2:]
    p = torch.nn.functional.pad(img, (pad, pad, pad, pad))
    return p[:, pad + dy: pad + dy + H, pad + dx: pad + dx + W]


def _find_shift(out: torch.Tensor, img: torch.Tensor, pad: int, reach: int):
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            if torch.equal(out, _shift(img, dy, dx, pad)):
                return dy, dx
    return None


def test_resize_before_crop_crops_after_resizing():
    native = build_data(DataConfig(dataset="synthetic", max_train=40, max_test=20), verbose=False)
    cfg = DataConfig(dataset="synthetic", max_train=40, max_test=20, resize_before_crop=40, crop_padding=4,
                     flip=False)
    b = build_data(cfg, verbose=False)
    assert b.image_size == 40 and b.train_x.shape[1:] == (1, 40, 40) and b.test_x.shape[1:] == (1, 40, 40)
    assert torch.equal(b.train_x, resize_images(native.train_x, 40))
    assert torch.equal(b.test_x, resize_images(native.test_x, 40))  # evaluation sees the same 40-px images
    xb, _ = next(iterate_batches(b.train_x, b.train_y, 40, generator=torch.Generator().manual_seed(0),
                                 shuffle=False, augment=True, padding=4, flip=False))
    imgs = b.train_x.float() / 255
    shifts = [_find_shift(xb[i], imgs[i], pad=4, reach=4) for i in range(len(xb))]
    assert all(s is not None for s in shifts)  # every crop is a shift of at most 4 px of the 40-px image
    assert max(max(abs(dy), abs(dx)) for dy, dx in shifts) == 4 and len(set(shifts)) > 5
    # Cropping at the native 8 px and resizing after (what model.resize does) shifts by multiples of 5 px at 40.
    small, _ = next(iterate_batches(native.train_x, native.train_y, 40, generator=torch.Generator().manual_seed(0),
                                    shuffle=False, augment=True, padding=4, flip=False))
    after = resize_images((small * 255).round().to(torch.uint8), 40).float() / 255
    moved = [i for i in range(len(after)) if not torch.equal(small[i], native.train_x[i].float() / 255)]
    assert moved and all(_find_shift(after[i], imgs[i], pad=20, reach=4) is None for i in moved)


def test_resize_matches_pil_resize():
    from PIL import Image
    from torchvision import transforms

    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    kit = resize_images(x, 224)
    for i in range(len(x)):
        pil = transforms.Resize(224)(Image.fromarray(x[i].permute(1, 2, 0).numpy()))
        assert torch.equal(kit[i], transforms.PILToTensor()(pil))


def _tiny_notebook_cfg(tmp_path, method: str = "taet") -> RunConfig:
    cfg = profile_config("taet_notebook", method)
    return dataclasses.replace(
        cfg, out_dir=str(tmp_path),
        data=dataclasses.replace(cfg.data, dataset="synthetic", max_train=60, max_test=20, resize_before_crop=16),
        model=dataclasses.replace(cfg.model, arch="small_cnn", pretrained=False),
        train=dataclasses.replace(cfg.train, epochs=2, batch_size=32, lr=0.05, track_every=0, device="cpu",
                                  progress=False),
        method_args={**cfg.method_args, "ce_epochs": 1})


def test_taet_notebook_trains_and_attacks_at_the_resized_size(tmp_path):
    from lib.core.evaluate import evaluate_model
    from lib.core.train import train_run

    res = train_run(_tiny_notebook_cfg(tmp_path), verbose=False)
    sizes = set()
    hook = res.model.register_forward_pre_hook(lambda mod, inp: sizes.add(tuple(inp[0].shape[-2:])))
    ecfg = dataclasses.replace(res.config.eval, batch_size=64)
    out = evaluate_model(res.model, res.data.test_x, res.data.test_y, 10, ecfg, ["clean", "pgd20"], verbose=False)
    hook.remove()
    assert sizes == {(16, 16)} and out["pgd20"]["n"] == 20
    assert [r["stage"] for r in res.history] == ["clean", "adversarial"]


# ---------------------------------------------------------------------------------------------------
# Bad input, before any work
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change,match", [
    ({"data": {"resize_before_crop": 0}}, "resize_before_crop must be a positive number"),
    ({"data": {"resize_before_crop": "224"}}, "resize_before_crop must be a positive number"),
    ({"model": {"resize": 224}}, "both resize the input"),
    ({"model": {"arch": "vit_b16"}, "data": {"resize_before_crop": 64}}, "takes 224 px inputs"),
])
def test_bad_switch_values_fail_before_any_work(tmp_path, change, match):
    cfg = _tiny_notebook_cfg(tmp_path)
    cfg = dataclasses.replace(cfg, **{k: dataclasses.replace(getattr(cfg, k), **v) for k, v in change.items()})
    with pytest.raises(ConfigError, match=match):
        validate(cfg)


def test_autoattack_ta_without_torchattacks_says_how_to_install(monkeypatch, tmp_path):
    from lib.core import evaluate as ev

    monkeypatch.setitem(sys.modules, "torchattacks", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"autoattack_ta needs torchattacks: pip install --no-deps"):
        ev.check_attacks(["clean", "autoattack_ta"])
    # evaluate_run says it before loading the model or the data
    (tmp_path / "run").mkdir()
    from lib.core.runs import write_config

    write_config(tmp_path / "run", _tiny_notebook_cfg(tmp_path))
    monkeypatch.setattr("lib.core.train.load_run", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(ConfigError, match="torchattacks"):
        ev.evaluate_run(tmp_path / "run", ["autoattack_ta"], device="cpu")


# ---------------------------------------------------------------------------------------------------
# autoattack_ta = torchattacks.AutoAttack as the official evaluations call it
# ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_autoattack_ta_agrees_with_a_direct_torchattacks_call():
    torchattacks = pytest.importorskip("torchattacks")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 10)).eval()
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = model(x)
        y = z.argmax(1)  # every point starts correct: each stage of the ensemble has work
        w = model[1].weight
        # a linear model's smallest l_inf step to another class j: (z_y - z_j) / ||w_y - w_j||_1
        gap = (z.gather(1, y[:, None]) - z) / (w[y][:, None, :] - w[None]).abs().sum(-1).clamp_min(1e-12)
        dist = gap.masked_fill(torch.nn.functional.one_hot(y, 10).bool(), float("inf")).amin(1).sort().values
    eps = float(dist[2] + dist[3]) / 2  # about half the points can fall; the rest survive to Square
    rng = torch.get_rng_state()
    kit = autoattack_ta(model, x, y, eps=eps, seed=0)
    assert torch.equal(torch.get_rng_state(), rng)  # torchattacks reseeds; the adapter gives the RNG back
    direct = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0)(x, y)
    assert torch.equal(kit, direct)
    fooled = model(kit).argmax(1) != y
    assert 0 < int(fooled.sum()) < len(y)
    assert float((kit - x).abs().max()) <= eps + 1e-6 and 0 <= float(kit.min()) and float(kit.max()) <= 1
    assert model.training is False


def test_autoattack_ta_settings_are_recorded():
    from lib.core.config import EvalConfig

    d = describe_attack("autoattack_ta", EvalConfig(seed=3))
    assert d["implementation"].startswith("torchattacks") and d["apgd_steps"] == 10 and d["seed"] == 3
    assert d["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"] and d["square_queries"] == 5000
    assert describe_attack("autoattack", EvalConfig())["implementation"].startswith("pyautoattack")


def test_autoattack_ta_bad_input_fails_before_any_attack():
    pytest.importorskip("torchattacks")
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 1])
    with pytest.raises(ConfigError, match="at least 4 classes"):
        autoattack_ta(model, x, y, eps=8 / 255)
    with pytest.raises(ConfigError, match="0.0314"):
        autoattack_ta(model, x, y, eps=8)


def test_cli_flags_set_each_switch():
    from lib.cli.main import build_parser, config_from_args

    p = build_parser()
    cfg = config_from_args(p.parse_args(["train", "--method", "atbsl", "--resize-before-crop", "64", "--no-normalize",
                                         "--method-arg", "extra_clean_forward=true"]))
    switches = (cfg.data.resize_before_crop, cfg.model.normalize, cfg.method_args["extra_clean_forward"])
    assert switches == (64, False, True)
    nb = config_from_args(p.parse_args(["train", "--profile", "taet_notebook", "--pretrained"]))
    assert nb.model.pretrained is True and profile_config("taet_notebook").model.pretrained is False
    with pytest.raises(ConfigError, match="extra_clean_forward"):
        config_from_args(p.parse_args(["train", "--method", "at", "--method-arg", "extra_clean_forward=true"]))


def test_tiny_taet_notebook_keeps_every_switch_at_cpu_sizes():
    from lib.orchestrate.tiny import TINY_RESIZE, TINY_TRAIN_ATTACK_STEPS, tiny_settings
    from lib.profiles import PROFILES

    q = tiny_settings(PROFILES["taet_notebook"])
    assert q.name == "taet_notebook-tiny" and q.tiny
    assert q.data["resize_before_crop"] == TINY_RESIZE and q.model["pretrained"] is False
    assert q.model["normalize"] is False and q.method_args["extra_clean_forward"] is True
    assert q.method_args_by_method["atbsl"]["steps"] == TINY_TRAIN_ATTACK_STEPS
    assert q.train["lr"] == pytest.approx(0.1 * q.train["batch_size"] / 128)  # same lr per image
    assert PROFILES["taet_notebook"].data["resize_before_crop"] == 224  # the profile itself is untouched


# ---------------------------------------------------------------------------------------------------
# The official TAET notebook's evaluation (cell 12): DeepFool, batches of 32 over the class-sorted test set
# ---------------------------------------------------------------------------------------------------
def test_deepfool_is_torchattacks_deepfool_and_fools_a_trained_model(trained_digits_model):
    torchattacks = pytest.importorskip("torchattacks")
    from lib.core.suite import describe_attack, get_attack

    model, x, y = trained_digits_model
    x, y = x[:24], y[:24]
    ecfg = EvalConfig(deepfool_steps=50)
    mode = model.training
    x_adv = get_attack("deepfool")(model, x, y, ecfg, None)
    assert model.training == mode and x_adv.shape == x.shape and 0 <= x_adv.min() and x_adv.max() <= 1
    with torch.random.fork_rng(devices=[]):
        ref = torchattacks.DeepFool(model.eval(), steps=50, overshoot=0.02)(x, y)
    assert torch.allclose(x_adv, ref.clamp(0, 1), atol=1e-6)  # the library's own attack, nothing re-implemented
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
        adv = (model(x_adv).argmax(1) == y).float().mean().item()
    # unbounded, but its last step is clipped to [0, 1], which pulls some 8x8 digits back (measured: 100% -> 46%)
    assert clean > 0.8 and adv < 0.6
    d = describe_attack("deepfool", ecfg)
    assert (d["steps"], d["overshoot"], d["norm"]) == (50, 0.02, "L2")


def test_class_sorted_batches_of_32_are_recorded_where_they_change_a_result(trained_digits_model):
    from lib.core.evaluate import evaluate_model
    from lib.core.suite import describe_attack

    model, x, y = trained_digits_model
    x_u8 = (x * 255).round().to(torch.uint8)
    default, notebook = EvalConfig(), EvalConfig(batch_size=32, order="class_sorted")
    a = evaluate_model(model, x_u8, y, 10, default, ["clean"], verbose=False)["clean"]
    b = evaluate_model(model, x_u8, y, 10, notebook, ["clean"], verbose=False)["clean"]
    assert a["per_class"] == b["per_class"] and a["balanced"] == b["balanced"]  # order alone moves no clean number
    # CW-L2 (early stop on a batch's summed cost) and torchattacks' AutoAttack carry a non-default batching; the
    # default settings are those every existing eval.json holds, so cached results stay current
    assert "batching" not in describe_attack("cw_l2", default)
    assert describe_attack("cw_l2", notebook)["batching"] == {"batch_size": 32, "order": "class_sorted"}
    assert describe_attack("autoattack_ta", notebook)["order"] == "class_sorted"
    assert describe_attack("pgd20", notebook) == describe_attack("pgd20", default)
    with pytest.raises(ConfigError, match="eval.order must be one of"):
        evaluate_model(model, x_u8, y, 10, EvalConfig(order="random"), ["clean"], verbose=False)


def test_the_taet_notebook_profile_is_the_notebook_item_by_item():
    cfg = profile_config("taet_notebook", "taet")
    assert (cfg.model.arch, cfg.model.pretrained, cfg.model.normalize) == ("resnet50_tv", False, False)
    assert (cfg.data.resize_before_crop, cfg.data.test_protocol, cfg.data.crop_padding) == (224, "long_tailed", 4)
    assert cfg.method_args["extra_clean_forward"] is True and cfg.method_args["ce_epochs"] == 40
    assert {"deepfool", "autoattack_ta", "cw_l2"} <= set(cfg.eval.attacks)
    assert (cfg.eval.batch_size, cfg.eval.order, cfg.eval.pgd_step_size) == (32, "class_sorted", 1 / 255)
