"""The claims check: every claim of the TAET paper as a paired difference over seeds, with its interval and verdict.

Each claim compares runs of the profile (same seed = paired: same data draw, initialisation and batch order) and
states the paper's own number (CIFAR-10-LT, from its tables). Runs are read from the run cache (outputs/runs) and,
where the cache lacks one, from the committed evidence `results/<profile>/<run name>/{config.json, eval.json,
history.csv}`; when both hold a claim's runs, the row says whether your runs agree with the committed ones. Missing
runs are trained only when asked (`train_missing`, `python -m lib claims --train`); otherwise a `partial` check
measures each claim over the seeds that have its runs and names the rest, and a strict one stops with a ConfigError
naming them and the command. `export_results` writes the evidence files (no checkpoints).
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.core import runs
from lib.core.config import ConfigError, RunConfig
from lib.core.errors import check_seeds, parse_seeds
from lib.profiles import notebook_settings, profile_config, profile_seeds
from lib.study import factorial
from lib.study.stats import Summary, bonferroni_level, paired_difference, summarize, verdict
from lib.study.tables import rarest_classes

RESULTS_DIR = runs.RESULTS_DIR

# Per profile: does notebook 08 train the claims runs it lacks (cheap profiles: yes; fashion and paper read the
# committed results/ and say what to train), and does it include the factorial (the demo leaves it out to stay short).
# `partial`: a claim whose runs are missing gets a "not run" row (naming them) instead of stopping the check, so the
# evidence committed so far can be read while the rest trains.
PROFILE_SETTINGS = {"smoke": {"train_missing": True, "factorial": True, "partial": False},
                    "demo": {"train_missing": True, "factorial": False, "partial": False}}
DEFAULT_SETTINGS = {"train_missing": False, "factorial": True, "partial": True}
NOT_RUN = "not run"


def settings(profile: str) -> dict[str, bool]:
    """Notebook 08's defaults for `profile`; a `--tiny` profile trains what it lacks (it is a check of the code)."""
    from lib.orchestrate.tiny import TINY_SUFFIX

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
    """The official codes' protocol switches that run at 28 px (README, Deviations: the official TAET notebook's
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
    from lib.profiles import run_config

    specs = claim_runs(profile, switch_cells=True)
    return {(lbl, s): run_config(profile, specs[lbl][0], device=device, out_dir=out_dir, train={"seed": s},
                                 **specs[lbl][1]) for lbl in labels for s in seeds}


AA_RUNS = ("taet", "atbsl")  # AutoAttack (where the profile runs it) only for the runs its claim reads: it is slow


def _attacks(profile: str, label: str = "taet") -> list[str]:
    """What a claims run is evaluated with: clean and PGD-20, plus AutoAttack for TAET and AT-BSL where the
    profile's suite has it."""
    have = profile_config(profile, "taet").eval.attacks
    wanted = ("clean", "pgd20", "autoattack") if label in AA_RUNS else ("clean", "pgd20")
    return [a for a in wanted if a in have]


def _read_doc(folder: Path, cfg: RunConfig, attacks) -> dict[str, Any] | None:
    """The run folder's eval document (with its history) if it is this config's and holds `attacks` as configured."""
    from lib.orchestrate.sweep import cached_result

    doc = cached_result(cfg, attacks, folder)
    if doc is None:
        return None
    hist = folder / "history.csv"
    return {**doc, "history": runs.read_csv(hist) if hist.exists() else [], "folder": str(folder)}


def locate_diverged(cfg: RunConfig, profile: str, results_dir=RESULTS_DIR) -> dict[str, Any] | None:
    """The run's divergence record (`lib.core.runs.write_diverged`) from the cache, else from results/<profile>/, with
    the folder it was found in; None where neither has one for this config."""
    name = runs.run_dir(cfg).name
    for folder in (runs.run_dir(cfg), Path(results_dir) / profile / name):
        rec = runs.read_diverged(folder, cfg)
        if rec is not None:
            return {**rec, "folder": str(folder)}
    return None


def locate(cfg: RunConfig, attacks, profile: str, results_dir=RESULTS_DIR) -> tuple[dict | None, dict | None]:
    """(the run from the cache, the run from results/<profile>/), each None where absent or out of date."""
    name = runs.run_dir(cfg).name
    return _read_doc(runs.run_dir(cfg), cfg, attacks), _read_doc(Path(results_dir) / profile / name, cfg, attacks)


# ---------------------------------------------------------------------------------------------------------------
# The claims
# ---------------------------------------------------------------------------------------------------------------
def _bal(attack: str) -> Callable[[dict], float]:
    return lambda doc: 100 * doc["results"][attack]["balanced"]


def _train_seconds(doc: dict) -> float:
    return runs.train_seconds(doc["history"])


def _tail_gain(docs: dict[str, dict]) -> float:
    """(TAET − AT-BSL) on the three rarest classes' mean PGD-20 recall minus (TAET − AT-BSL) balanced."""
    t, a = docs["taet"]["results"]["pgd20"], docs["atbsl"]["results"]["pgd20"]
    tail = rarest_classes(docs["taet"]["protocol"]["train_counts"], 3)
    tail_gain = sum((t["per_class"][c] or 0.0) - (a["per_class"][c] or 0.0) for c in tail) / len(tail)
    return 100 * (tail_gain - (t["balanced"] - a["balanced"]))


@dataclass
class Claim:
    """`value(docs)` gives one number per seed from {run label: eval doc of that seed}; the claim holds when it
    lies on the `direction` side of `threshold` (points, or seconds for cost)."""

    text: str  # the claim in one sentence, with its table / figure
    paper: str  # the paper's number, cited
    runs: tuple[str, ...]
    value: Callable[[dict[str, dict]], float]
    direction: int = +1
    threshold: float = 0.0
    unit: str = "points"


UNEVEN_TIMING = 1.5  # an epoch this many times slower than its stage's fastest: other work shared the cores


def uneven_timing(claim: Claim, docs: dict, seeds) -> list[str]:
    """For a cost claim, its runs whose epochs of one stage differ by more than UNEVEN_TIMING (slowest over
    fastest, `runs.epoch_time_spread`), as 'label seed s (2.0×)': their times include other jobs' load, so they
    are upper bounds and the comparison is not between like conditions. [] for other claims."""
    if claim.unit != "seconds":
        return []
    out = []
    for s in seeds:
        for lbl in claim.runs:
            x = runs.epoch_time_spread(docs[(lbl, s)]["history"])
            if x > UNEVEN_TIMING:
                out.append(f"{lbl} seed {s} ({x:.1f}×)")
    return out


def _diff(a: str, b: str, metric: Callable[[dict], float]) -> Callable[[dict[str, dict]], float]:
    return lambda docs: metric(docs[a]) - metric(docs[b])


