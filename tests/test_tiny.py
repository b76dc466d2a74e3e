"""--tiny: the named profile with only its sizes shrunk, synthetic data in the real formats through the real
loaders, the attack-iteration cap, and the checks that stop a pipeline before any work."""

from __future__ import annotations

import html
import os
import tempfile

import numpy as np
import pytest
import torch

from lib import profiles
from lib.core import config, data, synthetic
from lib.core.config import ConfigError, EvalConfig
from lib.core.suite import describe_attack, get_attack
from lib.orchestrate import tiny
from lib.profiles import PROFILES, profile_config


@pytest.fixture
def fresh_profiles(monkeypatch, tmp_path):
    """PROFILES restored after the test; synthetic data written under tmp_path instead of the system's temp."""
    saved = dict(profiles.PROFILES)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    yield tmp_path
    profiles.PROFILES.clear()
    profiles.PROFILES.update(saved)


def test_tiny_paper_keeps_every_choice_and_shrinks_only_sizes(fresh_profiles):
    name = tiny.prepare_profile("paper", tiny=True, data_dir=str(fresh_profiles / "empty"))
    assert name == "paper-tiny"
    full, small = profile_config("paper", "taet"), profile_config(name, "taet")
    for section, fields in {"data": ("dataset", "imbalance_ratio", "lt_profile", "test_protocol", "augment",
                                     "crop_padding", "flip"),
                            "model": ("arch", "normalize", "pretrained", "resize"),
                            "train": ("momentum", "weight_decay", "milestones", "track_every", "track_eps"),
                            "eval": ("attacks", "eps", "pgd_step_size", "cw_l2_c", "autoattack_version")}.items():
        for f in fields:
            assert getattr(getattr(small, section), f) == getattr(getattr(full, section), f), (section, f)
    assert small.eval.attacks[-1] == "autoattack" and small.model.arch == "resnet18"
    assert small.train.lr == pytest.approx(full.train.lr * small.train.batch_size / full.train.batch_size)
    assert small.train.epochs == 3 and small.method_args["ce_epochs"] == 1  # 40 of 100 -> 1 of 3: stage 1 kept
    assert small.data.max_test == 10 and small.data.max_train == 12 and small.eval.max_steps == 1
    assert small.method_args["steps"] == tiny.TINY_TRAIN_ATTACK_STEPS and full.method_args.get("steps", 10) == 10
    nb = profiles.notebook_settings(name)
    assert nb["derma"]["arch"] == "vit_b16" and nb["derma"]["pretrained"] is True  # ViT-B/16 at 224 kept
    assert nb["irs"] == [10, 100] and nb["ce_epochs_grid"] == [0, 1, 2]
    assert profiles.profile_seeds(name) == [0]


@pytest.mark.parametrize("profile", ["paper", "taet_notebook"])
def test_every_method_accepts_the_tiny_settings_of_the_profile(fresh_profiles, profile):
    """What the tiny pipeline trains must pass each method's own checks (GAIRAT needs >= 2 attack steps)."""
    from lib.core.methods import METHODS
    from lib.core.train import validate

    name = tiny.prepare_profile(profile, tiny=True, data_dir=str(fresh_profiles / "empty"))
    for method in METHODS:
        validate(profile_config(name, method))


def test_without_tiny_nothing_changes(fresh_profiles):
    before = dict(profiles.PROFILES)
    assert tiny.prepare_profile("demo") == "demo"
    assert profiles.PROFILES == before


def test_synthetic_cifar_can_be_written_at_other_sizes(tmp_path):
    """benchmarks/gpu_check.sh writes CIFAR-10's own 5,000 per class so timed epochs have their real length."""
    synthetic.write_synthetic_cifar(str(tmp_path), train_per_class=250, test_per_class=3)
    raw = data.load_cifar10(str(tmp_path), False)
    assert torch.bincount(raw.train_y).tolist() == [250] * 10 and torch.bincount(raw.test_y).tolist() == [3] * 10


