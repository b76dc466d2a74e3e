"""One override path (`config.override`): values take their field's type, so one experiment has one hash whether it
comes from the CLI, a sweep, the notebooks' `run_config` or the Python API."""

from __future__ import annotations

import pytest

from lib.cli.main import build_parser, config_from_args
from lib.core import runs
from lib.core.config import ConfigError, RunConfig, override
from lib.core.train import validate
from lib.orchestrate.sweep import expand_points
from lib.profiles import profile_config, run_config

SMOKE_TAET = "acdc6db661ba9ca7"  # tests/test_hashes.py: the smoke profile's TAET run, cached under this hash


def test_an_int_for_a_float_field_becomes_a_float_and_a_list_a_tuple():
    cfg = override(RunConfig(), {"data.imbalance_ratio": 10, "train.milestones": [1, 0.5],
                                 "eval.attacks": ["clean", "pgd20"], "train.epochs": 3, "name": "x"})
    assert cfg.data.imbalance_ratio == 10.0 and isinstance(cfg.data.imbalance_ratio, float)
    assert cfg.train.milestones == (1.0, 0.5) and all(isinstance(m, float) for m in cfg.train.milestones)
    assert cfg.eval.attacks == ("clean", "pgd20")
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)  # int fields stay int
    assert cfg.name == "x"
    assert override(RunConfig(), {"data.max_train": 100}).data.max_train == 100  # int | None: unchanged


def test_override_merges_method_args_and_leaves_the_input_alone():
    base = profile_config("smoke", "taet")
    cfg = override(base, {"method_args.alpha": 0.2})
    assert cfg.method_args == {**base.method_args, "alpha": 0.2}
    assert "alpha" not in base.method_args and base.data.imbalance_ratio == 10.0


@pytest.mark.parametrize("key, message", [
    ("data.imbalance", r"unknown config key 'data.imbalance'; valid data\.\* keys: \[.*'imbalance_ratio'"),
    ("dat.imbalance_ratio", r"unknown config key 'dat.imbalance_ratio'; valid: SECTION.FIELD with SECTION one of "
                            r"\['data', 'eval', 'model', 'train'\], method_args.NAME, or one of \['name', 'out_dir'\]"),
    ("method", "unknown config key 'method'"),
    ("train", "unknown config key 'train'"),
])
def test_a_bad_key_names_the_valid_ones(key, message):
    with pytest.raises(ConfigError, match=message):
        override(RunConfig(), {key: 1})


def test_run_config_gives_one_hash_for_10_and_10_0():
    as_int = run_config("smoke", "taet", device="cpu", data={"imbalance_ratio": 10})
    as_float = run_config("smoke", "taet", device="cpu", data={"imbalance_ratio": 10.0})
    assert runs.config_hash(as_int) == runs.config_hash(as_float) == SMOKE_TAET


def test_cli_sweep_notebooks_and_python_api_give_the_same_hash(tmp_path):
    """IR 10 and α = 1 written as ints everywhere, the same experiment reached four ways."""
    a = build_parser().parse_args(["train", "--profile", "smoke", "--method", "taet", "--imbalance-ratio", "10",
                                   "--method-arg", "alpha=1", "--device", "cpu", "--out-dir", str(tmp_path)])
    cli = validate(config_from_args(a))
    (_, swept), = expand_points({"profile": "smoke", "device": "cpu", "out_dir": str(tmp_path),
                                 "grid": {"method": ["taet"], "ir": [10], "alpha": [1]}})
    notebook = run_config("smoke", "taet", device="cpu", data={"imbalance_ratio": 10}, method_args={"alpha": 1})
    api = validate(override(profile_config("smoke", "taet"), {"data.imbalance_ratio": 10, "method_args.alpha": 1,
                                                              "train.device": "cpu"}))
    hashes = {name: runs.config_hash(c) for name, c in
              (("cli", cli), ("sweep", swept), ("run_config", notebook), ("api", api))}
    assert len(set(hashes.values())) == 1, hashes
    assert hashes["api"] != SMOKE_TAET  # α = 1 is another experiment than the profile's α = 0.1
    plain = validate(override(profile_config("smoke", "taet"), {"data.imbalance_ratio": 10, "train.device": "cpu"}))
    assert runs.config_hash(plain) == SMOKE_TAET