def claims(profile: str) -> list[Claim]:
    """The paper's claims, in its order (numbers from its Tables 1, 2, 4, 5 and Figs. 6-7, CIFAR-10-LT IR 10)."""
    nb = notebook_settings(profile)
    has_aa = "autoattack" in _attacks(profile)
    ce = factorial.clean_epochs(profile)
    pgd, clean = _bal("pgd20"), _bal("clean")
    out = [
        Claim("Table 1: TAET's balanced PGD-20 robustness is above AT-BSL's.", "35.15 − 26.86 = +8.29 (Table 1)",
              ("taet", "atbsl"), _diff("taet", "atbsl", pgd)),
    ]
    if has_aa:
        out.append(Claim("Table 1: TAET's balanced AutoAttack robustness is above AT-BSL's.",
                         "30.57 − 25.26 = +5.31 (Table 1, torchattacks AA)", ("taet", "atbsl"),
                         _diff("taet", "atbsl", _bal("autoattack"))))
    out += [
        Claim("Table 1: TAET's balanced PGD-20 robustness is above AT's.", "35.15 − 25.69 = +9.46 (Table 1)",
              ("taet", "at"), _diff("taet", "at", pgd)),
        Claim("Table 1: TAET's balanced clean accuracy is competitive (within 2 points of AT-BSL, or above).",
              "74.67 − 72.74 = +1.93 (Table 1)", ("taet", "atbsl"), _diff("taet", "atbsl", clean), threshold=-2.0),
        Claim("Table 2: TAET's PGD-20 gain over AT-BSL is larger on the three rarest classes than on average.",
              "rarest three (horse, ship, truck) +11.16 vs balanced +8.29: +2.87 (Tables 1-2)",
              ("taet", "atbsl"), _tail_gain),
        Claim("Table 4 / Fig. 6b: HEL with all three terms beats BCL alone (balanced PGD-20).",
              "all three terms best (Fig. 6b; no number in the text)", ("taet", "taet BCL only"),
              _diff("taet", "taet BCL only", pgd)),
        Claim("Fig. 6b / Sec. 6.3: the clean first stage raises balanced clean accuracy.",
              "+7.19 (Sec. 6.3, 40 of 100 clean epochs vs none)", ("taet", "taet 0 clean epochs"),
              _diff("taet", "taet 0 clean epochs", clean)),
        Claim("Fig. 6b / Sec. 6.3: the clean first stage raises balanced PGD-20 robustness.",
              "+1.04 under AA (Sec. 6.3)", ("taet", "taet 0 clean epochs"), _diff("taet", "taet 0 clean epochs", pgd)),
    ]
    paper_t5 = {10: "+8.29", 20: "+11.42", 50: "+8.48", 100: "+7.36"}
    for ir in nb["irs"]:
        t, a = f"taet IR {ir:g}", f"atbsl IR {ir:g}"
        out.append(Claim(f"Table 5: TAET's balanced PGD-20 robustness is above AT-BSL's at IR {ir:g}.",
                         f"{paper_t5.get(int(ir), 'not reported')} (Table 5)", (t, a), _diff(t, a, pgd)))
    out.append(Claim("Fig. 6a: TAET trains faster than AT-BSL (training seconds per run, from the run files).",
                     "TAET lowest time per epoch (Fig. 6a; no number)", ("taet", "atbsl"),
                     _diff("taet", "atbsl", _train_seconds), direction=-1, unit="seconds"))
    others = [e for e in nb["ce_epochs_grid"] if e != ce]
    total = profile_config(profile, "taet").train.epochs
    out.append(Claim(f"Fig. 7: a clean stage of about 40% ({ce} of {total} epochs here) gives the best balanced PGD-20 "
                     "robustness (vs every other length tried).", "40 of 100 best (Fig. 7; no number)",
                     tuple(f"taet {e} clean epochs" for e in [ce] + others), None))  # value set in evaluate_claims
    return out


def _fig7_value(claim: Claim, per_seed: list[dict[str, dict]], confidence: float = 0.95
                ) -> tuple[list[float], str, Summary, str]:
    """"About 40% is best" against every other length tried: 40%'s PGD-20 minus each rival's, paired by seed, with
    intervals simultaneous over the k rivals (Bonferroni, each at 1 − (1 − confidence)/k), so the verdict is a
    family-wise `confidence` statement whichever rival decides it and no rival is picked after seeing the data.
    Supported when every interval lies above 0 (each length beaten), contradicted when some rival's lies wholly
    below (that length is better), else inconclusive. Returns the deciding rival's differences, a note naming it,
    its simultaneous summary and the verdict."""
    best, others = claim.runs[0], claim.runs[1:]
    pgd = _bal("pgd20")
    level = bonferroni_level(len(others), confidence)
    diffs = {r: [pgd(d[best]) - pgd(d[r]) for d in per_seed] for r in others}
    sums = {r: summarize(v, level) for r, v in diffs.items()}
    verdicts = {r: verdict(sums[r]) for r in others}
    if "contradicted" in verdicts.values():  # the better length with the largest lead decides
        rival = min((r for r in others if verdicts[r] == "contradicted"), key=lambda r: sums[r].mean)
        out = "contradicted"
    else:  # the rival closest to beating 40% (lowest bound; lowest mean with one seed) decides
        rival = min(others, key=lambda r: (sums[r].mean if math.isnan(sums[r].low) else sums[r].low))
        out = "supported" if all(v == "supported" for v in verdicts.values()) else "inconclusive"
    note = (f"{rival}, deciding of {len(others)} rivals; {100 * level:.1f}% intervals, Bonferroni-simultaneous at "
            f"{100 * confidence:g}%")
    return diffs[rival], note, sums[rival], out


