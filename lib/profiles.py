"""A named profile (``lib.profiles.PROFILES``) as the RunConfig of one method.

Kept apart from :mod:`lib.core.config` because it needs the method registry (which methods take which
hyperparameters, their default attack sizes), and the methods import ``lib.core.config``.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lib.core.config import (
    SECTIONS,
    DataConfig,
    EvalConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    override,
    section_from_dict,
)
from lib.core.errors import ConfigError, check_seeds
from lib.core.methods import METHODS, get_method_class, method_arg_names
from lib.core.train import validate

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

# Each profile as written: a dict per section, of fields that differ from the defaults (Profile.from_spec checks them).
SPECS: dict[str, dict[str, Any]] = {
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
        # 40 epochs (TAET: 16 clean) keep `make demo` under 10 minutes on 2 cores; 60 took 19 (docs/results.md)
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
    # About 37 min of one core per TAET run and 57 per AT-BSL run at IR 10 (docs/results.md).
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
    # each piece a switch: torchvision ResNet-50 trained from scratch (cell 1: `resnet50(weights=None)`), images
    # resized to 224 px before crop (pad 4) and flip (attacks on 224-px tensors), no input normalisation, an extra
    # train-mode clean forward before the stage branch, a long-tailed test set, AT-BSL trained with TAET's attack, and
    # its evaluation (cell 12): torchattacks' AutoAttack and DeepFool beside the suite, batches of 32 over the
    # class-sorted test set (CW-L2 stops early on a batch's summed cost, so batching moves its column). GPU.
    "taet_notebook": {
        "seeds": [0],
        "data": {"dataset": "cifar10", "imbalance_ratio": 10.0, "test_protocol": "long_tailed",
                 "resize_before_crop": 224, "crop_padding": 4, "flip": True},
        "model": {"arch": "resnet50_tv", "normalize": False, "pretrained": False},
        "train": {"epochs": 100, "batch_size": 128, "lr": 0.1, "track_size": 1000},
        "method_args": {"ce_epochs": 40, "extra_clean_forward": True},
        # Per-method arguments (strict: the method must have them). The TAET repository trains its AT-BSL
        # baseline with TAET's attack: ε 0.031, step 0.003, 10 steps, start x + 0.001·N(0, 1).
        "method_args_by_method": {
            "atbsl": {"eps": 0.031, "step_size": 0.003, "steps": 10, "start": "normal", "start_std": 0.001},
        },
        "eval": {"attacks": ("clean", "fgsm", "pgd20", "pgd100", "cw_l2", "cw_linf", "deepfool", "autoattack",
                             "autoattack_ta"), "batch_size": 32, "order": "class_sorted"},
        # the paper profile's notebook settings, with notebook 07 timing the notebook's own model
        "notebooks": {**PAPER_NOTEBOOKS,
                      "efficiency": {"arch": "resnet50_tv", "batch_size": 128, "steps": 20, "dataset": "cifar10"}},
    },
    # RobustLT's own protocol (zhang-lilin/RobustLT: configs/cifar10lf/*_cifar10.yaml, core/trainer, eval.py), each
    # piece a switch (docs/robustlt.md): CIFAR-10-LT IR 50, 100 epochs, lr 0.1 x0.1 after 75 and 90, batch 128,
    # normalisation inside the model, the last epoch evaluated on the whole test set with PGD-20 (step 1/255) and
    # torchattacks' AutoAttack. Its trainer gives every method ε 8/255, step 2/255, 10 steps from x + U(−ε, ε); its
    # AT-BSL and TAET losses run a discarded train-mode clean forward; its TAET counts epochs from 1, so ce_epochs 40
    # trains 39 clean epochs. WRN-28-10 there; the kit registers WRN-34-10. GPU.
    "robustlt": {
        "seeds": [0, 1, 2],  # the official splits and seeds are 102, 103, 104: three
        "data": {"dataset": "cifar10", "imbalance_ratio": 50.0},
        "model": {"arch": "wrn34_10"},
        "train": {"epochs": 100, "batch_size": 128, "lr": 0.1, "track_size": 1000},
        "method_args": {"ce_epochs": 39, "extra_clean_forward": True},
        # The baselines with the official trainer's attack (the robustlt_* methods have it as their defaults).
        "method_args_by_method": {m: {"eps": 8.0 / 255.0, "step_size": 2.0 / 255.0, "steps": 10, "start": "uniform"}
                                  for m in ("atbsl", "taet")},
        "eval": {"attacks": ("clean", "pgd20", "autoattack_ta")},
        "notebooks": PAPER_NOTEBOOKS,
    },
}




NOTEBOOK_STUDIES = ("table4", "fig6b", "fig7")  # notebook 04's studies, which a reduced scale may train


@dataclass(frozen=True)
class ReducedScale:
    """The runs outside the claims, trained smaller so a pipeline fits on a CPU (notebook setting "reduced"):
    `overrides` for every such run (section -> fields), their `seeds`, the `full_scale_methods` that keep the
    profile's own size in notebook 02, and notebook 04's studies trained at this scale (`ablations`)."""

    overrides: dict[str, dict[str, Any]]
    seeds: list[int]
    full_scale_methods: list[str]
    ablations: list[str]

    @classmethod
    def from_spec(cls, spec: dict[str, Any], where: str) -> ReducedScale:
        _known(spec, {f.name for f in dataclasses.fields(cls)}, where)
        studies = list(spec.get("ablations", ["table4"]))
        if set(studies) - set(NOTEBOOK_STUDIES):
            raise ConfigError(f"{where}.ablations {studies}: notebook 04's studies are {', '.join(NOTEBOOK_STUDIES)}")
        overrides = {k: dict(v) for k, v in spec.get("overrides", {}).items()}
        _sections(overrides, f"{where}.overrides")
        return cls(overrides, check_seeds(spec.get("seeds", [0]), f"{where}.seeds"),
                   list(spec.get("full_scale_methods", [])), studies)


@dataclass(frozen=True)
class NotebookPlan:
    """What the notebooks run beyond Table 1: Table 5's IRs, Table 4's (α, β, γ) grid, Fig. 7's stage-1 lengths,
    05's t-SNE size, 06's DermaMNIST setting, 07's timing setting, and an optional reduced scale."""

    irs: list[float]
    hel_grid: list[list[float]]
    ce_epochs_grid: list[int]
    tsne_per_class: int
    derma: dict[str, Any]
    efficiency: dict[str, Any]
    reduced: ReducedScale | None = None

    DERMA_KEYS = frozenset({"dataset", "arch", "pretrained", "standin", "epochs", "ce_epochs", "max_train",
                            "max_test", "seeds", "data_dir", "download"})
    EFFICIENCY_KEYS = frozenset({"arch", "batch_size", "steps", "dataset"})

    @classmethod
    def from_spec(cls, spec: dict[str, Any], where: str) -> NotebookPlan:
        names = {f.name for f in dataclasses.fields(cls)}
        _known(spec, names, where)
        missing = names - set(spec) - {"reduced"}
        if missing:
            raise ConfigError(f"{where}: missing {sorted(missing)} (see the paper profile)")
        _known(spec["derma"], cls.DERMA_KEYS, f"{where}.derma")
        _known(spec["efficiency"], cls.EFFICIENCY_KEYS, f"{where}.efficiency")
        if any(len(w) != 3 for w in spec["hel_grid"]):
            raise ConfigError(f"{where}.hel_grid: each entry is (alpha, beta, gamma); got {spec['hel_grid']}")
        red = spec.get("reduced")
        return cls(list(spec["irs"]), [list(w) for w in spec["hel_grid"]], list(spec["ce_epochs_grid"]),
                   int(spec["tsne_per_class"]), dict(spec["derma"]), dict(spec["efficiency"]),
                   ReducedScale.from_spec(red, f"{where}.reduced") if red else None)


