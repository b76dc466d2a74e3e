"""The one evidence lookup (`lib.orchestrate.evidence.find`): the run cache, else the committed evidence in
results/<profile>/, else a recorded divergence, from run folders written here (no training)."""

import dataclasses
import json

import pytest

from lib.core import runs
from lib.core.config import ConfigError
from lib.core.suite import describe_attack
from lib.orchestrate.evidence import Found, find
from lib.profiles import run_config

ATTACKS = ("clean", "pgd20")


@pytest.fixture
def cfg(tmp_path):
    return run_config("smoke", "taet", device="cpu", out_dir=str(tmp_path / "out" / "runs"), train={"seed": 1})


@pytest.fixture
def evidence(tmp_path):
    return tmp_path / "results" / "smoke"


def write_run(folder, cfg, balanced=0.5, attacks=ATTACKS, config_hash=None, settings_of=None):
    """A run folder as the kit writes it (config.json, eval.json), with `balanced` for every attack; `config_hash`
    and `settings_of` (an EvalConfig) stand in for another config's or another evaluation's files."""
    folder.mkdir(parents=True, exist_ok=True)
    runs.write_config(folder, cfg)
    ecfg = settings_of or cfg.eval
    results = {a: {"balanced": balanced, "accuracy": balanced, "n": 100, "per_class": [balanced] * 10,
                   "settings": describe_attack(a, ecfg), "seed": ecfg.seed} for a in attacks}
    doc = {"config_hash": config_hash or runs.config_hash(cfg), "results": results}
    (folder / "eval.json").write_text(json.dumps(doc))
    return folder


def diverge(folder, cfg, epoch=3):
    folder.mkdir(parents=True, exist_ok=True)
    runs.write_diverged(folder, cfg, epoch=epoch, batch=2, message=f"loss became NaN/inf at epoch {epoch}")
    return folder


def test_a_cached_run_is_found_in_the_cache_and_wins_over_the_committed_one(cfg, evidence):
    assert find(cfg, ATTACKS, evidence) is None  # nothing anywhere
    committed = write_run(evidence / runs.run_dir(cfg).name, cfg, balanced=0.4)
    got = find(cfg, ATTACKS, evidence)
    assert got == Found(got.doc, committed, "evidence", None) and got.doc["results"]["pgd20"]["balanced"] == 0.4
    assert find(cfg, ATTACKS) is None  # without an evidence folder, the cache alone
    write_run(runs.run_dir(cfg), cfg, balanced=0.6)
    got = find(cfg, ATTACKS, evidence)
    assert (got.source, got.folder, got.diverged) == ("cache", runs.run_dir(cfg), None)
    assert got.doc["results"]["pgd20"]["balanced"] == 0.6
    # cache=False: the committed copy alone (the claims check compares the two)
    alone = find(cfg, ATTACKS, evidence, cache=False)
    assert alone.source == "evidence" and alone.doc["results"]["pgd20"]["balanced"] == 0.4
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.source = "evidence"


def test_a_stale_hash_or_a_missing_or_outdated_attack_is_no_result(cfg, evidence):
    committed = write_run(evidence / runs.run_dir(cfg).name, cfg, balanced=0.4)
    write_run(runs.run_dir(cfg), cfg, balanced=0.6, config_hash="0" * 16)  # another config's eval.json
    assert find(cfg, ATTACKS, evidence).folder == committed
    write_run(runs.run_dir(cfg), cfg, balanced=0.6, attacks=("clean",))  # PGD-20 not evaluated in the cache
    assert find(cfg, ATTACKS, evidence).folder == committed
    assert find(cfg, ("clean",), evidence).source == "cache"  # what it holds is found
    other_eps = dataclasses.replace(cfg.eval, eps=cfg.eval.eps / 2)
    write_run(runs.run_dir(cfg), cfg, balanced=0.6, settings_of=other_eps)  # evaluated with other settings
    assert find(cfg, ATTACKS, evidence).folder == committed
    (runs.run_dir(cfg) / "eval.json").write_text("{not json")  # a corrupt eval.json is no result either
    assert find(cfg, ATTACKS, evidence).folder == committed
    write_run(committed, cfg, attacks=("clean",))  # the committed copy lacks PGD-20 as well: nothing
    assert find(cfg, ATTACKS, evidence) is None


def test_a_recorded_divergence_is_found_in_either_place_after_any_result(cfg, evidence):
    committed = evidence / runs.run_dir(cfg).name
    diverge(committed, cfg, epoch=4)
    got = find(cfg, ATTACKS, evidence)
    assert (got.doc, got.folder, got.source, got.diverged["epoch"]) == (None, committed, "evidence", 4)
    diverge(runs.run_dir(cfg), cfg, epoch=2)
    got = find(cfg, ATTACKS, evidence)
    assert (got.source, got.diverged["epoch"]) == ("cache", 2)  # the cache's record first
    assert find(cfg, ATTACKS).diverged["epoch"] == 2
    # a result in either place wins over a divergence: the committed run stands in for the cache's failed one
    write_run(committed, cfg, balanced=0.4)
    got = find(cfg, ATTACKS, evidence)
    assert (got.source, got.diverged, got.doc["results"]["clean"]["balanced"]) == ("evidence", None, 0.4)


def test_another_configs_divergence_is_ignored_and_a_corrupt_record_is_an_error(cfg, evidence, tmp_path):
    other = run_config("smoke", "taet", device="cpu", out_dir=str(tmp_path / "out" / "runs"), train={"seed": 2})
    diverge(evidence / runs.run_dir(cfg).name, other)  # another seed's record in this run's folder
    assert find(cfg, ATTACKS, evidence) is None
    (runs.run_dir(cfg)).mkdir(parents=True)
    (runs.run_dir(cfg) / runs.DIVERGED_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="diverged.json is corrupt"):
        find(cfg, ATTACKS, evidence)