# ---------------------------------------------------------------------------------------------------------------
# Gathering, checking, reporting
# ---------------------------------------------------------------------------------------------------------------
def gather(profile: str, *, seeds=None, device: str = "cpu", out_dir: str = "outputs", results_dir=RESULTS_DIR,
           train_missing: bool = False, workers: int | None = None, factorial_cells: bool = True,
           partial: bool = False, switch_cells: bool = False) -> dict[str, Any]:
    """{"cache": {(label, seed): doc}, "results": {...}, "seeds": [...], "missing": [(label, seed)], "diverged":
    {(label, seed): record}, ...}: every claims run, from the run cache and from results/. A run whose training
    diverged (NaN/inf loss; its diverged.json in either place) is in "diverged", not trained again. Other runs in
    neither place are trained through `lib.orchestrate.sweep` when `train_missing` (`workers` at once; default
    `lib.orchestrate.sweep.default_workers`), else listed in "missing" when `partial`, else MissingRunsError naming them and the
    command that trains them."""
    from lib.core.errors import check_seeds

    seeds = check_seeds(seeds if seeds is not None else profile_seeds(profile), f"claims check ({profile})")
    labels = list(claim_runs(profile, factorial_cells, switch_cells))
    cfgs = run_configs(profile, labels, seeds, device=device, out_dir=out_dir)
    found = {k: locate(c, _attacks(profile, k[0]), profile, results_dir) for k, c in cfgs.items()}
    # a run that diverged is an outcome, not a missing run: it is reported as such and not trained again
    diverged = {k: rec for k, (c, r) in found.items() if c is None and r is None
                and (rec := locate_diverged(cfgs[k], profile, results_dir)) is not None}
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
        from lib.orchestrate.sweep import SweepError, default_workers, run_sweep

        workers = default_workers(device) if workers is None else workers
        failure = None
        for spec in training_specs(profile, missing, device=device, out_dir=out_dir):
            # one worker: this process, with its thread settings; several: spawned 1-thread processes (lib.seeded)
            try:
                run_sweep(spec, executor="inline" if workers <= 1 else "local", workers=workers)
            except SweepError as e:  # runs that diverged are reported below; any other failure is raised
                failure = e
        found.update({k: locate(cfgs[k], _attacks(profile, k[0]), profile, results_dir) for k in missing})
        diverged.update({k: rec for k in missing if found[k] == (None, None)
                         and (rec := locate_diverged(cfgs[k], profile, results_dir)) is not None})
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
    """The `lib.orchestrate.sweep` specs (one per attack list) that train and evaluate the claims runs `keys` ((label, seed))."""
    specs = claim_runs(profile, switch_cells=True)
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for lbl, s in keys:
        groups.setdefault(tuple(_attacks(profile, lbl)), []).append({"method": specs[lbl][0], "seed": s,
                                                                     **specs[lbl][1]})
    return [{"profile": profile, "device": device, "out_dir": out_dir, "attacks": list(attacks),
             "grid": {"run": grid}} for attacks, grid in groups.items()]


def _values(claim: Claim, docs: dict, seeds) -> tuple[list[float], str, Summary, str] | None:
    """(one value per seed, a note for the row, their summary, the verdict), or None when a run is missing."""
    if not all((lbl, s) in docs for lbl in claim.runs for s in seeds):
        return None
    per_seed = [{lbl: docs[(lbl, s)] for lbl in claim.runs} for s in seeds]
    if claim.value is None:
        return _fig7_value(claim, per_seed)
    vals = [claim.value(d) for d in per_seed]
    return vals, "", _summary(vals), verdict(_summary([v - claim.threshold for v in vals]), claim.direction)


def _summary(values: list[float]) -> Summary:
    return paired_difference(values, [0.0] * len(values))


