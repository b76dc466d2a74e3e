"""The claims check: every claim of the TAET paper as a paired difference over seeds, with its interval and verdict.

Each claim compares runs of the profile (same seed = paired: same data draw, initialisation and batch order) and
states the paper's own number (CIFAR-10-LT, from its tables). Runs are read from the run cache (outputs/runs) and,
where the cache lacks one, from the committed evidence `results/<profile>/<run name>/{config.json, eval.json,
history.csv}`; when both hold a claim's runs, the row says whether your runs agree with the committed ones. Missing
runs are trained only when asked (`train_missing`, `python -m lib claims --train`); otherwise a `partial` check
measures each claim over the seeds that have its runs and names the rest, and a strict one stops with a ConfigError
naming them and the command. `export_results` writes the evidence files (no checkpoints).

By job: `claims_runs` (the runs, finding and training them, the export), `claims_verdicts` (the claims and their
verdicts), `claims_scale` (the scale check), `claims_report` (tables, readings, the section spliced into
docs/results.md). This module runs the whole check (`check`) and keeps every public name of the check importable
from `lib.study.claims`. The command line is `lib/cli/claims.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lib.core import runs
from lib.core.config import ConfigError
from lib.study import factorial
from lib.study.claims_report import (
    METRICS,
    README_MARKERS,
    TABLE_COLUMNS,
    diverged_note,
    factorial_effects,
    factorial_simple_effects,
    reading,
    report,
    save_claims,
    save_factorial,
    scale_label,
    splice_readme,
    switch_effects,
    wall_times,
)
from lib.study.claims_runs import (
    AA_RUNS,
    DEFAULT_SETTINGS,
    PROFILE_SETTINGS,
    RESULTS_DIR,
    SWITCH_BASE,
    MissingRunsError,
    claim_runs,
    export_results,
    gather,
    locate,
    locate_diverged,
    run_configs,
    settings,
    switch_runs,
    train_hint,
    training_specs,
)
from lib.study.claims_scale import SCALE_FILE, SCALE_FLOOR, floor_verdict, read_scale_check, scale_check, scale_reading
from lib.study.claims_verdicts import NOT_RUN, UNEVEN_TIMING, Claim, claims, evaluate_claims, uneven_timing


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


__all__ = [
    # the check
    "check", "ConfigError", "MissingRunsError", "factorial", "runs",
    # the runs (claims_runs)
    "RESULTS_DIR", "PROFILE_SETTINGS", "DEFAULT_SETTINGS", "settings", "claim_runs", "switch_runs", "SWITCH_BASE",
    "run_configs", "AA_RUNS", "locate", "locate_diverged", "gather", "train_hint", "training_specs", "export_results",
    # the claims and their verdicts (claims_verdicts)
    "NOT_RUN", "Claim", "UNEVEN_TIMING", "uneven_timing", "claims", "evaluate_claims",
    # the scale check (claims_scale)
    "SCALE_FLOOR", "SCALE_FILE", "scale_check", "floor_verdict", "read_scale_check", "scale_reading",
    # the report (claims_report)
    "TABLE_COLUMNS", "scale_label", "save_claims", "reading", "wall_times", "METRICS", "factorial_effects",
    "diverged_note", "factorial_simple_effects", "save_factorial", "switch_effects", "README_MARKERS", "report",
    "splice_readme",
]
