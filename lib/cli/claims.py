"""`python -m lib claims`: the claims check (`lib.study.claims.check`) from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from lib.core.config import ConfigError
from lib.core.errors import check_seeds, parse_seeds
from lib.profiles import PROFILES
from lib.study.claims import RESULTS_DIR, SCALE_FILE, check, export_results, scale_check, settings, splice_readme
from lib.study.claims_report import section_span


def add_parser(sub, fmt) -> None:
    """`python -m lib claims`: the claims check from the command line."""
    c = sub.add_parser("claims", formatter_class=fmt,
                       help="the claims check: paired differences over seeds, intervals, verdicts",
                       description="Reads the claims runs from the run cache, else from results/<profile>/; "
                                   "writes outputs/tables/claims.md|csv, claims_times.md|csv (each run's "
                                   "accuracy, robustness and time), factorial.md|csv and, with --switches, "
                                   "switches.md|csv.")
    c.add_argument("--profile", default="demo", choices=sorted(PROFILES), help="settings profile (default: demo)")
    c.add_argument("--out-dir", default="outputs", help="outputs folder holding runs/ (default: outputs)")
    c.add_argument("--results-dir", default=RESULTS_DIR, help="committed evidence folder (default: results)")
    c.add_argument("--device", default="auto", help="auto, cpu or cuda, for --train (default: auto)")
    c.add_argument("--train", action="store_true",
                   help="train the missing runs through lib.orchestrate.sweep (default: off)")
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
                        "--> with the report, e.g. --readme docs/results.md (also written to "
                        "OUT_DIR/claims_report.md) (default: off)")
    c.add_argument("--scale-check", action="store_true",
                   help="first measure the scale's floor: CE as the claims train it, for each seed (trained where the "
                        "run cache lacks its weights), evaluated clean on the whole balanced test set; writes "
                        f"results/<profile>/{SCALE_FILE}, which the report then reads (default: off)")
    c.add_argument("--scale-check-seeds", default=None, metavar="SEEDS",
                   help="comma-separated seeds of the scale check, at least 2 (default: the profile's); it reads CE "
                        "alone, so more seeds than the claims' are cheap")
    c.add_argument("--export", action="store_true",
                   help="copy the runs' config.json, eval.json, history.csv to results/<profile>/ (default: off)")
    c.set_defaults(func=cmd_claims)


def cmd_claims(a: argparse.Namespace) -> int:
    """Refuse bad flags before any work, run the scale check if asked, then the check (`lib.study.claims.check`):
    print its tables and readings, and splice the report into --readme, export with --export."""
    if a.readme:  # a file that cannot take the report is refused before anything is gathered or trained
        section_span(a.readme)
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
