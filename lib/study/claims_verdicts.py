"""The TAET paper's claims, each a paired difference over seeds (same seed = same data draw, initialisation and batch
order) with its interval and verdict (`lib.study.stats`), stated with the paper's own number (CIFAR-10-LT IR 10,
from its Tables 1, 2, 4, 5 and Figs. 6-7), and measured on the runs `lib.study.claims_runs.gather` found.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lib.core import runs
from lib.profiles import notebook_settings, profile_config
from lib.study import factorial
from lib.study.claims_runs import eval_attacks
from lib.study.stats import Summary, bonferroni_level, paired_difference, summarize, verdict
from lib.study.tables import rarest_classes

NOT_RUN = "not run"


def balanced(attack: str) -> Callable[[dict], float]:
    """A run's balanced accuracy under `attack` (the mean per-class recall), in points."""
    return lambda doc: 100 * doc["results"][attack]["balanced"]


def train_seconds(doc: dict) -> float:
    """A run's training seconds, from its history.csv (`lib.core.runs.train_seconds`)."""
    return runs.train_seconds(doc["history"])


def _tail_gain(docs: dict[str, dict]) -> float:
    """(TAET − AT-BSL) on the three rarest classes' mean PGD-20 recall minus (TAET − AT-BSL) balanced."""
    t, a = docs["taet"]["results"]["pgd20"], docs["atbsl"]["results"]["pgd20"]
    tail = rarest_classes(docs["taet"]["protocol"]["train_counts"], 3)
    tail_gain = sum((t["per_class"][c] or 0.0) - (a["per_class"][c] or 0.0) for c in tail) / len(tail)
    return 100 * (tail_gain - (t["balanced"] - a["balanced"]))


# ---------------------------------------------------------------------------------------------------------------
# The claims
# ---------------------------------------------------------------------------------------------------------------
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
    has_aa = "autoattack" in eval_attacks(profile)
    ce = factorial.clean_epochs(profile)
    pgd, clean = balanced("pgd20"), balanced("clean")
    out = [
        Claim("Table 1: TAET's balanced PGD-20 robustness is above AT-BSL's.", "35.15 − 26.86 = +8.29 (Table 1)",
              ("taet", "atbsl"), _diff("taet", "atbsl", pgd)),
    ]
    if has_aa:
        out.append(Claim("Table 1: TAET's balanced AutoAttack robustness is above AT-BSL's.",
                         "30.57 − 25.26 = +5.31 (Table 1, torchattacks AA)", ("taet", "atbsl"),
                         _diff("taet", "atbsl", balanced("autoattack"))))
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
                     _diff("taet", "atbsl", train_seconds), direction=-1, unit="seconds"))
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
    pgd = balanced("pgd20")
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
# Their verdicts, from the gathered runs
# ---------------------------------------------------------------------------------------------------------------
def _values(claim: Claim, docs: dict, seeds) -> tuple[list[float], str, Summary, str] | None:
    """(one value per seed, a note for the row, their summary, the verdict), or None when a run is missing."""
    if not all((lbl, s) in docs for lbl in claim.runs for s in seeds):
        return None
    per_seed = [{lbl: docs[(lbl, s)] for lbl in claim.runs} for s in seeds]
    if claim.value is None:
        return _fig7_value(claim, per_seed)
    vals = [claim.value(d) for d in per_seed]
    return vals, "", paired_summary(vals), verdict(paired_summary([v - claim.threshold for v in vals]), claim.direction)


def paired_summary(values: list[float]) -> Summary:
    """The summary of per-seed paired differences `values` (`lib.study.stats.paired_difference` against 0)."""
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
               "measured": measured_text(s, c.unit) + short, "n": s.n, "verdict": v,
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


def measured_text(s: Summary, unit: str) -> str:
    """'+1.2 ± 0.3, 95% CI [+0.4, +2.0]' (a ' s' unit for seconds), or '+1.2 (1 seed, no interval)'."""
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
    m, t = paired_summary(mine[0]), paired_summary(theirs[0])
    if t.n < 2 or math.isnan(t.low):
        return f"yours {m.mean:+.1f} vs committed {t.mean:+.1f} (1 seed, no interval)"
    ok = t.low <= m.mean <= t.high
    return f"{'agrees' if ok else 'differs'}: yours {m.mean:+.1f}, committed CI [{t.low:+.1f}, {t.high:+.1f}]"
