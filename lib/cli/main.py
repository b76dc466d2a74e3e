"""Command line: python -m lib {train, evaluate, pipeline, sweep, bench, demo, export, claims} [--help].

Every argparse definition of the kit is in lib/cli: this parser and its handlers, the run flags (lib/cli/flags.py)
and the claims check (lib/cli/claims.py). `torchrun --nproc_per_node N -m lib train ...` trains one run on N
processes (DDP, see lib/core/distributed.py).
"""

from __future__ import annotations

import argparse
import sys

from lib.bench.checks import bf16_check
from lib.bench.runner import WORKLOADS, BenchSettings, default_models, parse_model_spec, run_bench
from lib.cli import claims as claims_cli
from lib.cli.flags import ATTACK_HELP, add_run_flags, config_from_args, methods_epilog
from lib.core import distributed
from lib.core.config import ConfigError
from lib.core.errors import check_range, parse_seeds
from lib.core.evaluate import check_attacks, evaluate_run, with_eval_overrides
from lib.core.runs import RESULTS_DIR, DiskFullError, export_evidence, read_config, run_dir
from lib.core.train import train_run, validate
from lib.orchestrate.evidence import find
from lib.orchestrate.pipeline import PipelineError, run_pipeline
from lib.orchestrate.preflight import check_run_autoattack
from lib.orchestrate.sweep import expand_points, load_spec, run_sweep
from lib.profiles import PROFILES
from lib.study.demo import run_demo
from lib.study.tables import summary_table


def cmd_train(a: argparse.Namespace) -> int:
    cfg = validate(config_from_args(a))
    attacks = check_attacks(a.attacks.split(",")) if a.attacks else None
    if a.evaluate and attacks is None:
        check_attacks(cfg.eval.attacks)  # a missing optional package is said before training, not after
    dist_on = distributed.init_from_env(cfg.train.device)  # under torchrun: join the process group
    ok = False
    try:
        res = train_run(cfg, resume=True if a.resume else "auto", force=a.force, sync_bn=a.sync_bn)
        ok = True
    finally:
        if dist_on:
            distributed.shutdown(ok)
    if distributed.env_rank() != 0:  # rank 0 reports and evaluates, alone
        return 0
    print(f"run folder: {res.run_dir}")
    if a.evaluate:
        evaluate_run(res.run_dir, attacks, device=cfg.train.device, progress=cfg.train.progress)
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    attacks = check_attacks(a.attacks.split(",")) if a.attacks else None
    cfg = read_config(a.run_dir)
    ecfg = with_eval_overrides(cfg.eval, eps=a.eps, batch_size=a.batch_size)
    check_range("eps", ecfg.eps, hint="attack sizes are in [0, 1] pixel units: 8/255 = 0.0314")
    if not a.allow_slow:
        check_run_autoattack(cfg, attacks, a.device)
    doc = evaluate_run(a.run_dir, attacks, device=a.device, ecfg=ecfg, force=a.force, progress=not a.no_progress)
    print(f"results: {a.run_dir}/eval.json and eval.csv ({len(doc['results'])} attacks)")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    run_demo(profile=a.profile, methods=a.methods.split(","), device=a.device, force=a.force)
    return 0


