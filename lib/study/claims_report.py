"""The claims check's report: the claims table and its computed reading, each run's accuracy and time, the factorial
(main or simple effects) and the fidelity switches, as markdown and CSV under outputs/tables/; and the whole check
as one markdown section, spliced into a file between its markers (docs/results.md: `python -m lib claims --readme
docs/results.md`). Nothing in it is written by hand.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lib.core import runs
from lib.core.config import ConfigError
from lib.profiles import profile_config, profile_seeds
from lib.study import factorial
from lib.study.claims_runs import SWITCH_BASE, claim_runs, switch_runs, train_hint
from lib.study.claims_scale import scale_reading
from lib.study.claims_verdicts import NOT_RUN, UNEVEN_TIMING, balanced, measured_text, paired_summary, train_seconds
from lib.study.stats import Summary, summarize
from lib.study.tables import format_table

# ---------------------------------------------------------------------------------------------------------------
# The claims table and its reading
# ---------------------------------------------------------------------------------------------------------------
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


def wall_times(profile: str, gathered: dict[str, Any], out_dir: str = "outputs") -> str:
    """outputs/tables/claims_times.md|csv: each claims run's balanced clean accuracy, balanced PGD-20 robustness
    and training time (minutes of one core, from its history.csv), mean ± std over the seeds found, one row per
    distinct config (labels naming the same run share it), and what the missing runs would take at the mean time
    of their method here; returns the markdown."""
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
        vals = [train_seconds(d) / 60 for d in docs]
        per_method.setdefault(specs[labels[0]][0], []).extend(vals)
        rows.append([" = ".join(labels), str(len(docs)), cell([balanced("clean")(d) for d in docs]),
                     cell([balanced("pgd20")(d) for d in docs]), cell(vals), f"{sum(vals):.0f}"])
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
    return {c.label: {s: balanced(attack)(merged[(c.label, s)]) for s in gathered["seeds"] if (c.label, s) in merged}
            for c in factorial.cells(profile)}


METRICS = (("PGD-20", "pgd20"), ("Clean", "clean"))


def factorial_effects(profile: str, gathered: dict[str, Any], diverged=()) -> dict[str, dict[str, Summary]]:
    """{"PGD-20": effects, "Clean": effects} (lib.study.factorial.effects) from the gathered factorial cells;
    `diverged`:
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
            metric = balanced(attack)
            s = paired_summary([metric(merged[(label, x)]) - metric(merged[(base, x)]) for x in seeds])
            cells.append(measured_text(s, "points"))
        rows.append([label, *cells, str(len(seeds))])
    md = (f"**Fidelity switches: effect of each official-code switch, switched − default, paired by seed "
          f"({scale_label(profile).split(';')[0]}; points)**\n\n" + format_table(header, rows) + "\n")
    tables = Path(out_dir) / "tables"
    runs.atomic_write_text(tables / "switches.md", md)
    runs.atomic_write_csv(tables / "switches.csv", [dict(zip(header, r)) for r in rows])
    return md


# ---------------------------------------------------------------------------------------------------------------
# The whole check as one markdown section (docs/results.md's Results), regenerated from the numbers
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
    g, rows = res["gathered"], res["rows"]
    n = len(g["seeds"])
    measured = [r for r in rows if r["verdict"] != NOT_RUN]
    cols = ["claim", "paper", "measured", "n", "verdict"]
    heads = ["claim", "paper (CIFAR-10-LT)", "measured here: paired difference", "n", "verdict"]
    switches = " --switches" if "switches_md" in res else ""
    parts = [f"### Claims check, `{profile}` profile ({n} seed{'s' if n != 1 else ''})",
             f"`python -m lib claims --profile {profile}{switches}` rebuilds this section from the committed "
             f"`results/{profile}/` (`--train` trains what is missing, `--export` copies new runs there, `--readme "
             f"docs/results.md` rewrites this section). " + _setting(profile, g)]
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


def section_span(path, markers: tuple[str, str] = README_MARKERS) -> tuple[str, int, int]:
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
    text, a, b = section_span(path, markers)
    runs.atomic_write_text(Path(path), text[:a] + "\n" + section + text[b:])