def test_synthetic_cifar_is_read_by_torchvision_with_its_checksums(tmp_path):
    from torchvision.datasets import CIFAR10

    synthetic.write_synthetic_cifar(str(tmp_path))
    folder = tmp_path / "cifar-10-batches-py"
    assert sorted(os.listdir(folder)) == sorted([f for f, _ in CIFAR10.train_list + CIFAR10.test_list]
                                                + ["batches.meta", synthetic.SYNTHETIC_MARKER])
    cls = synthetic.synthetic_checksums(CIFAR10, str(folder))
    assert issubclass(cls, CIFAR10) and cls is not CIFAR10
    raw = data.load_cifar10(str(tmp_path), False)
    assert raw.train_x.shape == (1000, 3, 32, 32) and raw.train_x.dtype == torch.uint8
    assert raw.test_x.shape == (100, 3, 32, 32)
    assert torch.bincount(raw.train_y).tolist() == [100] * 10
    b = data.build_data(config.DataConfig(dataset="cifar10", data_dir=str(tmp_path), imbalance_ratio=100),
                        verbose=False)
    assert b.class_counts[0] == 100 and b.class_counts[-1] == 1  # the IR-100 tail exists
    # torchvision still checks the files: a changed byte is a corrupt file
    f = folder / "data_batch_3"
    blob = bytearray(f.read_bytes())
    blob[-5] ^= 0xFF
    f.write_bytes(bytes(blob))
    with pytest.raises(data.DataError, match="corrupt.*data_batch_3"):
        data.load_cifar10(str(tmp_path), False)


def test_synthetic_dermamnist_is_read_by_medmnist_and_long_tailed(tmp_path):
    synthetic.write_synthetic_dermamnist(str(tmp_path))
    raw = data.load_dermamnist(str(tmp_path), False)
    assert raw.train_x.shape[1:] == (3, 28, 28) and raw.num_classes == 7
    counts = torch.bincount(raw.train_y, minlength=7).tolist()
    assert counts.index(max(counts)) == 5 and min(counts) >= 2  # nevi dominate, every class present
    assert max(counts) / min(counts) > 20


def test_tiny_refuses_a_data_set_it_cannot_synthesise_before_writing(fresh_profiles, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", str(fresh_profiles / "nowhere"))
    with pytest.raises(ConfigError, match="--tiny cannot synthesise data set 'fashion_mnist'"):
        tiny.prepare_profile("fashion", tiny=True, data_dir=str(fresh_profiles / "empty"))
    assert os.listdir(fresh_profiles / "tmp") == []  # nothing half-written
    assert "fashion-tiny" not in profiles.PROFILES


def test_tiny_uses_real_files_when_present(fresh_profiles):
    real = fresh_profiles / "real"
    synthetic.write_synthetic_dermamnist(str(real))
    os.remove(real / synthetic.SYNTHETIC_MARKER)  # stands for a real dermamnist.npz
    folder = tiny.tiny_data_dir(tiny.tiny_settings(PROFILES["paper"]), str(real))
    assert os.path.realpath(os.path.join(folder, "dermamnist.npz")) == str(real / "dermamnist.npz")
    assert os.path.isfile(os.path.join(folder, "cifar-10-batches-py", synthetic.SYNTHETIC_MARKER))


def _counting_model():
    calls = []
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))

    def hook(*_):
        calls.append(1)

    net.register_forward_hook(hook)
    return net, calls


@pytest.mark.parametrize("name,steps", [("pgd20", 20), ("pgd100", 100), ("cw_linf", 20), ("cw_l2", 100)])
def test_max_steps_caps_each_attack_and_is_recorded(name, steps):
    e = EvalConfig()
    assert describe_attack(name, e)["steps"] == steps
    capped = EvalConfig(max_steps=2)
    assert describe_attack(name, capped)["steps"] == 2
    torch.manual_seed(0)
    net, calls = _counting_model()
    x, y = torch.rand(3, 1, 4, 4), torch.tensor([0, 1, 2])
    get_attack(name)(net, x, y, capped, torch.Generator().manual_seed(0))
    assert 2 <= len(calls) <= 4  # two iterations (plus a start / final check), not 20 or 100


def test_autoattack_cap_is_recorded_only_when_set():
    assert "max_steps" not in describe_attack("autoattack", EvalConfig())
    assert describe_attack("autoattack", EvalConfig(max_steps=2))["max_steps"] == 2