def cmd_sweep(a: argparse.Namespace) -> int:
    spec = load_spec(a.spec)
    if a.dry_run:
        for point, cfg in expand_points(spec):
            hit = find(cfg, spec.get("attacks") or cfg.eval.attacks)  # the run cache alone
            done = hit is not None and hit.doc is not None
            print(f"{'finished' if done else 'to run  '}  {point}  {run_dir(cfg)}")
        return 0
    results = run_sweep(spec, executor=a.executor, workers=a.workers, force=a.force)
    print(summary_table(results))
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    if a.profile not in PROFILES:
        raise ConfigError(f"unknown profile {a.profile!r}; valid: {sorted(PROFILES)}")
    written = export_evidence(a.run_dirs, f"{a.results_dir}/{a.profile}")
    print(f"{len(written)} run(s) -> {a.results_dir}/{a.profile}/ (config.json, eval.json, history.csv; no weights)")
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    if a.bf16_check:
        res = bf16_check(profile=a.bf16_check_profile, device=a.device, epochs=a.bf16_check_epochs,
                         seeds=parse_seeds(a.bf16_check_seeds), evidence=not a.bf16_check_no_evidence)
        return 0 if res["passed"] else 1
    models = ([parse_model_spec(m.strip(), a.quick, a.steps) for m in a.models.split(",") if m.strip()]
              if a.models else default_models(a.quick, a.steps))
    workloads = tuple(w.strip() for w in a.workloads.split(",")) if a.workloads else None
    st = BenchSettings(device=a.device, quick=a.quick, models=models, rounds=a.rounds or (2 if a.quick else 5),
                       steps=a.steps, warmup=a.warmup, seed=a.seed, ref_workers=a.ref_workers, amp=a.amp,
                       channels_last=a.channels_last, compile=a.compile, threads=a.threads,
                       variants=not a.no_variants, check=not a.no_check, costs=not a.no_costs,
                       cost_methods=tuple(a.cost_methods.split(",")) if a.cost_methods else None,
                       cost_profile=a.cost_profile or ("smoke" if a.quick else "demo"), out_dir=a.out_dir)
    if workloads:
        bad = [w for w in workloads if w not in WORKLOADS]
        if bad:
            raise ConfigError(f"unknown workload(s) {bad}; valid: {list(WORKLOADS)}")
        st.workloads = workloads
    doc = run_bench(st)
    return 0 if doc["numerical_check_passed"] else 1


