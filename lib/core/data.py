"""Datasets, long-tail subsampling, train/test protocols and device-resident batches.

Every loader returns uint8 images (N, C, H, W) and int64 labels; :func:`build_data` subsamples the train set
to a long tail (the LDAM / AT-BSL recipe), applies the test protocol, and moves everything to the device once.
Crop and flip then run on the device, for a whole batch at a time (:func:`augment_batch`); with
``resize_before_crop`` the images are first resized there, once (:func:`resize_images`).
"""

from __future__ import annotations

import gzip
import os
import pickle
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lib.core.batches import (  # noqa: F401  (re-exported: the data walk's batch half)
    RESIZE_CHUNK,
    apply_crop_flip,
    augment_batch,
    crop_flip_params,
    iterate_batches,
    resize_images,
    to_float,
)
from lib.core.config import ConfigError, DataConfig
from lib.core.synthetic import synthetic_checksums


class DataError(ConfigError):
    """A data set is missing or unreadable; the message says where the kit looked and how to fix it."""


LT_PROFILES = ("exp", "step")
TEST_PROTOCOLS = ("balanced", "long_tailed")
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist
# Set (to anything but "" or "0"): system-wide data folders are not searched, as on a fresh machine without the Debian
# data packages. CI runs the test suite so (.ci/run), then only the tests that need Fashion-MNIST with the package.
NO_SYSTEM_DATA_ENV = "TAET_KIT_NO_SYSTEM_DATA"


def system_data_dirs() -> list[str]:
    """The system-wide folders searched after --data-dir (Debian's dataset-fashion-mnist); none when
    TAET_KIT_NO_SYSTEM_DATA is set."""
    if os.environ.get(NO_SYSTEM_DATA_ENV, "") not in ("", "0"):
        return []
    return [FASHION_MNIST_SYSTEM_DIR]


# ---------------------------------------------------------------------------------------------------
# Long-tail counts and subsampling
# ---------------------------------------------------------------------------------------------------
def long_tail_counts(n_max: int, num_classes: int, imbalance_ratio: float, profile: str = "exp") -> list[int]:
    """Images per class of a long-tailed set, class 0 the head (LDAM's `get_img_num_per_cls`, used by AT-BSL).

    exp:  n_c = int(n_max * (1/IR)^(c/(C-1)));  step: the first C//2 classes get n_max, the rest int(n_max/IR).
    """
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    if n_max < 1:
        raise ConfigError(f"n_max must be >= 1, got {n_max}")
    if not imbalance_ratio >= 1:
        raise ConfigError(f"imbalance ratio must be >= 1 (n_max / n_min; 1 = balanced), got {imbalance_ratio}")
    if profile not in LT_PROFILES:
        raise ConfigError(f"unknown long-tail profile {profile!r}; valid: {list(LT_PROFILES)}")
    factor = 1.0 / imbalance_ratio  # LDAM's imb_factor
    if num_classes == 1:
        return [int(n_max)]
    if profile == "exp":
        return [int(n_max * factor ** (c / (num_classes - 1.0))) for c in range(num_classes)]
    half = num_classes // 2
    return [int(n_max) if c < half else int(n_max * factor) for c in range(num_classes)]


def subsample_indices(labels: torch.Tensor, counts: list[int], seed: int) -> torch.Tensor:
    """Sorted indices keeping `counts[c]` random images of each class c (fewer if the class has fewer).

    Same draw as LDAM's IMBALANCECIFAR: ``np.random.seed(seed)``, then per class in order shuffle its indices
    and keep the first n_c, so CIFAR-10-LT here is the same subset as in LDAM / AT-BSL.
    """
    rng = np.random.RandomState(seed)
    y = labels.cpu().numpy()
    keep = []
    for c, n in enumerate(counts):
        idx = np.where(y == c)[0]
        rng.shuffle(idx)
        keep.append(idx[:n])
    return torch.from_numpy(np.sort(np.concatenate(keep))).long()


