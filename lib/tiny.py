"""`--tiny`: a named profile with only its sizes shrunk, so that every code path of that profile (data loader,
architecture, test protocol, attack suite with AutoAttack, each notebook's branch) runs on a CPU in minutes.
Its numbers are checks, not results: the profile is renamed ``<name>-tiny`` and its outputs live apart.

When a data set the profile reads is absent, a small synthetic one is written in the data set's real on-disk
format (CIFAR's pickled ``cifar-10-batches-py``, MedMNIST's ``dermamnist.npz``) into a temporary folder and read
through the real loader (torchvision's CIFAR10 / CIFAR100, medmnist's DermaMNIST), so the loader is what is
tested.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import tempfile
from typing import Any

import numpy as np

from .config import PROFILES, ConfigError

SYNTHETIC_MARKER = "taet_kit_synthetic.json"  # beside the synthetic files, in their folder

TINY_SUFFIX = "-tiny"
# The sizes --tiny sets; every other setting is the profile's own.
TINY_EPOCHS = 3  # stage 1 (clean) keeps its share of the schedule, at least one epoch
TINY_TRAIN = {"batch_size": 4, "track_size": 10, "track_pgd_steps": 1}
TINY_DATA = {"max_train": 12, "max_test": 10}  # three batches per epoch; one test image per class (CIFAR-10)
TINY_ATTACK_STEPS = 1  # the cap on every evaluation attack's iterations
TINY_TRAIN_ATTACK_STEPS = 2  # every method's training attack: the fewest all accept (GAIRAT's weights use steps // 2)
TINY_DERMA = {"epochs": 2, "max_train": 7, "max_test": 7}  # ViT-B/16 at 224 px: one image per class
TINY_EFFICIENCY = {"steps": 2}
TINY_RESIZE = 40  # data.resize_before_crop (taet_notebook: 224): still resized before the crop, at a CPU size



def tiny_name(profile: str) -> str:
    return profile if profile.endswith(TINY_SUFFIX) else profile + TINY_SUFFIX


def _scaled_epochs(e: int, total: int) -> int:
    """Stage-1 epochs `e` of `total`, scaled to TINY_EPOCHS (a stage the profile has keeps >= 1 epoch)."""
    if e <= 0:
        return 0
    return min(TINY_EPOCHS - 1, max(1, round(e * TINY_EPOCHS / total)))


def tiny_settings(p: dict[str, Any]) -> dict[str, Any]:
    """The profile dict `p` with only its sizes shrunk (a copy)."""
    from .config import TrainConfig

    q = copy.deepcopy(p)
    total = q.get("train", {}).get("epochs", TrainConfig.epochs)
    q["seeds"] = list(q.get("seeds", [0]))[:1]
    batch = q.get("train", {}).get("batch_size", TrainConfig.batch_size)
    lr = q.get("train", {}).get("lr", TrainConfig.lr)
    q.setdefault("train", {}).update(epochs=TINY_EPOCHS, **TINY_TRAIN)
    # the same lr per image at the tiny batch (linear scaling): ResNet-50 from scratch at lr 0.1 and batch 4 diverges
    q["train"]["lr"] = lr * TINY_TRAIN["batch_size"] / batch
    q.setdefault("data", {}).update(TINY_DATA)
    if q["data"].get("resize_before_crop"):
        q["data"]["resize_before_crop"] = TINY_RESIZE
    if q.get("model", {}).get("pretrained"):
        q["model"]["pretrained"] = False  # a download, like the data's: --tiny runs offline
    args = q.setdefault("method_args", {})
    if "ce_epochs" in args:
        args["ce_epochs"] = _scaled_epochs(args["ce_epochs"], total)
    args["steps"] = TINY_TRAIN_ATTACK_STEPS  # dropped for methods without a step count
    for own in q.get("method_args_by_method", {}).values():
        if "steps" in own:
            own["steps"] = TINY_TRAIN_ATTACK_STEPS
    q.setdefault("eval", {})["max_steps"] = TINY_ATTACK_STEPS
    nb = q.get("notebooks")
    if nb:
        irs = nb.get("irs", [])
        nb["irs"] = sorted({irs[0], irs[-1]}) if irs else irs
        nb["hel_grid"] = nb.get("hel_grid", [])[:2]
        nb["ce_epochs_grid"] = sorted({_scaled_epochs(e, total) for e in nb.get("ce_epochs_grid", [])})
        nb["tsne_per_class"] = 5
        if nb.get("derma"):
            d = nb["derma"]
            d["ce_epochs"] = _scaled_epochs(d.get("ce_epochs", 0), d.get("epochs", total))
            d.update(TINY_DERMA)
            d["ce_epochs"] = min(d["ce_epochs"], TINY_DERMA["epochs"] - 1)
        if nb.get("reduced"):  # no larger than the tiny train set, one seed
            red = nb["reduced"]
            red["seeds"] = list(red.get("seeds", [0]))[:1]
            data = red.setdefault("overrides", {}).setdefault("data", {})
            data["max_train"] = min(data.get("max_train", TINY_DATA["max_train"]), TINY_DATA["max_train"])
        if nb.get("efficiency"):
            nb["efficiency"].update(TINY_EFFICIENCY, batch_size=TINY_TRAIN["batch_size"])
    q["tiny"] = True
    return q


def prepare_profile(profile: str, *, tiny: bool = False, data_dir: str = "data", download: bool = False) -> str:
    """The profile name a notebook runs: `profile` itself, or ``<profile>-tiny`` registered in this process's
    profile table (synthetic data written first where a data set is missing). A data_dir or download other
    than the defaults goes into this process's copy of the profile (neither enters a run's hash)."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid: {sorted(PROFILES)}")
    if not tiny and data_dir == "data" and not download:
        return profile  # today's behaviour, untouched
    p = tiny_settings(PROFILES[profile]) if tiny else copy.deepcopy(PROFILES[profile])
    if tiny:
        data_dir = tiny_data_dir(p, data_dir)
    p.setdefault("data", {}).update(data_dir=data_dir, download=download and not tiny)
    derma = p.get("notebooks", {}).get("derma")
    if derma:
        derma.update(data_dir=data_dir, download=download and not tiny)
    name = tiny_name(profile) if tiny else profile
    PROFILES[name] = p
    return name