def evaluate_claims(profile: str, gathered: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per claim: the paper's number, the measured paired difference over seeds, n, verdict, source, and
    (when the cache and results/ both hold its runs) whether your runs agree with the committed ones."""
    seeds = gathered["seeds"]
    merged = {**gathered["results"], **gathered["cache"]}
    rows = []
    for c in claims(profile):
        # a partial check measures a claim over the seeds that have all its runs (the row says which are missing)
        complete = [x for x in seeds if all((lbl, x) in merged for lbl in c.runs)]
        got = _values(c, merged, complete) if complete else None
        if got is None:  # partial: say which runs the claim still needs (or which could not be trained)
            rows.append({"claim": c.text, "paper": c.paper, "measured": _absent_runs(c, merged, gathered, seeds),
                         "n": 0, "verdict": NOT_RUN, "source": "-", "vs committed": "-",
                         "mean": math.nan, "low": math.nan, "high": math.nan,
                         "diverged": any((lbl, x) in gathered.get("diverged", {}) for lbl in c.runs for x in seeds)})
            continue
        vals, note, s, v = got
        lacking = [x for x in seeds if x not in complete]
        div = [x for x in lacking if any((lbl, x) in gathered.get("diverged", {}) for lbl in c.runs)]
        short = "".join(f" (seed{'s' if len(xs) > 1 else ''} {', '.join(map(str, xs))} {what})" for xs, what in
                        (([x for x in lacking if x not in div], "not run yet"), (div, "diverged")) if xs)
        src = {("cache" if (lbl, x) in gathered["cache"] else "results") for lbl in c.runs for x in complete}
        row = {"claim": (c.text.rstrip(".") + f" (rival: {note})." if note else c.text), "paper": c.paper,
               "measured": _measured(s, c.unit) + short, "n": s.n, "verdict": v,
               "source": {"cache": "your runs", "results": "results/"}.get(src.pop(), "") if len(src) == 1 else
               "your runs + results/", "vs committed": _agreement(c, gathered, seeds),
               "mean": s.mean, "low": s.low, "high": s.high}
        if slow := uneven_timing(c, merged, complete):
            row["measured"] += f" (uneven epoch times: {', '.join(slow)})"
            row["uneven"] = slow
        rows.append(row)
    return rows


def _absent_runs(c: Claim, merged: dict, gathered: dict[str, Any], seeds) -> str:
    """What a claim lacks: 'not run yet: label (seeds ..)' and 'diverged: label (seed s: NaN/inf loss at epoch e)'."""
    dv, todo, bad = gathered.get("diverged", {}), [], []
    for lbl in c.runs:
        if ss := [s for s in seeds if (lbl, s) not in merged and (lbl, s) not in dv]:
            todo.append(f"{lbl} (seed{'s' if len(ss) > 1 else ''} {', '.join(map(str, ss))})")
        if ss := [s for s in seeds if (lbl, s) in dv]:
            when = ", ".join(f"seed {s} at epoch {dv[(lbl, s)]['epoch']}" for s in ss)
            bad.append(f"{lbl} ({when})")
    return "; ".join(p for p in ("not run yet: " + "; ".join(todo) if todo else "",
                                 "diverged (NaN/inf loss): " + "; ".join(bad) if bad else "") if p)


def _measured(s: Summary, unit: str) -> str:
    u = " s" if unit == "seconds" else ""
    if s.n < 2:
        return f"{s.mean:+.1f}{u} (1 seed, no interval)"
    return f"{s.mean:+.1f} ± {s.std:.1f}{u}, {100 * s.confidence:.3g}% CI [{s.low:+.1f}, {s.high:+.1f}]"


def _agreement(c: Claim, gathered: dict[str, Any], seeds) -> str:
    """Your runs' mean within the committed runs' interval ("agrees"), or not; "-" unless both hold every run; "same
    results" when every run's evaluation equals the committed one (the runs were exported from this cache)."""
    mine, theirs = _values(c, gathered["cache"], seeds), _values(c, gathered["results"], seeds)
    if mine is None or theirs is None:
        return "-"
    if all(gathered["cache"][(lbl, s)]["folder"] == gathered["results"][(lbl, s)]["folder"]
           for lbl in c.runs for s in seeds):
        return "-"
    if all(gathered["cache"][(lbl, s)]["results"] == gathered["results"][(lbl, s)]["results"]
           for lbl in c.runs for s in seeds):  # e.g. your runs, just exported: nothing independent to compare
        return "same results as committed (the same runs, or bit-identical reruns)"
    if mine[1] != theirs[1]:  # Fig. 7: different deciding rivals are different comparisons
        return f"differs: yours decided by {mine[1].split(',')[0]}, committed by {theirs[1].split(',')[0]}"
    m, t = _summary(mine[0]), _summary(theirs[0])
    if t.n < 2 or math.isnan(t.low):
        return f"yours {m.mean:+.1f} vs committed {t.mean:+.1f} (1 seed, no interval)"
    ok = t.low <= m.mean <= t.high
    return f"{'agrees' if ok else 'differs'}: yours {m.mean:+.1f}, committed CI [{t.low:+.1f}, {t.high:+.1f}]"


TABLE_COLUMNS = ("claim", "paper", "measured", "n", "verdict", "source", "vs committed")


def _test_set(d) -> str:
    """'balanced test set of 1,000' (the protocol, and the cap where there is one)."""
    return f"{d.test_protocol} test set" + (f" of {d.max_test:,}" if d.max_test else "")


def scale_label(profile: str) -> str:
    """What the measurements are: data set, IR, train cap, ε, test set and protocol, seeds (for titles)."""
    cfg = profile_config(profile, "taet")
    d, n = cfg.data, len(profile_seeds(profile))
    cap = f", train capped at {d.max_train:,}" if d.max_train else ""
    test = _test_set(d)
    return (f"{profile} profile: {d.dataset}-LT IR {d.imbalance_ratio:g}{cap}, {cfg.model.arch}, "
            f"{cfg.train.epochs} epochs, ε = {cfg.eval.eps * 255:g}/255, {test}; "
            f"paired differences (points; seconds for cost) over {n} seed{'s' if n != 1 else ''}")


def save_claims(rows: list[dict[str, Any]], profile: str, out_dir: str = "outputs", title: str = "") -> str:
    """outputs/tables/claims.md and .csv (atomic); returns the markdown."""
    from lib.study.tables import format_table

    title = title or f"Claims check: the TAET paper's claims, {scale_label(profile)}"
    header = list(TABLE_COLUMNS)
    md = f"**{title}**\n\n" + format_table(header, [[str(r[k]) for k in header] for r in rows]) + "\n"
    tables = Path(out_dir) / "tables"
    runs.atomic_write_text(tables / "claims.md", md)
    runs.atomic_write_csv(tables / "claims.csv", [{k: r[k] for k in (*header, "mean", "low", "high")} for r in rows])
    return md


def reading(rows: list[dict[str, Any]], profile: str | None = None) -> str:
    """Which claims hold at this scale, which are contradicted, which the seeds cannot decide (and, in a partial
    check, which are not run yet)."""
    by = {v: [r for r in rows if r["verdict"] == v] for v in ("supported", "contradicted", "inconclusive", NOT_RUN)}

    ns = [r["n"] for r in rows if r["verdict"] != NOT_RUN]
    n, most = min(ns, default=0), max(ns, default=0)

    def names(rs):  # a claim measured over fewer seeds than the others says so: its verdict may still move
        return "; ".join(r["claim"].rstrip(".") + (f" ({r['n']} of {most} seeds so far)"
                                                     if r["verdict"] != NOT_RUN and r["n"] < most else "") for r in rs)

    measured = len(rows) - len(by[NOT_RUN])
    per_run = f"{n}" if n == most else f"{n} to {most}"
    text = [f"Of {measured} claims measured at this scale (n = {per_run} seed{'s' if most != 1 else ''} per run): "
            f"{len(by['supported'])} supported, {len(by['contradicted'])} contradicted, "
            f"{len(by['inconclusive'])} inconclusive."]
    failed = [r for r in by[NOT_RUN] if r.get("diverged")]
    todo = [r for r in by[NOT_RUN] if not r.get("diverged")]
    if todo:
        hint = f" {train_hint(profile)}." if profile else ""
        text.append(f"**Not run yet** ({len(todo)}; the table names the runs each needs): {names(todo)}.{hint}")
    if failed:
        text.append(f"**Not measurable: a run diverged** ({len(failed)}; NaN/inf loss, recorded in the run's "
                    f"diverged.json and not trained again): {names(failed)}.")
    if measured and most < 2:
        text.append("With one seed there is no interval, so no claim can be decided: every verdict is inconclusive.")
    elif measured:  # with mixed seed counts the lists stand; a one-seed claim is inconclusive and says its count
        labels = {"supported": "Hold", "contradicted": "Do not hold",
                  "inconclusive": "Undecided (the interval includes the threshold, or one seed gives none)"}
        text += [f"**{what}:** {names(by[v])}." for v, what in labels.items() if by[v]]
    for r in rows:
        if r.get("uneven"):
            text.append(f"**Timing:** {r['claim'].rstrip('.')}: in {', '.join(r['uneven'])}, an epoch took more "
                        f"than {UNEVEN_TIMING:g}× its stage's fastest, a sign that other jobs shared the cores for "
                        "part of the run; those times are upper bounds and the cost comparison is not between like "
                        "conditions: retrain those runs on an otherwise idle machine to time them.")
    return "\n\n".join(text)


SCALE_FLOOR = 0.85  # balanced clean accuracy a model that is not under-trained should reach on Fashion-MNIST-LT
SCALE_FILE = "scale_check.json"  # results/<profile>/: the scale check's evidence (no weights)


def scale_check(profile: str, *, seeds=None, device: str = "cpu", out_dir: str = "outputs",
                results_dir=RESULTS_DIR, workers: int | None = None, floor: float = SCALE_FLOOR,
                write: bool = True) -> dict[str, Any]:
    """Is the profile's scale under-trained? Standard training (CE) exactly as the claims train it, for each seed,
    evaluated clean on the whole balanced test set (the profile's `data.max_test` cap lifted), so the floor is read
    from 10,000 test images rather than the claims' subset of the test set. The runs go through the run cache
    (weights are needed: trained where the cache lacks them). Returns, and with `write` saves atomically to
    results/<profile>/scale_check.json, the per-seed values, their `lib.study.stats.summarize` and a verdict: "met" when
    the whole 95% interval lies at or above `floor`, "not met" when it lies below, "inconclusive" otherwise."""
    from dataclasses import asdict, replace

    from lib.core.data import build_data
    from lib.core.evaluate import evaluate_model
    from lib.core.train import load_run
    from lib.study.seeded import train_eval_seeds

    if not 0.0 < floor < 1.0:
        raise ConfigError(f"scale check: the floor is a balanced accuracy in (0, 1), e.g. 0.85; got {floor}")
    seeds = profile_seeds(profile) if seeds is None else check_seeds(seeds, "scale check seeds")
    if len(seeds) < 2:
        raise ConfigError(f"the scale check needs at least 2 seeds for an interval, got {seeds}; e.g. 0,1,2")
    docs = train_eval_seeds(profile, "ce", seeds, device=device, out_dir=out_dir, workers=workers,
                            attacks=("clean",), evidence=None)
    per_seed = {}
    for sd in seeds:
        cfg, model, _, _, _ = load_run(docs[sd]["run_dir"], device=device)
        full = build_data(replace(cfg.data, max_test=None), device=next(model.parameters()).device, verbose=False)
        res = evaluate_model(model, full.test_x, full.test_y, full.num_classes, cfg.eval, ["clean"],
                             verbose=False)["clean"]
        per_seed[sd] = {"run": Path(docs[sd]["run_dir"]).name, "full_test_balanced": res["balanced"],
                        "full_test_n": res["n"], "subset_balanced": docs[sd]["results"]["clean"]["balanced"],
                        "subset_n": docs[sd]["results"]["clean"]["n"],
                        "train_seconds": round(_train_seconds(docs[sd]), 1)}
    values = [per_seed[sd]["full_test_balanced"] for sd in seeds]
    out = {"profile": profile, "method": "ce", "floor": floor, "seeds": list(seeds), "runs": per_seed,
           "full_test_balanced": asdict(summarize(values)), "verdict": floor_verdict(values, floor), "device": device}
    if write:
        runs.atomic_write_json(Path(results_dir) / profile / SCALE_FILE, out)
    return out


def floor_verdict(values: list[float], floor: float) -> str:
    """"met" when the 95% t-interval of `values` lies wholly at or above `floor`, "not met" when wholly below,
    "inconclusive" otherwise (and for one value)."""
    return {"supported": "met", "contradicted": "not met"}.get(verdict(summarize([x - floor for x in values])),
                                                               "inconclusive")


def read_scale_check(profile: str, results_dir=RESULTS_DIR) -> dict[str, Any] | None:
    """results/<profile>/scale_check.json, or None where the scale check has not been run."""
    import json

    path = Path(results_dir) / profile / SCALE_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); rerun `python -m lib claims --profile {profile} "
                          "--scale-check`") from None
    # stale when its CE runs are not the ones the profile trains now (e.g. the profile's size changed since)
    seeds = [int(s) for s in doc.get("runs", {})]
    now = {str(s): runs.run_dir(c).name for (_, s), c in run_configs(profile, ["ce"], seeds).items()}
    doc["stale"] = any(now[s] != r.get("run") for s, r in doc.get("runs", {}).items())
    return doc


