"""`--tiny`: a named profile with only its sizes shrunk, so that every code path of that profile (data loader,
architecture, test protocol, attack suite with AutoAttack, each notebook's branch) runs on a CPU in minutes.
Its numbers are checks, not results: the profile is renamed ``<name>-tiny`` and its outputs live apart.

When a data set the profile reads is absent, a small synthetic one is written in the data set's real on-disk
format (CIFAR's pickled ``cifar-10-batches-py``, MedMNIST's ``dermamnist.npz``) into a temporary folder and read
through the real loader (torchvision's CIFAR10 / CIFAR100, medmnist's DermaMNIST), so the loader is what is
tested.
"""

from __future__ import annotations

import os
import tempfile

from lib.core.config import ConfigError, DataConfig, TrainConfig
from lib.core.synthetic import BUNDLED, SYNTH_VERSION, SYNTHESISERS, SYNTHETIC_MARKER
from lib.profiles import PROFILES, Profile, get_profile

TINY_SUFFIX = "-tiny"
TINY_MARKER = "TINY_RUN.txt"  # lib.orchestrate.pipeline writes it at the top of a --tiny run's output folder
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


def tiny_settings(p: Profile) -> Profile:
    """Profile `p` with only its sizes shrunk, named ``<name>-tiny`` (a new profile; `p` is untouched)."""
    q = p.to_spec()
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
    return Profile.from_spec(tiny_name(p.name), q)


def prepare_profile(profile: str, *, tiny: bool = False, data_dir: str = "data", download: bool = False) -> str:
    """The profile name a notebook runs: `profile` itself, or ``<profile>-tiny`` registered in this process's
    profile table (synthetic data written first where a data set is missing). A data_dir or download other
    than the defaults goes into this process's copy of the profile (neither enters a run's hash)."""
    base = get_profile(profile)
    if not tiny and data_dir == "data" and not download:
        return profile  # today's behaviour, untouched
    p = tiny_settings(base) if tiny else base
    if tiny:
        p = with_jpeg_standin(p, data_dir)
        data_dir = tiny_data_dir(p, data_dir)
    q = p.to_spec()
    q["data"].update(data_dir=data_dir, download=download and not tiny)
    q["notebooks"]["derma"].update(data_dir=data_dir, download=download and not tiny)
    name = tiny_name(profile) if tiny else profile
    p = Profile.from_spec(name, q)
    PROFILES[name] = p
    return name


_REAL_FILES = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python", "dermamnist": "dermamnist.npz",
               "cifar10_jpeg": "cifar10-jpeg"}


def with_jpeg_standin(p: Profile, data_dir: str = "data") -> Profile:
    """`--tiny` on a profile that reads CIFAR-10 where `data_dir` lacks its pickled batches but holds the JPEG copy
    (`cifar10-jpeg/train`, `cifar10-jpeg/test`): real images (JPEG-rounded) instead of a synthetic set, for its runs
    and notebook 07. Unchanged otherwise."""
    real = os.path.join(data_dir, _REAL_FILES["cifar10"])
    jpeg = os.path.join(data_dir, _REAL_FILES["cifar10_jpeg"])
    has_real = os.path.exists(real) and not os.path.exists(os.path.join(real, SYNTHETIC_MARKER))
    if has_real or not all(os.path.isdir(os.path.join(jpeg, s)) for s in ("train", "test")):
        return p
    q = p.to_spec()
    q["data"].setdefault("dataset", DataConfig.dataset)
    reads = [s for s in (q["data"], q["notebooks"]["efficiency"]) if s.get("dataset") == "cifar10"]
    if not reads:
        return p
    for s in reads:
        s["dataset"] = "cifar10_jpeg"
    print(f"[tiny] cifar10: no {real}; the JPEG copy in {jpeg} stands in (real images, JPEG-rounded)")
    return Profile.from_spec(p.name, q)


def datasets_of(p: Profile) -> list[str]:
    """Every data set a profile's runs and notebooks read."""
    names = [p.data.get("dataset", DataConfig.dataset)]
    names += [d["dataset"] for d in (p.notebooks.derma, p.notebooks.efficiency) if d.get("dataset")]
    return list(dict.fromkeys(names))


def tiny_data_dir(p: Profile, data_dir: str = "data") -> str:
    """A folder holding every data set profile `p` reads: a link to the real files where `data_dir` has them,
    a synthetic set in the real format otherwise (written once per machine into the temporary folder).
    ConfigError before anything is written when a data set can be neither found nor synthesised."""
    from lib.core import data
    from lib.core.data import DATASETS, DataError

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
