"""Named profiles (lib.profiles): typed, checked once when made, and read through one API."""

from __future__ import annotations

import dataclasses

import pytest

from lib import profiles
from lib.core import runs
from lib.core.errors import ConfigError
from lib.profiles import PROFILES, Profile, run_config
from lib.study import seeded


def _spec(**changes):
    spec = PROFILES["smoke"].to_spec()
    for key, value in changes.items():
        section, _, field = key.partition(".")
        if field:
            spec[section][field] = value
        else:
            spec[section] = value
    return spec


def test_every_named_profile_is_a_checked_profile_whose_spec_round_trips():
    assert set(profiles.SPECS) <= set(PROFILES)
    for name, p in PROFILES.items():
        assert isinstance(p, Profile) and p.name == name
        assert Profile.from_spec(name, p.to_spec()) == p
    assert PROFILES["fashion"].seeds == [0, 1, 2] and PROFILES["demo"].attack_scale == 4.0
    assert PROFILES["paper"].notebooks.irs == [10, 20, 50, 100] and PROFILES["paper"].notebooks.reduced is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROFILES["paper"].seeds = [0]


@pytest.mark.parametrize("key, value, message", [
    ("data", {"dataset": "digits", "imbalance_ratio": 10.0, "no_such_field": 1}, r"smoke'.data: unknown DataConfig"),
    ("method_args", {"ce_epochs": 1, "alpah": 0.1}, r"method_args \['alpah'\] belong to no method"),
    ("method_args_by_method", {"atbsl": {"steps": 10, "gamma": 0.1}}, r"gives 'atbsl' argument\(s\) \['gamma'\]"),
    ("method_args_by_method", {"nope": {}}, "nope"),
    ("attack_scale", 0, "attack_scale must be > 0"),
    ("seeds", [0, 0], "seeds"),
    ("table_attacks", {"table9": ("clean",)}, r"table_attacks: unknown key\(s\) \['table9'\]"),
    ("notebooks.reduced", {"overrides": {}, "seed": [0]}, r"notebooks.reduced: unknown key\(s\) \['seed'\]"),
    ("notebooks.reduced", {"seeds": [0, 0]}, "notebooks.reduced.seeds"),
    ("notebooks.reduced", {"ablations": ["table4", "fig9"]}, "notebook 04's studies are table4, fig6b, fig7"),
    ("notebooks.reduced", {"overrides": {"data": {"max_trian": 5}}}, "reduced.overrides.data: unknown DataConfig"),
    ("notebooks.derma", {"dataset": "dermamnist", "arhc": "small_cnn"}, r"derma: unknown key\(s\) \['arhc'\]"),
    ("notebooks.hel_grid", [[0.1, 0.1]], r"hel_grid: each entry is \(alpha, beta, gamma\)"),
])
def test_a_wrong_profile_is_refused_in_one_line_when_it_is_made(key, value, message):
    with pytest.raises(ConfigError, match=message) as e:
        Profile.from_spec("smoke", _spec(**{key: value}))
    assert "\n" not in str(e.value)


def test_an_empty_reduced_scale_is_none_and_an_unknown_profile_is_named():
    assert Profile.from_spec("smoke", _spec(**{"notebooks.reduced": {}})).notebooks.reduced is None
    with pytest.raises(ConfigError, match=r"unknown profile 'nope'; valid: \["):
        profiles.profile_seeds("nope")


def test_notebook_settings_are_a_copy_safe_to_change():
    nb = profiles.notebook_settings("fashion")
    nb["irs"].append(1000)
    nb["derma"]["epochs"] = 1
    assert profiles.notebook_settings("fashion")["irs"] == [10, 20, 50, 100]
    assert PROFILES["fashion"].notebooks.derma["epochs"] == 20


def test_reduced_scale_merges_its_overrides_and_is_none_where_a_profile_has_none():
    assert profiles.reduced_scale("demo") is None and profiles.reduced_scale("paper") is None
    red = profiles.reduced_scale("fashion")
    assert red == {"overrides": {"data": {"max_train": 2000}, "train": {"track_every": 0}}, "seeds": [0],
                   "full_scale_methods": ["ce", "at", "atbsl", "taet"], "ablations": ["table4"]}
    variants = {"taet @ IR 50": {"method": "taet", "data": {"imbalance_ratio": 50}, "train": {"epochs": 5}},
                "BCL": {"beta": 0.0}}
    assert seeded.at_reduced(variants, red) == {
        "taet @ IR 50": {"method": "taet", "data": {"imbalance_ratio": 50, "max_train": 2000},
                         "train": {"epochs": 5, "track_every": 0}},
        "BCL": {"beta": 0.0, "data": {"max_train": 2000}, "train": {"track_every": 0}}}
    assert variants["BCL"] == {"beta": 0.0}  # the caller's dicts are not changed
    # the reduced runs are other runs than the profile's own (another hash and folder), the same seed otherwise
    small = run_config("fashion", "taet", data={"max_train": 2000}, train={"track_every": 0})
    assert runs.run_dir(small) != runs.run_dir(run_config("fashion", "taet")) and small.data.max_train == 2000