def apportion(counts: list[int], total: int) -> list[int]:
    """Split `total` over classes in proportion to `counts` (largest remainder), >= 1 per non-empty class
    when `total` allows, never more than a class has."""
    counts_a = np.asarray(counts, dtype=np.int64)
    if total >= counts_a.sum():
        return counts_a.tolist()
    floor = ((counts_a > 0) & (total >= (counts_a > 0).sum())).astype(np.int64)  # the reserved 1 per class
    rest, pool = counts_a - floor, total - floor.sum()
    quota = rest * pool / max(rest.sum(), 1)
    out = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - out), kind="stable")
    out[order[: pool - out.sum()]] += 1
    return (out + floor).tolist()


def class_counts(labels: torch.Tensor, num_classes: int) -> list[int]:
    return torch.bincount(labels.cpu(), minlength=num_classes).tolist()


# ---------------------------------------------------------------------------------------------------
# Dataset registry
# ---------------------------------------------------------------------------------------------------
@dataclass
class RawData:
    """A data set as stored: uint8 images (N, C, H, W), int64 labels, per-channel mean/std in [0, 1] units."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]


Loader = Callable[[str, bool], RawData]
DATASETS: dict[str, Loader] = {}  # also filled by lib/core/imagefolder.py (imported by lib/core/__init__.py)


def register_dataset(name: str, *, natural_long_tail: bool = False) -> Callable[[Loader], Loader]:
    """Register a loader ``(data_dir, download) -> RawData``. ``natural_long_tail=True``: its train set is
    already long-tailed, so :func:`build_data` keeps it as is instead of subsampling it."""

    def wrap(fn: Loader) -> Loader:
        fn.natural_long_tail = natural_long_tail
        DATASETS[name] = fn
        return fn

    return wrap


def _stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units."""
    xf = x.double().div(255).transpose(0, 1).reshape(x.shape[1], -1)
    return tuple(round(v, 4) for v in xf.mean(1).tolist()), tuple(round(v, 4) for v in xf.std(1).tolist())