@dataclass(frozen=True)
class Profile:
    """A named setting, checked once when it is made (:meth:`from_spec`): the config sections' fields that differ
    from the defaults, the seeds every experiment runs for, method arguments (for each method that has them, and
    per method), an attack scale, the tables' attack columns, and the notebooks' plan."""

    name: str
    seeds: list[int]
    data: dict[str, Any]
    model: dict[str, Any]
    train: dict[str, Any]
    eval: dict[str, Any]
    method_args: dict[str, Any]
    method_args_by_method: dict[str, dict[str, Any]]
    attack_scale: float
    table_attacks: dict[str, tuple[str, ...]]
    notebooks: NotebookPlan
    tiny: bool = False  # made by lib.orchestrate.tiny: a check of the code, not a result

    @classmethod
    def from_spec(cls, name: str, spec: dict[str, Any]) -> Profile:
        """The profile `spec` describes (a dict as in SPECS), or ConfigError naming the first wrong key."""
        where = f"profile {name!r}"
        _known(spec, {f.name for f in dataclasses.fields(cls)} - {"name"}, where)
        spec = copy.deepcopy(spec)
        sections = {s: dict(spec.get(s) or {}) for s in SECTIONS}
        _sections(sections, where)
        every_arg = {a for m in METHODS for a in method_arg_names(m)}
        method_args = dict(spec.get("method_args", {}))
        if set(method_args) - every_arg:
            raise ConfigError(f"{where}: method_args {sorted(set(method_args) - every_arg)} belong to no method")
        by_method = {m: dict(a) for m, a in spec.get("method_args_by_method", {}).items()}
        for m, args in by_method.items():
            accepted = set(method_arg_names(m))  # ConfigError for an unknown method
            if set(args) - accepted:
                raise ConfigError(f"{where} gives {m!r} argument(s) {sorted(set(args) - accepted)} it does not "
                                  f"have; its arguments: {sorted(accepted)}")
        scale = float(spec.get("attack_scale", 1.0))
        if not scale > 0:
            raise ConfigError(f"{where}: attack_scale must be > 0; got {scale}")
        tables = {k: tuple(v) for k, v in spec.get("table_attacks", {}).items()}
        _known(tables, set(TABLE_ATTACKS), f"{where}.table_attacks")
        if "notebooks" not in spec:
            raise ConfigError(f"{where}: no notebooks plan (irs, hel_grid, ...; see the paper profile)")
        return cls(name, check_seeds(spec.get("seeds", [0]), f"{where} seeds"), method_args=method_args,
                   method_args_by_method=by_method, attack_scale=scale, table_attacks=tables,
                   notebooks=NotebookPlan.from_spec(spec["notebooks"], f"{where}.notebooks"),
                   tiny=bool(spec.get("tiny", False)), **sections)

    def to_spec(self) -> dict[str, Any]:
        """The profile as a spec dict (a deep copy): what :meth:`from_spec` takes back, e.g. after an edit."""
        out = {k: copy.deepcopy(v) for k, v in dataclasses.asdict(self).items() if k != "name"}
        if out["notebooks"]["reduced"] is None:
            del out["notebooks"]["reduced"]
        return out


