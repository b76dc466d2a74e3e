"""lib.core.data: long-tail counts, subsampling, test protocols, loaders (on files in their real format),
augmentation."""

from __future__ import annotations

import gzip
import io
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib.core import data as D
from lib.core.config import ConfigError, DataConfig

# ---------------------------------------------------------------------------------------------------
# long_tail_counts
# ---------------------------------------------------------------------------------------------------


def test_exp_profile_matches_cifar10_lt():
    # LDAM / AT-BSL CIFAR-10-LT: 5000 head images.
    assert D.long_tail_counts(5000, 10, 10) == [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500]
    assert D.long_tail_counts(5000, 10, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert D.long_tail_counts(500, 100, 100)[-1] == 5


def test_step_profile_and_edges():
    assert D.long_tail_counts(5000, 10, 10, "step") == [5000] * 5 + [500] * 5
    assert D.long_tail_counts(100, 5, 4, "step") == [100, 100, 25, 25, 25]
    assert D.long_tail_counts(100, 1, 10) == [100]
    assert D.long_tail_counts(100, 4, 1) == [100] * 4


@pytest.mark.parametrize("args", [(100, 10, 0.5), (100, 0, 10), (100, 10, 10, "linear")])
def test_long_tail_counts_rejects_bad_input(args):
    with pytest.raises(ConfigError):
        D.long_tail_counts(*args)


def test_apportion_keeps_ratios_and_one_per_class():
    assert D.apportion([100, 50, 10], 1000) == [100, 50, 10]
    out = D.apportion([100, 50, 10, 1], 40)
    assert sum(out) == 40 and out[3] == 1 and out[0] > out[1] > out[2] >= 1
    assert sum(D.apportion([5, 5, 5], 2)) == 2


# ---------------------------------------------------------------------------------------------------
# build_data
# ---------------------------------------------------------------------------------------------------


def test_build_data_digits_follows_long_tail_counts(capsys):
    b = D.build_data(DataConfig(dataset="digits", imbalance_ratio=10), verbose=True)
    raw = D.DATASETS["digits"]("data", False)
    have = D.class_counts(raw.train_y, 10)  # the digits split is not exactly balanced: 124..128 per class
    assert b.class_counts == [min(n, h) for n, h in zip(D.long_tail_counts(max(have), 10, 10), have)]
    assert D.class_counts(b.train_y, 10) == b.class_counts
    assert b.train_x.dtype == torch.uint8 and b.train_x.shape[1:] == (1, 8, 8)
    assert (b.channels, b.image_size, b.num_classes) == (1, 8, 10)
    assert f"train counts per class: {b.class_counts}" in capsys.readouterr().out
    assert "total" in b.describe() and len(b.describe().splitlines()) == 13


def test_subsampling_is_seeded():
    y = torch.arange(10).repeat_interleave(50)
    counts = D.long_tail_counts(50, 10, 10)
    a, b, c = (D.subsample_indices(y, counts, s) for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert D.class_counts(y[a], 10) == counts
    x0 = D.build_data(DataConfig(dataset="digits", seed=0), verbose=False).train_x
    assert torch.equal(x0, D.build_data(DataConfig(dataset="digits", seed=0), verbose=False).train_x)
    assert not torch.equal(x0, D.build_data(DataConfig(dataset="digits", seed=1), verbose=False).train_x)


def test_subsampling_matches_ldam_draw():
    # LDAM's IMBALANCECIFAR: np.random.seed(0); per class: shuffle its indices, keep the first n_c.
    y = np.random.RandomState(5).randint(0, 4, 200)
    counts = [40, 20, 10, 5]
    np.random.seed(0)
    ref = []
    for c, n in enumerate(counts):
        idx = np.where(y == c)[0]
        np.random.shuffle(idx)
        ref.extend(idx[:n].tolist())
    assert D.subsample_indices(torch.from_numpy(y), counts, 0).tolist() == sorted(ref)


def test_test_protocols():
    raw = D.DATASETS["digits"]("data", False)
    bal = D.build_data(DataConfig(dataset="digits", test_protocol="balanced"), verbose=False)
    lt = D.build_data(DataConfig(dataset="digits", test_protocol="long_tailed", imbalance_ratio=10), verbose=False)
    assert D.class_counts(bal.test_y, 10) == D.class_counts(raw.test_y, 10)
    have = D.class_counts(raw.test_y, 10)
    assert D.class_counts(lt.test_y, 10) == [min(n, h) for n, h in zip(D.long_tail_counts(max(have), 10, 10), have)]
    assert lt.test_protocol == "long_tailed"


def test_max_test_and_max_train_are_stratified():
    full = D.build_data(DataConfig(dataset="digits"), verbose=False)
    b = D.build_data(DataConfig(dataset="digits", max_test=50, max_train=200), verbose=False)
    assert len(b.test_y) == 50 and min(D.class_counts(b.test_y, 10)) >= 4
    assert sum(b.class_counts) == 200 and min(b.class_counts) >= 1
    ratio = np.array(b.class_counts) / np.array(full.class_counts)
    assert ratio.max() - ratio.min() < 0.1  # same class ratios as the long-tailed set
    assert torch.equal(b.test_x, D.build_data(DataConfig(dataset="digits", max_test=50), verbose=False).test_x)


@pytest.mark.parametrize("field,value,match", [("dataset", "imagenet", "valid"), ("imbalance_ratio", 0.5, ">= 1"),
                                               ("lt_profile", "linear", "valid"),
                                               ("test_protocol", "both", "valid"), ("max_test", 0, ">= 1")])
def test_build_data_validates_first(field, value, match, monkeypatch):
    monkeypatch.setitem(D.DATASETS, "digits", lambda *a: pytest.fail("loaded before validating"))
    with pytest.raises(ConfigError, match=match):
        D.build_data(DataConfig(**{"dataset": "digits", field: value}), verbose=False)


def test_too_large_imbalance_ratio_is_explained():
    with pytest.raises(ConfigError, match="no training image"):
        D.build_data(DataConfig(dataset="digits", imbalance_ratio=1000), verbose=False)


def test_synthetic_is_deterministic():
    a, b = D.DATASETS["synthetic"]("", False), D.DATASETS["synthetic"]("", False)
    assert torch.equal(a.train_x, b.train_x) and a.train_x.shape == (2000, 1, 8, 8) and a.test_x.shape[0] == 500
    # learnable: nearest class mean classifies the test set
    means = torch.stack([a.train_x[a.train_y == c].float().mean(0) for c in range(10)]).flatten(1)
    pred = torch.cdist(a.test_x.float().flatten(1), means).argmin(1)
    assert (pred == a.test_y).float().mean() > 0.95


# ---------------------------------------------------------------------------------------------------
# Augmentation and batches
# ---------------------------------------------------------------------------------------------------


def _images(n=64, c=3, h=8, w=8):
    return torch.randint(1, 256, (n, c, h, w), generator=torch.Generator().manual_seed(0)).to(torch.uint8)


def test_augment_shape_dtype_range():
    x = _images()
    out = D.augment_batch(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    assert (out == 0).any()  # zero padding shows up (x has no zeros)


def test_crop_is_shifted_copy_and_flip_mirrors():
    x, p = _images(), 4
    top, left, flipped = D.crop_flip_params(len(x), torch.Generator().manual_seed(2), padding=p)
    out = D.apply_crop_flip(x, top, left, flipped, padding=p)
    padded = F.pad(x, (p, p, p, p))
    for i in (0, int(flipped.nonzero()[0]), int((~flipped).nonzero()[0])):
        ref = padded[i, :, top[i]: top[i] + 8, left[i]: left[i] + 8]
        assert torch.equal(out[i], ref.flip(-1) if flipped[i] else ref)
    assert top.min() >= 0 and top.max() <= 2 * p and left.max() <= 2 * p


def test_augment_uses_generator_and_flips_about_half():
    x = _images(n=2000, c=1, h=4, w=4)
    _, _, flipped = D.crop_flip_params(2000, torch.Generator().manual_seed(3))
    assert 0.45 < flipped.float().mean() < 0.55
    a = D.augment_batch(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, D.augment_batch(x, torch.Generator().manual_seed(4)))
    no_aug = D.augment_batch(x, torch.Generator().manual_seed(4), padding=0, flip=False)
    assert torch.equal(no_aug, D.to_float(x))


def test_iterate_batches_covers_every_sample_once():
    x = torch.arange(103, dtype=torch.uint8).view(103, 1, 1, 1)
    y = torch.arange(103)
    g = torch.Generator().manual_seed(0)
    batches = list(D.iterate_batches(x, y, 10, generator=g))
    assert len(batches) == 11 and sorted(torch.cat([b[1] for b in batches]).tolist()) == list(range(103))
    for xb, yb in batches:
        assert torch.equal(xb.flatten(), yb.float() / 255)  # no-augment path is x / 255, pairs kept
    assert len(list(D.iterate_batches(x, y, 10, generator=g, drop_last=True))) == 10
    plain = list(D.iterate_batches(x, y, 50, generator=None, shuffle=False))
    assert plain[0][1].tolist() == list(range(50))
    aug = list(D.iterate_batches(_images(20), torch.zeros(20, dtype=torch.long), 8, generator=g, augment=True))
    assert [len(b[1]) for b in aug] == [8, 8, 4]


def test_iterate_batches_resumes_from_generator_state():
    x, y = _images(30), torch.arange(30)
    g = torch.Generator().manual_seed(7)
    state = g.get_state()
    first = [b[0] for b in D.iterate_batches(x, y, 8, generator=g, augment=True)]
    g.set_state(state)
    again = [b[0] for b in D.iterate_batches(x, y, 8, generator=g, augment=True)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))


# ---------------------------------------------------------------------------------------------------
# CIFAR-10 on files in the real on-disk format (Python 2 pickles of dicts)
# ---------------------------------------------------------------------------------------------------


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 `str` (BINSTRING), as in the real CIFAR files: torchvision's
    `pickle.load(f, encoding="latin1")` then sees str keys ('data', 'labels') like with the originals."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        self.write(pickle.BINSTRING + len(obj).to_bytes(4, "little") + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def _write_py2_pickle(path, obj):
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def _write_cifar10(root, per_file=6):
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)
    rng = np.random.RandomState(0)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        labels = [(i + j) % 10 for j in range(per_file)]
        _write_py2_pickle(os.path.join(folder, name), {
            b"batch_label": name.encode(), b"labels": labels,
            b"data": rng.randint(0, 256, (per_file, 3072)).astype(np.uint8),
            b"filenames": [f"{j}.png".encode() for j in range(per_file)]})
    names = [n.encode() for n in ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                  "truck"]]
    _write_py2_pickle(os.path.join(folder, "batches.meta"),
                      {b"label_names": names, b"num_cases_per_batch": per_file, b"num_vis": 3072})
    return folder


