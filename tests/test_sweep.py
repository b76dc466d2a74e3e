"""Sweeps: a grid spec expands into the notebooks' run configs, runs through local processes or submitit, and a
re-run only does what is missing."""

import json
from pathlib import Path

import pytest

from lib.cli.main import main
from lib.core import runs
from lib.core.config import ConfigError
from lib.orchestrate.sweep import SweepError, expand, expand_points, load_spec, nest, run_sweep
from lib.profiles import run_config


def spec(tmp_path, **kw):
    d = {"profile": "smoke", "device": "cpu", "out_dir": str(tmp_path / "out"),
         "base": {"train": {"epochs": 1, "track_every": 0}, "method_args": {"ce_epochs": 0}},
         "attacks": ["clean", "fgsm"]}
    d.update(kw)
    return d


def test_grid_expands_to_the_notebooks_run_configs(tmp_path):
    s = spec(tmp_path, grid={"method": ["taet", "atbsl"], "ir": [10, 50], "alpha": [0.1, 0.2], "seed": [0]})
    points = expand_points(s)
    assert len(points) == 8 and points[0][0] == {"method": "taet", "ir": 10, "alpha": 0.1, "seed": 0}
    cfgs = expand(s)
    assert len(cfgs) == 6  # AT-BSL has no alpha: its two alpha points are one run
    t = cfgs[1]
    assert (t.method, t.data.imbalance_ratio, t.method_args["alpha"], t.train.seed) == ("taet", 10.0, 0.2, 0)
    # the same config (and so the same hash and folder) the notebooks build with lib.profiles.run_config
    same = run_config("smoke", "taet", device="cpu", out_dir=str(tmp_path / "out"), data={"imbalance_ratio": 10.0},
                      train={"epochs": 1, "track_every": 0}, method_args={"ce_epochs": 0, "alpha": 0.2})
    assert runs.run_dir(t) == runs.run_dir(same) and runs.config_hash(t) == runs.config_hash(same)
    assert "alpha" not in cfgs[4].method_args and cfgs[4].method == "atbsl"


def test_zipped_axis_and_dotted_paths(tmp_path):
    s = spec(tmp_path, grid={"hel": [{"alpha": 0.2, "beta": 0.1}, {"method_args.gamma": 0.0}, {}],
                             "data.seed": [0, 1], "eval.eps": [0.01]})
    cfgs = [c for _, c in expand_points(s)]
    assert [(c.method_args["alpha"], c.method_args["gamma"], c.data.seed) for c in cfgs] == [
        (0.2, 0.1, 0), (0.2, 0.1, 1), (0.1, 0.0, 0), (0.1, 0.0, 1), (0.1, 0.1, 0), (0.1, 0.1, 1)]
    assert all(c.eval.eps == 0.01 for c in cfgs)


@pytest.mark.parametrize("bad, message", [
    ({"grid": {"learning_rate": [0.1]}}, "unknown axis or field 'learning_rate'"),
    ({"grid": {"method": ["taet"], "delta": [1]}}, "unknown axis or field 'delta'"),
    ({"grid": {"method": ["atbsl"], "alpha": [0.1]}}, "no method of the grid (['atbsl']) has the hyperparameter"),
    ({"grid": {"method": ["nope"]}}, "unknown method 'nope'"),
    ({"grid": {"ir": []}}, "non-empty list"),
    ({"grid": {"ir": [0.5]}}, "imbalance ratio 0.5 < 1"),
    ({"workers_": 2}, "unknown key(s) ['workers_']"),
])
def test_bad_specs_fail_before_any_work(tmp_path, bad, message):
    with pytest.raises(ConfigError) as err:
        run_sweep(spec(tmp_path, **bad), executor="inline", verbose=False)
    assert message in str(err.value)
    assert not (tmp_path / "out").exists()


