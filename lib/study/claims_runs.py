"""The claims check's runs: which runs the claims read (a label -> method and overrides, each trained for every seed
of the profile), their configs, where each is found, training the missing ones, and the evidence export.

A run is looked up with `lib.orchestrate.evidence.find` in the run cache (outputs/runs) and, separately, in the
committed evidence `results/<profile>/<run name>/{config.json, eval.json, history.csv}`: the check reads both so
that it can say whether your runs agree with the committed ones. A recorded divergence (diverged.json in either
place) is an outcome, not a missing run. Missing runs are trained through `lib.orchestrate.sweep` only when asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lib.core import runs
from lib.core.config import ConfigError, RunConfig
from lib.core.errors import check_seeds
from lib.orchestrate.evidence import Found, find
from lib.orchestrate.sweep import SweepError, default_workers, run_sweep
from lib.orchestrate.tiny import TINY_SUFFIX
from lib.profiles import notebook_settings, profile_config, profile_seeds, run_config
from lib.study import factorial

RESULTS_DIR = runs.RESULTS_DIR

# Per profile: does notebook 08 train the claims runs it lacks (cheap profiles: yes; fashion and paper read the
# committed results/ and say what to train), and does it include the factorial (the demo leaves it out to stay short).
# `partial`: a claim whose runs are missing gets a "not run" row (naming them) instead of stopping the check, so the
# evidence committed so far can be read while the rest trains.
PROFILE_SETTINGS = {"smoke": {"train_missing": True, "factorial": True, "partial": False},
                    "demo": {"train_missing": True, "factorial": False, "partial": False}}
DEFAULT_SETTINGS = {"train_missing": False, "factorial": True, "partial": True}


def settings(profile: str) -> dict[str, bool]:
    """Notebook 08's defaults for `profile`; a `--tiny` profile trains what it lacks (it is a check of the code)."""
    base = profile.removesuffix(TINY_SUFFIX)
    out = {**DEFAULT_SETTINGS, **PROFILE_SETTINGS.get(base, {})}
    if profile.endswith(TINY_SUFFIX):
        out["train_missing"] = True
    return out


class MissingRunsError(ConfigError):
    """Runs a claim needs are neither in the run cache nor in results/."""


# ---------------------------------------------------------------------------------------------------------------
# The runs: a label -> (method, section overrides); each is trained for every seed of the profile.
# ---------------------------------------------------------------------------------------------------------------
def claim_runs(profile: str, factorial_cells: bool = True, switch_cells: bool = False
               ) -> dict[str, tuple[str, dict[str, dict]]]:
    """Every run the claims (and the factorial, and the fidelity switches) read, as
    {label: (method, {"data": ..., "model": ..., "method_args": ...})}."""
    nb = notebook_settings(profile)
    out: dict[str, tuple[str, dict[str, dict]]] = {
        "ce": ("ce", {}), "taet": ("taet", {}), "atbsl": ("atbsl", {}), "at": ("at", {}),
        "taet BCL only": ("taet", {"method_args": {"beta": 0.0, "gamma": 0.0}}),
    }
    for e in nb["ce_epochs_grid"]:
        out[f"taet {e} clean epochs"] = ("taet", {"method_args": {"ce_epochs": e}})
    for ir in nb["irs"]:
        for m in ("taet", "atbsl"):
            out[f"{m} IR {ir:g}"] = (m, {"data": {"imbalance_ratio": float(ir)}})
    if factorial_cells:
        for c in factorial.cells(profile):
            out[c.label] = (c.method, {"method_args": dict(c.method_args)})
    if switch_cells:
        out.update(switch_runs(profile))
    return out


def switch_runs(profile: str) -> dict[str, tuple[str, dict[str, dict]]]:
    """The official codes' protocol switches that run at 28 px (docs/deviations.md: the official TAET notebook's
    protocol), each set alone on TAET and AT-BSL: no input normalisation, the extra train-mode clean forward, and
    (AT-BSL only, the TAET repository's AT-BSL baseline) TAET's training attack."""
    out: dict[str, tuple[str, dict[str, dict]]] = {}
    for method, name in (("taet", "TAET"), ("atbsl", "AT-BSL")):
        out[f"{name} · no input normalisation"] = (method, {"model": {"normalize": False}})
        out[f"{name} · extra clean forward"] = (method, {"method_args": {"extra_clean_forward": True}})
    out["AT-BSL · TAET's attack"] = ("atbsl", {"method_args": factorial.attack_args("taet", profile)})
    return out


