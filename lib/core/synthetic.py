"""Small synthetic data sets in the real on-disk formats (CIFAR's pickled ``cifar-10-batches-py``, MedMNIST's
``dermamnist.npz``), read through the real loaders, so a machine without the real files still tests them
(`--tiny`, CI). A marker file beside them records their md5s; :mod:`lib.core.data` hands those to torchvision's
own checks instead of CIFAR's."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from typing import Any

import numpy as np

SYNTHETIC_MARKER = "taet_kit_synthetic.json"  # beside the synthetic files, in their folder
SYNTH_VERSION = 1
SYNTH_TRAIN_PER_CLASS = 100  # enough for the IR-100 long tail (n_min = int(100 / 100) = 1)
SYNTH_TEST_PER_CLASS = 10
BUNDLED = ("digits", "synthetic")  # shipped with the kit (scikit-learn, generated): nothing to write
# DermaMNIST's train counts per class (MedMNIST v2), scaled down below to keep its natural long tail.
DERMA_TRAIN_COUNTS = (228, 359, 769, 80, 779, 4693, 99)


def _images(rng: np.random.RandomState, labels: np.ndarray, shape: tuple[int, ...], protos: np.ndarray
            ) -> np.ndarray:
    """uint8 images (N, H, W, C): each its class's fixed random prototype plus Gaussian noise (learnable)."""
    x = protos[labels] + 0.15 * rng.randn(len(labels), *shape)
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def write_synthetic_cifar(folder: str, name: str = "cifar10", seed: int = 0, *,
                          train_per_class: int = SYNTH_TRAIN_PER_CLASS,
                          test_per_class: int = SYNTH_TEST_PER_CLASS) -> str:
    """A CIFAR-10/100 look-alike in torchvision's on-disk format (`cifar-10-batches-py/`: five pickled train
    batches, a test batch and the meta file, rows of 3072 bytes in CHW order), with its md5s recorded in
    SYNTHETIC_MARKER so lib.core.data hands torchvision these checksums. Returns the base folder. `--tiny` writes the
    default sizes; benchmarks/gpu_check.sh writes CIFAR-10's own (5,000 train images per class) to time real epochs."""
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    num_classes = 10 if name == "cifar10" else 100
    label_key = "labels" if name == "cifar10" else "fine_labels"
    base = os.path.join(folder, cls.base_folder)
    os.makedirs(base, exist_ok=True)
    rng = np.random.RandomState(seed)
    protos = rng.rand(num_classes, 32, 32, 3)

    def batch(per_class: int) -> dict[str, Any]:
        y = rng.permutation(np.repeat(np.arange(num_classes), per_class))
        x = _images(rng, y, (32, 32, 3), protos).transpose(0, 3, 1, 2).reshape(len(y), -1)  # CHW rows
        return {"data": x, label_key: y.tolist(), "batch_label": "synthetic (taet-kit --tiny)"}

    n_train = len(cls.train_list)
    contents = {f: batch(train_per_class // n_train) for f, _ in cls.train_list}
    contents.update({f: batch(test_per_class) for f, _ in cls.test_list})
    names_key = cls.meta["key"]
    contents[cls.meta["filename"]] = {names_key: [f"synthetic_{i}" for i in range(num_classes)]}
    md5 = {}
    for f, obj in contents.items():
        blob = pickle.dumps(obj, protocol=2)
        with open(os.path.join(base, f), "wb") as fh:
            fh.write(blob)
        md5[f] = hashlib.md5(blob).hexdigest()
    _write_marker(base, {"dataset": name, "md5": md5})
    return folder


def write_synthetic_dermamnist(folder: str, seed: int = 0) -> str:
    """A DermaMNIST look-alike in MedMNIST's format (`dermamnist.npz`: train/val/test images (N, 28, 28, 3)
    uint8 and labels (N, 1)), long-tailed like DermaMNIST's own splits. Returns the folder."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(seed + 1)
    protos = rng.rand(7, 28, 28, 3)
    arrays = {}
    for split, scale in (("train", 0.02), ("val", 0.005), ("test", 0.01)):
        counts = [max(2, round(n * scale)) for n in DERMA_TRAIN_COUNTS]
        y = rng.permutation(np.repeat(np.arange(7), counts))
        arrays[f"{split}_images"] = _images(rng, y, (28, 28, 3), protos)
        arrays[f"{split}_labels"] = y.reshape(-1, 1).astype(np.uint8)
    np.savez_compressed(os.path.join(folder, "dermamnist.npz"), **arrays)
    _write_marker(folder, {"dataset": "dermamnist"})
    return folder


def synthetic_checksums(cls, folder: str):
    """torchvision's class, or for a folder of `--tiny`'s synthetic files (lib.orchestrate.tiny) a subclass carrying
   their
    md5s instead of CIFAR's: torchvision's own code still checks and reads every file."""
    marker = os.path.join(folder, SYNTHETIC_MARKER)
    if not os.path.isfile(marker):
        return cls
    with open(marker) as fh:
        md5 = json.load(fh)["md5"]
    return type(f"Synthetic{cls.__name__}", (cls,), {
        "train_list": [[f, md5[f]] for f, _ in cls.train_list], "test_list": [[f, md5[f]] for f, _ in cls.test_list],
        "meta": {**cls.meta, "md5": md5[cls.meta["filename"]]}})


def _write_marker(folder: str, doc: dict[str, Any]) -> None:
    with open(os.path.join(folder, SYNTHETIC_MARKER), "w") as fh:
        json.dump({"version": SYNTH_VERSION, "made_by": "python -m lib ... --tiny", **doc}, fh, indent=1)


SYNTHESISERS = {
    "cifar10": lambda folder: write_synthetic_cifar(folder, "cifar10"),
    "cifar100": lambda folder: write_synthetic_cifar(folder, "cifar100"),
    "dermamnist": write_synthetic_dermamnist,
}