def scale_reading(gathered: dict[str, Any], floor: float = 100 * SCALE_FLOOR, scale: dict[str, Any] | None = None
                  ) -> str:
    """How well standard training (CE) learns at this scale: a model far below `floor` is under-trained. `scale`:
    the scale check's result (`scale_check`), the floor read on the whole test set, with its interval."""
    merged = {**gathered["results"], **gathered["cache"]}
    vals = [100 * merged[("ce", s)]["results"]["clean"]["balanced"] for s in gathered["seeds"] if ("ce", s) in merged]
    if not vals and not scale:
        return ""
    text = ""
    if vals:
        s = summarize(vals)
        n_test = next(merged[("ce", sd)]["results"]["clean"].get("n") for sd in gathered["seeds"]
                      if ("ce", sd) in merged)
        spread = f" ± {s.std:.1f}" if s.n > 1 else " (1 seed)"
        text = (f"Scale: standard training (CE) reaches {s.mean:.1f}{spread}% balanced clean accuracy on the claims' "
                f"test set{f' of {n_test:,}' if n_test else ''}, against the {floor:g}% a model that is not "
                f"under-trained should reach on this data.")
    if scale and scale.get("stale"):
        p = scale.get("profile", "<profile>")
        text += (f"{' ' if text else 'Scale: '}The scale check on file (results/{p}/{SCALE_FILE}) read CE runs of "
                 f"other settings than this profile's; rerun it (`python -m lib claims --profile {p} --scale-check`).")
    elif scale:
        f = scale["full_test_balanced"]
        n_full = next(iter(scale["runs"].values()))["full_test_n"]
        vals_full = ", ".join(f"{100 * r['full_test_balanced']:.1f}" for r in scale["runs"].values())
        sub = ", ".join(f"{100 * r['subset_balanced']:.1f}" for r in scale["runs"].values())
        text += (f"{' ' if text else 'Scale: '}On the whole balanced test set ({n_full:,} images; `python -m lib "
                 f"claims --profile {scale.get('profile', '<profile>')} --scale-check`), CE at the same settings "
                 f"reaches {100 * f['mean']:.1f} ± "
                 f"{100 * f['std']:.1f}% "
                 f"({vals_full}; 95% interval [{100 * f['low']:.1f}, {100 * f['high']:.1f}], n = {f['n']}; these "
                 f"retrained runs score {sub} on the claims' test subsets): the {100 * scale['floor']:g}% floor is "
                 + {"met": "met (the whole interval lies above it).",
                    "not met": "not met (the whole interval lies below it)."}.get(
                     scale["verdict"], "undecided (the interval includes it)."))
    elif vals:
        text += f" The mean is {'at or above' if summarize(vals).mean >= floor else 'below'} it."
    return text