def test_pipeline_paper_without_cifar_offline_stops_in_one_line(tmp_path, capsys):
    from lib.cli.main import main

    out = tmp_path / "out"
    code = main(["pipeline", "--profile", "paper", "--data-dir", str(tmp_path / "empty"), "--out-dir", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "needs cifar10" in err and "--download" in err and "--tiny" in err
    assert not out.exists()


def test_autoattack_on_cpu_with_a_large_test_set_says_how_long(monkeypatch):
    from lib.orchestrate import preflight

    with pytest.raises(ConfigError, match=r"AutoAttack on 10000 test images on the CPU: at least 13\.9 h"):
        preflight.check_autoattack_time("paper", "cpu", measure=lambda *a: 0.05)
    est = preflight.check_autoattack_time("paper", "cpu", measure=lambda *a: 1e-5)
    assert est["n_test"] == 10000 and est["estimate_s"] == pytest.approx(10.0)
    assert preflight.check_autoattack_time("demo", "cpu", measure=lambda *a: 1.0) is None  # no AutoAttack


def test_seconds_per_pass_is_measured():
    from lib.orchestrate.preflight import seconds_per_pass

    s = seconds_per_pass("small_cnn", (1, 8, 8), 10)
    assert 0 < s < 1


def test_index_of_a_tiny_run_says_so(tmp_path):
    from lib.orchestrate.pipeline import TINY_BANNER, write_index

    (tmp_path / "notebooks").mkdir()
    text = write_index(tmp_path, tiny=True).read_text()
    assert "<title>TAET kit outputs (tiny)" in text and html.escape(TINY_BANNER) in text
    assert "TINY" not in write_index(tmp_path).read_text()


def test_train_tiny_needs_a_profile(capsys):
    from lib.cli.main import main

    assert main(["train", "--tiny"]) == 2
    assert "--profile paper --tiny" in capsys.readouterr().err


def test_synthetic_images_are_learnable_class_prototypes(tmp_path):
    synthetic.write_synthetic_cifar(str(tmp_path))
    raw = data.load_cifar10(str(tmp_path), False)
    x = raw.train_x.float().flatten(1)
    means = torch.stack([x[raw.train_y == c].mean(0) for c in range(10)])
    nearest = torch.cdist(raw.test_x.float().flatten(1), means).argmin(1)
    assert (nearest == raw.test_y).float().mean() > 0.9  # a nearest-mean classifier separates the classes
    assert np.isfinite(x.numpy()).all()


def test_figures_of_a_tiny_run_are_stamped(tmp_path):
    from matplotlib.figure import Figure

    from lib.orchestrate.tiny import TINY_MARKER
    from lib.study.plots import save_figure

    plain, small = Figure(), Figure()
    save_figure(plain, "f", str(tmp_path / "full"))
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / TINY_MARKER).write_text("tiny\n")
    save_figure(small, "f", str(tmp_path / "tiny"))
    assert [t.get_text() for t in plain.texts] == []
    assert any("TINY RUN" in t.get_text() for t in small.texts)
    assert (tmp_path / "tiny" / "figures" / "f.png").exists()


def test_demo_stands_in_with_the_bundled_digits_on_every_machine(tmp_path):
    """Notebook 06 in the demo profile: digits, whether or not Fashion-MNIST is installed (it made 06 take 6-8 of
    the demo's minutes), long-tailed at DermaMNIST's ratio."""
    from lib.study import experiments as ex

    d = profiles.notebook_settings("demo")["derma"]
    picked, label, note = ex.derma_data(d, str(tmp_path / "data"))
    assert picked["dataset"] == "digits" and "digits" in label
    cfg = profiles.run_config("demo", "taet", data=picked, out_dir=str(tmp_path / "out"))
    b = data.build_data(cfg.data, verbose=False)
    assert b.class_counts[0] / b.class_counts[-1] > 20  # long-tailed at DermaMNIST's ratio


def test_a_standin_list_falls_back_past_a_missing_fashion_mnist(monkeypatch, tmp_path):
    """A list of stand-ins takes the first that loads, and the note says which one was missing."""
    from lib.study import experiments as ex

    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "no-such-package"))
    d = {**profiles.notebook_settings("demo")["derma"], "standin": ["fashion_mnist", "digits"]}
    picked, label, note = ex.derma_data(d, str(tmp_path / "data"))
    assert picked["dataset"] == "digits" and "digits" in label
    assert "fashion_mnist" in note and "not available either" in note