def _nhwc(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()


# CIFAR -----------------------------------------------------------------------------------------------
_CIFAR_STATS = {  # per-pixel mean/std of the train sets
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _load_cifar(name: str, data_dir: str, download: bool) -> RawData:
    from torchvision.datasets import CIFAR10, CIFAR100
    from torchvision.datasets.utils import check_integrity

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    folder = os.path.join(data_dir, cls.base_folder)
    cls = synthetic_checksums(cls, folder)  # torchvision's class, with a --tiny synthetic folder's own md5s
    files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    train_files = [f for f, _ in cls.train_list]
    listed = [f"{train_files[0][:-1]}1..{len(train_files)}"] if len(train_files) > 1 else train_files
    expected = f"{cls.base_folder}/{{{', '.join(listed + files[len(train_files):])}}}"
    fix = f"run with --download, or place the files of {cls.url} there"
    if download:
        os.makedirs(data_dir, exist_ok=True)
    try:
        train, test = (cls(root=data_dir, train=t, download=download) for t in (True, False))
    except RuntimeError:  # torchvision: "not found or corrupted" (its md5 check failed)
        missing = [f for f in files if not os.path.isfile(os.path.join(folder, f))]
        if len(missing) == len(files):
            raise DataError(f"{name}: no data in {folder} (expected {expected}); {fix}") from None
        if missing:
            raise DataError(f"{name}: missing {missing} in {folder} (expected {expected}); {fix}") from None
        md5s = dict(cls.train_list + cls.test_list, **{cls.meta["filename"]: cls.meta["md5"]})
        bad = [f for f in files if not check_integrity(os.path.join(folder, f), md5s[f])]
        raise DataError(f"{name}: corrupt file(s) {bad} in {folder} (md5 mismatch); delete them and {fix}") from None
    except OSError as e:  # download failure (URLError) or an unreadable file
        if download:
            raise DataError(f"{name}: download of {cls.url} failed ({e}); extract it by hand so that "
                            f"{os.path.join(data_dir, expected)} exist") from e
        raise DataError(f"{name}: cannot read {expected} in {data_dir} ({e}); {fix}") from e
    except Exception as e:  # a pickle that passed the md5 check but does not unpickle to the expected dict
        raise DataError(f"{name}: cannot read {_bad_pickle(folder, files)} in {folder} ({type(e).__name__}: {e}); "
                        f"delete it and {fix}") from e
    mean, std = _CIFAR_STATS[name]
    return RawData(_nhwc(train.data), torch.tensor(train.targets, dtype=torch.int64), _nhwc(test.data),
                   torch.tensor(test.targets, dtype=torch.int64), len(train.classes), list(train.classes), mean, std)


def _bad_pickle(folder: str, files: list[str]) -> str:
    """The first file in `folder` that does not unpickle to a dict (to name it in an error)."""
    for f in files:
        try:
            with open(os.path.join(folder, f), "rb") as fh:
                if not isinstance(pickle.load(fh, encoding="latin1"), dict):
                    return f
        except Exception:
            return f
    return "a file"


@register_dataset("cifar10")
def load_cifar10(data_dir: str, download: bool) -> RawData:
    """CIFAR-10 via torchvision (50000 train / 10000 test, 3x32x32)."""
    return _load_cifar("cifar10", data_dir, download)


@register_dataset("cifar100")
def load_cifar100(data_dir: str, download: bool) -> RawData:
    """CIFAR-100 via torchvision (50000 train / 10000 test, 3x32x32)."""
    return _load_cifar("cifar100", data_dir, download)


# DermaMNIST --------------------------------------------------------------------------------------------
@register_dataset("dermamnist", natural_long_tail=True)
def load_dermamnist(data_dir: str, download: bool) -> RawData:
    """DermaMNIST (MedMNIST v2, 7 skin-lesion classes, 3x28x28): its own, naturally long-tailed train and
    test splits (the val split is not used)."""
    import medmnist
    from medmnist.info import INFO

    path = os.path.join(data_dir, "dermamnist.npz")
    if download:
        os.makedirs(data_dir, exist_ok=True)
    elif not os.path.isfile(path):
        raise DataError(f"dermamnist: dermamnist.npz not found in {data_dir}; run with --download, "
                        f"or place the file from {INFO['dermamnist']['url']} there")
    try:
        train, test = (medmnist.DermaMNIST(split=s, root=data_dir, download=download, size=28)
                       for s in ("train", "test"))
        xs = [np.asarray(d.imgs, dtype=np.uint8) for d in (train, test)]
        ys = [torch.from_numpy(np.asarray(d.labels).reshape(-1).astype(np.int64)) for d in (train, test)]
    except RuntimeError as e:  # medmnist: download failed
        raise DataError(f"dermamnist: download of dermamnist.npz into {data_dir} failed; download "
                        f"{INFO['dermamnist']['url']} by hand and place it there") from e
    except Exception as e:  # a broken npz or one without the expected keys
        raise DataError(f"dermamnist: cannot read {path} ({type(e).__name__}: {e}); delete it and run with "
                        f"--download") from e
    if xs[0].ndim != 4 or xs[0].shape[-1] != 3:
        raise DataError(f"dermamnist: {path} has images of shape {xs[0].shape}, expected (N, 28, 28, 3); "
                        f"replace it with the 28 px file")
    train_x = _nhwc(xs[0])
    labels = INFO["dermamnist"]["label"]
    mean, std = _stats(train_x)
    return RawData(train_x, ys[0], _nhwc(xs[1]), ys[1], len(labels), [labels[str(i)] for i in range(len(labels))],
                   mean, std)


# Fashion-MNIST -----------------------------------------------------------------------------------------
FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]


def read_idx(path: str, magic: int) -> np.ndarray:
    """Read an IDX file (gzip or plain) of unsigned bytes: magic 2051 for images (N, H, W), 2049 for labels (N,)."""
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path} ({e}); replace it with the original file") from e
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found != magic:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (magic {found}, expected {magic}); "
                        f"replace it with the original file")
    ndim = magic & 0xFF
    head = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != head + int(np.prod(shape)):
        raise DataError(f"{path} is truncated or too long ({len(data) - head} bytes of data for shape {shape}); "
                        f"replace it with the original file")
    return np.frombuffer(data, dtype=np.uint8, offset=head).reshape(shape)