def test_local_processes_then_a_rerun_skips_finished_runs(tmp_path, capsys):
    s = spec(tmp_path, grid={"method": ["at", "atbsl"]})
    results = run_sweep(s, executor="local", workers=2)
    assert [r["point"]["method"] for r in results] == ["at", "atbsl"]
    assert all(set(r["results"]) == {"clean", "fgsm"} and len(r["history"]) == 1 for r in results)
    ckpts = {r["run_dir"]: (Path(r["run_dir"]) / "checkpoint.pt").stat().st_mtime_ns for r in results}
    assert "0 finished earlier, 2 to run (local, 2 at a time)" in capsys.readouterr().out
    again = run_sweep(s, executor="local", workers=2)
    assert "2 finished earlier, 0 to run" in capsys.readouterr().out
    assert [r["results"] for r in again] == [r["results"] for r in results]
    assert {r: (Path(r) / "checkpoint.pt").stat().st_mtime_ns for r in ckpts} == ckpts  # nothing retrained
    # more attacks: only the evaluation runs again, through the run cache
    more = run_sweep({**s, "attacks": ["clean", "fgsm", "pgd20"]}, executor="inline")
    assert "0 finished earlier, 2 to run" in capsys.readouterr().out
    assert all(r["results"]["fgsm"] == o["results"]["fgsm"] for r, o in zip(more, results))
    assert {r: (Path(r) / "checkpoint.pt").stat().st_mtime_ns for r in ckpts} == ckpts


def test_slurm_path_through_submitit_debug_executor(tmp_path, capsys):
    pytest.importorskip("submitit")
    s = spec(tmp_path, grid={"method": ["at"], "ir": [10, 20]}, slurm={"timeout_min": 5})
    results = run_sweep(s, executor="submitit-debug")
    assert "submitted 2 job(s)" in capsys.readouterr().out
    assert nest(results, "method", "ir")["at"][20]["protocol"]["imbalance_ratio"] == 20.0
    assert results[0]["results"] == run_sweep(s, executor="inline", verbose=False)[0]["results"]


def test_a_failed_run_is_reported_and_retried_alone(tmp_path, capsys):
    s = spec(tmp_path, grid={"method": ["at", "ce"]})
    busy = runs.run_dir(expand(s)[1])
    with runs.run_lock(busy, "train"):  # another process is "writing" the second run
        with pytest.raises(SweepError, match=r"(?s)1 of 2 run\(s\) failed.*RunLockedError: run folder .* in use") as e:
            run_sweep(s, executor="inline")
    assert not e.value.only_divergences and "retries only these)" in str(e.value)
    assert "FAILED" in capsys.readouterr().out
    results = run_sweep(s, executor="inline")
    assert "1 finished earlier, 1 to run" in capsys.readouterr().out
    assert [r["method"] for r in results] == ["at", "ce"]