@pytest.mark.fashion_mnist
def test_a_standin_list_uses_fashion_mnist_when_the_package_is_there():
    from lib.study import experiments as ex

    d = {**profiles.notebook_settings("demo")["derma"], "standin": ["fashion_mnist", "digits"]}
    picked, _, _ = ex.derma_data(d)
    assert picked["dataset"] == "fashion_mnist"


def test_pipeline_passes_tiny_data_dir_and_download_to_every_notebook(fresh_profiles, monkeypatch, tmp_path):
    from lib.orchestrate import pipeline
    from lib.orchestrate.tiny import TINY_MARKER

    seen = []

    def fake_run(src, out, params, **kw):
        seen.append((src.name, dict(params)))
        return out / "notebooks" / src.name

    monkeypatch.setattr(pipeline, "run_notebook", fake_run)
    monkeypatch.chdir(tmp_path)
    pipeline.run_pipeline("smoke", tiny=True, data_dir="mydata", download=True, html_export=False)
    out = tmp_path / "outputs" / "tiny" / "smoke"
    assert len(seen) == len(pipeline.notebooks()) >= 7
    for _, params in seen:
        assert params == {"profile": "smoke", "device": "auto", "out_dir": str(out), "tiny": True,
                          "data_dir": str(tmp_path / "mydata"), "download": True}
    assert (out / TINY_MARKER).exists() and "(tiny)" in (out / "index.html").read_text()
    seen.clear()
    pipeline.run_pipeline("smoke", html_export=False)  # without the new flags: today's three parameters
    assert seen[0][1] == {"profile": "smoke", "device": "auto", "out_dir": str(tmp_path / "outputs")}


def test_train_tiny_shrinks_the_named_profile(fresh_profiles, tmp_path, capsys):
    import json

    from lib.cli.main import main

    out = tmp_path / "runs"
    assert main(["train", "--profile", "smoke", "--tiny", "--method", "taet", "--out-dir", str(out),
                 "--no-progress", "--device", "cpu"]) == 0
    (cfg_file,) = out.glob("*/config.json")
    cfg = json.loads(cfg_file.read_text())
    assert cfg["train"]["epochs"] == 3 and cfg["data"]["max_test"] == 10 and cfg["eval"]["max_steps"] == 1
    assert cfg["model"]["arch"] == "small_cnn" and cfg["method_args"]["ce_epochs"] == 2  # 1 of 2 -> 2 of 3


def test_tiny_fashion_links_the_idx_files_it_found(fresh_profiles):
    import gzip

    src = fresh_profiles / "mine"
    src.mkdir()
    imgs = np.zeros((20, 28, 28), np.uint8)
    labels = np.arange(20, dtype=np.uint8) % 10
    for stem, arr, magic in (("train-images-idx3-ubyte", imgs, 2051), ("train-labels-idx1-ubyte", labels, 2049),
                             ("t10k-images-idx3-ubyte", imgs, 2051), ("t10k-labels-idx1-ubyte", labels, 2049)):
        head = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
        with gzip.open(src / f"{stem}.gz", "wb") as f:
            f.write(head + arr.tobytes())
    name = tiny.prepare_profile("fashion", tiny=True, data_dir=str(src))
    folder = profiles.PROFILES[name].data["data_dir"]
    assert folder != str(src)  # DermaMNIST (notebook 06) was synthesised beside it
    raw = data.load_fashion_mnist(folder, False)
    assert len(raw.train_y) == 20
    assert os.path.realpath(os.path.join(folder, "fashion-mnist")) == str(src)


def test_evaluate_checks_autoattack_time_of_the_run():
    from lib.orchestrate.preflight import check_run_autoattack

    cfg = profile_config("smoke", "taet")  # 200 test images, no AutoAttack in its suite
    assert check_run_autoattack(cfg, None, "cpu", measure=lambda *a: 1.0) is None
    est = check_run_autoattack(cfg, ["autoattack"], "cpu", measure=lambda *a: 0.05)
    assert est["estimate_s"] == pytest.approx(200 * 100 * 0.05)
    with pytest.raises(ConfigError, match="AutoAttack on 200 test images on the CPU: at least 5.6 h"):
        check_run_autoattack(cfg, ["autoattack"], "cpu", measure=lambda *a: 1.0)
    assert check_run_autoattack(cfg, ["autoattack"], "cuda", measure=lambda *a: 1.0) is None