SWITCH_BASE = {"TAET": "taet", "AT-BSL": "atbsl"}  # each switch is paired with its method's default run


def run_configs(profile: str, labels, seeds, *, device: str = "cpu", out_dir: str = "outputs"
                ) -> dict[tuple[str, int], RunConfig]:
    """{(label, seed): the validated RunConfig} (`lib.profiles.run_config`: the notebooks' own configs)."""
    specs = claim_runs(profile, switch_cells=True)
    return {(lbl, s): run_config(profile, specs[lbl][0], device=device, out_dir=out_dir, train={"seed": s},
                                 **specs[lbl][1]) for lbl in labels for s in seeds}


AA_RUNS = ("taet", "atbsl")  # AutoAttack (where the profile runs it) only for the runs its claim reads: it is slow


def eval_attacks(profile: str, label: str = "taet") -> list[str]:
    """What a claims run (`label`) is evaluated with: clean and PGD-20, plus AutoAttack for TAET and AT-BSL where the
    profile's suite has it."""
    have = profile_config(profile, "taet").eval.attacks
    wanted = ("clean", "pgd20", "autoattack") if label in AA_RUNS else ("clean", "pgd20")
    return [a for a in wanted if a in have]


# ---------------------------------------------------------------------------------------------------------------
# Finding them (the run cache and results/), training the missing, exporting the evidence
# ---------------------------------------------------------------------------------------------------------------
def _with_history(f: Found | None) -> dict[str, Any] | None:
    """A found result as the claims read it: its eval document with its history.csv rows and its folder; None for
    nothing found, or a divergence."""
    if f is None or f.doc is None:
        return None
    hist = f.folder / "history.csv"
    return {**f.doc, "history": runs.read_csv(hist) if hist.exists() else [], "folder": str(f.folder)}


def _lookup(cfg: RunConfig, attacks, profile: str, results_dir) -> tuple[Found | None, Found | None]:
    """(`find` in the run cache alone, `find` in results/<profile>/ alone): the check compares the two places."""
    return find(cfg, attacks), find(cfg, attacks, Path(results_dir) / profile, cache=False)


def _diverged(pair: tuple[Found | None, Found | None]) -> dict[str, Any] | None:
    """The divergence record of `_lookup`'s pair (the cache's first), with the folder it was found in, where
    neither place holds a result; else None."""
    if any(f is not None and f.doc is not None for f in pair):
        return None
    f = next((f for f in pair if f is not None), None)
    return None if f is None else {**f.diverged, "folder": str(f.folder)}


def locate_diverged(cfg: RunConfig, profile: str, results_dir=RESULTS_DIR) -> dict[str, Any] | None:
    """The run's divergence record (`lib.core.runs.write_diverged`) from the cache, else from results/<profile>/, with
    the folder it was found in; None where neither has one for this config (or one holds its result for the
    config's own attack suite)."""
    return _diverged(_lookup(cfg, cfg.eval.attacks, profile, results_dir))


def locate(cfg: RunConfig, attacks, profile: str, results_dir=RESULTS_DIR) -> tuple[dict | None, dict | None]:
    """(the run from the cache, the run from results/<profile>/), each None where absent or out of date."""
    mine, theirs = _lookup(cfg, attacks, profile, results_dir)
    return _with_history(mine), _with_history(theirs)