def wall_times(profile: str, gathered: dict[str, Any], out_dir: str = "outputs") -> str:
    """outputs/tables/claims_times.md|csv: each claims run's balanced clean accuracy, balanced PGD-20 robustness
    and training time (minutes of one core, from its history.csv), mean ± std over the seeds found, one row per
    distinct config (labels naming the same run share it), and what the missing runs would take at the mean time
    of their method here; returns the markdown."""
    from lib.study.stats import summarize
    from lib.study.tables import format_table

    merged = {**gathered["results"], **gathered["cache"]}
    cfgs, specs = gathered["configs"], claim_runs(profile, switch_cells=True)
    first = gathered["seeds"][0]
    groups: dict[str, list[str]] = {}  # a config (named by its first seed's run) -> the labels that read it
    for lbl in specs:
        if (lbl, first) in cfgs:
            groups.setdefault(runs.run_dir(cfgs[(lbl, first)]).name, []).append(lbl)
    header = ["run (labels that read it)", "seeds", "Clean (%)", "PGD-20 (%)", "train min", "total min"]
    rows, per_method = [], {}

    def cell(vals: list[float]) -> str:
        m = summarize(vals)
        return f"{m.mean:.1f}" + (f" ± {m.std:.1f}" if m.n > 1 else "")

    for labels in groups.values():
        docs = [merged[(labels[0], x)] for x in gathered["seeds"] if (labels[0], x) in merged]
        if not docs:
            continue
        vals = [_train_seconds(d) / 60 for d in docs]
        per_method.setdefault(specs[labels[0]][0], []).extend(vals)
        rows.append([" = ".join(labels), str(len(docs)), cell([_bal("clean")(d) for d in docs]),
                     cell([_bal("pgd20")(d) for d in docs]), cell(vals), f"{sum(vals):.0f}"])
    todo = {runs.run_dir(cfgs[k]).name: specs[k[0]][0] for k in gathered.get("missing", [])}
    known = [sum(per_method[m]) / len(per_method[m]) for m in todo.values() if m in per_method]
    trained, total = sum(int(r[1]) for r in rows), sum(sum(v) for v in per_method.values())
    note = (f"\nTogether: {trained} trained run(s), {total / 60:.1f} h of one core to train (evaluation not included;"
            f" `lib.orchestrate.sweep`'s two 1-thread workers run two at once on 2 cores).\n" if rows else "")
    if todo:
        unknown = len(todo) - len(known)
        note += (f"\n{len(todo)} distinct run(s) not run yet; {len(known)} of them would take about "
                f"{sum(known) / 60:.1f} h of one core (their method's mean time here)"
                + (f", the other {unknown} (methods not timed here yet) unknown" if unknown else "") + ".\n")
    md = (f"**Claims runs: balanced accuracy, robustness and training time (minutes of one core), mean ± std over "
          f"the seeds found, no interval: compare methods in the claims table, paired. "
          f"{scale_label(profile).split(';')[0]}**\n\n" + format_table(header, rows) + "\n" + note)
    tables = Path(out_dir) / "tables"
    runs.atomic_write_text(tables / "claims_times.md", md)
    runs.atomic_write_csv(tables / "claims_times.csv", [dict(zip(header, r)) for r in rows])
    return md


# ---------------------------------------------------------------------------------------------------------------
# The factorial, from the same gathered runs
# ---------------------------------------------------------------------------------------------------------------
def _cell_values(profile: str, gathered: dict[str, Any], attack: str) -> dict[str, dict[int, float]]:
    """{factorial cell label: {seed: balanced `attack` accuracy, %}} over the cells and seeds gathered."""
    merged = {**gathered["results"], **gathered["cache"]}
    return {c.label: {s: _bal(attack)(merged[(c.label, s)]) for s in gathered["seeds"] if (c.label, s) in merged}
            for c in factorial.cells(profile)}


METRICS = (("PGD-20", "pgd20"), ("Clean", "clean"))


def factorial_effects(profile: str, gathered: dict[str, Any], diverged=()) -> dict[str, dict[str, Summary]]:
    """{"PGD-20": effects, "Clean": effects} (lib.factorial.effects) from the gathered factorial cells; `diverged`:
    the labels of cells whose training diverged."""
    return {name: factorial.effects({lbl: list(v.values()) for lbl, v in _cell_values(profile, gathered, a).items()},
                                    profile, diverged) for name, a in METRICS}


def diverged_note(gathered: dict[str, Any], labels, effects: dict[str, Summary]) -> str:
    """The factorial cells whose training diverged (seeds, epoch, lr, from their diverged.json and config), and
    what that does to the main effects; "" when none did."""
    if not labels:
        return ""
    parts = []
    for lbl in labels:
        recs = {s: rec for (lb, s), rec in sorted(gathered["diverged"].items()) if lb == lbl}
        epochs = sorted({rec["epoch"] for rec in recs.values()})
        lr = {gathered["configs"][(lbl, s)].train.lr for s in recs}
        parts.append(f"{lbl} (seed{'s' if len(recs) > 1 else ''} {', '.join(map(str, recs))} of "
                     f"{len(gathered['seeds'])}, in epoch {', '.join(map(str, epochs))}, lr "
                     f"{', '.join(f'{x:g}' for x in sorted(lr))})")
    text = (f"**Diverged** (NaN/inf loss; no result, recorded in the run's diverged.json and not trained again): "
            f"{'; '.join(parts)}.")
    if any("settings of the other factors" in k for k in effects):
        text += (" A main effect marked \"over k of 4 settings\" averages its paired differences over the settings "
                 "of the other two factors where both of its cells trained, so it holds for those settings only.")
    return text


def factorial_simple_effects(profile: str, gathered: dict[str, Any], diverged=()) -> dict[str, dict[str, Summary]]:
    """{"PGD-20": ..., "Clean": ...} of `lib.study.factorial.simple_effects` over the cells and seeds run so far (the
    partial check's factorial; with the main effects once the TAET grid has settled); `diverged`: the labels of
    cells whose training diverged."""
    return {name: factorial.simple_effects(_cell_values(profile, gathered, a), profile, diverged)
            for name, a in METRICS}


def save_factorial(by_metric: dict[str, dict[str, Summary]], profile: str, n: int, out_dir: str = "outputs",
                   cells_run: int | None = None, note: str = "") -> str:
    """outputs/tables/factorial.md|csv; `cells_run`: how many of the grid's cells have every seed, when not all
    (the table then holds the simple effects measured so far, each row with its own n); `note`: a line under the
    table (the cells that diverged)."""
    from lib.study.tables import format_table

    header, rows = factorial.effects_rows(by_metric)
    if cells_run is None:
        what, seeds = "effects", f"n = {n} seed{'s' if n != 1 else ''}"
    else:
        mains = any(k.startswith("main effect: ") for k in next(iter(by_metric.values())))
        what = (f"partial ({cells_run} of {len(factorial.cells(profile))} cells run for every seed): the "
                f"{'main effects of the settled TAET grid and the simple ' if mains else 'simple '}effects "
                f"measured so far")
        seeds = "n = the seeds each pair shares"
    md = (f"**Factorial: why TAET trails AT-BSL, {what}, on balanced clean accuracy and PGD-20 robustness "
          f"({scale_label(profile).split(';')[0]}; points, {seeds})**\n\n" + format_table(header, rows) + "\n"
          + (f"\n{note}\n" if note else ""))
    tables = Path(out_dir) / "tables"
    runs.atomic_write_text(tables / "factorial.md", md)
    runs.atomic_write_csv(tables / "factorial.csv", [dict(zip(header, r)) for r in rows])
    return md


