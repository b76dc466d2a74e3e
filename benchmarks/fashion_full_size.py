"""Train the fashion profile's claims runs on the whole Fashion-MNIST-LT set (24,516 images), as one sweep.

Why: the profile first capped the set at 12,000 images, where standard training's balanced clean accuracy on the
whole test set was 85.7 ± 1.0% with a 95% interval of [84.7, 86.7] over 6 seeds, leaving the 85% floor undecided;
on the whole long-tailed set CE reaches 88.7, 88.1 and 87.4 (seeds 0-2), so the profile has trained the whole set since
(`python -m lib claims --profile fashion --scale-check`; docs/deviations.md, "Fashion scale"). The 12,000-image runs
stay in
results/fashion/ for `--report`'s comparison of the two scales.

What: every claims run (the factorial and the official-code switches included) and Fig. 6b's two further cells,
for the profile's seeds, exactly as the profile trains them except `data.max_train` = None. The runs go through
`lib.orchestrate.sweep` (run cache in OUT_DIR/runs; those already exported to results/fashion/ are not retrained), most
central first (CE, TAET, AT-BSL, AT, then the factorial's cells), and each finished run's evidence files (no
weights) are exported to results/fashion/, where they sit beside the 12,000-image runs under their own hashes.
Interrupting loses at most the epoch in progress: rerunning resumes. On a GPU this is the quickest way to rebuild
the profile's evidence; `python -m lib pipeline --profile fashion` then reads it.

    python benchmarks/fashion_full_size.py --dry-run          # what is done, the time left, each run left and its use
    python benchmarks/fashion_full_size.py --export-only      # export what finished while another process trains
    python benchmarks/fashion_full_size.py --report           # the claims check on the whole-set runs exported so far
    python benchmarks/fashion_full_size.py                    # CPU: one 1-thread worker per core
    python benchmarks/fashion_full_size.py --device cuda --workers 8

On a machine without the Debian package, put the four Fashion-MNIST IDX files (.gz, 31 MB) in data/fashion-mnist/.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lib.core import runs  # noqa: E402
from lib.orchestrate import sweep  # noqa: E402
from lib.profiles import PROFILES, Profile, profile_seeds  # noqa: E402
from lib.study import claims, factorial  # noqa: E402

PROFILE = "fashion"
FULL_SIZE = {"data": {"max_train": None}}
FIG6B_EXTRA = {"BCL+HDL": ("taet", {"method_args": {"gamma": 0.0}}),  # notebook 04's Fig. 6b cells that are not
               "BCL+RCEL": ("taet", {"method_args": {"beta": 0.0}})}  # claims runs
CORE = ("ce", "taet", "atbsl", "at")
EARLIER_CAP = 12000  # the scale of the committed runs that the whole-set ones replace


def spec(device: str, out_dir: str, results_dir: str) -> dict:
    """One `lib.orchestrate.sweep` spec: every run at the whole set, label by label with the seeds inside: the core
    methods first, then the factorial's cells, then the other claims runs and Fig. 6b's cells."""
    labels = claims.claim_runs(PROFILE, switch_cells=True)
    first = list(CORE) + [c.label for c in factorial.cells(PROFILE)]  # then the factorial: the gap's "why"
    order = list(dict.fromkeys(first + [lbl for lbl in labels if lbl not in first]))
    keys = [(lbl, s) for lbl in order for s in profile_seeds(PROFILE)]
    (sp,) = claims.training_specs(PROFILE, keys, device=device, out_dir=out_dir)  # fashion: one attack list
    sp["grid"]["run"] += [{"method": m, "seed": s, **over} for m, over in FIG6B_EXTRA.values()
                          for s in profile_seeds(PROFILE)]
    sp["base"] = FULL_SIZE
    sp["evidence"] = str(Path(results_dir) / PROFILE)
    return sp


def export_finished(sp: dict, results_dir: str) -> int:
    """Export every run of `sp` that finished in the cache (eval.json, or diverged.json) and is not in results/."""
    dest = Path(results_dir) / PROFILE
    done = [rd for rd in (runs.run_dir(c) for c in sweep.expand(sp))
            if ((rd / "eval.json").exists() or (rd / runs.DIVERGED_FILE).exists()) and not (dest / rd.name).exists()]
    runs.export_evidence(done, dest)
    return len(done)


@contextlib.contextmanager
def whole_set_profile(max_train: int | None = None):
    """The fashion profile with `max_train` (default None: the whole set, the profile's own) inside this block only:
    `EARLIER_CAP` reads the 12,000-image runs."""
    saved = PROFILES[PROFILE]
    spec = saved.to_spec()
    spec["data"]["max_train"] = max_train
    PROFILES[PROFILE] = Profile.from_spec(PROFILE, spec)
    try:
        yield
    finally:
        PROFILES[PROFILE] = saved


def run_labels() -> dict[str, list[str]]:
    """{run folder name: the labels it trains for} (a run can serve several: TAET's own run is also Fig. 7's 8-clean-
    epoch cell), for `--dry-run` to say what each remaining run is for."""
    from lib.profiles import run_config

    seeds = profile_seeds(PROFILE)
    with whole_set_profile():
        cfgs = claims.run_configs(PROFILE, list(claims.claim_runs(PROFILE, switch_cells=True)), seeds)
        cfgs.update({(lbl, s): run_config(PROFILE, m, train={"seed": s}, **over)
                     for lbl, (m, over) in FIG6B_EXTRA.items() for s in seeds})
    out: dict[str, list[str]] = {}
    for (lbl, _), cfg in cfgs.items():
        out.setdefault(runs.run_dir(cfg).name, []).append(lbl)
    return out


def clean_epochs(cfg) -> int:
    """How many of the run's epochs train on clean images, as the method's own `stage` says (CE: all; TAET's stage
    1; AT-BSL's `clean_epochs`); built with a stand-in context, as config validation does."""
    import torch

    from lib.core.methods import MethodContext, build_method

    method = build_method(cfg.method, cfg.method_args, MethodContext(2, [1, 1], cfg.train.epochs, torch.device("cpu")))
    return sum(method.stage(e) == "clean" for e in range(cfg.train.epochs))


def estimate_seconds(cfgs, results_dir: str) -> float | None:
    """Seconds of one core that training `cfgs` would take: each epoch at the median clean / adversarial epoch of
    the whole-set IR-10 runs in `results_dir` (their history.csv), scaled by the run's train-set size against IR
    10's. None before any such run has both kinds of epoch."""
    from statistics import median

    from lib.core.data import long_tail_counts

    secs: dict[str, list[float]] = {"clean": [], "adversarial": []}
    for folder in sorted((Path(results_dir) / PROFILE).glob("*")):
        if not (folder / "history.csv").exists():
            continue
        cfg = runs.read_config(folder)
        if cfg.data.max_train is None and cfg.data.imbalance_ratio == 10:
            for row in runs.read_csv(folder / "history.csv"):
                secs.setdefault(row["stage"], []).append(float(row["seconds"]))
    if not secs["clean"] or not secs["adversarial"]:
        return None
    clean, adv = median(secs["clean"]), median(secs["adversarial"])

    def scale(c) -> float:  # train-set size against IR 10's (the class sizes' ratios do not depend on n_max)
        return (sum(long_tail_counts(6000, 10, c.data.imbalance_ratio, c.data.lt_profile))
                / sum(long_tail_counts(6000, 10, 10.0, c.data.lt_profile)))

    def seconds(c) -> float:
        n_clean = clean_epochs(c)  # builds the method once per run
        return (clean * n_clean + adv * (c.train.epochs - n_clean)) * scale(c)

    return sum(seconds(c) for c in cfgs)


def _no_run_cache(out_dir: str) -> None:
    """Refuse an `out_dir` holding runs/: the reports read results/ alone."""
    if (Path(out_dir) / "runs").exists():
        raise SystemExit(f"{out_dir}/runs exists: the interim report reads results/ alone; pick another --report-dir")


def interim_report(results_dir: str, out_dir: str) -> dict:
    """The claims check (partial, with the switches) on the whole-set runs in `results_dir` alone: `out_dir` holds
    no runs, only the tables it writes. A claim whose runs are not all in yet reads 'not run'."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    _no_run_cache(out_dir)
    with whole_set_profile():
        return claims.check(PROFILE, out_dir=out_dir, results_dir=results_dir, partial=True, switches=True)


def report_text(res: dict) -> str:
    """The interim report's printed part: the claims table and its reading, each run's time, then the factorial
    (its simple effects until every cell is in) and the switches, as far as their runs are in."""
    parts = [res["claims_md"], res["reading"], res["times_md"]]
    if "factorial_md" in res:
        parts += [res["factorial_md"], res["factorial_reading"]]
    elif res.get("factorial_note"):  # not even the gap is in yet
        parts.append(res["factorial_note"])
    parts.append(res.get("switches_md", ""))
    return "\n".join(p.strip() + "\n" for p in parts if p)


def scale_comparison(whole: dict, results_dir: str, out_dir: str) -> str:
    """A markdown table: each core run's balanced clean and PGD-20 at the whole set (`whole`: the interim report's
    gathered runs) minus at EARLIER_CAP images (read from `results_dir`; `out_dir`: a folder without runs/), and the
    same for TAET − AT-BSL, paired by seed over the seeds whose runs are in at both scales."""
    from lib.study.stats import paired_difference
    from lib.study.tables import format_table

    def balanced(g, attack):
        return {k: 100 * doc["results"][attack]["balanced"] for k, doc in {**g["results"], **g["cache"]}.items()}

    _no_run_cache(out_dir)
    with whole_set_profile(EARLIER_CAP):
        capped = claims.gather(PROFILE, out_dir=out_dir, results_dir=results_dir, partial=True, factorial_cells=False)
    by_attack = [(balanced(capped, attack), balanced(whole, attack)) for attack in ("clean", "pgd20")]
    rows = []
    for what, a, b in [(m, m, None) for m in CORE] + [("TAET − AT-BSL", "taet", "atbsl")]:
        seeds = [x for x in profile_seeds(PROFILE) if all((lbl, x) in v for lbl in (a, b) if lbl for v in by_attack[0])]
        cells = [paired_difference([at_all[(a, x)] - (at_all[(b, x)] if b else 0.0) for x in seeds],
                                   [at_cap[(a, x)] - (at_cap[(b, x)] if b else 0.0) for x in seeds]).format(1)
                 if seeds else "-" for at_cap, at_all in by_attack]
        rows.append([what, str(len(seeds)), *cells])
    return (f"**Whole set minus {EARLIER_CAP:,} images, paired by seed: balanced accuracy on the test subset "
            f"(points; mean ± std [95% CI]; runs from {results_dir})**\n\n"
            + format_table(["run", "seeds", "Clean", "PGD-20"], rows) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    ap.add_argument("--workers", type=int, default=None,
                    help="runs at once (default: lib.orchestrate.sweep's, one 1-thread process per core on a CPU)")
    ap.add_argument("--out-dir", default="outputs", help="outputs folder holding runs/ (default: outputs)")
    ap.add_argument("--results-dir", default=str(ROOT / "results"), help="evidence folder (default: results)")
    ap.add_argument("--dry-run", action="store_true",
                    help="list the runs left, each with the claims labels it trains for, train nothing")
    ap.add_argument("--export-only", action="store_true",
                    help="export the runs that finished in the cache (while another process trains), train nothing")
    ap.add_argument("--report", action="store_true",
                    help="print the claims check on the whole-set runs in results/ so far (partial), train nothing")
    ap.add_argument("--report-dir", default="outputs/full_size",
                    help="where --report writes its tables (default: outputs/full_size)")
    a = ap.parse_args(argv)
    sp = spec(a.device, a.out_dir, a.results_dir)
    cfgs = sweep.expand(sp)
    have = {p.name for p in (Path(a.results_dir) / PROFILE).iterdir()} if (Path(a.results_dir) / PROFILE).is_dir() \
        else set()
    left = [c for c in cfgs if runs.run_dir(c).name not in have]
    print(f"{len(cfgs)} runs on the whole {cfgs[0].data.dataset}-LT set (no max_train); {len(cfgs) - len(left)} "
          f"already in {Path(a.results_dir) / PROFILE}, {len(left)} to train", flush=True)
    if a.export_only:
        print(f"exported {export_finished(sp, a.results_dir)} finished run(s) to {Path(a.results_dir) / PROFILE}")
        return 0
    if a.report:
        res = interim_report(a.results_dir, a.report_dir)
        print(f"Interim: the claims check at the whole set, from the {len(cfgs) - len(left)} of {len(cfgs)} runs "
              f"in {Path(a.results_dir) / PROFILE} (tables in {a.report_dir}/tables)\n")
        print(report_text(res))
        print(scale_comparison(res["gathered"], a.results_dir, a.report_dir))
        return 0
    if a.dry_run:
        est = estimate_seconds(left, a.results_dir) if left else None
        if est is not None:
            workers = sweep.default_workers(a.device) if a.workers is None else a.workers
            print(f"about {est / 3600:.0f} h of one core to train them ({est / 3600 / workers:.0f} h with {workers} "
                  "worker(s) at once), at the median clean and adversarial epoch of the whole-set runs so far",
                  flush=True)
        names = run_labels()
        try:
            for c in left:
                name = runs.run_dir(c).name
                print(f"   {name}  ({'; '.join(names.get(name, ['?']))})", flush=True)
        except BrokenPipeError:  # piped into `head`: stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    workers = sweep.default_workers(a.device) if a.workers is None else a.workers
    try:
        sweep.run_sweep(sp, executor="inline" if workers <= 1 else "local", workers=workers)
    except sweep.SweepError as e:
        if not e.only_divergences:
            raise
        # a run whose loss goes NaN/inf is evidence (the claims report it as diverged), not a failed sweep
        print(f"[sweep] done; {len(e.failed)} run(s) diverged, as their diverged.json records (evidence the claims "
              "report; the same settings diverge the same way again):\n" + "\n".join(f"  {rd}" for rd in e.failed),
              flush=True)
    finally:  # what finished is exported even when a run failed or diverged, or the sweep was interrupted
        n = export_finished(sp, a.results_dir)
        print(f"exported {n} finished run(s) to {Path(a.results_dir) / PROFILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