def _known(d: dict[str, Any], valid, where: str) -> None:
    unknown = set(d) - set(valid)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; valid: {sorted(valid)}")


def _sections(sections: dict[str, dict[str, Any]], where: str) -> None:
    """Each config section's fields exist (section_from_dict builds the section once, which checks them)."""
    _known(sections, set(SECTIONS), where)
    for s, fields in sections.items():
        try:
            section_from_dict(SECTIONS[s], fields)
        except ConfigError as e:
            raise ConfigError(f"{where}.{s}: {e}") from None


PROFILES: dict[str, Profile] = {name: Profile.from_spec(name, spec) for name, spec in SPECS.items()}


def get_profile(profile: str) -> Profile:
    """The named profile (lib.orchestrate.tiny and tests register more in PROFILES), or one clear ConfigError."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid: {sorted(PROFILES)}")
    return PROFILES[profile]


def profile_seeds(profile: str) -> list[int]:
    """The training seeds a profile runs every experiment for (`train.seed`; the long-tail draw keeps `data.seed`,
    so runs with the same seed are paired: same data, initialisation and batch order)."""
    return list(get_profile(profile).seeds)


def notebook_settings(profile: str) -> dict[str, Any]:
    """The notebooks' own settings of a profile (IR list, ablation grids, sizes) as a dict: a copy, safe to change."""
    return get_profile(profile).to_spec()["notebooks"]


def reduced_scale(profile: str) -> dict[str, Any] | None:
    """The profile's reduced scale (:class:`ReducedScale`) as a dict, or None where it trains everything at its own
    size."""
    red = get_profile(profile).notebooks.reduced
    return None if red is None else copy.deepcopy(dataclasses.asdict(red))