# ---------------------------------------------------------------------------------------------------------------
# The fidelity switches, from the same gathered runs
# ---------------------------------------------------------------------------------------------------------------
def switch_effects(profile: str, gathered: dict[str, Any], out_dir: str = "outputs") -> str:
    """outputs/tables/switches.md|csv: each switch's effect (switched run − its method's default run, paired by
    seed) on balanced PGD-20 and clean accuracy, over the seeds that have both runs; returns the markdown."""
    from lib.study.tables import format_table

    merged = {**gathered["results"], **gathered["cache"]}
    header = ["switch (one at a time)", "PGD-20 (points)", "Clean (points)", "n"]
    rows = []
    for label in switch_runs(profile):
        base = SWITCH_BASE[label.split(" · ")[0]]
        seeds = [x for x in gathered["seeds"] if (label, x) in merged and (base, x) in merged]
        if not seeds:
            rows.append([label, "not run yet", "not run yet", "0"])
            continue
        cells = []
        for attack in ("pgd20", "clean"):
            s = _summary([_bal(attack)(merged[(label, x)]) - _bal(attack)(merged[(base, x)]) for x in seeds])
            cells.append(_measured(s, "points"))
        rows.append([label, *cells, str(len(seeds))])
    md = (f"**Fidelity switches: effect of each official-code switch, switched − default, paired by seed "
          f"({scale_label(profile).split(';')[0]}; points)**\n\n" + format_table(header, rows) + "\n")
    tables = Path(out_dir) / "tables"
    runs.atomic_write_text(tables / "switches.md", md)
    runs.atomic_write_csv(tables / "switches.csv", [dict(zip(header, r)) for r in rows])
    return md


# ---------------------------------------------------------------------------------------------------------------
# The whole check as one markdown section (README's Results), regenerated from the numbers
# ---------------------------------------------------------------------------------------------------------------
README_MARKERS = ("<!-- claims-results:start -->", "<!-- claims-results:end -->")


def _setting(profile: str, gathered: dict[str, Any]) -> str:
    """The runs' setting in one sentence, from the profile's TAET config and (where found) a run's train counts."""
    cfg = profile_config(profile, "taet")
    d, t = cfg.data, cfg.train
    merged = {**gathered["results"], **gathered["cache"]}
    counts = next((doc["protocol"]["train_counts"] for (lbl, _), doc in sorted(merged.items(), key=str)
                   if lbl == "taet" and "protocol" in doc), None)
    train = (f"{sum(counts):,} train images ({counts[0]:,} down to {counts[-1]:,} per class)" if counts else
             f"train set capped at {d.max_train:,}" if d.max_train else "the full long-tailed train set")
    test = _test_set(d)
    seeds = ", ".join(map(str, gathered["seeds"]))
    return (f"The runs: {d.dataset}-LT IR {d.imbalance_ratio:g}, {train}, `{cfg.model.arch}`, {t.epochs} epochs, "
            f"batch {t.batch_size}, lr {t.lr:g}, TAET {cfg.method_args.get('ce_epochs')} clean epochs, evaluation at "
            f"ε = {cfg.eval.eps * 255:g}/255 on a {test}; seeds {seeds} (same seed = same data draw, initialisation "
            f"and batch order).")


def report(profile: str, res: dict[str, Any]) -> str:
    """`check()`'s result as one markdown section: the setting, the measured claims (paired, with intervals and
    verdicts) and their computed reading, each run's accuracy and time, the factorial (main or simple effects) and,
    when gathered, the fidelity switches, then what is not run yet. Nothing in it is written by hand."""
    from lib.study.tables import format_table

    g, rows = res["gathered"], res["rows"]
    n = len(g["seeds"])
    measured = [r for r in rows if r["verdict"] != NOT_RUN]
    cols = ["claim", "paper", "measured", "n", "verdict"]
    heads = ["claim", "paper (CIFAR-10-LT)", "measured here: paired difference", "n", "verdict"]
    switches = " --switches" if "switches_md" in res else ""
    parts = [f"### Claims check, `{profile}` profile ({n} seed{'s' if n != 1 else ''})",
             f"`python -m lib claims --profile {profile}{switches}` rebuilds this section from the committed "
             f"`results/{profile}/` (`--train` trains what is missing, `--export` copies new runs there, `--readme "
             f"README.md` rewrites this section). " + _setting(profile, g)]
    scale = scale_reading(g, scale=res.get("scale"))
    if scale:
        parts.append(scale)
    if measured:
        parts.append("Claims measured so far (paired differences in points, or seconds for cost; 95% Student-t "
                     "interval):\n\n" + format_table(heads, [[str(r[k]) for k in cols] for r in measured]))
    parts += [reading(rows, profile), res["times_md"].strip()]
    if "factorial_md" in res:
        parts += [res["factorial_md"].strip(), res["factorial_reading"]]
    if switches:
        parts.append(res["switches_md"].strip())
    absent = res.get("factorial_missing", [])
    if absent:  # the claims not run yet are named in the reading above
        parts.append(f"Not run yet: {len(absent)} of the factorial's {len(factorial.cells(profile))} cells. "
                     f"{train_hint(profile)}; on a GPU add `--device cuda`.")
    return "\n\n".join(p for p in parts if p) + "\n"