def _find_fashion(data_dir: str) -> dict[str, str] | None:
    """The four IDX files (gzipped or not) from the first folder that has them all, else None."""
    for folder in (data_dir, os.path.join(data_dir, "fashion-mnist"), os.path.join(data_dir, "FashionMNIST", "raw"),
                   *system_data_dirs()):
        found = {}
        for f in FASHION_FILES:
            for p in (os.path.join(folder, f + ".gz"), os.path.join(folder, f)):
                if os.path.isfile(p):
                    found[f] = p
                    break
        if len(found) == len(FASHION_FILES):
            return found
    return None


@register_dataset("fashion_mnist")
def load_fashion_mnist(data_dir: str, download: bool) -> RawData:
    """Fashion-MNIST (60000 train / 10000 test, 1x28x28) from the standard IDX files, looked for in data_dir,
    data_dir/fashion-mnist, data_dir/FashionMNIST/raw, then the Debian package's folder; with `download`, fetched
    by torchvision's FashionMNIST when none has them."""
    files = _find_fashion(data_dir)
    if files is None and download:  # torchvision's own class fetches the IDX files into data_dir/FashionMNIST/raw
        from torchvision.datasets import FashionMNIST

        try:
            FashionMNIST(root=data_dir, train=True, download=True)
        except (OSError, RuntimeError) as e:
            raise DataError(f"fashion_mnist: download into {data_dir} failed ({e}); run "
                            f"`apt-get install dataset-fashion-mnist` or put the IDX files in --data-dir") from e
        files = _find_fashion(data_dir)
    if files is None:
        raise DataError(f"fashion_mnist: {', '.join(f + '.gz' for f in FASHION_FILES)} not found in {data_dir} "
                        f"(or its fashion-mnist/, FashionMNIST/raw/)"
                        + (f" nor in {FASHION_MNIST_SYSTEM_DIR}" if system_data_dirs() else
                           f" ({NO_SYSTEM_DATA_ENV} is set: {FASHION_MNIST_SYSTEM_DIR} not searched)") + "; "
                        "run `apt-get install dataset-fashion-mnist` or put the files in --data-dir")
    tx, ty, vx, vy = (read_idx(files[f], 2051 if "images" in f else 2049) for f in FASHION_FILES)
    for xs, ys, fx, fy in ((tx, ty, *FASHION_FILES[:2]), (vx, vy, *FASHION_FILES[2:])):
        if len(xs) != len(ys):
            raise DataError(f"{files[fx]} has {len(xs)} images but {files[fy]} has {len(ys)} labels; "
                            f"replace them with the original files")
    as_x = lambda a: torch.from_numpy(a.copy()).unsqueeze(1)  # noqa: E731
    as_y = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    return RawData(as_x(tx), as_y(ty), as_x(vx), as_y(vy), 10, list(FASHION_CLASSES), (0.2860,), (0.3530,))