def test_cli_sweep_with_a_json_spec(tmp_path, capsys):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(spec(tmp_path, grid={"method": ["ce"], "seed": [0, 1]})))
    assert load_spec(path)["grid"]["seed"] == [0, 1]
    assert main(["sweep", str(path), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("to run") == 2
    assert main(["sweep", str(path), "--executor", "inline"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| method"))
    assert [c.strip() for c in header.split("|")[1:-1]] == ["method", "seed", "Clean", "FGSM", "run"]
    assert out.count("| ce ") == 2
    assert main(["sweep", str(path), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("finished") == 2
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["sweep", str(tmp_path / "bad.json")]) == 2
    assert "does not parse" in capsys.readouterr().err


def test_default_workers_is_one_single_thread_process_per_core_on_a_cpu_and_one_on_a_gpu(monkeypatch):
    import os

    from lib.orchestrate.sweep import default_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    assert default_workers("cpu") == 6
    assert default_workers("cuda") == 1 and default_workers("cuda:1") == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert default_workers("cpu") == 8  # capped: every worker holds its own torch, data and model
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown core count: one
    assert default_workers("cpu") == 1


def test_a_divergence_the_evidence_records_fails_at_once_and_force_retrains_it(tmp_path, capsys):
    """A run the committed evidence records as diverged (diverged.json of the same config) is reported as failed
    without training an epoch to find out; a record of another config is ignored; force trains it."""
    s = spec(tmp_path, grid={"seed": [0, 1]})
    cfg0, cfg1 = expand(s)
    evidence = tmp_path / "results" / "smoke"
    runs.write_diverged(evidence / runs.run_dir(cfg0).name, cfg0, epoch=1, batch=7,
                        message="loss became NaN/inf at epoch 1, batch 7")
    runs.write_diverged(evidence / runs.run_dir(cfg1).name, cfg0, epoch=2, batch=1, message="another config's")
    with pytest.raises(SweepError) as e:
        run_sweep({**s, "evidence": str(evidence)}, executor="inline")
    out = capsys.readouterr().out
    assert "1 diverged earlier" in out and "1 to run" in out
    assert "1 of 2 run(s) failed" in str(e.value) and "epoch 1, batch 7 (recorded in" in str(e.value)
    assert "the 1 that diverged are recorded and fail again unless forced" in str(e.value)
    assert list(e.value.failed) == [str(runs.run_dir(cfg0))] and e.value.only_divergences
    assert not runs.run_dir(cfg0).exists()  # not trained
    assert (runs.run_dir(cfg1) / "eval.json").exists()  # the other config's record did not stop seed 1
    got = run_sweep({**s, "evidence": str(evidence)}, executor="inline", force=True, verbose=False)
    assert [r["source"] for r in got] == ["cache", "cache"] and (runs.run_dir(cfg0) / "eval.json").exists()


def test_a_divergence_the_run_cache_records_fails_at_once_without_dispatching(tmp_path, capsys):
    """The cache's own diverged.json (an earlier attempt on this machine) is found by the same lookup as the
    evidence's (`lib.orchestrate.evidence.find`): the run fails untrained, before any engine starts."""
    s = spec(tmp_path, grid={"seed": [0]})
    (cfg,) = expand(s)
    runs.write_diverged(runs.run_dir(cfg), cfg, epoch=1, batch=3, message="loss became NaN/inf at epoch 1, batch 3")
    with pytest.raises(SweepError) as e:
        run_sweep(s, executor="local", workers=2)  # a process pool would be spawned for any run to train
    out = capsys.readouterr().out
    assert "0 finished earlier, 1 diverged earlier" in out and "0 to run" in out
    assert e.value.only_divergences and list(e.value.failed) == [str(runs.run_dir(cfg))]
    assert f"(recorded in {runs.run_dir(cfg) / runs.DIVERGED_FILE}; pass force" in str(e.value)
    assert sorted(p.name for p in runs.run_dir(cfg).iterdir()) == [runs.DIVERGED_FILE]  # nothing trained


def test_committed_evidence_stands_in_for_a_run_the_cache_lacks(tmp_path, capsys):
    """A run whose config.json, eval.json and history.csv sit in the spec's "evidence" folder (results/<profile>/,
    no weights) is read from there, not trained; an attack the evidence lacks trains it; --force ignores it."""
    import shutil

    s = spec(tmp_path, grid={"seed": [0]})
    first = run_sweep(s, executor="inline", verbose=False)[0]
    cached = Path(first["run_dir"])
    evidence = tmp_path / "results" / "smoke"
    (evidence / cached.name).mkdir(parents=True)
    for f in ("config.json", "eval.json", "history.csv"):
        shutil.copy(cached / f, evidence / cached.name / f)
    shutil.rmtree(tmp_path / "out")  # an empty run cache, as on a fresh clone

    got = run_sweep({**s, "evidence": str(evidence)}, executor="inline")[0]
    out = capsys.readouterr().out
    assert "1 finished earlier (1 from the committed evidence" in out and "0 to run" in out
    assert got["source"] == "evidence" and Path(got["run_dir"]) == evidence / cached.name
    assert got["results"] == first["results"] and len(got["history"]) == len(first["history"]) == 1
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written

    # an attack the evidence does not hold: the run is trained (into the cache), not read half from the evidence
    more = run_sweep({**s, "evidence": str(evidence), "attacks": ["clean", "pgd20"]}, executor="inline",
                     verbose=False)[0]
    assert more["source"] == "cache" and Path(more["run_dir"]) == cached and (cached / "checkpoint.pt").exists()
    assert more["results"]["clean"]["balanced"] == first["results"]["clean"]["balanced"]  # same seed, same run

    # with no cache and force, the evidence is ignored and the run retrained
    shutil.rmtree(tmp_path / "out")
    forced = run_sweep({**s, "evidence": str(evidence)}, executor="inline", force=True, verbose=False)[0]
    assert forced["source"] == "cache" and (cached / "checkpoint.pt").exists()