def _section_span(path, markers: tuple[str, str] = README_MARKERS) -> tuple[str, int, int]:
    """(the file's text, the end of its start marker, the start of its end marker); ConfigError when `path` lacks
    either marker, or has them out of order."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--readme {path}: no such file")
    text = path.read_text(encoding="utf-8")
    # each marker counts only as a line of its own (prose may quote it)
    found = [re.search(rf"^{re.escape(m)}[ \t]*$", text, flags=re.MULTILINE) for m in markers]
    start, end = (f.start() if f else -1 for f in found)
    if start < 0 or end < start:
        raise ConfigError(f"{path} has no section between the lines {markers[0]!r} and {markers[1]!r}: add both "
                          f"lines, in that order, where the claims report should go")
    return text, start + len(markers[0]), end


def splice_readme(path, section: str, markers: tuple[str, str] = README_MARKERS) -> None:
    """Replace the text between `markers` in the markdown file `path` by `section` (atomic write); a file without
    both markers, in order, is left untouched and raises ConfigError."""
    text, a, b = _section_span(path, markers)
    runs.atomic_write_text(Path(path), text[:a] + "\n" + section + text[b:])


# ---------------------------------------------------------------------------------------------------------------
# Evidence files
# ---------------------------------------------------------------------------------------------------------------
def export_results(profile: str, gathered: dict[str, Any], results_dir=RESULTS_DIR) -> list[Path]:
    """Copy config.json, eval.json and history.csv (no checkpoint) of every claims run in the cache, and
    config.json, diverged.json and any history.csv of every cached run that diverged, to
    results/<profile>/<run name>/; returns the folders written."""
    folders = {Path(doc["folder"]) for doc in gathered["cache"].values()}
    folders |= {Path(rec["folder"]) for rec in gathered.get("diverged", {}).values()}
    return runs.export_evidence(sorted(folders), Path(results_dir) / profile)


def check(profile: str, *, out_dir: str = "outputs", results_dir=RESULTS_DIR, device: str = "cpu",
          train_missing: bool = False, workers: int | None = None, factorial_cells: bool = True,
          partial: bool = False, switches: bool = False) -> dict[str, Any]:
    """Gather the runs, write outputs/tables/claims.{md,csv} (and factorial.{md,csv}, and with `switches`
    switches.{md,csv}); return the pieces the notebook shows. `partial`: claims (and a factorial) whose runs are
    missing are reported as not run."""
    g = gather(profile, device=device, out_dir=out_dir, results_dir=results_dir, train_missing=train_missing,
               workers=workers, factorial_cells=factorial_cells, partial=partial, switch_cells=switches)
    rows = evaluate_claims(profile, g)
    scale = read_scale_check(profile, results_dir)
    out = {"gathered": g, "rows": rows, "claims_md": save_claims(rows, profile, out_dir), "scale": scale,
           "reading": scale_reading(g, scale=scale) + "\n\n" + reading(rows, profile),
           "times_md": wall_times(profile, g, out_dir)}
    if switches:
        out["switches_md"] = switch_effects(profile, g, out_dir)
    labels = {c.label for c in factorial.cells(profile)}
    absent = sorted({lbl for lbl, _ in g["missing"]} & labels)
    dead = sorted({lbl for lbl, _ in g["diverged"]} & labels)
    out["factorial_missing"] = absent if factorial_cells else []
    if factorial_cells and absent:
        out["factorial_note"] = (f"The factorial is not run yet: {len(absent)} of its {len(factorial.cells(profile))} "
                                 f"cells lack runs for some seed ({'; '.join(absent)}). {train_hint(profile)}.")
        eff = factorial_simple_effects(profile, g, dead)
        if "gap: AT-BSL − TAET" in eff["PGD-20"]:  # what the cells run so far can say, as simple effects
            note = diverged_note(g, dead, eff["PGD-20"])
            out.update(factorial=eff, factorial_md=save_factorial(
                eff, profile, len(g["seeds"]), out_dir, cells_run=len(labels) - len(absent) - len(dead), note=note),
                factorial_reading=factorial.reading(eff["PGD-20"], eff["Clean"]))
    elif factorial_cells:
        eff = factorial_effects(profile, g, dead)
        note = diverged_note(g, dead, eff["PGD-20"])
        out.update(factorial=eff, factorial_md=save_factorial(eff, profile, len(g["seeds"]), out_dir, note=note),
                   factorial_reading=factorial.reading(eff["PGD-20"], eff["Clean"]))
    out["report_md"] = report(profile, out)
    runs.atomic_write_text(Path(out_dir) / "claims_report.md", out["report_md"])
    return out


def add_cli(sub, fmt) -> None:
    """`python -m lib claims`: the claims check from the command line."""
    c = sub.add_parser("claims", formatter_class=fmt,
                       help="the claims check: paired differences over seeds, intervals, verdicts",
                       description="Reads the claims runs from the run cache, else from results/<profile>/; "
                                   "writes outputs/tables/claims.md|csv, claims_times.md|csv (each run's "
                                   "accuracy, robustness and time), factorial.md|csv and, with --switches, "
                                   "switches.md|csv.")
    from lib.profiles import PROFILES

    c.add_argument("--profile", default="demo", choices=sorted(PROFILES), help="settings profile (default: demo)")
    c.add_argument("--out-dir", default="outputs", help="outputs folder holding runs/ (default: outputs)")
    c.add_argument("--results-dir", default=RESULTS_DIR, help="committed evidence folder (default: results)")
    c.add_argument("--device", default="auto", help="auto, cpu or cuda, for --train (default: auto)")
    c.add_argument("--train", action="store_true", help="train the missing runs through lib.sweep (default: off)")
    c.add_argument("--workers", type=int, default=None,
                   help="runs trained at once with --train (default: one 1-thread process per core on a CPU, 1 on a "
                        "GPU)")
    c.add_argument("--partial", action=argparse.BooleanOptionalAction, default=None,
                   help="report a claim whose runs are missing as 'not run' instead of stopping (default: on for "
                        "fashion, paper and taet_notebook, off for smoke and demo)")
    c.add_argument("--no-factorial", action="store_true", help="leave out the factorial's cells (default: in)")
    c.add_argument("--switches", action="store_true",
                   help="add the official codes' 28-px protocol switches (no normalisation, the extra clean forward, "
                        "AT-BSL with TAET's attack), each against its method's default run (default: off)")
    c.add_argument("--readme", default=None, metavar="FILE",
                   help="rewrite FILE's section between <!-- claims-results:start --> and <!-- claims-results:end "
                        "--> with the report (also written to OUT_DIR/claims_report.md) (default: off)")
    c.add_argument("--scale-check", action="store_true",
                   help="first measure the scale's floor: CE as the claims train it, for each seed (trained where the "
                        "run cache lacks its weights), evaluated clean on the whole balanced test set; writes "
                        f"results/<profile>/{SCALE_FILE}, which the report then reads (default: off)")
    c.add_argument("--scale-check-seeds", default=None, metavar="SEEDS",
                   help="comma-separated seeds of the scale check, at least 2 (default: the profile's); it reads CE "
                        "alone, so more seeds than the claims' are cheap")
    c.add_argument("--export", action="store_true",
                   help="copy the runs' config.json, eval.json, history.csv to results/<profile>/ (default: off)")
    c.set_defaults(func=_cmd)


def _cmd(a) -> int:
    if a.readme:  # a file that cannot take the report is refused before anything is gathered or trained
        _section_span(a.readme)
    if a.scale_check_seeds and not a.scale_check:
        raise ConfigError("--scale-check-seeds without --scale-check: add --scale-check, or drop the seeds")
    seeds = check_seeds(parse_seeds(a.scale_check_seeds), "--scale-check-seeds") if a.scale_check_seeds else None
    partial = settings(a.profile)["partial"] if a.partial is None else a.partial
    if a.scale_check:
        sc = scale_check(a.profile, seeds=seeds, device=a.device, out_dir=a.out_dir, results_dir=a.results_dir,
                         workers=a.workers)
        print(f"scale check: wrote {Path(a.results_dir) / a.profile / SCALE_FILE} ({sc['verdict']})")
    res = check(a.profile, out_dir=a.out_dir, results_dir=a.results_dir, device=a.device, train_missing=a.train,
                workers=a.workers, factorial_cells=not a.no_factorial, partial=partial, switches=a.switches)
    print(res["claims_md"])
    print(res["reading"])
    print(res["times_md"])
    if "factorial_md" in res:
        print(res["factorial_md"])
        print(res["factorial_reading"])
    if "factorial_note" in res:
        print(res["factorial_note"])
    if "switches_md" in res:
        print(res["switches_md"])
    if a.readme:
        splice_readme(a.readme, res["report_md"])
        print(f"rewrote the claims section of {a.readme}")
    if a.export:
        written = export_results(a.profile, res["gathered"], a.results_dir)
        print(f"exported {len(written)} run(s) to {Path(a.results_dir) / a.profile}")
    return 0


__all__ = ["MissingRunsError", "claim_runs", "claims", "gather", "evaluate_claims", "save_claims", "reading",
           "factorial_effects", "export_results", "check", "report", "splice_readme", "scale_check",
           "read_scale_check"]