@pytest.fixture
def no_md5(monkeypatch):
    """torchvision checks each CIFAR file's md5 against the real data; our small files cannot match, so the
    test turns the check off (the class's `_check_integrity` and the module's `check_integrity` for the meta)."""
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)


def test_cifar10_loads_real_format(tmp_path, no_md5):
    folder = _write_cifar10(str(tmp_path))
    raw = D.DATASETS["cifar10"](str(tmp_path), False)
    assert raw.train_x.shape == (30, 3, 32, 32) and raw.train_x.dtype == torch.uint8
    assert raw.test_x.shape == (6, 3, 32, 32) and raw.test_y.dtype == torch.int64
    assert raw.train_y[:6].tolist() == list(range(6)) and raw.class_names[0] == "airplane"
    with open(os.path.join(folder, "data_batch_1"), "rb") as f:
        first = pickle.load(f, encoding="latin1")["data"][0]
    assert torch.equal(raw.train_x[0], torch.from_numpy(first).view(3, 32, 32))  # CHW as stored
    assert raw.num_classes == 10 and len(raw.mean) == 3
    with open(os.path.join(folder, "data_batch_3"), "wb") as f:
        f.write(b"not a pickle at all")
    with pytest.raises(D.DataError, match="data_batch_3"):
        D.DATASETS["cifar10"](str(tmp_path), False)


