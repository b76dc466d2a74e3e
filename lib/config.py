"""Configuration dataclasses and named profiles.

A run is fully described by a :class:`RunConfig`: data, model, training schedule, the method's own
hyperparameters (``method_args``, resolved against the method's dataclass) and the evaluation suite.
Its hash (see :mod:`lib.runs`) decides whether a finished run can be reused. Every change to a config goes
through :func:`override` (dotted keys, one type coercion), so one experiment has one hash. A profile becomes one
method's config in :mod:`lib.profiles` (it needs the method registry; this module imports nothing from the kit but
:mod:`lib.errors`).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ConfigError, check_seeds

EPS_8 = 8.0 / 255.0


@dataclass
class DataConfig:
    dataset: str = "digits"
    data_dir: str = "data"
    imbalance_ratio: float = 10.0  # paper: 10 (Table 1), 10/20/50/100 (Table 5)
    lt_profile: str = "exp"  # "exp" (LDAM / AT-BSL convention) or "step"
    test_protocol: str = "balanced"  # "balanced" (AT-BSL, RoBal) or "long_tailed" (official TAET notebook)
    download: bool = False  # torchvision / medmnist download, only when asked
    augment: bool = True  # random crop (zero padding) + horizontal flip, on the device
    crop_padding: int = 4
    flip: bool = True
    seed: int = 0  # long-tail subsampling seed (LDAM / AT-BSL use 0)
    max_train: int | None = None  # cap on the long-tailed train set (keeps its class ratios); None = all
    max_test: int | None = None  # stratified, seeded cap on the test set; None = all
    # Resize every image to N x N px on the device (bilinear, as PIL's Resize) once, before crop (padding at N px)
    # and flip, for train and test alike: the model and every attack see N-px tensors (official TAET notebook: 224).
    # None = native size. Not the same as model.resize, which resizes inside the model (attacks perturb native px).
    resize_before_crop: int | None = None


@dataclass
class ModelConfig:
    arch: str = "resnet18"  # paper: CIFAR ResNet-18 (3x3 stem)
    normalize: bool = True  # per-dataset mean/std inside the model; attacks work in [0, 1]
    pretrained: bool = False  # torchvision weights for resnet50_tv / vit_b16 (needs a download)
    resize: int | None = None  # resize inside the model, e.g. 224 for resnet50_tv as the official TAET notebook


@dataclass
class TrainConfig:
    epochs: int = 100  # paper: 100
    batch_size: int = 128  # paper: 128
    lr: float = 0.1  # paper: 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[float, ...] = (0.75, 0.90)  # fractions of `epochs` (paper: epochs 75 and 90 of 100)
    lr_gamma: float = 0.1
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    track_every: int = 0  # every N epochs: per-class clean acc and PGD robustness on a fixed subset (0 = off)
    track_size: int = 500
    track_pgd_steps: int = 10
    track_eps: float = EPS_8  # the tracking attack's ε and step (Fig. 1-2: PGD-10 at 8/255, step 2/255)
    track_step_size: float = 2.0 / 255.0
    progress: bool = True  # tqdm bars (quiet when stderr is not a terminal)
    amp: str = "auto"  # auto | off | bf16: autocast of training forward passes and the training attack (lib.speed)
    channels_last: str = "auto"  # auto | on | off: NHWC weights and activations (lib.speed)
    compile: bool = False  # torch.compile the model (python -m lib bench --compile reports compile time vs gain)
    threads: int | None = None  # torch intra-op threads (None = one per core)


@dataclass
class EvalConfig:
    attacks: tuple[str, ...] = ("clean", "fgsm", "pgd20", "pgd100", "cw_l2", "cw_linf", "autoattack")
    eps: float = EPS_8
    pgd_step_size: float = 1.0 / 255.0  # official TAET evaluation (torchattacks PGD alpha=1/255)
    cw_l2_c: float = 10.0
    cw_l2_kappa: float = 0.0
    cw_l2_steps: int = 100
    cw_l2_lr: float = 0.01
    cw_l2_margin: str = "torchattacks"  # the paper's CW column (torchattacks' margin); "exact" = true max_{j!=y}
    cw_linf_steps: int = 20  # AT-BSL's "CW": PGD-20 on the margin loss
    cw_linf_kappa: float = 50.0
    cw_linf_step_size: float = 2.0 / 255.0
    autoattack_version: str = "standard"  # `autoattack`: fra31's AutoAttack (pyautoattack)
    autoattack_ta_version: str = "standard"  # `autoattack_ta`: torchattacks.AutoAttack (official TAET / AT-BSL eval)
    batch_size: int = 256
    max_steps: int | None = None  # cap on every attack's iterations, AutoAttack's too (--tiny: 1); None = their own
    seed: int = 0


@dataclass
class RunConfig:
    method: str = "taet"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    method_args: dict[str, Any] = field(default_factory=dict)
    name: str | None = None  # run folder name; derived from the config when None
    out_dir: str = "outputs/runs"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return _jsonable(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        d = dict(d)
        d.pop("hash", None)
        try:
            return cls(
                method=d["method"],
                data=section_from_dict(DataConfig, d.get("data", {})),
                model=section_from_dict(ModelConfig, d.get("model", {})),
                train=section_from_dict(TrainConfig, d.get("train", {})),
                eval=section_from_dict(EvalConfig, d.get("eval", {})),
                method_args=dict(d.get("method_args", {})),
                name=d.get("name"),
                out_dir=d.get("out_dir", "outputs/runs"),
            )
        except KeyError as e:
            raise ConfigError(f"config is missing the field {e}; was it written by this kit?") from None


# Fields that change where or how a run is shown, never what it computes: left out of the hash.
NON_RESULT_FIELDS = {("name",), ("out_dir",), ("train", "device"), ("train", "progress"), ("data", "data_dir"),
                     ("data", "download"), ("eval",), ("train", "amp"), ("train", "channels_last"),
                     ("train", "compile"), ("train", "threads")}  # amp enters the hash as "precision" (runs.py)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig}
RUN_FIELDS = ("name", "out_dir")  # the other top-level fields `override` accepts


def override(cfg: RunConfig, values: dict[str, Any]) -> RunConfig:
    """`cfg` with dotted-key overrides applied, e.g. {"data.imbalance_ratio": 10, "method_args.alpha": 0.2,
    "out_dir": "x"}: the one path every caller (CLI, notebooks, sweeps, demo, bench) changes a config through.

    Values take the field's type (an int for a float field becomes a float, a list a tuple), so 10 and 10.0
    are one run with one hash. Method hyperparameters are resolved and coerced by the method (train.validate).
    """
    sections: dict[str, dict[str, Any]] = {}
    run: dict[str, Any] = {}
    args = dict(cfg.method_args)
    for key, value in values.items():
        section, _, name = key.partition(".")
        if key in RUN_FIELDS:
            run[key] = value
        elif section == "method_args" and name:
            args[name] = value
        elif section in SECTIONS and name:
            fields = {f.name: f for f in dataclasses.fields(SECTIONS[section])}
            if name not in fields:
                raise ConfigError(f"unknown config key {key!r}; valid {section}.* keys: {sorted(fields)}")
            sections.setdefault(section, {})[name] = _coerce(fields[name].type, value)
        else:
            raise ConfigError(f"unknown config key {key!r}; valid: SECTION.FIELD with SECTION one of "
                              f"{sorted(SECTIONS)}, method_args.NAME, or one of {list(RUN_FIELDS)} (the method "
                              "is chosen by building the config for it, e.g. profile_config(profile, method))")
    return dataclasses.replace(cfg, **run, method_args=args,
                               **{s: dataclasses.replace(getattr(cfg, s), **kw) for s, kw in sections.items()})


def _coerce(annotation: str, value: Any) -> Any:
    """A value for a field annotated `annotation` (a string: the module postpones annotations)."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if annotation in ("float", "float | None") and is_int:
        return float(value)
    if annotation.startswith("tuple[") and isinstance(value, (list, tuple)):
        if annotation.startswith("tuple[float"):
            return tuple(float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value)
        return tuple(value)
    return value