def test_autoattack_max_steps_caps_every_sub_attack():
    from lib.core.attacks import autoattack

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    counted = []
    net.register_forward_hook(lambda *_: counted.append(1))
    x = torch.rand(20, 1, 8, 8)
    y = net(x).argmax(1)  # every point clean-correct: every sub-attack runs on what survives
    counted.clear()
    xa = autoattack(net, x, y, eps=8 / 255, max_steps=1)
    assert (xa - x).abs().max() <= 8 / 255 + 1e-6
    assert len(counted) < 150  # uncapped: APGD-CE 100 + APGD-T 9x100 + FAB-T + Square 5000 queries


def test_autoattack_cap_also_limits_target_classes(monkeypatch):
    import pyautoattack

    from lib.core.attacks import autoattack

    seen = {}
    real_run = pyautoattack.AutoAttack.run_standard_evaluation

    def spy(self, x, y, **kw):
        seen.update(apgd_t=self.apgd_targeted.n_target_classes, fab=self.fab.n_target_classes,
                    iters=self.apgd.n_iter, queries=self.square.n_queries)
        return real_run(self, x, y, **kw)

    monkeypatch.setattr(pyautoattack.AutoAttack, "run_standard_evaluation", spy)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    x = torch.rand(4, 1, 8, 8)
    autoattack(net, x, net(x).argmax(1), eps=8 / 255, max_steps=1)
    assert seen == {"apgd_t": 2, "fab": 2, "iters": 1, "queries": 1}
    assert describe_attack("autoattack", EvalConfig(max_steps=1))["n_target_classes"] == "min(2, num_classes - 1)"


@pytest.mark.fashion_mnist
def test_tiny_shrinks_the_reduced_scale_too(fresh_profiles):
    from lib.orchestrate.tiny import TINY_DATA

    name = tiny.prepare_profile("fashion", tiny=True)
    red = profiles.reduced_scale(name)
    assert red["overrides"]["data"]["max_train"] == TINY_DATA["max_train"] and red["seeds"] == [0]
    assert red["full_scale_methods"] == ["ce", "at", "atbsl", "taet"]


def _write_jpeg_cifar(root, train=20, test=1):
    """A CIFAR-10 JPEG folder in the real layout (train/<class>/NNNN.jpg), `train` and `test` images per class."""
    from PIL import Image

    from lib.core.imagefolder import CIFAR10_CLASSES

    rng = np.random.RandomState(0)
    for split, n in (("train", train), ("test", test)):
        for c in CIFAR10_CLASSES:
            folder = root / "cifar10-jpeg" / split / c
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.randint(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:04d}.jpg")


def test_tiny_reads_the_jpeg_copy_where_cifar10s_batches_are_absent(fresh_profiles, monkeypatch):
    from lib.core import imagefolder
    from lib.core.train import train_run
    from lib.profiles import run_config

    monkeypatch.setattr(imagefolder, "CIFAR10_JPEG_PER_CLASS", {"train": 20, "test": 1})
    data_dir = fresh_profiles / "data"
    _write_jpeg_cifar(data_dir)
    name = tiny.prepare_profile("taet_notebook", tiny=True, data_dir=str(data_dir))
    p = profiles.PROFILES[name]
    assert p.data["dataset"] == "cifar10_jpeg" and p.notebooks.efficiency["dataset"] == "cifar10_jpeg"
    assert PROFILES["taet_notebook"].data["dataset"] == "cifar10"  # the profile itself is untouched
    cfg = run_config(name, "taet", device="cpu", out_dir=str(fresh_profiles / "out"))
    res = train_run(cfg, verbose=False)
    assert len(res.history) == cfg.train.epochs and cfg.data.resize_before_crop == tiny.TINY_RESIZE
    # with CIFAR-10's own batches in data_dir, those are read (no stand-in)
    synthetic.write_synthetic_cifar(str(data_dir))
    os.remove(data_dir / "cifar-10-batches-py" / synthetic.SYNTHETIC_MARKER)  # stands for the real files
    q = tiny.with_jpeg_standin(tiny.tiny_settings(PROFILES["taet_notebook"]), str(data_dir))
    assert q.data["dataset"] == "cifar10"