def test_cifar10_missing_or_corrupt_names_folder_and_files(tmp_path):
    with pytest.raises(D.DataError) as e:
        D.DATASETS["cifar10"](str(tmp_path), False)
    msg = str(e.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "data_batch_1" in msg and "test_batch" in msg
    assert "--download" in msg and "\n" not in msg
    _write_cifar10(str(tmp_path))  # present, but md5 does not match the real files
    with pytest.raises(D.DataError, match="md5"):
        D.DATASETS["cifar10"](str(tmp_path), False)


# ---------------------------------------------------------------------------------------------------
# DermaMNIST (medmnist's npz; medmnist checks md5 only when downloading)
# ---------------------------------------------------------------------------------------------------


def test_dermamnist_loads_npz_and_is_kept_natural(tmp_path, capsys):
    rng = np.random.RandomState(0)
    arrays = {}
    for split, n in (("train", 40), ("val", 5), ("test", 14)):
        arrays[f"{split}_images"] = rng.randint(0, 256, (n, 28, 28, 3)).astype(np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 7).reshape(n, 1)
    np.savez(tmp_path / "dermamnist.npz", **arrays)
    raw = D.DATASETS["dermamnist"](str(tmp_path), False)
    assert raw.train_x.shape == (40, 3, 28, 28) and raw.train_y.shape == (40,) and raw.num_classes == 7
    assert torch.equal(raw.train_x[1].permute(1, 2, 0), torch.from_numpy(arrays["train_images"][1]))
    b = D.build_data(DataConfig(dataset="dermamnist", data_dir=str(tmp_path), imbalance_ratio=100))
    assert b.class_counts == D.class_counts(raw.train_y, 7) and len(b.test_y) == 14 and b.natural_long_tail
    assert "naturally long-tailed" in capsys.readouterr().out


def test_notebook06_uses_dermamnist_when_present_else_a_standin_at_its_train_ratio(tmp_path):
    from lib.study.experiments import DERMA_TRAIN_RATIO, derma_data

    d = {"dataset": "dermamnist", "standin": "digits", "max_test": 100}
    data, label, note = derma_data(d, data_dir=str(tmp_path))
    assert data["dataset"] == "digits" and data["imbalance_ratio"] == pytest.approx(4693 / 80)
    assert "stand-in digits at IR 58.7" in label and "not* dermamnist results" in note
    b = D.build_data(DataConfig(**data), verbose=False)
    assert max(b.class_counts) / min(b.class_counts) == pytest.approx(DERMA_TRAIN_RATIO, rel=0.1)
    assert len(b.test_y) == 100
    with pytest.raises(D.DataError, match="dermamnist.npz"):  # no stand-in: the missing file is the error
        derma_data({"dataset": "dermamnist", "standin": None}, data_dir=str(tmp_path))

    rng = np.random.RandomState(0)
    np.savez(tmp_path / "dermamnist.npz", **{f"{s}_{k}": (rng.randint(0, 256, (14, 28, 28, 3)).astype(np.uint8)
                                                           if k == "images" else (np.arange(14) % 7).reshape(14, 1))
                                              for s in ("train", "val", "test") for k in ("images", "labels")})
    data, label, _ = derma_data(d, data_dir=str(tmp_path))
    # native size: a profile's 224-px path (taet_notebook's, for CIFAR-10) is not DermaMNIST's (ViT resizes inside)
    assert data == {"dataset": "dermamnist", "data_dir": str(tmp_path), "resize_before_crop": None, "max_test": 100}
    assert label == "DermaMNIST"


def test_dermamnist_missing_or_broken(tmp_path):
    with pytest.raises(D.DataError, match="dermamnist.npz") as e:
        D.DATASETS["dermamnist"](str(tmp_path), False)
    assert str(tmp_path) in str(e.value) and "--download" in str(e.value)
    (tmp_path / "dermamnist.npz").write_bytes(b"garbage")
    with pytest.raises(D.DataError, match="cannot read"):
        D.DATASETS["dermamnist"](str(tmp_path), False)


# ---------------------------------------------------------------------------------------------------
# Fashion-MNIST (IDX gz files)
# ---------------------------------------------------------------------------------------------------


def _write_idx(path, arr, magic):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def _write_fashion(folder, n_train=20, n_test=10):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(os.path.join(folder, f"{split}-images-idx3-ubyte.gz"), rng.randint(0, 256, (n, 28, 28)), 2051)
        _write_idx(os.path.join(folder, f"{split}-labels-idx1-ubyte.gz"), np.arange(n) % 10, 2049)


@pytest.mark.parametrize("sub", ["", "fashion-mnist", "FashionMNIST/raw"])
def test_fashion_mnist_from_data_dir(tmp_path, sub):
    _write_fashion(str(tmp_path / sub))
    raw = D.DATASETS["fashion_mnist"](str(tmp_path), False)
    assert raw.train_x.shape == (20, 1, 28, 28) and raw.test_x.shape == (10, 1, 28, 28)
    assert raw.train_y.tolist() == [i % 10 for i in range(20)] and raw.class_names[-1] == "Ankle boot"


def test_fashion_mnist_bad_magic_or_truncated_names_file(tmp_path):
    _write_fashion(str(tmp_path))
    bad = str(tmp_path / "t10k-labels-idx1-ubyte.gz")
    _write_idx(bad, np.arange(10), 2051)
    with pytest.raises(D.DataError, match="t10k-labels-idx1-ubyte.gz.*magic"):
        D.DATASETS["fashion_mnist"](str(tmp_path), False)
    with gzip.open(bad, "wb") as f:
        f.write((2049).to_bytes(4, "big") + (10).to_bytes(4, "big") + bytes(5))
    with pytest.raises(D.DataError, match="t10k-labels-idx1-ubyte.gz is truncated"):
        D.DATASETS["fashion_mnist"](str(tmp_path), False)


def test_fashion_mnist_missing_everywhere(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(D.DataError, match="apt-get install dataset-fashion-mnist") as e:
        D.DATASETS["fashion_mnist"](str(tmp_path), False)
    assert str(tmp_path / "nowhere") in str(e.value) and "--data-dir" in str(e.value)


def test_no_system_data_hides_the_system_folder(tmp_path, monkeypatch):
    """TAET_KIT_NO_SYSTEM_DATA: a machine with the Debian package looks like one without it (CI's first pass)."""
    system = tmp_path / "system"
    _write_fashion(str(system))
    monkeypatch.setattr(D, "FASHION_MNIST_SYSTEM_DIR", str(system))
    monkeypatch.delenv(D.NO_SYSTEM_DATA_ENV, raising=False)
    assert D.DATASETS["fashion_mnist"](str(tmp_path / "empty"), False).train_x.shape == (20, 1, 28, 28)
    monkeypatch.setenv(D.NO_SYSTEM_DATA_ENV, "1")
    with pytest.raises(D.DataError, match=f"{D.NO_SYSTEM_DATA_ENV} is set: {system} not searched"):
        D.DATASETS["fashion_mnist"](str(tmp_path / "empty"), False)
    _write_fashion(str(tmp_path / "mine"))  # the user's own --data-dir is still searched
    assert D.DATASETS["fashion_mnist"](str(tmp_path / "mine"), False).test_x.shape == (10, 1, 28, 28)
    monkeypatch.setenv(D.NO_SYSTEM_DATA_ENV, "0")  # "0" means not set
    assert D.system_data_dirs() == [str(system)]


@pytest.mark.fashion_mnist
def test_fashion_mnist_debian_files(tmp_path):
    raw = D.DATASETS["fashion_mnist"](str(tmp_path), False)
    assert raw.train_x.shape == (60000, 1, 28, 28) and raw.test_x.shape == (10000, 1, 28, 28)
    assert D.class_counts(raw.train_y, 10) == [6000] * 10
