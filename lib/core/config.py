"""Configuration dataclasses: what one run is, and the one path by which it changes.

A run is fully described by a :class:`RunConfig`: data, model, training schedule, the method's own
hyperparameters (``method_args``, resolved against the method's dataclass) and the evaluation suite.
Its hash (see :mod:`lib.core.runs`) decides whether a finished run can be reused. Every change to a config goes
through :func:`override` (dotted keys, one type coercion), so one experiment has one hash. The named profiles live
one layer up, in :mod:`lib.profiles` (they need the method registry; this module imports nothing from the kit but
:mod:`lib.core.errors`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

from lib.core.errors import ConfigError

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
    amp: str = "auto"  # auto | off | bf16: autocast of training forward passes and the training attack (lib.core.speed)
    channels_last: str = "auto"  # auto | on | off: NHWC weights and activations (lib.core.speed)
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
    deepfool_steps: int = 50  # `deepfool`: torchattacks.DeepFool's defaults, as the official TAET notebook runs it
    deepfool_overshoot: float = 0.02
    batch_size: int = 256
    # "as_drawn": the test set in the order the data walk keeps (file order); "class_sorted": sorted by label, as
    # the official TAET notebook's stored test set is, so its batches of 32 (CW-L2 stops on a batch's summed cost)
    # are those batches
    order: str = "as_drawn"
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