# Small built-in sets -----------------------------------------------------------------------------------
@register_dataset("digits")
def load_digits(data_dir: str, download: bool) -> RawData:
    """scikit-learn's 8x8 digits (1797 images, values 0..16 -> uint8 round(v*255/16)); no official split, so a
    seeded stratified 70/30 split (random_state=0): about 125 train images per class."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    d = sk_digits()
    x = torch.from_numpy(np.round(d.images * 255.0 / 16.0).astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    tr, te = train_test_split(np.arange(len(y)), test_size=0.3, random_state=0, stratify=d.target)
    tr, te = torch.from_numpy(np.sort(tr)), torch.from_numpy(np.sort(te))
    mean, std = _stats(x[tr])
    return RawData(x[tr], y[tr], x[te], y[te], 10, [str(i) for i in range(10)], mean, std)


@register_dataset("synthetic")
def load_synthetic(data_dir: str, download: bool) -> RawData:
    """Tiny, deterministic, learnable: 10 classes of 1x8x8 images, each a fixed random prototype plus
    Gaussian noise (std 0.12); 200 train and 50 test images per class."""
    rng = np.random.RandomState(1234)
    protos = rng.rand(10, 1, 8, 8)

    def draw(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = np.repeat(np.arange(10), per_class)
        x = protos[y] + 0.12 * rng.randn(len(y), 1, 8, 8)
        return torch.from_numpy(np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)), torch.from_numpy(y)

    (tx, ty), (vx, vy) = draw(200), draw(50)
    mean, std = _stats(tx)
    return RawData(tx, ty, vx, vy, 10, [f"c{i}" for i in range(10)], mean, std)


# ---------------------------------------------------------------------------------------------------
# The bundle a run trains and evaluates on
# ---------------------------------------------------------------------------------------------------
@dataclass
class DataBundle:
    """Device-resident data of a run: uint8 images (N, C, H, W), int64 labels, and what produced them."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    class_counts: list[int]  # of the (long-tailed) train set, what balanced softmax and the methods use
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: int
    image_size: int
    test_protocol: str
    natural_long_tail: bool = False

    def describe(self) -> str:
        """A per-class table of train / test counts."""
        test = class_counts(self.test_y, self.num_classes)
        w = max([5] + [len(n) for n in self.class_names])
        lines = [f"{self.name}: {self.num_classes} classes, {self.channels}x{self.image_size}x{self.image_size}, "
                 f"test protocol {self.test_protocol}",
                 f"{'class':>5}  {'name':<{w}}  {'train':>6}  {'test':>6}"]
        for c, name in enumerate(self.class_names):
            lines.append(f"{c:>5}  {name:<{w}}  {self.class_counts[c]:>6}  {test[c]:>6}")
        lines.append(f"{'':>5}  {'total':<{w}}  {sum(self.class_counts):>6}  {sum(test):>6}")
        return "\n".join(lines)


def validate_data_config(cfg: DataConfig) -> None:
    """Raise ConfigError on a bad DataConfig; cheap, so it runs before anything is loaded."""
    if cfg.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {cfg.dataset!r}; valid: {sorted(DATASETS)}")
    if not cfg.imbalance_ratio >= 1:
        raise ConfigError(f"imbalance_ratio must be >= 1 (n_max / n_min; 1 = balanced), got {cfg.imbalance_ratio}")
    if cfg.lt_profile not in LT_PROFILES:
        raise ConfigError(f"unknown lt_profile {cfg.lt_profile!r}; valid: {list(LT_PROFILES)}")
    if cfg.test_protocol not in TEST_PROTOCOLS:
        raise ConfigError(f"unknown test_protocol {cfg.test_protocol!r}; valid: {list(TEST_PROTOCOLS)}")
    for field in ("max_train", "max_test"):
        v = getattr(cfg, field)
        if v is not None and v < 1:
            raise ConfigError(f"{field} must be >= 1 or None (= all), got {v}")
    if cfg.crop_padding < 0:
        raise ConfigError(f"crop_padding must be >= 0, got {cfg.crop_padding}")
    n = cfg.resize_before_crop
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError(f"resize_before_crop must be a positive number of pixels (official TAET notebook: 224) "
                          f"or None (native size); got {n!r}")


