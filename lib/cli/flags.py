"""The run flags of `python -m lib train`: each flag of RUN_FLAGS / METHOD_FLAGS with its config field, default and the
paper's value, and `config_from_args`, which turns them into a RunConfig through `config.override`."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from lib.core.config import ConfigError, DataConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig, override
from lib.core.methods import METHODS, resolve_method_args
from lib.orchestrate.tiny import prepare_profile
from lib.profiles import PROFILES, profile_config

# (flag, section, field, type, paper value, help). Defaults shown are the kit's (= the paper's unless noted).
RUN_FLAGS: list[tuple[str, str, str, Any, str, str]] = [
    ("--dataset", "data", "dataset", str, "cifar10 (also cifar100, dermamnist)", "dataset name; image folders: "
     "cifar10_jpeg (--data-dir/cifar10-jpeg), imagefolder (your own --data-dir/{train,test}/<class>/<image>)"),
    ("--data-dir", "data", "data_dir", str, "-", "folder with the dataset files"),
    ("--imbalance-ratio", "data", "imbalance_ratio", float, "10 (Table 5: 10/20/50/100)",
     "n_max / n_min of the train set"),
    ("--lt-profile", "data", "lt_profile", str, "exp", "long-tail profile: exp or step"),
    ("--test-protocol", "data", "test_protocol", str, "long_tailed (official TAET); balanced (AT-BSL)",
     "balanced or long_tailed test set"),
    ("--data-seed", "data", "seed", int, "0 (LDAM/AT-BSL)", "seed of the long-tail subsampling"),
    ("--max-test", "data", "max_test", int, "all", "stratified cap on the test set size"),
    ("--max-train", "data", "max_train", int, "all", "cap on the long-tailed train set (ratios kept)"),
    ("--arch", "model", "arch", str, "resnet18", "model architecture"),
    ("--resize-before-crop", "data", "resize_before_crop", int, "- (official TAET notebook: 224, resnet50_tv)",
     "resize images to N px on the device before crop/flip, test set too: attacks perturb N-px inputs"),
    ("--resize", "model", "resize", int, "- (the official notebook resizes before the crop: --resize-before-crop)",
     "resize inputs inside the model to this size (attacks perturb native-size inputs)"),
    ("--epochs", "train", "epochs", int, "100", "training epochs"),
    ("--batch-size", "train", "batch_size", int, "128", "batch size"),
    ("--lr", "train", "lr", float, "0.1", "SGD learning rate"),
    ("--momentum", "train", "momentum", float, "0.9", "SGD momentum"),
    ("--weight-decay", "train", "weight_decay", float, "5e-4", "SGD weight decay"),
    ("--seed", "train", "seed", int, "-", "seed of initialisation, batches and attack starts"),
    ("--device", "train", "device", str, "cuda", "auto, cpu or cuda"),
    ("--track-every", "train", "track_every", int, "- (Fig. 1-2 need 1)",
     "every N epochs log per-class clean/PGD accuracy on a fixed test subset (0 = off)"),
    ("--track-size", "train", "track_size", int, "-", "size of that subset"),
    ("--amp", "train", "amp", str, "- (fp32)", "precision of training: auto, off (fp32) or bf16 autocast"),
    ("--channels-last", "train", "channels_last", str, "-", "NHWC memory layout: auto, on or off"),
    ("--threads", "train", "threads", int, "-", "torch intra-op threads (default: one per core)"),
    ("--name", "run", "name", str, "-", "run folder name (default: derived from the config and its hash)"),
    ("--out-dir", "run", "out_dir", str, "-", "folder holding the run folders"),
]

# Method hyperparameters with flags of their own; any other goes through --method-arg KEY=VALUE.
METHOD_FLAGS: list[tuple[str, str, Any, str, str]] = [
    ("--ce-epochs", "ce_epochs", int, "40", "TAET: epochs of clean CE before the adversarial stage"),
    ("--alpha", "alpha", float, "0.1", "TAET: weight of BCL in HEL"),
    ("--beta", "beta", float, "TAET 0.1; TRADES, MART 6.0", "TAET: weight of HDL in HEL; TRADES, MART: KL weight"),
    ("--gamma", "gamma", float, "0.1", "TAET: weight of RCEL in HEL"),
    ("--train-eps", "eps", float, "TAET, TRADES, MART, GAIRAT 0.031; AT, AT-BSL 8/255",
     "training attack ε (pixel units in [0,1])"),
    ("--train-step-size", "step_size", float, "TAET 0.003; TRADES, MART, GAIRAT 0.007; AT, AT-BSL 2/255",
     "training attack step"),
    ("--train-steps", "steps", int, "10", "training attack steps"),
]

ATTACK_HELP = ("comma-separated subset of: clean, fgsm, pgd20, pgd100, cw_l2, cw_linf, autoattack, autoattack_ta. "
               "Two AutoAttacks: autoattack = fra31's standard AutoAttack (pip pyautoattack; 100 APGD iterations, "
               "9 targets: RobustBench's protocol, the stronger one); autoattack_ta = torchattacks.AutoAttack as the "
               "official TAET notebook (cell 12) and AT-BSL's eval.py run it, i.e. the papers' AA column (10 "
               "iterations; needs the optional extra: pip install --no-deps torchattacks==3.5.1)")


def _default_of(section: str, field: str) -> Any:
    obj = {"data": DataConfig(), "model": ModelConfig(), "train": TrainConfig(), "run": RunConfig(),
           "eval": EvalConfig()}[section]
    return getattr(obj, field)


def methods_epilog() -> str:
    """`train --help`'s epilog: every method with its hyperparameters' defaults, and the profiles."""
    lines = ["methods and their hyperparameters (defaults = official code):"]
    for name, cls in sorted(METHODS.items()):
        hp = ", ".join(f"{f.name}={getattr(cls.Args(), f.name)!r}" for f in dataclasses.fields(cls.Args))
        lines.append(f"  {name:<8} {cls.summary}")
        if hp:
            lines.append(f"           {hp}")
    lines.append("profiles: " + ", ".join(sorted(PROFILES)) + " (see lib/profiles.py)")
    return "\n".join(lines)


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """`train`'s flags: --method, --profile, RUN_FLAGS, METHOD_FLAGS and the switches; `config_from_args` reads
    them."""
    p.add_argument("--method", default="taet", choices=sorted(METHODS),
                   help="training method (default: taet)")
    p.add_argument("--profile", default=None, choices=sorted(PROFILES),
                   help="start from a named profile's settings, then apply the flags (default: none = the paper's)")
    for flag, section, field, typ, paper, text in RUN_FLAGS:
        p.add_argument(flag, type=typ, default=None,
                       help=f"{text} (default: {_default_of(section, field)}; paper: {paper})")
    for flag, field, typ, paper, text in METHOD_FLAGS:
        p.add_argument(flag, type=typ, default=None, dest=f"m_{field}",
                       help=f"{text} (default: the method's official value; paper: {paper})")
    p.add_argument("--method-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="any other method hyperparameter, e.g. --method-arg absent=exclude, or --method-arg "
                        "extra_clean_forward=true (TAET, AT-BSL: the official notebook's discarded clean forward) "
                        "(default: none)")
    p.add_argument("--pretrained", action="store_true",
                   help="start from torchvision's ImageNet weights (resnet50_tv, vit_b16; default: off; "
                        "taet_notebook profile: on, as the official notebook)")
    p.add_argument("--no-pretrained", action="store_true",
                   help="random initialisation even where the profile starts from ImageNet weights (offline)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (default: off)")
    p.add_argument("--no-augment", action="store_true", help="turn off random crop + flip (default: on; paper: on)")
    p.add_argument("--no-normalize", action="store_true",
                   help="no per-dataset mean/std inside the model (default: normalise; official TAET, AT-BSL, RoBal "
                        "code: none)")
    p.add_argument("--download", action="store_true",
                   help="let torchvision/medmnist download missing data (default: off)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (default: bars on a terminal)")
    p.add_argument("--tiny", action="store_true",
                   help="with --profile: that profile with only its sizes shrunk (lib/orchestrate/tiny.py), synthetic "
                        "data in the real format where the data set is absent; a code-path check, not a result "
                        "(default: off)")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def config_from_args(a: argparse.Namespace) -> RunConfig:
    """The profile's (or the paper's default) config for --method, with the flags applied through
    `config.override`, the path every caller shares."""
    profile = a.profile
    if getattr(a, "tiny", False):
        if not profile:
            raise ConfigError("--tiny shrinks a named profile: add --profile, e.g. --profile paper --tiny")
        profile = prepare_profile(profile, tiny=True, data_dir=a.data_dir or "data")
        a.data_dir = None  # the tiny profile's folder (real files linked, synthetic ones written)
        if a.out_dir is None:
            a.out_dir = f"outputs/tiny/{a.profile}/runs"
    cfg = profile_config(profile, a.method) if profile else RunConfig(method=a.method)
    values: dict[str, Any] = {}
    for flag, section, field, _t, _p, _h in RUN_FLAGS:
        v = getattr(a, flag.lstrip("-").replace("-", "_"))
        if v is not None:
            values[field if section == "run" else f"{section}.{field}"] = v
    if a.pretrained and a.no_pretrained:
        raise ConfigError("--pretrained and --no-pretrained contradict each other; give one")
    for on, key, v in ((a.no_augment, "data.augment", False), (a.no_normalize, "model.normalize", False),
                       (a.compile, "train.compile", True), (a.pretrained or a.no_pretrained, "model.pretrained",
                                                             bool(a.pretrained)),
                       (a.download, "data.download", True), (a.no_progress, "train.progress", False)):
        if on:
            values[key] = v
    user_args: dict[str, Any] = {}
    for _flag, field, _t, _p, _h in METHOD_FLAGS:
        v = getattr(a, f"m_{field}")
        if v is not None:
            user_args[field] = v
    for kv in a.method_arg:
        if "=" not in kv:
            raise ConfigError(f"--method-arg {kv!r} is not KEY=VALUE (e.g. --method-arg absent=exclude)")
        k, v = kv.split("=", 1)
        user_args[k.strip()] = _parse_value(v)
    resolve_method_args(a.method, user_args, strict=True)  # a flag the method does not have is an error
    values.update({f"method_args.{k}": v for k, v in user_args.items()})
    return override(cfg, values)
