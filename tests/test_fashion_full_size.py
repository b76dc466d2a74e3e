"""benchmarks/fashion_full_size.py: the whole-set retraining of the fashion profile's claims runs (no training here:
its spec, and the export of finished runs)."""

import importlib.util
import json
from pathlib import Path

import pytest

from lib.core import runs
from lib.core.config import override
from lib.orchestrate import sweep
from lib.study import claims, factorial
from lib.study.stats import summarize

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("fashion_full_size", ROOT / "benchmarks" / "fashion_full_size.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_spec_is_every_claims_run_at_the_whole_set_core_methods_first(tmp_path):
    mod = _script()
    sp = mod.spec("cpu", str(tmp_path / "out"), str(tmp_path / "results"))
    cfgs = sweep.expand(sp)
    assert all(c.data.max_train is None and c.data.dataset == "fashion_mnist" for c in cfgs)
    assert [c.method for c in cfgs[:12]] == [m for m in ("ce", "taet", "atbsl", "at") for _ in range(3)]
    # then the factorial's cells that are not core runs (7 TAET cells, 3 AT-BSL ones, 3 seeds), before any other run
    def whole(cs):
        return {runs.run_dir(override(c, {"data.max_train": None})).name for c in cs}

    cells = claims.run_configs("fashion", [c.label for c in factorial.cells("fashion")], [0, 1, 2],
                               out_dir=str(tmp_path / "out"))
    new = whole(cells.values()) - whole(cfgs[:12])
    assert len(new) == 30 and whole(cfgs[12:12 + len(new)]) == new
    names = {runs.run_dir(c).name for c in cfgs}
    # every claims run (factorial and switches included), as the profile trains it once its cap is lifted
    for (lbl, s), c in claims.run_configs("fashion", list(claims.claim_runs("fashion", switch_cells=True)),
                                          [0, 1, 2], out_dir=str(tmp_path / "out")).items():
        assert runs.run_dir(override(c, {"data.max_train": None})).name in names, (lbl, s)
    profile_own = {runs.run_dir(c).name for c in claims.run_configs("fashion", ["taet"], [0]).values()}
    assert profile_own <= names  # the profile trains the whole set now: its own runs are these
    with mod.whole_set_profile(mod.EARLIER_CAP):
        at_12k = {runs.run_dir(c).name for c in claims.run_configs("fashion", ["taet"], [0]).values()}
    assert not names & at_12k  # and they hash apart from the committed 12,000-image ones
    assert len(cfgs) == 3 * (len({runs.run_dir(c).name for c in claims.run_configs(
        "fashion", list(claims.claim_runs("fashion", switch_cells=True)), [0]).values()}) + 2)  # + Fig. 6b's two


def test_the_dry_run_names_what_each_remaining_run_is_for(tmp_path, capsys):
    mod = _script()
    names = mod.run_labels()
    cfgs = sweep.expand(mod.spec("cpu", str(tmp_path / "out"), str(tmp_path / "results")))
    assert {runs.run_dir(c).name for c in cfgs} == set(names)  # every run has a label, and nothing else has one
    taet0 = next(runs.run_dir(c).name for c in cfgs if c.method == "taet" and c.train.seed == 0)
    assert set(names[taet0]) >= {"taet", "taet 8 clean epochs"}  # one run, several claims
    extra = next(runs.run_dir(c).name for c in cfgs if c.method == "taet" and c.method_args.get("gamma") == 0.0
                 and c.method_args.get("beta") != 0.0)
    assert names[extra] == ["BCL+HDL"]
    assert mod.main(["--dry-run", "--results-dir", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"{len(cfgs)} to train" in out[0] and len(out) == 1 + len(cfgs)
    assert out[1].split()[0] == runs.run_dir(cfgs[0]).name and out[1].endswith("(ce)")


def test_the_time_left_is_estimated_from_the_whole_set_runs_epochs(tmp_path):
    """Each run left costs its clean epochs at the median clean epoch and the rest at the median adversarial one of
    the whole-set IR-10 runs committed so far, scaled by its train-set size; no estimate before both kinds exist."""
    from lib.core.data import long_tail_counts

    mod = _script()
    res = tmp_path / "results"
    cfgs = sweep.expand(mod.spec("cpu", str(tmp_path / "out"), str(res)))
    ce, taet, atbsl = (next(c for c in cfgs if c.method == m) for m in ("ce", "taet", "atbsl"))
    ir100 = next(c for c in cfgs if c.method == "taet" and c.data.imbalance_ratio == 100)
    assert mod.estimate_seconds([taet], str(res)) is None  # nothing committed yet
    done = res / "fashion" / runs.run_dir(taet).name
    done.mkdir(parents=True)
    runs.atomic_write_json(done / "config.json", taet.to_dict())
    runs.atomic_write_csv(done / "history.csv", [{"epoch": 1, "stage": "clean", "seconds": 20.0},
                                                 {"epoch": 2, "stage": "clean", "seconds": 30.0},
                                                 {"epoch": 3, "stage": "adversarial", "seconds": 100.0},
                                                 {"epoch": 4, "stage": "adversarial", "seconds": 200.0},
                                                 {"epoch": 5, "stage": "adversarial", "seconds": 180.0}])
    assert mod.clean_epochs(ce) == 20 and mod.clean_epochs(taet) == 8 and mod.clean_epochs(atbsl) == 0
    staged = next(c for c in cfgs if c.method == "atbsl" and c.method_args.get("clean_epochs"))  # AT-BSL + stage 1
    assert mod.clean_epochs(staged) == staged.method_args["clean_epochs"] == 8
    assert mod.clean_epochs(next(c for c in cfgs if c.method == "at")) == 0
    assert mod.estimate_seconds([ce], str(res)) == pytest.approx(20 * 25.0)
    assert mod.estimate_seconds([taet, atbsl], str(res)) == pytest.approx(8 * 25.0 + 12 * 180.0 + 20 * 180.0)
    ratio = sum(long_tail_counts(6000, 10, 100.0)) / sum(long_tail_counts(6000, 10, 10.0))
    assert 0.5 < ratio < 0.7
    assert mod.estimate_seconds([ir100], str(res)) == pytest.approx((8 * 25.0 + 12 * 180.0) * ratio)


def test_finished_runs_are_exported_once_and_unfinished_ones_not(tmp_path):
    mod = _script()
    out, res = tmp_path / "out", tmp_path / "results"
    sp = mod.spec("cpu", str(out), str(res))
    first, second = sweep.expand(sp)[:2]
    for cfg, finished in ((first, True), (second, False)):
        rd = runs.run_dir(cfg)
        rd.mkdir(parents=True)
        runs.atomic_write_json(rd / "config.json", cfg.to_dict())
        runs.atomic_write_csv(rd / "history.csv", [{"epoch": 1, "seconds": 1.0}])
        if finished:
            (rd / "eval.json").write_text(json.dumps({"results": {}}))
    assert mod.export_finished(sp, str(res)) == 1
    assert sorted(p.name for p in (res / "fashion" / runs.run_dir(first).name).iterdir()) == [
        "config.json", "eval.json", "history.csv"]
    assert not (res / "fashion" / runs.run_dir(second).name).exists()
    assert mod.export_finished(sp, str(res)) == 0  # already exported


def test_the_interim_report_reads_the_whole_set_runs_alone_and_restores_the_profile(tmp_path):
    import shutil

    from lib.profiles import PROFILES

    mod = _script()
    res, committed = tmp_path / "results", ROOT / "results" / "fashion"
    whole = {runs.run_dir(c).name for c in sweep.expand(mod.spec("cpu", str(tmp_path / "out"), str(res)))}
    with mod.whole_set_profile(mod.EARLIER_CAP):  # the earlier scale, whatever the profile says now
        at_12k = {runs.run_dir(c).name for c in claims.run_configs("fashion", ["ce", "taet"], [0, 1, 2]).values()}
        ce_cap = {s: runs.run_dir(c).name for (_, s), c in claims.run_configs("fashion", ["ce"], [0, 1, 2]).items()}
    copied = sorted(p.name for p in committed.iterdir() if p.name in whole and p.name.split("-")[0] in ("ce", "taet"))
    assert copied, "results/fashion holds no whole-set CE or TAET run to read"
    for name in copied + sorted(n for n in at_12k if (committed / n).is_dir()):  # the 12,000-image runs beside them
        shutil.copytree(committed / name, res / "fashion" / name)
    cap = PROFILES["fashion"].data["max_train"]
    out = mod.interim_report(str(res), str(tmp_path / "report"))
    assert PROFILES["fashion"].data["max_train"] == cap  # the profile is restored
    found = {**out["gathered"]["results"], **out["gathered"]["cache"]}
    assert found and {Path(d["folder"]).name for d in found.values()} <= set(copied)  # none of the 12,000-image runs
    assert not out["gathered"]["cache"]  # results/ alone: the report folder holds no runs
    assert (tmp_path / "report" / "tables" / "claims.md").is_file()
    assert "train capped" not in out["claims_md"]  # titled as the whole set
    # printed: the claims, the factorial so far (no AT-BSL run copied: not even its gap) and the switches
    text = mod.report_text(out)
    assert text.startswith(out["claims_md"].strip()) and out["times_md"].strip() in text
    assert "The factorial is not run yet" in text and "**Fidelity switches" in text
    out_with = {**out, "factorial_md": "**Factorial: a table**", "factorial_reading": "AT-BSL − TAET reading."}
    assert "**Factorial: a table**\n\nAT-BSL − TAET reading." in mod.report_text(out_with)
    assert "The factorial is not run yet" not in mod.report_text(out_with)
    # whole set minus 12,000 images, paired by seed: CE's row from the eval files themselves; AT-BSL's not copied
    def bal(name, attack):
        doc = json.loads((res / "fashion" / name / "eval.json").read_text())
        return 100 * doc["results"][attack]["balanced"]

    ce_whole = {json.loads((res / "fashion" / n / "config.json").read_text())["train"]["seed"]: n
                for n in copied if n.startswith("ce-")}
    want = summarize([bal(ce_whole[s], "clean") - bal(ce_cap[s], "clean") for s in sorted(ce_whole)]).format(1)
    table = mod.scale_comparison(out["gathered"], str(res), str(tmp_path / "report"))
    assert f"| ce            | {len(ce_whole)}     | {want}" in table, table
    assert "| atbsl         | 0     | -" in table
    (tmp_path / "report" / "runs").mkdir()
    with pytest.raises(SystemExit, match="reads results/ alone"):
        mod.interim_report(str(res), str(tmp_path / "report"))


def test_a_sweep_whose_only_failures_are_divergences_ends_cleanly_and_exports(tmp_path, monkeypatch, capsys):
    """Diverged runs are evidence the claims report: the script says so and exits 0 (and still exports what
    finished); any other failure is raised."""
    from lib.core.train import TrainingDiverged

    mod = _script()
    out, res = tmp_path / "out", tmp_path / "results"
    exported = []
    monkeypatch.setattr(mod, "export_finished", lambda sp, results_dir: exported.append(results_dir) or 0)

    def diverging(sp, **kw):
        raise sweep.SweepError("1 of 1 run(s) failed", {"outputs/runs/x": TrainingDiverged("loss became NaN/inf")})

    monkeypatch.setattr(mod.sweep, "run_sweep", diverging)
    assert mod.main(["--out-dir", str(out), "--results-dir", str(res), "--workers", "1"]) == 0
    assert "1 run(s) diverged" in capsys.readouterr().out and exported == [str(res)]

    def locked(sp, **kw):
        raise sweep.SweepError("1 of 1 run(s) failed", {"outputs/runs/x": RuntimeError("run folder in use")})

    monkeypatch.setattr(mod.sweep, "run_sweep", locked)
    with pytest.raises(sweep.SweepError, match="1 of 1"):
        mod.main(["--out-dir", str(out), "--results-dir", str(res), "--workers", "1"])
    assert exported == [str(res)] * 2  # exported even then