# ---------------------------------------------------------------------------------------------------
# Synthetic data in the real on-disk formats
# ---------------------------------------------------------------------------------------------------
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
    SYNTHETIC_MARKER so lib.data hands torchvision these checksums. Returns the base folder. `--tiny` writes the
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
    """torchvision's class, or for a folder of `--tiny`'s synthetic files (lib.tiny) a subclass carrying their
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
_REAL_FILES = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python", "dermamnist": "dermamnist.npz"}


def datasets_of(p: dict[str, Any]) -> list[str]:
    """Every data set a profile's runs and notebooks read."""
    from .config import DataConfig

    nb = p.get("notebooks", {})
    names = [p.get("data", {}).get("dataset", DataConfig.dataset)]
    names += [nb[k]["dataset"] for k in ("derma", "efficiency") if nb.get(k, {}).get("dataset")]
    return list(dict.fromkeys(names))


def tiny_data_dir(p: dict[str, Any], data_dir: str = "data") -> str:
    """A folder holding every data set profile `p` reads: a link to the real files where `data_dir` has them,
    a synthetic set in the real format otherwise (written once per machine into the temporary folder).
    ConfigError before anything is written when a data set can be neither found nor synthesised."""
    from . import data
    from .data import DATASETS, DataError

    plan = {}
    for name in datasets_of(p):
        if name in BUNDLED:
            continue
        real = os.path.join(data_dir, _REAL_FILES[name]) if name in _REAL_FILES else None
        marker = os.path.join(data_dir if name == "dermamnist" else str(real), SYNTHETIC_MARKER)
        if real and os.path.exists(real) and not os.path.exists(marker):  # the user's own (real) files
            plan[name] = ("real", os.path.abspath(real))
        elif name in SYNTHESISERS:
            plan[name] = ("synthetic", None)
        else:
            try:  # a data set found elsewhere (fashion_mnist: the Debian package's folder) is used as is
                DATASETS[name](data_dir, False)
            except (DataError, KeyError):
                raise ConfigError(f"--tiny cannot synthesise data set {name!r} and {data_dir!r} does not have it; "
                                  f"--tiny writes stand-ins only for {sorted(SYNTHESISERS)}: put {name} in "
                                  f"--data-dir, or use a profile on those") from None
            plan[name] = ("found", None)
    if all(kind == "found" for kind, _ in plan.values()):
        return data_dir
    folder = os.path.join(tempfile.gettempdir(), f"taet-kit-tiny-data-v{SYNTH_VERSION}")
    os.makedirs(folder, exist_ok=True)
    for name, (kind, real) in plan.items():
        target = os.path.join(folder, _REAL_FILES.get(name, name))
        if kind == "found" and name == "fashion_mnist":  # its IDX files, wherever they were found
            real = os.path.dirname(os.path.abspath(next(iter(data._find_fashion(data_dir).values()))))
            kind, target = "real", os.path.join(folder, "fashion-mnist")
        if kind == "real":
            if os.path.islink(target) or os.path.isfile(target):
                os.remove(target)
            elif os.path.isdir(target):
                import shutil

                shutil.rmtree(target)
            os.symlink(real, target)
            print(f"[tiny] {name}: the real files in {real}")
        elif kind == "synthetic":
            if os.path.islink(target):
                os.remove(target)
            marker = (os.path.join(folder, SYNTHETIC_MARKER) if name == "dermamnist"
                      else os.path.join(target, SYNTHETIC_MARKER))
            if not (os.path.exists(target) and os.path.exists(marker)):
                _atomic_synth(name, folder)
            print(f"[tiny] {name}: absent from {data_dir!r}; a synthetic stand-in in its real format, {target}")
    return folder


def _atomic_synth(name: str, folder: str) -> None:
    """Write the synthetic set into a fresh folder beside `folder`, then move its files in (parallel runs of
    --tiny never read a half-written file)."""
    import shutil

    tmp = tempfile.mkdtemp(prefix=".synth-", dir=folder)
    try:
        SYNTHESISERS[name](tmp)
        for entry in os.listdir(tmp):
            dest = os.path.join(folder, entry)
            if os.path.isdir(dest) and not os.path.islink(dest):
                shutil.rmtree(dest)
            os.replace(os.path.join(tmp, entry), dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
