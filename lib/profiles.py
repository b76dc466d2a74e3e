"""A named profile (``lib.config.PROFILES``) as the RunConfig of one method.

Kept apart from :mod:`lib.config` because it needs the method registry (which methods take which
hyperparameters, their default attack sizes), and the methods import ``lib.config``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict
from typing import Any

from . import config
from .config import DataConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig, section_from_dict
from .errors import ConfigError
from .methods import get_method_class, method_arg_names

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
    profiles = config.PROFILES  # looked up at call time: lib.tiny and tests register profiles in it
    if profile not in profiles:
        raise ConfigError(f"unknown profile {profile!r}; valid: {sorted(profiles)}")
    p = profiles[profile]
    accepted = set(method_arg_names(method))
    scale = p.get("attack_scale", 1.0)
    method_args = scaled_attack_args(method, scale) if scale != 1.0 else {}
    method_args.update({k: v for k, v in p.get("method_args", {}).items() if k in accepted})
    own = p.get("method_args_by_method", {}).get(method, {})
    if set(own) - accepted:
        raise ConfigError(f"profile {profile!r} gives {method!r} argument(s) {sorted(set(own) - accepted)} it does "
                          f"not have; its arguments: {sorted(accepted)}")
    method_args.update(own)
    ev = section_from_dict(EvalConfig, p.get("eval", {}))
    tr = section_from_dict(TrainConfig, p.get("train", {}))
    if scale != 1.0:
        ev = dataclasses.replace(ev, **{k: getattr(ev, k) * scale for k in EVAL_ATTACK_SIZES})
        tr = dataclasses.replace(tr, **{k: getattr(tr, k) * scale for k in TRACK_ATTACK_SIZES})
    return RunConfig(
        method=method,
        data=section_from_dict(DataConfig, p.get("data", {})),
        model=section_from_dict(ModelConfig, p.get("model", {})),
        train=tr,
        eval=ev,
        method_args=method_args,
    )


def table_attacks(profile: str, table: str) -> list[str]:
    """The attacks of `profile`'s evaluation suite that the paper's `table` reports (`config.TABLE_ATTACKS`), in the
    suite's order: what a notebook evaluates its runs on and shows as columns."""
    if table not in config.TABLE_ATTACKS:
        raise ConfigError(f"unknown table {table!r}; valid: {sorted(config.TABLE_ATTACKS)}")
    suite = list(profile_config(profile).eval.attacks)
    # a profile may narrow a table further ("table_attacks"): `fashion` evaluates its committed whole-set runs
    # on what they hold (clean, PGD-20) and runs the whole suite on its reduced-scale Table 1
    own = config.PROFILES[profile].get("table_attacks", {})
    wanted = own[table] if table in own else config.TABLE_ATTACKS[table]
    return suite if wanted is None else [a for a in suite if a in wanted]
