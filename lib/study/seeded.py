"""Every experiment over the profile's seeds: runs through `lib.orchestrate.sweep`, the tables and readings.

Results are {label: {seed: eval document}}; a single run is the case of one seed. A seed is `train.seed`
(initialisation and batch order); the long-tail draw keeps `data.seed`, so two methods trained with the same seed
are paired. Cells over K >= 2 seeds are `mean ± std [95% t-interval]` from `lib.study.stats.summarize`; with one
seed a cell is the single value and the title says "1 seed, no interval". Readings call a paired difference whose
interval includes 0 a tie, and rank nothing from one seed (DESIGN.md, Statistics).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lib.core.errors import ConfigError, check_seeds
from lib.profiles import profile_seeds
from lib.study.stats import Summary, bonferroni_level, paired_difference, summarize
from lib.study.tables import COLUMN_NAMES, percent, rarest_classes

Docs = dict[str, dict[int, dict[str, Any]]]  # {label: {seed: eval document}}


# ---------------------------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------------------------
def sweep_seeds(profile: str, variants: dict[str, dict[str, Any]], seeds=None, *, method: str = "taet",
                device: str = "auto", out_dir: str = "outputs", workers: int | None = None,
                executor: str | None = None, attacks=None, evidence: str | None = "auto") -> Docs:
    """Train and evaluate every variant for every seed in one `lib.orchestrate.sweep` call: {label: {seed: doc}}.

    `variants` maps a label to sweep overrides applied together (`{"method": "atbsl"}`, `{"alpha": 0.2}`,
    `{"data": {"imbalance_ratio": 50}}`, `{"method_args": {"ce_epochs": 0}}`); `method` is the default method.
    Seeds default to the profile's (`profile_seeds`). Cached runs are reused; seed 0 is today's single run.
    `workers`: runs trained at once, default `lib.orchestrate.sweep.default_workers(device)` (a CPU: one 1-thread
    process per core; a GPU: one). `executor`: by default "inline" (this process, with its thread settings) for one
    worker, "local" (spawned processes) for several; any `lib.orchestrate.sweep.run_sweep` engine otherwise.
    `evidence`: a folder of committed run files (config.json, eval.json, history.csv) that stand in for runs the
    cache lacks (`lib.orchestrate.sweep.run_sweep`'s "evidence"); "auto": `results/<profile>/` where it exists;
    None: the run cache only (a caller that needs the weights, as notebook 05's t-SNE does).
    """
    from lib.orchestrate.sweep import default_workers, run_sweep

    seeds = profile_seeds(profile) if seeds is None else check_seeds(seeds, "seeds")
    workers = default_workers(device) if workers is None else workers
    if not variants:
        raise ConfigError("sweep_seeds: no variants to train; give {label: overrides}, e.g. {'taet': {}}")
    labels = list(variants)
    spec: dict[str, Any] = {"profile": profile, "device": device, "out_dir": out_dir, "method": method,
                            "grid": {"variant": [dict(variants[k]) for k in labels], "seed": list(seeds)}}
    if attacks:
        spec["attacks"] = list(attacks)
    if evidence == "auto":
        evidence = evidence_folder(profile)
    if evidence:
        spec["evidence"] = str(evidence)
    results = run_sweep(spec, executor=executor or ("inline" if workers == 1 else "local"), workers=workers)
    k = len(seeds)
    return {label: {s: results[i * k + j] for j, s in enumerate(seeds)} for i, label in enumerate(labels)}


def at_reduced(variants: dict[str, dict[str, Any]], reduced: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`variants` with the reduced scale's overrides merged in (section dicts merged key by key)."""
    out = {}
    for label, v in variants.items():
        merged = dict(v)
        for key, val in reduced["overrides"].items():
            merged[key] = {**merged.get(key, {}), **val} if isinstance(val, dict) else val
        out[label] = merged
    return out


def evidence_folder(profile: str, results_dir: str | None = None) -> str | None:
    """`results/<profile>/`, the profile's committed evidence (`python -m lib export`), where it exists."""
    from pathlib import Path

    from lib.core.runs import RESULTS_DIR

    folder = Path(results_dir or RESULTS_DIR) / profile
    return str(folder) if folder.is_dir() else None


def train_eval_seeds(profile: str, method: str, seeds=None, *, device: str = "auto", out_dir: str = "outputs",
                     workers: int | None = None, executor: str | None = None, attacks=None,
                     evidence: str | None = "auto", **overrides) -> dict[int, dict[str, Any]]:
    """`method` trained and evaluated for each seed (the profile's by default): {seed: eval document}.
    `overrides` are sweep overrides (`train={"epochs": 5}`, `ir=50`)."""
    return sweep_seeds(profile, {method: {"method": method, **overrides}}, seeds, device=device, out_dir=out_dir,
                       workers=workers, executor=executor, attacks=attacks, evidence=evidence)[method]


# ---------------------------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------------------------
def seeds_of(docs: Docs) -> list[int]:
    """The seeds every label was run for; a ConfigError when labels differ (tables and readings pair by seed)."""
    if not docs:
        raise ConfigError("no results to tabulate")
    sets = {label: sorted(by) for label, by in docs.items()}
    first = next(iter(sets.values()))
    odd = {label: s for label, s in sets.items() if s != first}
    if not first or odd:
        raise ConfigError(f"results are not over the same seeds ({sets}); train every row for the same seeds, "
                          "e.g. with lib.study.seeded.sweep_seeds")
    return first


def seeds_label(k: int) -> str:
    """'1 seed, no interval' or 'mean ± std [95% t-interval], n = K seeds'."""
    return "1 seed, no interval" if k == 1 else f"mean ± std [95% t-interval], n = {k} seeds"


def first_doc(docs: Docs) -> dict[str, Any]:
    by = next(iter(docs.values()))
    return by[min(by)]


def setting_line(doc: dict[str, Any], k: int, *, ir: bool = True, figure: bool = False) -> str:
    """Dataset (and IR), ε, the test set's size and protocol, and the seeds: what every title names."""
    p = doc["protocol"]
    eps = doc.get("eval_config", {}).get("eps")
    parts = [f"{p['dataset']}-LT" + (f" IR {p['imbalance_ratio']:g}" if ir else "")]
    if ir and p.get("train_counts"):  # the train set's size: a reduced scale reads as such
        parts.append(f"{sum(p['train_counts']):,} train images")
    if eps is not None:
        parts.append(f"ε = {255 * eps:.3g}/255")
    parts.append(f"{p['test_protocol']} test set of {p['n_test']:,}")
    spread = ("1 seed" if k == 1 else f"mean ± 1 std (bars, bands) over n = {k} seeds") if figure else seeds_label(k)
    return ", ".join(parts) + f"; {spread}"


def title(what: str, profile: str, docs: Docs, *, ir: bool = True) -> str:
    """'<what> (<profile> profile; <dataset, ε, test set>; <seeds>)': a table's title."""
    return f"{what} ({profile} profile; {setting_line(first_doc(docs), len(seeds_of(docs)), ir=ir)})"


def figure_title(what: str, profile: str, docs: Docs, *, ir: bool = True) -> str:
    """A figure's title: `what`, then the profile, data set, ε, test set and seeds on a second line."""
    return f"{what}\n{profile} profile; {setting_line(first_doc(docs), len(seeds_of(docs)), ir=ir, figure=True)}"


# ---------------------------------------------------------------------------------------------------------------
# Cells and tables
# ---------------------------------------------------------------------------------------------------------------
def cell(values: list[float | None], digits: int = 2, seeded_digits: int = 1) -> str:
    """Fractions over seeds as a % cell: one value as it is (`percent`), several as `mean ± std [low, high]`
    (`lib.study.stats.summarize`), "-" where any seed lacks the value."""
    if any(v is None for v in values):
        return "-"
    if len(values) == 1:
        return percent(values[0], digits)
    return summarize(values).format(seeded_digits, scale=100)


def metric_values(by_seed: dict[int, dict[str, Any]], attack: str, metric: str = "balanced") -> list[float | None]:
    return [None if d["results"].get(attack) is None else d["results"][attack][metric]
            for _, d in sorted(by_seed.items())]


def class_values(by_seed: dict[int, dict[str, Any]], attack: str, c: int) -> list[float | None]:
    return [None if d["results"].get(attack) is None else d["results"][attack]["per_class"][c]
            for _, d in sorted(by_seed.items())]


def attack_columns(docs: Docs) -> list[str]:
    order = list(COLUMN_NAMES)
    return sorted(first_doc(docs)["results"], key=lambda a: order.index(a) if a in order else len(order))


def robustness_table(docs: Docs, attacks: list[str] | None = None, metric: str = "balanced",
                     digits: int = 2) -> tuple[list[str], list[list[str]]]:
    """Table 1: one row per label, balanced accuracy (Clean) / robustness (attacks), %, over seeds (`cell`); the
    title carries `seeds_label`."""
    seeds_of(docs)
    attacks = attacks or attack_columns(docs)
    header = ["method"] + [COLUMN_NAMES.get(a, a) for a in attacks]
    rows = [[label] + [cell(metric_values(by, a, metric), digits) for a in attacks] for label, by in docs.items()]
    return header, rows


def tail_table(docs: Docs, k: int = 3, attacks=("clean", "pgd20")) -> tuple[list[str], list[list[str]]]:
    """Table 2: per-class clean accuracy and PGD-20 robustness of the k rarest classes, %, over seeds. The
    column's n is the class's TRAIN count (the test set is the profile's)."""
    seeds_of(docs)
    counts = first_doc(docs)["protocol"]["train_counts"]
    tail = rarest_classes(counts, k)
    header = ["method"] + [f"{COLUMN_NAMES.get(a, a)} c{c} (train n={counts[c]})" for a in attacks for c in tail]
    rows = [[label] + [cell(class_values(by, a, c), 1) for a in attacks for c in tail] for label, by in docs.items()]
    return header, rows


def sweep_table(sweep: dict[str, dict[Any, Docs]], key: str = "IR", attacks: list[str] | None = None
                ) -> tuple[list[str], list[list[str]]]:
    """Table 5: rows `method @ key value`, columns `attacks` (default: those of the first run), balanced (%), over
    seeds; `sweep` is {method: {value: {seed: eval document}}}."""
    docs = {f"{m} @ {key} {v:g}": by_seed for m, by in sweep.items() for v, by_seed in sorted(by.items())}
    return robustness_table(docs, attacks)


def hel_grid_table(grid: Docs, weights: list[list[float]], attack: str = "pgd20", digits: int = 2
                   ) -> tuple[list[str], list[list[str]]]:
    """Table 4 in the paper's layout: one row per β, one column per (α, γ), each cell the balanced `attack`
    robustness (%) of that TAET run over seeds (`cell`). `grid` maps labels to runs in the order of `weights`
    ([α, β, γ] each); rows and columns keep the order in which their values first appear; "-" where a combination
    was not run."""
    if len(grid) != len(weights):
        raise ConfigError(f"hel_grid_table: {len(grid)} runs for {len(weights)} weight triples; pass the grid "
                          "and the weights it was trained with, in the same order")
    seeds_of(grid)
    by_weights = {(a, b, g): by for (a, b, g), by in zip(map(tuple, weights), grid.values())}
    betas = list(dict.fromkeys(b for _, b, _ in by_weights))
    pairs = list(dict.fromkeys((a, g) for a, _, g in by_weights))
    header = ["β"] + [f"α={a:g} γ={g:g}" for a, g in pairs]
    rows = [[f"β = {b:g}"] + [cell(metric_values(by_weights[(a, b, g)], attack), digits)
                              if (a, b, g) in by_weights else "-" for a, g in pairs] for b in betas]
    return header, rows


def combine_tables(tables: list[tuple[list[str], list[list[str]]]]) -> tuple[list[str], list[list[str]]]:
    """Tables of the same shape, one per seed, as one: a numeric cell that differs across seeds becomes
    `mean ± std [low, high]` (same decimals as the input); so does a measured value (one with decimals) that is
    equal at every seed, as `x ± 0.0 [x, x]`, so that it does not read as a single-seed number. Text and whole
    numbers equal across seeds (class names, train counts, epochs) are kept. One table: unchanged."""
    if not tables:
        raise ConfigError("no tables to combine")
    header, rows = tables[0]
    if len(tables) == 1:
        return header, rows
    out = []
    for i, row in enumerate(rows):
        new = []
        for j, c in enumerate(row):
            cells = [t[1][i][j] for t in tables]
            if len(set(cells)) == 1 and not _measured(c):
                new.append(c)
                continue
            try:
                vals = [float(x) for x in cells]
            except ValueError:
                raise ConfigError(f"cannot combine {cells} over seeds (column {header[j]!r})") from None
            if any(math.isnan(v) for v in vals):  # undefined for some seed (e.g. a silhouette on too few points)
                new.append("nan")
                continue
            digits = len(c.split(".")[1]) if "." in c else 0
            new.append(summarize(vals).format(digits))
        out.append(new)
    return header, out


def _measured(cell: str) -> bool:
    """A finite number written with decimals: a measurement, not a count or a setting."""
    try:
        return "." in cell and math.isfinite(float(cell))
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------------------------
# Figures' data
# ---------------------------------------------------------------------------------------------------------------
def spread(values: list[float]) -> tuple[float, float]:
    """(mean, std) in the values' units; std 0 for one value (nothing to draw)."""
    s = summarize(values)
    return s.mean, (0.0 if s.n < 2 else s.std)


def series(docs: Docs, attacks=("clean", "pgd20"), metric: str = "balanced"
           ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """({column: mean % per label}, {column: std % per label}) for bar and line plots with error bars."""
    seeds_of(docs)
    means: dict[str, list[float]] = {}
    stds: dict[str, list[float]] = {}
    for a in attacks:
        col = COLUMN_NAMES.get(a, a)
        pairs = [spread([100 * v for v in metric_values(by, a, metric)]) for by in docs.values()]
        means[col], stds[col] = [m for m, _ in pairs], [s for _, s in pairs]
    return means, stds


def per_class_series(docs: Docs, attack: str = "pgd20"
                     ) -> tuple[list[str], dict[str, list[float]], dict[str, list[float]]]:
    """(class labels with train counts, {label: mean per-class %}, {label: std}) for per-class bar charts."""
    seeds_of(docs)
    counts = first_doc(docs)["protocol"]["train_counts"]
    tail = set(rarest_classes(counts, 3))
    names = [f"c{c} (train n={n})" + (" *" if c in tail else "") for c, n in enumerate(counts)]
    means, stds = {}, {}
    for label, by in docs.items():
        pairs = [spread([100 * (v or 0.0) for v in class_values(by, attack, c)]) for c in range(len(counts))]
        means[label], stds[label] = [m for m, _ in pairs], [s for _, s in pairs]
    return names, means, stds


# ---------------------------------------------------------------------------------------------------------------
# Readings
# ---------------------------------------------------------------------------------------------------------------
def compare(a: list[float], b: list[float], confidence: float = 0.95) -> tuple[str, Summary]:
    """('ahead' | 'behind' | 'tied' | 'unranked', paired difference a − b in points): 'tied' when the t-interval
    at `confidence` includes 0, 'unranked' with one seed (no interval)."""
    d = paired_difference([100 * x for x in a], [100 * x for x in b], confidence)
    if d.n < 2 or math.isnan(d.low):
        return "unranked", d
    if d.low > 0:
        return "ahead", d
    if d.high < 0:
        return "behind", d
    return "tied", d


def difference_text(name_a: str, name_b: str, a: list[float], b: list[float], confidence: float = 0.95) -> str:
    """One clause: 'TAET − AT-BSL = d ± s [lo, hi] points: a tie (the interval includes 0)' and the like; the
    interval is at `confidence`."""
    word, d = compare(a, b, confidence)
    if word == "unranked":
        return f"{name_a} − {name_b} = {d.mean:+.1f} points (1 seed, no interval: not a ranking)"
    verdict = {"ahead": f"{name_a} ahead", "behind": f"{name_a} behind",
               "tied": "a tie (the interval includes 0)"}[word]
    return (f"{name_a} − {name_b} = {d.mean:+.1f} ± {d.std:.1f} [{d.low:+.1f}, {d.high:+.1f}] points over "
            f"{d.n} paired seeds: **{verdict}**")


def ranking_reading(docs: Docs, attack: str = "pgd20", focus=("taet", "HEL (all)"), against=("atbsl",),
                    simultaneous: bool = False) -> str:
    """Which label has the highest mean balanced robustness under `attack`, and the focus label's paired
    differences from it (and from `against`), ties called ties. One seed: values only, no ranking. With
    `simultaneous`, the k comparisons' intervals are Bonferroni-simultaneous (each at 1 − 0.05/k), so the verdicts
    hold together at 95%; otherwise each is a 95% interval for its own comparison."""
    seeds_of(docs)
    col = COLUMN_NAMES.get(attack, attack)
    vals = {label: metric_values(by, attack) for label, by in docs.items()}
    vals = {k: v for k, v in vals.items() if None not in v}
    if not vals:
        return f"No {col} results to compare."
    k = len(next(iter(vals.values())))
    key = next((f for f in focus if f in vals), None)
    if k == 1:
        shown = ", ".join(f"{label} {100 * v[0]:.1f}%" for label, v in vals.items())
        return f"Balanced {col} robustness, **1 seed, no interval** (no ranking is stated): {shown}."
    means = {label: summarize(v).mean for label, v in vals.items()}
    best = max(means, key=means.get)
    text = (f"Highest mean balanced {col} robustness over {k} seeds: **{best}** "
            f"({summarize([100 * x for x in vals[best]]).format(1)}%; a mean, not a ranking: the paired differences "
            f"say which gaps exceed the seed noise).")
    if key is not None:
        others = [o for o in [best] + [a for a in against if a in vals and a != best] if o != key]
        joint = simultaneous and len(others) > 1
        level = bonferroni_level(len(others)) if joint else 0.95
        clauses = [difference_text(f"`{key}`", f"`{o}`", vals[key], vals[o], level) for o in others]
        if clauses:
            text += " " + "; ".join(clauses) + "."
        if joint:
            text += (f" The {len(others)} intervals are Bonferroni-simultaneous ({100 * level:.1f}% each), so "
                     f"together they hold at 95%.")
    return text


def sweep_reading(sweep: dict[str, dict[Any, Docs]], attack: str = "pgd20", a: str = "taet", b: str = "atbsl"
                  ) -> str:
    """Per imbalance ratio: the paired difference a − b in balanced robustness over seeds, ties called ties (one
    seed: the difference, labelled as no ranking)."""
    if not {a, b} <= set(sweep):
        return ""
    parts = [f"IR {ir:g}: " + difference_text("TAET", "AT-BSL", metric_values(sweep[a][ir], attack),
                                              metric_values(sweep[b][ir], attack))
             for ir in sorted(sweep[a]) if ir in sweep[b]]
    return f"Balanced {COLUMN_NAMES.get(attack, attack)} robustness by imbalance ratio. " + "; ".join(parts) + "."


def dynamics_stats(history: list[dict[str, Any]], train_counts: list[int]) -> tuple[float, float, float, float]:
    """(tail final PGD %, tail swing, head final PGD %, head swing) of one tracked run: the three rarest classes
    against the others, swing = per-class std over the second half of training, averaged."""
    rows_h = [r for r in history if r.get("pgd_c0") not in (None, "")]
    half = rows_h[len(rows_h) // 2:]
    tail = rarest_classes(train_counts, 3)
    head = [c for c in range(len(train_counts)) if c not in tail]

    def stat(cs):
        v = np.array([[100 * float(r[f"pgd_c{c}"]) for r in half] for c in cs])
        return v[:, -1].mean(), v.std(axis=1).mean()

    (tf, ts), (hf, hs) = stat(tail), stat(head)
    return float(tf), float(ts), float(hf), float(hs)


def dynamics_reading(histories: list[list[dict[str, Any]]], train_counts: list[int]) -> str:
    """Notebook 01's reading: the three rarest classes' final PGD robustness and swing against the others', each
    as mean ± std [interval] over seeds (`histories`, one per seed; one seed: its values, labelled)."""
    stats = [dynamics_stats(h, train_counts) for h in histories]
    k = len(stats)

    def f(i):
        vals = [s[i] for s in stats]
        return f"{vals[0]:.1f}" if k == 1 else summarize(vals).format(1)

    over = "On 1 seed (no interval)" if k == 1 else f"Over {k} seeds (mean ± std [95% t-interval])"
    return (f"{over}: the three rarest classes end at **{f(0)}%** mean PGD robustness against "
            f"**{f(2)}%** for the others, and swing by **{f(1)}** points (std over the second half of training) "
            f"against **{f(3)}** for the others.")