def gather(profile: str, *, seeds=None, device: str = "cpu", out_dir: str = "outputs", results_dir=RESULTS_DIR,
           train_missing: bool = False, workers: int | None = None, factorial_cells: bool = True,
           partial: bool = False, switch_cells: bool = False) -> dict[str, Any]:
    """{"cache": {(label, seed): doc}, "results": {...}, "seeds": [...], "missing": [(label, seed)], "diverged":
    {(label, seed): record}, ...}: every claims run, from the run cache and from results/. A run whose training
    diverged (NaN/inf loss; its diverged.json in either place) is in "diverged", not trained again. Other runs in
    neither place are trained through `lib.orchestrate.sweep` when `train_missing` (`workers` at once; default
    `lib.orchestrate.sweep.default_workers`), else listed in "missing" when `partial`, else MissingRunsError naming
    them and the command that trains them."""
    seeds = check_seeds(seeds if seeds is not None else profile_seeds(profile), f"claims check ({profile})")
    labels = list(claim_runs(profile, factorial_cells, switch_cells))
    cfgs = run_configs(profile, labels, seeds, device=device, out_dir=out_dir)
    found: dict[tuple[str, int], tuple[dict | None, dict | None]] = {}
    diverged: dict[tuple[str, int], dict[str, Any]] = {}

    def look(k: tuple[str, int]) -> None:
        """The run `k` from the cache and from results/; a run that diverged is an outcome, not a missing run: it
        is reported as such and not trained again."""
        pair = _lookup(cfgs[k], eval_attacks(profile, k[0]), profile, results_dir)
        found[k] = (_with_history(pair[0]), _with_history(pair[1]))
        if (rec := _diverged(pair)) is not None:
            diverged[k] = rec

    for k in cfgs:
        look(k)
    missing = [k for k, (c, r) in found.items() if c is None and r is None and k not in diverged]
    if missing and not train_missing and not partial:
        by_name: dict[str, list[str]] = {}
        for lbl, s in missing:
            by_name.setdefault(runs.run_dir(cfgs[(lbl, s)]).name, []).append(f"{lbl} (seed {s})")
        names = "\n".join(f"  {name}: {', '.join(what)}" for name, what in by_name.items())
        raise MissingRunsError(
            f"the claims check needs {len(by_name)} run(s) that are neither in {Path(out_dir) / 'runs'} nor in "
            f"{Path(results_dir) / profile}:\n{names}\n{train_hint(profile)}, or restore the committed "
            f"{results_dir}/ folder")
    if missing and train_missing:
        workers = default_workers(device) if workers is None else workers
        failure = None
        for spec in training_specs(profile, missing, device=device, out_dir=out_dir):
            # one worker: this process, with its thread settings; several: spawned 1-thread processes (lib.study.seeded)
            try:
                run_sweep(spec, executor="inline" if workers <= 1 else "local", workers=workers)
            except SweepError as e:  # runs that diverged are reported below; any other failure is raised
                failure = e
        for k in missing:
            look(k)
        if failure is not None and any(found[k] == (None, None) and k not in diverged for k in missing):
            raise failure
        missing = []
    return {"cache": {k: c for k, (c, _) in found.items() if c is not None},
            "results": {k: r for k, (_, r) in found.items() if r is not None}, "seeds": seeds, "configs": cfgs,
            "missing": missing, "diverged": diverged}


def train_hint(profile: str) -> str:
    """The command that trains a profile's missing claims runs."""
    return (f"Train them with `python -m lib claims --profile {profile} --train` (or set train_missing = True in "
            f"notebook 08)")


def training_specs(profile: str, keys, *, device: str = "cpu", out_dir: str = "outputs") -> list[dict[str, Any]]:
    """The `lib.orchestrate.sweep` specs (one per attack list) that train and evaluate the claims runs `keys`
    ((label, seed))."""
    specs = claim_runs(profile, switch_cells=True)
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for lbl, s in keys:
        groups.setdefault(tuple(eval_attacks(profile, lbl)), []).append({"method": specs[lbl][0], "seed": s,
                                                                     **specs[lbl][1]})
    return [{"profile": profile, "device": device, "out_dir": out_dir, "attacks": list(attacks),
             "grid": {"run": grid}} for attacks, grid in groups.items()]


def export_results(profile: str, gathered: dict[str, Any], results_dir=RESULTS_DIR) -> list[Path]:
    """Copy config.json, eval.json and history.csv (no checkpoint) of every claims run in the cache, and
    config.json, diverged.json and any history.csv of every cached run that diverged, to
    results/<profile>/<run name>/; returns the folders written."""
    folders = {Path(doc["folder"]) for doc in gathered["cache"].values()}
    folders |= {Path(rec["folder"]) for rec in gathered.get("diverged", {}).values()}
    return runs.export_evidence(sorted(folders), Path(results_dir) / profile)
