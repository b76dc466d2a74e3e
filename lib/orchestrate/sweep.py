"""Sweeps: a grid of runs (methods × IR × α/β/γ × seeds) from one small spec, dispatched through an existing
engine (local processes, or Slurm through submitit), gathered through the run cache.

SPEC is a dict, or a JSON file (TOML too on Python >= 3.11):

    {
      "profile": "demo",                  # the named profile every run starts from (lib/profiles.py)
      "device": "auto", "out_dir": "outputs",
      "base": {"train": {"epochs": 30}, "method_args": {"ce_epochs": 12}},   # overrides for every run
      "grid": {                           # axes: their cartesian product, the first axis outermost
        "method": ["atbsl", "taet"],
        "ir": [10, 20, 50, 100],          # alias of data.imbalance_ratio
        "seed": [0, 1, 2]                 # alias of train.seed
      },
      "attacks": ["clean", "pgd20"],      # evaluated after training (default: the profile's suite)
      "evidence": "results/demo",         # read finished runs from here too (committed evidence: no weights)
      "executor": "local", "workers": 2,  # see run_sweep
      "slurm": {"timeout_min": 720, "slurm_partition": "gpu", "gpus_per_node": 1}  # submitit parameters
    }

Axis names are dotted field paths (`data.imbalance_ratio`, `data.seed`, `data.test_protocol`, `train.seed`,
`model.arch`, `method_args.alpha`, `eval.eps`, `method`) or an alias from ALIASES. An axis whose values are
dicts applies each dict's keys together (a zipped axis), e.g. "hel": [{"alpha": 0.1, "beta": 0.1,
"gamma": 0.1}, {"alpha": 0.2, "beta": 0.1, "gamma": 0.1}]. A method hyperparameter that a method of the
grid lacks is dropped for that method (AT-BSL has no α, as profiles give `ce_epochs` to every method); one
that no method of the grid has (in "base": no registered method) is an error. Grid points that resolve to
the same run are trained once.

Every run is `lib.profiles.run_config(profile, method, ...)`: the same config, hash and folder the
notebooks use, so sweeps and notebooks share results both ways. A run whose eval.json already holds every
requested attack with the current settings is not dispatched again; the rest go to the engine, each job
being `train_run` + `evaluate_run` (which themselves reuse whatever part is cached, hold the run lock and
resume an interrupted run). Results are then read back from the run folders.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lib.core import runs
from lib.core.config import SECTIONS, ConfigError, RunConfig
from lib.core.evaluate import check_attacks, evaluate_run
from lib.core.methods import METHODS, method_arg_names
from lib.core.train import TrainingDiverged, train_run
from lib.orchestrate.evidence import Found, find
from lib.profiles import run_config

ALIASES = {
    "ir": "data.imbalance_ratio", "imbalance_ratio": "data.imbalance_ratio", "dataset": "data.dataset",
    "data_seed": "data.seed", "test_protocol": "data.test_protocol", "arch": "model.arch", "seed": "train.seed",
    "epochs": "train.epochs", "lr": "train.lr", "batch_size": "train.batch_size", "alpha": "method_args.alpha",
    "beta": "method_args.beta", "gamma": "method_args.gamma", "ce_epochs": "method_args.ce_epochs",
}
EXECUTORS = ("local", "inline", "slurm", "submitit-local", "submitit-debug")
SPEC_KEYS = {"profile", "device", "out_dir", "method", "base", "grid", "attacks", "executor", "workers", "slurm",
             "evidence"}


class SweepError(RuntimeError):
    """Some runs of a sweep failed; the others finished and are cached (a re-run only retries the failed, but a
    divergence is recorded and fails again until forced). `failed`: run folder -> its exception."""

    def __init__(self, message: str, failed: dict[str, BaseException] | None = None):
        super().__init__(message)
        self.failed = dict(failed or {})

    @property
    def only_divergences(self) -> bool:
        """Every failure is a loss that went NaN/inf (a result to report, not a fault of the sweep)."""
        return bool(self.failed) and all(isinstance(e, TrainingDiverged) for e in self.failed.values())


def load_spec(spec: str | os.PathLike | dict[str, Any]) -> dict[str, Any]:
    """A spec dict from a dict, a .json file, or a .toml file (Python >= 3.11), checked for unknown keys."""
    if isinstance(spec, dict):
        d = dict(spec)
    else:
        path = Path(spec)
        if not path.exists():
            raise ConfigError(f"sweep spec {path} does not exist")
        text = path.read_text()
        try:
            if path.suffix == ".toml":
                try:
                    import tomllib
                except ImportError:  # Python 3.10
                    raise ConfigError(f"{path}: TOML specs need Python >= 3.11; write it as JSON") from None
                d = tomllib.loads(text)
            else:
                d = json.loads(text)
        except (json.JSONDecodeError, ValueError) as e:
            raise ConfigError(f"sweep spec {path} does not parse: {e}") from None
    unknown = sorted(set(d) - SPEC_KEYS)
    if unknown:
        raise ConfigError(f"sweep spec: unknown key(s) {unknown}; valid: {sorted(SPEC_KEYS)}")
    grid = d.get("grid", {})
    if not isinstance(grid, dict) or any(not isinstance(v, list) or not v for v in grid.values()):
        raise ConfigError('sweep spec: "grid" maps each axis to a non-empty list of values, e.g. {"ir": [10, 50]}')
    return d


def _path(key: str) -> tuple[str, ...]:
    """('method',) or (section, field) for an axis / override name; ConfigError for an unknown one."""
    key = ALIASES.get(key, key)
    if key == "method":
        return ("method",)
    section, _, field = key.partition(".")
    if section == "method_args" and field:
        return (section, field)
    if section in SECTIONS and field in {f.name for f in dataclasses.fields(SECTIONS[section])}:
        return (section, field)
    raise ConfigError(f"sweep: unknown axis or field {key!r}; use method, a dotted path such as "
                      f"data.imbalance_ratio / train.seed / method_args.alpha / eval.eps, or an alias: "
                      f"{sorted(ALIASES)}")


def _flatten(overrides: dict[str, Any]) -> dict[tuple[str, ...], Any]:
    """{"train": {"epochs": 3}, "alpha": 0.2} -> {("train", "epochs"): 3, ("method_args", "alpha"): 0.2}."""
    out: dict[tuple[str, ...], Any] = {}
    for k, v in overrides.items():
        if k in SECTIONS or k == "method_args":
            if not isinstance(v, dict):
                raise ConfigError(f"sweep: {k!r} overrides must be a dict of field -> value, got {v!r}")
            for f, fv in v.items():
                p = _path(f"{k}.{f}")
                out[p] = fv
        else:
            p = _path(k)
            out[p] = v
    return out


def expand_points(spec) -> list[tuple[dict[str, Any], RunConfig]]:
    """Every grid point, in order (first axis outermost), with its validated RunConfig (duplicates kept)."""
    spec = load_spec(spec)
    profile = spec.get("profile", "demo")
    base = _flatten(spec.get("base", {}))
    axes = list(spec.get("grid", {}).items())
    for name, values in axes:  # check the names before any work
        if not all(isinstance(v, dict) for v in values):
            _path(name)
    combos = []
    for values in itertools.product(*[vals for _, vals in axes]):
        point = {name: v for (name, _), v in zip(axes, values)}
        over = dict(base)
        for (name, _), v in zip(axes, values):
            over.update(_flatten(v) if isinstance(v, dict) else {_path(name): v})
        combos.append((point, over))

    methods = {o.get(("method",), spec.get("method", "taet")) for _, o in combos}
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"sweep: unknown method {m!r}; valid: {sorted(METHODS)}")
    accepted = {m: set(method_arg_names(m)) for m in methods}
    known = set().union(*(method_arg_names(m) for m in METHODS))
    base_args = {p[1] for p in base if p[0] == "method_args"}
    varied = {p[1] for _, o in combos for p in o if p[0] == "method_args"} - base_args
    orphans = sorted(a for a in varied if not any(a in acc for acc in accepted.values()))
    orphans += sorted(a for a in base_args if a not in known)  # base args are dropped quietly, like a profile's
    if orphans:
        raise ConfigError(f"sweep: no method of the grid ({sorted(methods)}) has the hyperparameter(s) {orphans}")

    out = []
    for point, over in combos:
        method = over.get(("method",), spec.get("method", "taet"))
        sections: dict[str, dict[str, Any]] = {"data": {}, "model": {}, "train": {}, "eval": {}, "method_args": {}}
        for p, v in over.items():
            if p[0] == "method" or (p[0] == "method_args" and p[1] not in accepted[method]):
                continue
            sections[p[0]][p[1]] = v
        cfg = run_config(profile, method, device=spec.get("device", "auto"), out_dir=spec.get("out_dir", "outputs"),
                         **sections)
        out.append((point, cfg))
    return out


def expand(spec) -> list[RunConfig]:
    """The distinct runs of a spec, in grid order (grid points that resolve to the same run appear once)."""
    seen, cfgs = set(), []
    for _, cfg in expand_points(spec):
        rd = runs.run_dir(cfg)
        if rd not in seen:
            seen.add(rd)
            cfgs.append(cfg)
    return cfgs


def _attacks(spec: dict[str, Any], cfg: RunConfig) -> tuple[str, ...]:
    return tuple(spec.get("attacks") or cfg.eval.attacks)


def run_one(cfg_dict: dict[str, Any], attacks: list[str], force: bool = False) -> dict[str, Any]:
    """One job of a sweep (any engine calls this, in any process): train, then evaluate, through the cache."""
    t0 = time.perf_counter()
    cfg = RunConfig.from_dict(cfg_dict)
    res = train_run(cfg, force=force, verbose=False)
    evaluate_run(res.run_dir, list(attacks), device=cfg.train.device, force=force, verbose=False)
    return {"run_dir": str(res.run_dir), "trained": not res.reused, "seconds": round(time.perf_counter() - t0, 1)}


MAX_DEFAULT_WORKERS = 8


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one, else the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers(device: str = "auto") -> int:
    """How many runs to train at once by default: on a CPU one single-thread process per core this process may use
    (at most MAX_DEFAULT_WORKERS), on a GPU one.

    Measured on 2 idle cores (docs/performance.md): two runs as two 1-thread processes finished 1.26× sooner
    than one after the other on 2 threads (Fashion-MNIST-LT, small_cnn_fc, TAET stage 2) and 1.64× sooner on the
    demo's 8×8 digits, whose small batches use a second thread poorly.
    """
    if str(device) == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not str(device).startswith("cpu"):
        return 1
    cores = usable_cores()
    # at most MAX_DEFAULT_WORKERS: each process holds its own torch, data set and model (0.5-1 GB for the CPU profiles)
    return max(1, min(cores, MAX_DEFAULT_WORKERS))


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _dispatch(jobs: list[tuple[RunConfig, tuple[str, ...]]], executor, workers: int, force: bool, folder: Path,
              slurm: dict[str, Any], log: Callable[[str], None]) -> dict[str, BaseException]:
    """Run `jobs` on the engine; return {run_dir: exception} of those that failed."""
    failed: dict[str, BaseException] = {}
    total = len(jobs)

    def report(i, cfg, outcome):
        name = runs.run_dir(cfg).name
        if isinstance(outcome, BaseException):
            failed[str(runs.run_dir(cfg))] = outcome
            log(f"[sweep] {i}/{total} FAILED {name}: {type(outcome).__name__}: {outcome}")
        else:
            log(f"[sweep] {i}/{total} {'trained' if outcome['trained'] else 'evaluated'} {name} "
                f"({outcome['seconds']:.1f} s)")

    args = [(cfg.to_dict(), list(att), force) for cfg, att in jobs]
    if executor == "inline":
        for i, ((cfg, _), a) in enumerate(zip(jobs, args), 1):
            try:
                out = run_one(*a)
            except Exception as e:  # noqa: BLE001 - reported, the sweep goes on
                out = e
            report(i, cfg, out)
        return failed
    if executor == "local":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        workers = min(workers, len(jobs))  # a lone run gets every core's thread, not one worker's share
        threads = max(1, usable_cores() // workers)
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_worker_init, initargs=(threads,)) as pool:
            futures = {pool.submit(run_one, *a): cfg for (cfg, _), a in zip(jobs, args)}
            for i, fut in enumerate(as_completed(futures), 1):
                try:
                    out = fut.result()
                except Exception as e:  # noqa: BLE001
                    out = e
                report(i, futures[fut], out)
        return failed
    # submitit: a named engine or a ready executor object (anything with .submit returning jobs with .result())
    if isinstance(executor, str):
        try:
            import submitit
        except ImportError:
            raise ConfigError(f"executor {executor!r} needs submitit: pip install submitit "
                              "(or use executor='local')") from None
        cluster = {"slurm": "slurm", "submitit-local": "local", "submitit-debug": "debug"}[executor]
        ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        params = {"name": "taet-sweep", **slurm}
        if cluster == "slurm":
            params.setdefault("slurm_array_parallelism", workers)
        ex.update_parameters(**params)
    else:
        ex = executor
    if hasattr(ex, "batch"):
        with ex.batch():  # one Slurm job array
            submitted = [ex.submit(run_one, *a) for a in args]
    else:
        submitted = [ex.submit(run_one, *a) for a in args]
    log(f"[sweep] submitted {len(submitted)} job(s); logs in {folder}")
    for i, ((cfg, _), job) in enumerate(zip(jobs, submitted), 1):
        try:
            out = job.result()
        except Exception as e:  # noqa: BLE001
            out = e
        report(i, cfg, out)
    return failed


def _read_history(rd: Path) -> list[dict[str, Any]]:
    def num(v: str):
        try:
            f = float(v)
        except ValueError:
            return v
        return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f

    p = rd / "history.csv"
    return [{k: num(v) for k, v in row.items() if v != ""} for row in runs.read_csv(p)] if p.exists() else []


def run_sweep(spec, executor=None, workers: int | None = None, *, force: bool = False, verbose: bool = True
              ) -> list[dict[str, Any]]:
    """Train and evaluate every run of `spec` that is not finished yet; return one result per grid point.

    executor: "local" (default: a pool of `workers` spawned processes on this machine), "inline" (this
    process, one run after another), "slurm" (submitit job array; `workers` = array parallelism; the spec's
    "slurm" dict goes to `update_parameters`), "submitit-local" / "submitit-debug" (submitit's local and
    in-process engines), or a submitit Executor object. Default: the spec's "executor", else "local".
    workers: default the spec's "workers", else (local) `default_workers(device)`: one 1-thread process per core on
    a CPU, one on a GPU; else 1.
    Each result is the run's eval document (as `lib.study.experiments.train_eval` returns it: "results",
    "protocol", ..., plus "run_dir" and "history") with "point" (the grid values) and "config" added.
    A re-run skips finished runs; failed runs raise SweepError after the others finished.
    The spec's "evidence" (a folder, e.g. results/fashion, of run folders holding config.json, eval.json and
    history.csv, no weights): a run the cache lacks is read from there when its eval.json is current and holds
    every requested attack (its result's "run_dir" is that folder and "source" is "evidence"), and trained only
    otherwise; `force` ignores it. A run whose cache or evidence folder records a divergence of its config fails at
    once, untrained, unless forced. Both through `lib.orchestrate.evidence.find`.
    """
    spec = load_spec(spec)
    executor = executor or spec.get("executor", "local")
    local = executor == "local"
    workers = int(workers or spec.get("workers") or (default_workers(spec.get("device", "auto")) if local else 1))
    if isinstance(executor, str) and executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; valid: {list(EXECUTORS)} or a submitit Executor")
    if workers < 1:
        raise ConfigError(f"workers={workers} must be >= 1")
    log = (lambda m: print(m, flush=True)) if verbose else (lambda m: None)
    points = expand_points(spec)
    unique: dict[str, RunConfig] = {}
    for _, cfg in points:
        check_attacks(_attacks(spec, cfg))
        unique.setdefault(str(runs.run_dir(cfg)), cfg)
    evidence = Path(spec["evidence"]) if spec.get("evidence") else None

    def found(cfg: RunConfig) -> Found | None:
        """`lib.orchestrate.evidence.find`: the run cache, else the committed evidence (unless forced)."""
        return find(cfg, _attacks(spec, cfg), None if force else evidence)

    done = {rd: None if force else found(cfg) for rd, cfg in unique.items()}
    # a recorded divergence (same config and seed) diverges the same way again: it fails at once, as `train_run` does
    # for its own run folder's record, instead of spending an epoch to find out
    diverged = {rd: _recorded_divergence(f) for rd, f in done.items() if f is not None and f.diverged is not None}
    todo = [(cfg, _attacks(spec, cfg)) for rd, cfg in unique.items() if done[rd] is None]
    from_evidence = sum(1 for f in done.values() if f is not None and f.doc is not None and f.source == "evidence")
    name = executor if isinstance(executor, str) else type(executor).__name__
    log(f"[sweep] {len(points)} grid point(s), {len(unique)} run(s): {len(unique) - len(todo) - len(diverged)} "
        "finished earlier" + (f" ({from_evidence} from the committed evidence in {evidence})" if from_evidence else "")
        + (f", {len(diverged)} diverged earlier (recorded in their {runs.DIVERGED_FILE}; force retrains them)"
           if diverged else "")
        + f", {len(todo)} to run ({name}, {workers} at a time)")
    failed = dict(diverged)
    if todo:
        folder = Path(spec.get("out_dir", "outputs")) / "sweeps" / "submitit"
        failed.update(_dispatch(todo, executor, workers, force, folder, dict(spec.get("slurm", {})), log))
    if failed:
        lines = "\n".join(f"  {rd}: {type(e).__name__}: {e}" for rd, e in failed.items())
        n_div = sum(isinstance(e, TrainingDiverged) for e in failed.values())
        retry = ("re-running the sweep retries only these" if not n_div else
                 f"re-running the sweep retries only these, but the {n_div} that diverged are recorded and fail "
                 "again unless forced")
        raise SweepError(f"{len(failed)} of {len(todo) + len(diverged)} run(s) failed (the others are cached; "
                         f"{retry}):\n{lines}", failed)
    results = []
    for point, cfg in points:
        hit = done[str(runs.run_dir(cfg))] or found(cfg)  # found before dispatch, else look again after it
        if hit is None or hit.doc is None:
            raise SweepError(f"run {runs.run_dir(cfg)} has no up-to-date eval.json after the sweep; was it "
                             "changed meanwhile? Re-run the sweep")
        results.append({**hit.doc, "run_dir": str(hit.folder), "history": _read_history(hit.folder), "point": point,
                        "config": cfg, "source": hit.source})
    return results


def _recorded_divergence(f: Found) -> TrainingDiverged:
    """The divergence `f` records (`lib.orchestrate.evidence.find`), as the error training would raise."""
    return TrainingDiverged(f"{f.diverged['message']} (recorded in {f.folder / runs.DIVERGED_FILE}; pass force to "
                            "train it again)", f.diverged["epoch"], f.diverged["batch"])


def nest(results: list[dict[str, Any]], *axes: str) -> dict:
    """{value of axes[0]: {value of axes[1]: ... result}}, e.g. nest(results, "method", "ir")[m][ir]."""
    out: dict = {}
    for r in results:
        node = out
        keys = [r["point"][a] for a in axes]
        keys = [json.dumps(k, sort_keys=True) if isinstance(k, (dict, list)) else k for k in keys]
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = r
    return out