def cmd_pipeline(a: argparse.Namespace) -> int:
    try:
        run_pipeline(a.profile, a.only, device=a.device, out_dir=a.out_dir, force=a.force,
                     html_export=not a.no_html, tiny=a.tiny, data_dir=a.data_dir, download=a.download,
                     allow_slow=a.allow_slow)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="python -m lib", formatter_class=fmt,
        description="TAET kit: adversarial training on long-tailed data (TAET, CVPR 2025, and its baselines).",
        epilog="`python -m lib COMMAND --help` explains every flag with its default and the paper's value.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one method (and optionally evaluate it)", formatter_class=fmt,
                       epilog=methods_epilog(),
                       description="Train a method into outputs/runs/<name>/. A finished run with the same config "
                                   "is reused; an unfinished one is resumed.")
    add_run_flags(t)
    t.add_argument("--resume", action="store_true",
                   help="require an unfinished checkpoint of this config and continue it exactly (default: "
                        "continue one if found)")
    t.add_argument("--force", action="store_true", help="retrain from scratch even if a finished run exists")
    t.add_argument("--evaluate", action="store_true", help="evaluate after training (default: off)")
    t.add_argument("--attacks", default=None, help=f"{ATTACK_HELP} (default: the profile's suite)")
    t.add_argument("--sync-bn", action="store_true",
                   help="under torchrun: SyncBatchNorm across the processes, CUDA only (default: off = per-process "
                        "BatchNorm statistics)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="run the attack suite on a trained run folder", formatter_class=fmt,
                       description="Writes RUN_DIR/eval.json and eval.csv; attacks already evaluated with the "
                                   "same settings are reused.")
    e.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `train`")
    e.add_argument("--attacks", default=None, help=f"{ATTACK_HELP} (default: the run's configured suite; "
                                                   "paper: all)")
    e.add_argument("--eps", type=float, default=None, help="l_inf budget (default: 8/255; paper: 8/255)")
    e.add_argument("--batch-size", type=int, default=None, help="evaluation batch size (default: 256)")
    e.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    e.add_argument("--force", action="store_true", help="recompute every attack")
    e.add_argument("--no-progress", action="store_true", help="no progress bars")
    e.add_argument("--allow-slow", action="store_true",
                   help="start even when AutoAttack on the CPU would take hours (default: stop and say how long)")
    e.set_defaults(func=cmd_evaluate)

    pl = sub.add_parser("pipeline", help="run the notebooks with papermill into outputs/ (tables, figures, HTML)",
                        formatter_class=fmt,
                        description="Executes notebooks/NN_*.ipynb in order with the profile's parameters; "
                                    "executed copies and HTML exports go to outputs/notebooks/, and "
                                    "outputs/index.html links every table and figure. A notebook already "
                                    "executed for the same profile is skipped (resume); --force reruns it.")
    pl.add_argument("--profile", default="demo", choices=sorted(PROFILES),
                    help="smoke (CI, minutes), demo (CPU), fashion (Fashion-MNIST-LT, CPU), paper (GPU), "
                         "taet_notebook (the official TAET notebook's protocol: ResNet-50 at 224 px, GPU) "
                         "(default: demo; paper: paper)")
    pl.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 02,05 (default: all)")
    pl.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    pl.add_argument("--tiny", action="store_true",
                    help="the profile with only its sizes shrunk (a few images, batches and epochs; synthetic data in "
                         "the real format where a data set is absent): every code path on a CPU in minutes, into "
                         "outputs/tiny/PROFILE/; checks, not results (default: off)")
    pl.add_argument("--out-dir", default=None,
                    help="output folder (default: outputs; with --tiny outputs/tiny/PROFILE)")
    pl.add_argument("--data-dir", default="data", help="folder the data sets are read from (default: data)")
    pl.add_argument("--download", action="store_true",
                    help="let torchvision / medmnist download a missing data set (default: off)")
    pl.add_argument("--allow-slow", action="store_true",
                    help="start even when AutoAttack on the CPU would take hours (default: stop and say how long)")
    pl.add_argument("--force", action="store_true", help="re-execute notebooks that finished earlier")
    pl.add_argument("--no-html", action="store_true", help="skip the nbconvert HTML export")
    pl.set_defaults(func=cmd_pipeline)

    sw = sub.add_parser("sweep", help="train and evaluate a grid of runs (methods x IR x HEL weights x seeds)",
                        formatter_class=fmt,
                        description="Expands SPEC (JSON, or TOML on Python >= 3.11; see lib/orchestrate/sweep.py and "
                                    "docs/scaling.md) into runs, skips those already finished and evaluated (run "
                                    "cache), "
                                    "dispatches the "
                                    "rest, and prints one line per run. Re-running a sweep only does what is "
                                    "missing.")
    sw.add_argument("spec", metavar="SPEC", help="sweep file: profile, base overrides, grid axes")
    sw.add_argument("--executor", default=None,
                    help="local (process pool, the default), inline (this process), slurm (submitit; pip install "
                         "submitit), submitit-local, submitit-debug (default: the spec's, else local)")
    sw.add_argument("--workers", type=int, default=None,
                    help="runs at once: processes for local, array parallelism for slurm (default: the spec's, "
                         "else 1)")
    sw.add_argument("--force", action="store_true", help="retrain and re-evaluate every run of the grid")
    sw.add_argument("--dry-run", action="store_true", help="print the expanded runs and stop")
    sw.set_defaults(func=cmd_sweep)

    b = sub.add_parser("bench", help="speed: the kit's loop against the reference-style loop, per-method costs",
                       formatter_class=fmt,
                       description="In one process, on the same model, batch, seed and attack steps, times the "
                                   "reference-style loop (benchmarks/reference.py: DataLoader + PIL transforms, fp32, "
                                   "HEL class loop, official-style PGD) and the kit's loop for the TAET stage-1 and "
                                   "stage-2 steps, the AT-BSL step and PGD-20 evaluation; checks both compute the "
                                   "same losses (fp32, 1e-4); measures each speed feature; writes "
                                   "OUT_DIR/<host>-<device>.json. Exit status 1 if the numerical check fails.")
    b.add_argument("--quick", action="store_true",
                   help="small batches, few rounds, feature variants on the stage-2 step only: minutes on a "
                        "2-core CPU (default: off)")
    b.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    b.add_argument("--models", default=None,
                   help="comma-separated ARCH:CxS[:bBATCH], e.g. small_cnn:1x8,resnet18:3x32:b128 (default: "
                        "small_cnn:1x8, small_cnn:1x28, resnet18:3x32; batch 128, ResNet-18 8 with --quick; "
                        "paper: resnet18:3x32:b128)")
    b.add_argument("--workloads", default=None,
                   help="comma-separated subset of taet_stage1, taet_stage2, atbsl, pgd20 (default: all)")
    b.add_argument("--rounds", type=int, default=None, help="timed segments per loop (default: 5; 2 with --quick)")
    b.add_argument("--steps", type=int, default=None,
                   help="steps (eval: batches) per segment (default: 4 for the small CNN, 1 for ResNet-18 and "
                        "with --quick)")
    b.add_argument("--warmup", type=int, default=1, help="untimed segments first (default: 1)")
    b.add_argument("--seed", type=int, default=0, help="seed of weights, data and attacks (default: 0)")
    b.add_argument("--ref-workers", type=int, default=None,
                   help="DataLoader workers of the reference loop (default: 0 on CPU, where workers share the cores "
                        "with both loops' compute; 4 on a GPU)")
    b.add_argument("--amp", default="auto", choices=["auto", "off", "bf16"],
                   help="the kit's precision: auto (fp32 until bf16 passes --bf16-check on a GPU), off, bf16 "
                        "(default: auto)")
    b.add_argument("--channels-last", default="auto", choices=["auto", "on", "off"],
                   help="the kit's memory layout (default: auto = on)")
    b.add_argument("--compile", action="store_true", help="torch.compile the kit's model (default: off)")
    b.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: one per core)")
    b.add_argument("--no-variants", action="store_true", help="skip the per-feature measurements")
    b.add_argument("--no-check", action="store_true", help="skip the numerical check")
    b.add_argument("--no-costs", action="store_true", help="skip the per-method cost table (notebook 07)")
    b.add_argument("--cost-methods", default=None,
                   help="methods for the cost table (default: taet,atbsl with --quick, else every table method)")
    b.add_argument("--cost-profile", default=None, choices=sorted(PROFILES),
                   help="profile whose notebook-07 settings the cost table uses (default: smoke with --quick, "
                        "else demo; paper: paper)")
    b.add_argument("--out-dir", default="outputs/bench", help="where the JSON goes (default: outputs/bench)")
    b.add_argument("--bf16-check", action="store_true",
                   help="instead: train TAET in fp32 and bf16 for each seed and compare balanced PGD-20 robustness "
                        "as a paired difference (pass: its 95%% interval lies within ±1 point). Runs go through the "
                        "run cache (outputs/runs): fp32 runs already there or in results/<profile>/ are not "
                        "retrained")
    b.add_argument("--bf16-check-seeds", default="0,1,2",
                   help="comma-separated seeds of that check, at least 2 (default: 0,1,2)")
    b.add_argument("--bf16-check-profile", default="demo", choices=sorted(PROFILES),
                   help="profile of that run (default: demo; on a GPU with CIFAR-10: paper)")
    b.add_argument("--bf16-check-epochs", type=int, default=None,
                   help="epochs of that run, 40%% of them clean (default: the profile's)")
    b.add_argument("--bf16-check-no-evidence", action="store_true",
                   help="that check reads the run cache alone, not results/<profile>/: both precisions trained on "
                        "this machine")
    b.set_defaults(func=cmd_bench)

    d = sub.add_parser("demo", help="train TAET, AT-BSL and AT on digits-LT and print one comparison table",
                       formatter_class=fmt)
    d.add_argument("--profile", default="demo", choices=sorted(PROFILES), help="settings profile (default: demo)")
    d.add_argument("--methods", default="taet,atbsl,at", help="methods to compare (default: taet,atbsl,at)")
    d.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    d.add_argument("--force", action="store_true", help="retrain even if finished runs exist")
    d.set_defaults(func=cmd_demo)

    x = sub.add_parser("export", help="copy finished runs' evidence files to results/<profile>/ (no weights)",
                       formatter_class=fmt, description="Copies config.json, eval.json and history.csv of each "
                       "finished run to results/<profile>/<run name>/, where notebooks and the claims check read "
                       "them when the run cache lacks the run (commit them to share the evidence).")
    x.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders, e.g. outputs/runs/*-s0-*")
    x.add_argument("--profile", required=True, help="the profile the runs belong to (the results/ subfolder)")
    x.add_argument("--results-dir", default=RESULTS_DIR, help=f"default: {RESULTS_DIR}")
    x.set_defaults(func=cmd_export)

    claims_cli.add_parser(sub, fmt)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)

    try:
        return a.func(a)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except DiskFullError as err:
        print(f"error: {err.strerror}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