# The l_inf sizes a profile's "attack_scale" multiplies: every method's training attack (LAS-AT's action spaces
# are integers in 1/255 units) and the evaluation attacks.
TRAIN_ATTACK_SIZES = ("eps", "step_size", "init_eps", "eps_types", "step_size_types")
EVAL_ATTACK_SIZES = ("eps", "pgd_step_size", "cw_linf_step_size")
TRACK_ATTACK_SIZES = ("track_eps", "track_step_size")


def scaled_attack_args(method: str, scale: float) -> dict[str, Any]:
    """`method`'s default training-attack sizes multiplied by `scale` (ε, step, LAS-AT's ε / step choices)."""
    defaults = asdict(get_method_class(method).Args())
    return {k: tuple(round(v * scale) for v in defaults[k]) if isinstance(defaults[k], tuple) else defaults[k] * scale
            for k in TRAIN_ATTACK_SIZES if k in defaults}


def profile_config(profile: str, method: str = "taet") -> RunConfig:
    """The RunConfig of a named profile for `method` (profile method_args the method lacks are dropped, those of
    its "method_args_by_method" entry are its own; an "attack_scale" multiplies every attack size, training and
    evaluation)."""
    p = get_profile(profile)
    accepted = set(method_arg_names(method))
    scale = p.attack_scale
    method_args = scaled_attack_args(method, scale) if scale != 1.0 else {}
    method_args.update({k: v for k, v in p.method_args.items() if k in accepted})
    method_args.update(p.method_args_by_method.get(method, {}))
    ev = section_from_dict(EvalConfig, p.eval)
    tr = section_from_dict(TrainConfig, p.train)
    if scale != 1.0:
        ev = dataclasses.replace(ev, **{k: getattr(ev, k) * scale for k in EVAL_ATTACK_SIZES})
        tr = dataclasses.replace(tr, **{k: getattr(tr, k) * scale for k in TRACK_ATTACK_SIZES})
    return RunConfig(
        method=method,
        data=section_from_dict(DataConfig, p.data),
        model=section_from_dict(ModelConfig, p.model),
        train=tr,
        eval=ev,
        method_args=method_args,
    )


def table_attacks(profile: str, table: str) -> list[str]:
    """The attacks of `profile`'s evaluation suite that the paper's `table` reports (`TABLE_ATTACKS`), in the
    suite's order: what a notebook evaluates its runs on and shows as columns."""
    if table not in TABLE_ATTACKS:
        raise ConfigError(f"unknown table {table!r}; valid: {sorted(TABLE_ATTACKS)}")
    suite = list(profile_config(profile).eval.attacks)
    # a profile may narrow a table further ("table_attacks"): `fashion` evaluates its committed whole-set runs
    # on what they hold (clean, PGD-20) and runs the whole suite on its reduced-scale Table 1
    own = get_profile(profile).table_attacks
    wanted = own[table] if table in own else TABLE_ATTACKS[table]
    return suite if wanted is None else [a for a in suite if a in wanted]


REFERENCE_METHODS = ("ce",)


def table_methods(include_reference: bool = False) -> list[str]:
    """Registered methods in a stable order: TAET last (the paper's layout), AT-BSL just before it."""
    names = [m for m in sorted(METHODS) if include_reference or m not in REFERENCE_METHODS]
    tail = [m for m in ("atbsl", "taet") if m in names]
    return [m for m in names if m not in tail] + tail


def run_config(profile: str, method: str, *, device: str = "auto", out_dir: str = "outputs",
               data: dict | None = None, model: dict | None = None, train: dict | None = None,
               method_args: dict | None = None, eval: dict | None = None) -> RunConfig:
    """The profile's validated config for `method`, with section overrides (dicts of field -> value) applied
    through `config.override` (so `{"imbalance_ratio": 10}` and `10.0` are one run)."""
    values: dict[str, Any] = {"out_dir": str(Path(out_dir) / "runs"), "train.device": device, "train.progress": False}
    for section, over in (("data", data), ("model", model), ("train", train), ("eval", eval),
                          ("method_args", method_args)):
        values.update({f"{section}.{k}": v for k, v in (over or {}).items()})
    return validate(override(profile_config(profile, method), values))