def build_data(cfg: DataConfig, device: str | torch.device = "cpu", verbose: bool = True) -> DataBundle:
    """Load `cfg.dataset`, subsample its train set to a long tail, apply the test protocol, move to `device`.

    Train: n_c = long_tail_counts(largest class count, C, IR, profile), a seeded (cfg.seed) subset per class,
    as in LDAM / AT-BSL. Test: ``balanced`` keeps the whole test set (AT-BSL, RoBal); ``long_tailed`` subsamples
    it with the same IR and profile (>= 1 per class), seed cfg.seed + 1 (official TAET notebook). Data sets with
    ``natural_long_tail`` keep their own train and test sets. ``max_train`` shrinks the train set keeping its
    class ratios; ``max_test`` is a stratified, seeded (cfg.seed + 2) cap on the test set. ``resize_before_crop``
    = N resizes both sets to N x N px on the device (:func:`resize_images`), so crop, flip, the model and every
    attack work on N-px tensors, as the official TAET notebook's ``Resize(224)`` data transform.
    """
    validate_data_config(cfg)
    loader = DATASETS[cfg.dataset]
    raw = loader(cfg.data_dir, cfg.download)
    C = raw.num_classes
    natural = getattr(loader, "natural_long_tail", False)
    train_idx = torch.arange(len(raw.train_y))
    test_idx = torch.arange(len(raw.test_y))
    notes = []
    if natural:
        notes.append(f"{cfg.dataset} is naturally long-tailed: its own train and test sets are kept "
                     f"(imbalance_ratio {cfg.imbalance_ratio:g}, lt_profile and test_protocol do not subsample it)")
    else:
        counts = long_tail_counts(max(class_counts(raw.train_y, C)), C, cfg.imbalance_ratio, cfg.lt_profile)
        if min(counts) < 1:
            raise ConfigError(f"imbalance_ratio {cfg.imbalance_ratio:g} leaves class {counts.index(0)} of "
                              f"{cfg.dataset} with no training image (counts {counts}); use a ratio <= {counts[0]}")
        train_idx = subsample_indices(raw.train_y, counts, cfg.seed)
        if cfg.test_protocol == "long_tailed":
            t_counts = long_tail_counts(max(class_counts(raw.test_y, C)), C, cfg.imbalance_ratio, cfg.lt_profile)
            test_idx = subsample_indices(raw.test_y, [max(n, 1) for n in t_counts], cfg.seed + 1)
    if cfg.max_train is not None:  # a seeded subset of the long-tailed set, same class ratios
        keep = apportion(class_counts(raw.train_y[train_idx], C), cfg.max_train)
        train_idx = train_idx[subsample_indices(raw.train_y[train_idx], keep, cfg.seed)]
    if cfg.max_test is not None:
        keep = apportion(class_counts(raw.test_y[test_idx], C), cfg.max_test)
        test_idx = test_idx[subsample_indices(raw.test_y[test_idx], keep, cfg.seed + 2)]
    device = _resolve(device)
    train_x, train_y = raw.train_x[train_idx].to(device), raw.train_y[train_idx].to(device)
    test_x, test_y = raw.test_x[test_idx].to(device), raw.test_y[test_idx].to(device)
    if cfg.resize_before_crop is not None:
        train_x, test_x = (resize_images(x, cfg.resize_before_crop) for x in (train_x, test_x))
    bundle = DataBundle(cfg.dataset, train_x, train_y, test_x, test_y, C, class_counts(train_y, C),
                        list(raw.class_names), tuple(raw.mean), tuple(raw.std), train_x.shape[1], train_x.shape[2],
                        cfg.test_protocol, natural)
    if verbose:
        for n in notes:
            print(n)
        print(f"train counts per class: {bundle.class_counts} (N={sum(bundle.class_counts)})")
    return bundle


def _resolve(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