def section_from_dict(cls, values: dict[str, Any]):
    """A section dataclass from a dict as stored (lists become tuples; numbers keep their stored type, so a
    config.json read back hashes as it was written)."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s) {sorted(unknown)}; valid: {sorted(names)}")
    kw = {}
    for k, v in values.items():
        if isinstance(v, list):
            v = tuple(v)
        kw[k] = v
    return cls(**kw)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------------
# Profiles: small, readable overrides of the defaults above (the defaults are the paper's setting).
# ---------------------------------------------------------------------------------------------------
# Table 4's (α, β, γ) grid, the paper's: each weight 0.1 or 0.05, all 8 combinations (PAPER_NUMBERS.md, Table 4).
HEL_GRID = [[a, b, g] for b in (0.1, 0.05) for a in (0.1, 0.05) for g in (0.1, 0.05)]

# The attack columns the paper reports in each notebook's tables (PAPER_NUMBERS.md). A notebook evaluates only these
# of its profile's suite (`profiles.table_attacks`), so no attack runs that no table or figure shows. None: the whole
# suite (Tables 1 and 3 report every attack).
TABLE_ATTACKS: dict[str, tuple[str, ...] | None] = {
    "table1": None,
    "table3": None,
    # Table 5: Clean, FGSM, PGD-20, CW, AA; no PGD-100 column
    "table5": ("clean", "fgsm", "pgd20", "cw_l2", "cw_linf", "autoattack", "autoattack_ta"),
    # Table 4 reports PGD-20; Fig. 6b and 7 plot clean accuracy and PGD-20; Sec. 6.3 quotes Fig. 7's AA
    "ablations": ("clean", "pgd20", "autoattack", "autoattack_ta"),
}

# The paper's notebook settings (IRs, Table 4's grid, Fig. 7's stage-1 lengths, ViT-B/16 on DermaMNIST for 06).
PAPER_NOTEBOOKS: dict[str, Any] = {
    "irs": [10, 20, 50, 100],
    "hel_grid": HEL_GRID,
    "ce_epochs_grid": [0, 10, 20, 30, 40, 50],
    "tsne_per_class": 200,
    "derma": {"dataset": "dermamnist", "arch": "vit_b16", "pretrained": True, "standin": None,
              "epochs": 100, "ce_epochs": 40},
    "efficiency": {"arch": "resnet18", "batch_size": 128, "steps": 20, "dataset": "cifar10"},
}

PROFILES: dict[str, dict[str, Any]] = {
    # Seconds on 2 CPU cores: tests and CI.
    "smoke": {
        "seeds": [0, 1],  # two, so CI exercises the intervals
        "data": {"dataset": "digits", "imbalance_ratio": 10.0, "max_test": 200, "crop_padding": 1, "flip": False},
        "model": {"arch": "small_cnn"},
        "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "track_every": 1, "track_size": 100},
        "method_args": {"ce_epochs": 1},
        "eval": {"attacks": ("clean", "fgsm", "pgd20", "cw_l2"), "cw_l2_steps": 20},
        "notebooks": {
            "irs": [10, 50],
            "hel_grid": [[0.1, 0.1, 0.1], [0.05, 0.1, 0.1]],
            "ce_epochs_grid": [0, 1],
            "tsne_per_class": 20,
            "derma": {"dataset": "dermamnist", "arch": "small_cnn", "standin": "digits", "epochs": 2, "ce_epochs": 1},
            "efficiency": {"arch": "small_cnn", "batch_size": 64, "steps": 2, "dataset": "digits"},
            # exercises the fashion profile's reduced scale (below) in CI: every method at 150 images, one seed
            "reduced": {"overrides": {"data": {"max_train": 150}}, "seeds": [0],
                        "full_scale_methods": ["ce", "at", "atbsl", "taet"], "ablations": ["table4"]},
        },
    },
    # Minutes on 2 CPU cores: `make demo`. 8x8 digits have 17 grey levels, 1/16 apart: at the paper's ε = 8/255
    # (half a level) standard training keeps 84% balanced PGD-20 accuracy, so the demo attacks 4x larger
    # (ε = 32/255, two levels; every method's training step and the evaluation steps scaled alike).
    "demo": {
        "seeds": [0],  # one, to keep `make demo` short: its tables say "1 seed, no interval"
        "attack_scale": 4.0,
        "data": {"dataset": "digits", "imbalance_ratio": 10.0, "crop_padding": 1, "flip": False},
        "model": {"arch": "small_cnn"},
        # per-epoch tracking only where Fig. 1-2 read it (notebook 01 asks for it): here it cost 41% of an AT-BSL epoch
        # 40 epochs (TAET: 16 clean) keep `make demo` under 10 minutes on 2 cores; 60 took 19 (README, "make demo")
        "train": {"epochs": 40, "batch_size": 64, "lr": 0.05, "track_size": 200},
        "method_args": {"ce_epochs": 16},
        "eval": {"attacks": ("clean", "fgsm", "pgd20", "pgd100", "cw_l2", "cw_linf")},
        "notebooks": {
            "irs": [10, 20, 50, 100],
            "hel_grid": HEL_GRID,
            "ce_epochs_grid": [0, 4, 8, 16, 24],
            "tsne_per_class": 54,
            # DermaMNIST absent: the bundled digits, so the demo is the same on every machine (Fashion-MNIST, the
            # fashion profile's stand-in, made 06 take 6-8 of the demo's 19 minutes)
            "derma": {"dataset": "dermamnist", "arch": "small_cnn", "standin": "digits",
                      "epochs": 10, "ce_epochs": 4, "max_train": 1500, "max_test": 500},
            "efficiency": {"arch": "small_cnn", "batch_size": 64, "steps": 5, "dataset": "digits"},
        },
    },
    # A real long-tailed comparison on CPU, at a scale that is not under-trained: the whole Fashion-MNIST-LT IR 10 set
    # (24,516 train images, 6,000 ... 600), a balanced test subset of 1,000, and small_cnn_fc, where standard (CE)
    # training reaches 88.1% balanced clean accuracy on the whole test set over 3 seeds (`claims --scale-check`;
    # 12,000 images left the 85% floor undecided, 85.7 ± 1.0 [84.7, 86.7] over 6 seeds; small_cnn at 2,000: 63.7%).
    # About 37 min of one core per TAET run and 57 per AT-BSL run at IR 10 (README, "Claims check").
    "fashion": {
        "seeds": [0, 1, 2],
        "data": {"dataset": "fashion_mnist", "imbalance_ratio": 10.0, "max_train": None, "max_test": 1000,
                 "crop_padding": 2},
        "model": {"arch": "small_cnn_fc"},
        # tracks every run, as its committed evidence (results/fashion/) was trained: tracking adds a few per cent to an
        # adversarial epoch
        "train": {"epochs": 20, "batch_size": 128, "lr": 0.05, "track_every": 1, "track_size": 500},
        "method_args": {"ce_epochs": 8},
        "eval": {"attacks": ("clean", "fgsm", "pgd20", "pgd100", "cw_l2", "cw_linf")},
        "notebooks": {
            "irs": [10, 20, 50, 100],
            "hel_grid": HEL_GRID,
            "ce_epochs_grid": [0, 4, 8, 12],
            "tsne_per_class": 100,
            # one seed (its title says so), to fit the pipeline in an afternoon
            "derma": {"dataset": "dermamnist", "arch": "small_cnn", "standin": "fashion_mnist", "epochs": 20,
                      "ce_epochs": 8, "max_train": 2000, "max_test": 1000, "seeds": [0]},
            "efficiency": {"arch": "small_cnn", "batch_size": 128, "steps": 5, "dataset": "fashion_mnist"},
            # The runs outside the claims at a reduced size, so the whole pipeline fits in an afternoon on 2 cores:
            # 02's every-method Table 1, 04's Table 4 grid and 05's t-SNE train 2,000 images (the long-tail shape
            # kept), one seed, and say so in their titles. The claims' methods (full_scale_methods) keep the whole
            # set and 3 seeds in 02's Tables 1-2, and so do Fig. 6b and Fig. 7 in 04, read from results/fashion/.
            # No per-epoch tracking at the reduced size (no figure reads it; at 2,000 images it would add about a
            # fifth to each run).
            "reduced": {"overrides": {"data": {"max_train": 2000}, "train": {"track_every": 0}}, "seeds": [0],
                        "full_scale_methods": ["ce", "at", "atbsl", "taet"], "ablations": ["table4"]},
        },
        # The committed whole-set runs (results/fashion/) hold clean and PGD-20, what the claims read, and no
        # weights: the tables built on them show those columns; the whole suite runs on the reduced-scale Table 1.
        "table_attacks": {"table1": ("clean", "pgd20"), "table5": ("clean", "pgd20")},
    },
    # The paper: CIFAR-10-LT IR 10, ResNet-18, 100 epochs (40 clean), full test set, AutoAttack. GPU.
    "paper": {
        "seeds": [0, 1, 2],
        "data": {"dataset": "cifar10", "imbalance_ratio": 10.0},
        "model": {"arch": "resnet18"},
        # per-epoch tracking (PGD-10 on 1,000 test images) only for notebook 01's runs, which ask for it
        "train": {"epochs": 100, "batch_size": 128, "lr": 0.1, "track_size": 1000},
        "method_args": {"ce_epochs": 40},
        "eval": {},
        "notebooks": PAPER_NOTEBOOKS,
    },
    # The official TAET notebook's protocol (BuhuiOK/TAET-, TAET.ipynb; its AT-BSL baseline code/AT-BSL/AT-BSL.ipynb),
    # each piece a switch: torchvision ResNet-50 from ImageNet weights, images resized to 224 px before crop (pad 4)
    # and flip (attacks on 224-px tensors), no input normalisation, an extra train-mode clean forward before the stage
    # branch, a long-tailed test set, AT-BSL trained with TAET's attack, and AutoAttack as torchattacks runs it. GPU.
    "taet_notebook": {
        "seeds": [0],
        "data": {"dataset": "cifar10", "imbalance_ratio": 10.0, "test_protocol": "long_tailed",
                 "resize_before_crop": 224, "crop_padding": 4, "flip": True},
        "model": {"arch": "resnet50_tv", "normalize": False, "pretrained": True},
        "train": {"epochs": 100, "batch_size": 128, "lr": 0.1, "track_size": 1000},
        "method_args": {"ce_epochs": 40, "extra_clean_forward": True},
        # Per-method arguments (strict: the method must have them). The TAET repository trains its AT-BSL
        # baseline with TAET's attack: ε 0.031, step 0.003, 10 steps, start x + 0.001·N(0, 1).
        "method_args_by_method": {
            "atbsl": {"eps": 0.031, "step_size": 0.003, "steps": 10, "start": "normal", "start_std": 0.001},
        },
        "eval": {"attacks": ("clean", "fgsm", "pgd20", "pgd100", "cw_l2", "cw_linf", "autoattack", "autoattack_ta")},
        # the paper profile's notebook settings, with notebook 07 timing the notebook's own model
        "notebooks": {**PAPER_NOTEBOOKS,
                      "efficiency": {"arch": "resnet50_tv", "batch_size": 128, "steps": 20, "dataset": "cifar10"}},
    },
}


def check_switches(cfg: RunConfig, image_size_fixed: int | None = None) -> None:
    """The fidelity switches' cross-field checks (cheap; before any data is loaded): one resize per run, and a
    model with a fixed input size takes only that size. `image_size_fixed`: the architecture's fixed input size."""
    n = cfg.data.resize_before_crop
    if n is None:
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"data.resize_before_crop must be a positive number of pixels (official TAET notebook: "
                          f"224) or None; got {n!r}")
    if cfg.model.resize is not None:
        raise ConfigError(f"data.resize_before_crop={n} and model.resize={cfg.model.resize} both resize the input; "
                          "keep resize_before_crop (attacks on the resized tensors, as the official TAET notebook) "
                          "or model.resize (inside the model, attacks on native pixels), not both")
    if image_size_fixed is not None and n != image_size_fixed:
        raise ConfigError(f"model {cfg.model.arch!r} takes {image_size_fixed} px inputs but data.resize_before_crop="
                          f"{n}; set it to {image_size_fixed} or None")


def profile_seeds(profile: str) -> list[int]:
    """The training seeds a profile runs every experiment for (`train.seed`; the long-tail draw keeps `data.seed`,
    so runs with the same seed are paired: same data, initialisation and batch order)."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid: {sorted(PROFILES)}")
    return check_seeds(PROFILES[profile].get("seeds", [0]), f"profile {profile!r}")


def notebook_settings(profile: str) -> dict[str, Any]:
    """The notebooks' own settings of a profile (IR list, ablation grids, sizes): a copy, safe to change."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid: {sorted(PROFILES)}")
    return copy.deepcopy(PROFILES[profile]["notebooks"])

