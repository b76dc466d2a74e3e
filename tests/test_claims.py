"""The claims check from hand-made eval documents: verdicts, intervals (t(2, 0.975) = 4.302653), one seed, missing
runs, the results/ fallback, agreement with committed runs, and the evidence export."""

import json
import math
import re

import pytest

from lib.core import runs
from lib.core.suite import describe_attack
from lib.study import claims

SEEDS = [0, 1, 2]


def doc(pgd, clean=80.0, tail=None, seconds=10.0, counts=(50, 30, 20, 10, 5)):
    """An eval document (values in %) with per-class PGD-20 recall `tail` (default: flat) and a history."""
    per_class = [v / 100 for v in (tail or [pgd] * len(counts))]
    return {"results": {"pgd20": {"balanced": pgd / 100, "per_class": per_class},
                        "clean": {"balanced": clean / 100, "per_class": [clean / 100] * len(counts)}},
            "protocol": {"train_counts": list(counts)}, "history": [{"seconds": seconds}], "folder": "x"}


def gathered(per_label, seeds=SEEDS, source="cache"):
    docs = {(lbl, s): d for lbl, ds in per_label.items() for s, d in zip(seeds, ds)}
    return {"cache": docs if source == "cache" else {}, "results": docs if source == "results" else {},
            "seeds": seeds}


def rows_by_start(rows):
    return {r["claim"][:60]: r for r in rows}


def find(rows, text):
    hit = [r for r in rows if text in r["claim"]]
    assert len(hit) == 1, (text, [r["claim"] for r in rows])
    return hit[0]


def test_a_supported_a_contradicted_and_an_inconclusive_claim():
    g = gathered({
        "taet": [doc(60, clean=70), doc(62, clean=73), doc(64, clean=69)],
        "atbsl": [doc(50, clean=72), doc(50, clean=72), doc(50, clean=72)],
        "at": [doc(70), doc(71), doc(75)],
    })
    rows = claims.evaluate_claims("fashion", g)
    above_atbsl = find(rows, "above AT-BSL's.")
    assert above_atbsl["verdict"] == "supported" and above_atbsl["n"] == 3
    half = 4.302653 * 2 / math.sqrt(3)  # differences 10, 12, 14: mean 12, std 2
    assert (above_atbsl["low"], above_atbsl["high"]) == (pytest.approx(12 - half, abs=1e-4),
                                                         pytest.approx(12 + half, abs=1e-4))
    assert above_atbsl["measured"] == f"+12.0 ± 2.0, 95% CI [{12 - half:+.1f}, {12 + half:+.1f}]"
    assert above_atbsl["paper"].startswith("35.15 − 26.86")
    assert find(rows, "above AT's")["verdict"] == "contradicted"  # −10, −9, −11
    # clean: −2, +1, −3 around the claim's threshold of −2 points: the interval straddles it
    assert find(rows, "competitive")["verdict"] == "inconclusive"
    # the cost claim (direction −1): equal times -> a zero-width interval at 0, not below it
    assert find(rows, "trains faster")["verdict"] == "inconclusive"
    assert all(r["source"] == "your runs" and r["vs committed"] == "-" for r in rows if r["verdict"] != "not run")
    # a claim whose runs were not gathered (IR sweep, ablations) has a "not run" row naming them
    ir20 = find(rows, "at IR 20")
    assert ir20["verdict"] == "not run" and ir20["n"] == 0
    assert ir20["measured"] == "not run yet: taet IR 20 (seeds 0, 1, 2); atbsl IR 20 (seeds 0, 1, 2)"


def test_the_tail_claim_compares_the_rarest_three_classes_with_the_balanced_gain():
    # class counts (50, 30, 20, 10, 5): the rarest three are classes 4, 3, 2
    t = [doc(60, tail=[50, 50, 70, 70, 70]) for _ in SEEDS]  # balanced 60 (as given), tail mean 70
    a = [doc(55, tail=[55, 55, 55, 55, 55]) for _ in SEEDS]
    t[1] = doc(60, tail=[50, 50, 72, 70, 70])
    t[2] = doc(60, tail=[50, 50, 68, 70, 70])
    rows = claims.evaluate_claims("fashion", gathered({"taet": t, "atbsl": a, "at": a}))
    r = find(rows, "three rarest")
    # per seed: (70 − 55) − (60 − 55) = 10, then 10.67, 9.33
    assert r["mean"] == pytest.approx(10.0) and r["verdict"] == "supported"


def test_one_seed_says_no_interval_and_is_inconclusive():
    g = gathered({"taet": [doc(90)], "atbsl": [doc(10)], "at": [doc(10)]}, seeds=[0])
    rows = claims.evaluate_claims("fashion", g)
    r = find(rows, "above AT-BSL's.")
    assert r["measured"] == "+80.0 (1 seed, no interval)" and r["verdict"] == "inconclusive" and r["n"] == 1
    assert all(r["verdict"] == "inconclusive" for r in rows if r["verdict"] != "not run")
    assert "With one seed there is no interval" in claims.reading(rows)


def test_a_claim_measured_over_fewer_seeds_than_the_others_says_so_in_the_reading():
    g = gathered({"taet": [doc(60), doc(62), doc(64)], "atbsl": [doc(50)] * 3, "at": [doc(70), doc(71)]})
    rows = claims.evaluate_claims("fashion", g)
    assert find(rows, "above AT's")["n"] == 2 and find(rows, "above AT-BSL's.")["n"] == 3
    text = claims.reading(rows, "fashion")
    assert "(n = 2 to 3 seeds per run)" in text
    assert "**Do not hold:** Table 1: TAET's balanced PGD-20 robustness is above AT's (2 of 3 seeds so far)" in text
    assert "above AT-BSL's (" not in text and "IR 20 (" not in text  # complete and not-run claims: no suffix


def test_one_single_seed_claim_does_not_hide_the_readings_of_the_others():
    # AT trained at seed 0 only: its claim is one seed (inconclusive), the AT-BSL claims still read over 3 seeds
    g = gathered({"taet": [doc(60), doc(62), doc(64)], "atbsl": [doc(50)] * 3, "at": [doc(70)]})
    rows = claims.evaluate_claims("fashion", g)
    assert find(rows, "above AT's")["n"] == 1 and find(rows, "above AT's")["verdict"] == "inconclusive"
    text = claims.reading(rows, "fashion")
    assert "every verdict is inconclusive" not in text
    assert "**Hold:** Table 1: TAET's balanced PGD-20 robustness is above AT-BSL's" in text
    assert "Table 1: TAET's balanced PGD-20 robustness is above AT's (1 of 3 seeds so far)" in text.split(
        "**Undecided")[1]


def test_epoch_time_spread_is_the_slowest_over_the_fastest_epoch_of_one_stage():
    def hist(clean, adv):
        return [{"stage": "clean", "seconds": x} for x in clean] + [{"stage": "adversarial", "seconds": x}
                                                                    for x in adv]
    assert runs.epoch_time_spread(hist([30, 20, 26, 19], [400, 170, 340, 175])) == pytest.approx(2.0)  # 340 / 170
    assert runs.epoch_time_spread(hist([30, 20, 26, 19], [400, 170, 180, 175])) == pytest.approx(26 / 19)
    # each stage's first epoch (warm-up) is left out, and a stage with fewer than 3 epochs after it is not read
    assert runs.epoch_time_spread(hist([900, 20, 20, 20], [400, 170, 171, 170])) == pytest.approx(171 / 170)
    assert runs.epoch_time_spread(hist([1, 1, 10], [170, 170, 170, 170])) == 1.0
    assert runs.epoch_time_spread([]) == 1.0


def test_the_cost_claim_names_runs_timed_beside_other_work():
    def timed(adv):  # 3 clean epochs of 20 s, then adversarial ones
        d = doc(60)
        d["history"] = ([{"stage": "clean", "seconds": 20.0}] * 3
                        + [{"stage": "adversarial", "seconds": x} for x in adv])
        return d

    even, busy = timed([170.0, 172.0, 171.0, 170.0]), timed([170.0, 170.0, 340.0, 345.0])
    g = gathered({"taet": [busy, even, even], "atbsl": [timed([170.0] * 5)] * 3, "at": [doc(70)] * 3})
    rows = claims.evaluate_claims("fashion", g)
    cost = find(rows, "trains faster")
    assert cost["measured"].endswith("(uneven epoch times: taet seed 0 (2.0×))")
    assert "uneven" not in find(rows, "above AT-BSL's.")["measured"]  # accuracy claims do not read the times
    text = claims.reading(rows, "fashion")
    assert "**Timing:** Fig. 6a: TAET trains faster than AT-BSL" in text and "taet seed 0 (2.0×)" in text
    g = gathered({"taet": [even] * 3, "atbsl": [timed([170.0] * 5)] * 3, "at": [doc(70)] * 3})
    rows = claims.evaluate_claims("fashion", g)
    assert "uneven" not in find(rows, "trains faster")["measured"] and "**Timing:**" not in claims.reading(rows)


def test_reading_and_table_files(tmp_path):
    g = gathered({"taet": [doc(60), doc(62), doc(64)], "atbsl": [doc(50)] * 3, "at": [doc(70), doc(71), doc(75)]})
    rows = claims.evaluate_claims("fashion", g)
    md = claims.save_claims(rows, "fashion", out_dir=str(tmp_path))
    assert "| claim" in md and "95% CI" in md
    csv_rows = runs.read_csv(tmp_path / "tables" / "claims.csv")
    assert len(csv_rows) == len(rows) and {"verdict", "low", "high", "n"} <= set(csv_rows[0])
    text = claims.reading(rows)
    assert "supported" in text and "**Hold:** Table 1: TAET's balanced PGD-20 robustness is above AT-BSL's" in text
    assert "**Do not hold:** Table 1: TAET's balanced PGD-20 robustness is above AT's" in text


def test_missing_runs_are_named_with_the_command_to_train_them(tmp_path):
    with pytest.raises(claims.MissingRunsError) as err:
        claims.gather("smoke", out_dir=str(tmp_path / "out"), results_dir=str(tmp_path / "results"))
    msg = str(err.value)
    assert "python -m lib claims --profile smoke --train" in msg
    assert "taet-digits-ir10-small_cnn-e2-s1-" in msg and "BCL only (seed 1)" in msg
    assert not (tmp_path / "out" / "runs").exists()  # nothing trained


def test_a_partial_check_reports_missing_claims_as_not_run_and_trains_nothing(tmp_path):
    out, res_dir = tmp_path / "out", tmp_path / "results"
    cfgs = claims.run_configs("smoke", ["taet", "atbsl"], [0, 1], device="cpu", out_dir=str(out))
    for (lbl, s), cfg in cfgs.items():  # TAET 10 points above AT-BSL, both seeds; nothing else trained
        pgd = 50.0 + 10 * (lbl == "taet") + s
        _write_run(res_dir / "smoke" / runs.run_dir(cfg).name, cfg, {"clean": 80.0, "pgd20": pgd})
    res = claims.check("smoke", out_dir=str(out), results_dir=str(res_dir), partial=True)
    assert ("at", 0) in res["gathered"]["missing"] and ("taet", 1) not in res["gathered"]["missing"]
    above = find(res["rows"], "above AT-BSL's.")
    assert above["mean"] == pytest.approx(10.0) and above["n"] == 2 and above["source"] == "results/"
    at = find(res["rows"], "above AT's")
    assert at["verdict"] == "not run" and at["measured"] == "not run yet: at (seeds 0, 1)"
    # a claim with one seed's runs missing is measured over the other seed, labelled
    (res_dir / "smoke" / runs.run_dir(cfgs[("atbsl", 1)]).name / "eval.json").unlink()
    res1 = claims.check("smoke", out_dir=str(out), results_dir=str(res_dir), partial=True)
    one = find(res1["rows"], "above AT-BSL's.")
    assert one["n"] == 1 and one["measured"] == "+10.0 (1 seed, no interval) (seed 1 not run yet)"
    assert one["verdict"] == "inconclusive"
    times = (out / "tables" / "claims_times.md").read_text()
    # the runs found, one row per config (TAET's default is also the 1-clean-epoch and IR-10 run), not the missing
    assert "| taet = taet 1 clean epochs = taet IR 10 = " in times and "| at " not in times
    assert "distinct run(s) not run yet" in times
    # the total counts every run in the table once per seed, and their training minutes
    body = [ln.split("|")[1:-1] for ln in times.splitlines() if ln.startswith("| ") and "seeds" not in ln]
    n_runs, minutes = sum(int(r[1]) for r in body), sum(float(r[-1]) for r in body)
    together = re.search(r"Together: (\d+) trained run\(s\), ([\d.]+) h of one core", times)
    assert int(together[1]) == n_runs and float(together[2]) == pytest.approx(minutes / 60, abs=0.05 + len(body) / 120)
    assert "**Not run yet**" in res["reading"] and "python -m lib claims --profile smoke --train" in res["reading"]
    assert res["factorial_note"].startswith("The factorial is not run yet")  # and what its runs so far can say:
    assert "partial (2 of 12 cells run" in res["factorial_md"] and "| gap: AT-BSL − TAET | -10.0 ± 0.0" in \
        res["factorial_md"]
    assert "No factor is measured yet" in res["factorial_reading"]
    assert "| not run " in (out / "tables" / "claims.md").read_text()
    assert not (out / "runs").exists()  # nothing trained
    with pytest.raises(claims.MissingRunsError):  # without `partial` the same check stops
        claims.check("smoke", out_dir=str(out), results_dir=str(res_dir))


def test_the_report_is_one_section_and_rewrites_only_the_readme_between_its_markers(tmp_path):
    out, res_dir = tmp_path / "out", tmp_path / "results"
    cfgs = claims.run_configs("smoke", ["taet", "atbsl"], [0, 1], device="cpu", out_dir=str(out))
    for (lbl, s), cfg in cfgs.items():  # TAET 10 and 11 points above AT-BSL; nothing else trained
        _write_run(res_dir / "smoke" / runs.run_dir(cfg).name, cfg,
                   {"clean": 80.0, "pgd20": 50.0 + (10 + s) * (lbl == "taet")})
    res = claims.check("smoke", out_dir=str(out), results_dir=str(res_dir), partial=True)
    md = res["report_md"]
    assert md == (out / "claims_report.md").read_text()
    assert md.startswith("### Claims check, `smoke` profile (2 seeds)")
    assert "`--readme docs/results.md` rewrites this section" in md  # the section lives in docs/results.md
    assert "595 train images (100 down to 19 per class)" in md and "seeds 0, 1 (same seed" in md
    # the measured claims only, with their computed values; the claims not run are named by the reading
    row = next(x for x in md.splitlines() if x.startswith("| Table 1: TAET's balanced PGD-20 robustness is above AT-B"))
    assert "+10.5 ± 0.7, 95% CI [+4.1, +16.9]" in row and row.rstrip(" |").endswith("supported")
    assert "| Table 1: TAET's balanced PGD-20 robustness is above AT's" not in md
    assert "**Not run yet** (" in md and "Not run yet: 10 of the factorial's 12 cells" in md
    assert "partial (2 of 12 cells run" in md

    readme = tmp_path / "README.md"
    readme.write_text("# Kit\nbefore `<!-- claims-results:start -->` quoted\n<!-- claims-results:start -->\n"
                      "old numbers\n<!-- claims-results:end -->\nafter\n")
    claims.splice_readme(readme, md)
    text = readme.read_text()
    assert text.startswith("# Kit\nbefore `<!-- claims-results:start -->` quoted\n<!-- claims-results:start -->\n"
                           "### Claims check") and "old numbers" not in text
    assert text.endswith(md + "<!-- claims-results:end -->\nafter\n")
    claims.splice_readme(readme, md)
    assert readme.read_text() == text  # idempotent
    bare = tmp_path / "NOTES.md"
    bare.write_text("no markers, only a quoted `<!-- claims-results:start -->`\n<!-- claims-results:end -->\n")
    with pytest.raises(claims.ConfigError, match="claims-results:start"):
        claims.splice_readme(bare, md)
    assert bare.read_text().startswith("no markers")


def test_the_cli_refuses_a_readme_without_markers_before_gathering(tmp_path, capsys):
    from lib.cli.main import main

    bare = tmp_path / "NOTES.md"
    bare.write_text("no markers\n")
    # an empty results folder would stop a strict smoke check with MissingRunsError: the readme is refused first
    assert main(["claims", "--profile", "smoke", "--out-dir", str(tmp_path / "out"), "--results-dir",
                 str(tmp_path / "none"), "--readme", str(bare)]) == 2
    err = capsys.readouterr().err
    assert "has no section between the lines '<!-- claims-results:start -->'" in err and "MissingRuns" not in err
    assert "needs" not in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--scale-check-seeds", "0,1"], "--scale-check-seeds without --scale-check"),
    (["--scale-check", "--scale-check-seeds", "0,0"], "seed(s) [0] listed twice"),
    (["--scale-check", "--scale-check-seeds", "0,x"], "'x' in '0,x' is not an integer"),
    (["--scale-check", "--scale-check-seeds", "3"], "at least 2 seeds"),
])
def test_the_cli_refuses_bad_scale_check_seeds_before_training(tmp_path, capsys, args, message):
    from lib.cli.main import main

    assert main(["claims", "--profile", "smoke", "--out-dir", str(tmp_path / "out"), "--results-dir",
                 str(tmp_path / "res"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "res").exists()


def _write_run(folder, cfg, values, attacks=("clean", "pgd20")):
    """A run folder as the kit writes it (config.json, eval.json, history.csv), with made-up results."""
    folder.mkdir(parents=True, exist_ok=True)
    runs.write_config(folder, cfg)
    results = {a: {"balanced": values[a] / 100, "accuracy": values[a] / 100, "n": 200,
                   "per_class": [values[a] / 100] * 10, "settings": describe_attack(a, cfg.eval), "seed": cfg.eval.seed}
               for a in attacks}
    (folder / "eval.json").write_text(json.dumps({"config_hash": runs.config_hash(cfg), "results": results,
                                                   "protocol": {"train_counts": [100 - 9 * c for c in range(10)]}}))
    runs.atomic_write_csv(folder / "history.csv", [{"epoch": 0, "seconds": values.get("seconds", 1.0)}])


def _fake_all(tmp_path, root, shift=0.0):
    """Every claims run of the smoke profile, with TAET 10 points above everything else in PGD-20 (plus noise)."""
    labels = list(claims.claim_runs("smoke"))
    cfgs = claims.run_configs("smoke", labels, [0, 1], device="cpu", out_dir=str(tmp_path / "out"))
    for (lbl, s), cfg in cfgs.items():
        pgd = 40.0 + s + shift + (10.0 if cfg.method == "taet" else 0.0) + (0.5 * s if lbl == "taet" else 0.0)
        _write_run(root(cfg), cfg, {"clean": 80.0 + s, "pgd20": pgd})
    return cfgs


def test_results_folder_stands_in_for_an_empty_cache_and_agreement_is_reported(tmp_path):
    res_dir = tmp_path / "results"
    _fake_all(tmp_path, lambda cfg: res_dir / "smoke" / runs.run_dir(cfg).name)
    out = claims.check("smoke", out_dir=str(tmp_path / "out"), results_dir=str(res_dir))
    assert not (tmp_path / "out" / "runs").exists()  # nothing trained: every run came from results/
    assert all(r["source"] == "results/" and r["vs committed"] == "-" for r in out["rows"])
    assert find(out["rows"], "above AT's")["verdict"] == "supported"
    assert out["reading"].startswith("Scale: standard training (CE) reaches 80.5 ± 0.7% balanced clean accuracy on "
                                     "the claims' test set")
    assert "against the 85% a model that is not under-trained should reach on this data. The mean is below it." \
        in out["reading"] and out["scale"] is None  # no scale check run: nothing said of the whole test set
    assert (tmp_path / "out" / "tables" / "claims.md").exists() and "gap: AT-BSL − TAET" in out["factorial_md"]
    # the user's own runs in the cache: read first, and compared with the committed ones
    _fake_all(tmp_path, runs.run_dir, shift=0.0)  # the committed runs themselves (e.g. just exported)
    out = claims.check("smoke", out_dir=str(tmp_path / "out"), results_dir=str(res_dir))
    r = find(out["rows"], "above AT's")
    assert r["source"] == "your runs" and r["vs committed"].startswith("same results as committed")
    _fake_all(tmp_path, runs.run_dir, shift=0.5)  # independent reruns: every run 0.5 points higher
    out = claims.check("smoke", out_dir=str(tmp_path / "out"), results_dir=str(res_dir))
    r = find(out["rows"], "above AT's")
    assert r["source"] == "your runs" and r["vs committed"].startswith("agrees")
    _fake_all(tmp_path, runs.run_dir, shift=0.0)
    for cfg in claims.run_configs("smoke", ["at"], [0, 1], device="cpu", out_dir=str(tmp_path / "out")).values():
        _write_run(runs.run_dir(cfg), cfg, {"clean": 80.0, "pgd20": 90.0})  # your AT now beats TAET
    r = find(claims.check("smoke", out_dir=str(tmp_path / "out"), results_dir=str(res_dir))["rows"], "above AT's")
    assert r["vs committed"].startswith("differs") and r["verdict"] == "contradicted"


def test_export_writes_the_evidence_files_without_checkpoints(tmp_path):
    cfgs = _fake_all(tmp_path, runs.run_dir)
    for cfg in cfgs.values():
        (runs.run_dir(cfg) / "checkpoint.pt").write_bytes(b"weights")
    g = claims.gather("smoke", out_dir=str(tmp_path / "out"), results_dir=str(tmp_path / "results"))
    written = claims.export_results("smoke", g, tmp_path / "results")
    assert len(written) == len({runs.run_dir(c).name for c in cfgs.values()})
    for folder in written:
        assert sorted(p.name for p in folder.iterdir()) == ["config.json", "eval.json", "history.csv"]
    # the exported folder alone rebuilds the same table
    before = claims.evaluate_claims("smoke", g)
    import shutil

    shutil.rmtree(tmp_path / "out" / "runs")
    after = claims.evaluate_claims("smoke", claims.gather("smoke", out_dir=str(tmp_path / "out"),
                                                          results_dir=str(tmp_path / "results")))
    assert [(r["claim"], r["measured"], r["verdict"]) for r in after] == [
        (r["claim"], r["measured"], r["verdict"]) for r in before]


def test_training_the_missing_runs_goes_through_lib_sweep_with_the_claims_own_configs(tmp_path):
    from lib.orchestrate import sweep

    keys = [(lbl, s) for lbl in claims.claim_runs("smoke") for s in (0, 1)]
    (spec,) = claims.training_specs("smoke", keys, device="cpu", out_dir=str(tmp_path))
    cfgs = claims.run_configs("smoke", list(claims.claim_runs("smoke")), [0, 1], device="cpu", out_dir=str(tmp_path))
    points = sweep.expand_points(spec)
    assert [runs.run_dir(c) for _, c in points] == [runs.run_dir(cfgs[k]) for k in keys]
    assert spec["attacks"] == ["clean", "pgd20"]
    # where the profile runs AutoAttack, only TAET and AT-BSL (the AA claim's runs) are evaluated with it
    specs = claims.training_specs("paper", [("taet", 0), ("at", 0), ("atbsl", 0)])
    assert sorted((s["attacks"], len(s["grid"]["run"])) for s in specs) == [(["clean", "pgd20"], 1),
                                                                         (["clean", "pgd20", "autoattack"], 2)]


def test_notebook_08_runs_from_results_alone(tmp_path):
    """`pipeline --only 08` with an empty run cache: the claims table and the factorial come from results/."""
    from lib.orchestrate.pipeline import NOTEBOOK_DIR, run_notebook

    res_dir = tmp_path / "results"
    _fake_all(tmp_path, lambda cfg: res_dir / "smoke" / runs.run_dir(cfg).name)
    out = tmp_path / "out"
    run_notebook(NOTEBOOK_DIR / "08_claims_check.ipynb", out, {"profile": "smoke", "device": "cpu",
                 "out_dir": str(out), "results_dir": str(res_dir)}, html_export=False)
    assert not (out / "runs").exists()
    rows = runs.read_csv(out / "tables" / "claims.csv")
    assert rows and all(r["source"] == "results/" and r["n"] == "2" for r in rows)
    assert all("95% CI" in r["measured"] for r in rows)
    text = (out / "notebooks" / "08_claims_check.ipynb").read_text()
    assert "gap: AT-BSL" in text and "claims measured at this scale" in text


def test_which_profiles_train_missing_runs_in_notebook_08():
    assert claims.settings("smoke") == {"train_missing": True, "factorial": True, "partial": False}
    assert claims.settings("demo") == {"train_missing": True, "factorial": False, "partial": False}
    # where the check only reads, a claim whose runs are missing is reported as not run
    assert claims.settings("fashion") == {"train_missing": False, "factorial": True, "partial": True}
    assert claims.settings("paper-tiny") == {"train_missing": True, "factorial": True, "partial": True}


def test_the_committed_evidence_is_read_by_todays_code(tmp_path):
    """Every run folder committed under results/<profile>/ is read by today's code: the claims check finds its
    runs for today's configs, and every other committed run (the notebooks' reduced-scale runs, read through
    lib.orchestrate.sweep's evidence) still hashes to its folder's name with a current evaluation. A change that moves a
    run's
    hash (or its evaluation settings) would orphan the evidence silently."""
    from pathlib import Path

    from lib.core.evaluate import read_eval
    from lib.orchestrate.evidence import find

    from lib.profiles import PROFILES

    root = Path(__file__).resolve().parent.parent / claims.RESULTS_DIR
    folders = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []
    profiles = [f for f in folders if f in PROFILES]
    for other in sorted(set(folders) - set(profiles)):  # e.g. results/pilot/: evidence that is no profile's claims
        assert (root / other / "README.md").is_file(), f"results/{other}/ is no profile's: say what it is in a README"
        for cfg_file in sorted((root / other).rglob("config.json")):  # its runs still hash to their folders' names
            assert runs.run_dir(runs.read_config(cfg_file.parent)).name == cfg_file.parent.name, cfg_file
    for profile in profiles:
        committed = {p.name for p in (root / profile).iterdir() if p.is_dir()}
        g = claims.gather(profile, out_dir=str(tmp_path / "empty"), results_dir=str(root), partial=True,
                          switch_cells=True)  # the fidelity switches' runs are committed evidence too
        found = {Path(doc["folder"]).name for doc in g["results"].values()}
        # a committed diverged.json (a run whose loss went NaN/inf) is evidence too, read as an outcome
        found |= {Path(rec["folder"]).name for rec in g["diverged"].values()}
        assert found and found <= committed
        assert not g["cache"]
        orphans = []
        for name in sorted(committed - found):
            folder = root / profile / name
            cfg = runs.read_config(folder)
            if runs.run_dir(cfg).name != name:
                orphans.append(name)
            elif runs.read_diverged(folder, cfg) is None:  # a diverged run's record is current evidence by itself
                doc = read_eval(folder)
                hit = None if doc is None else find(cfg, list(doc["results"]), root / profile, cache=False)
                if hit is None or hit.doc is None:
                    orphans.append(name)
        assert not orphans, f"results/{profile}: not read by today's code: {orphans}"


def test_switch_effects_pair_each_switch_with_its_methods_default_run(tmp_path):
    out, res_dir = tmp_path / "out", tmp_path / "results"
    labels = ["taet", "atbsl", "AT-BSL · TAET's attack", "TAET · extra clean forward"]
    cfgs = claims.run_configs("smoke", labels, [0, 1], device="cpu", out_dir=str(out))
    pgd = {"taet": 50.0, "atbsl": 60.0, "AT-BSL · TAET's attack": 55.0, "TAET · extra clean forward": 52.0}
    for (lbl, s), cfg in cfgs.items():  # AT-BSL with TAET's attack: −5 and −4; TAET's extra forward: +2 and +2
        extra = 1.0 if (lbl, s) == ("AT-BSL · TAET's attack", 1) else 0.0
        _write_run(res_dir / "smoke" / runs.run_dir(cfg).name, cfg, {"clean": 80.0, "pgd20": pgd[lbl] + extra})
    # the switches are their own configs: normalisation off and the extra forward enter the hash
    assert len({runs.run_dir(c).name for c in cfgs.values()}) == 8
    res = claims.check("smoke", out_dir=str(out), results_dir=str(res_dir), partial=True, switches=True)
    rows = {r[0]: r for r in runs.read_csv(out / "tables" / "switches.csv") for r in [list(r.values())]}
    half = 12.7062 * 0.7071 / 2 ** 0.5  # t(1, 0.975) · std(−5, −4) / √2 = 6.35
    assert rows["AT-BSL · TAET's attack"][1] == f"-4.5 ± 0.7, 95% CI [{-4.5 - half:+.1f}, {-4.5 + half:+.1f}]"
    extra = rows["TAET · extra clean forward"]
    assert extra[1].startswith("+2.0 ± 0.0") and extra[3] == "2"
    assert rows["TAET · no input normalisation"][1:] == ["not run yet", "not run yet", "0"]
    assert "Fidelity switches" in res["switches_md"]


def _fig7_rows(per_length):
    """Fig. 7's row from {clean epochs: PGD-20 per seed} (fashion: 8 of 20 epochs is its ~40%; rivals 0, 4, 12)."""
    g = gathered({f"taet {e} clean epochs": [doc(v) for v in vals] for e, vals in per_length.items()})
    return find(claims.evaluate_claims("fashion", g), "Fig. 7")


def test_fig7_needs_every_other_length_beaten_with_bonferroni_simultaneous_intervals():
    # df = 2 has a closed-form t quantile: F(t) = 1/2 + t / (2 √(2 + t²)), so t_q = √(8a² / (1 − 4a²)), a = q − 1/2.
    # Three rivals: each interval at 1 − 0.05/3, i.e. q = 1 − 0.05/6.
    a = 0.5 - 0.05 / 6
    t = math.sqrt(8 * a * a / (1 - 4 * a * a))  # 7.6488
    # 40% beats 0 and 12 clearly and 4 by 1.5, 2, 2.5 points (mean 2, std 0.5): 4 decides, its interval holds 0
    r = _fig7_rows({8: [70, 71, 72], 0: [60, 60, 60], 4: [68.5, 69, 69.5], 12: [50, 51, 52]})
    half = t * 0.5 / math.sqrt(3)
    assert (r["low"], r["high"]) == (pytest.approx(2 - half, abs=1e-4), pytest.approx(2 + half, abs=1e-4))
    assert r["verdict"] == "inconclusive" and "rival: taet 4 clean epochs, deciding of 3 rivals" in r["claim"]
    assert r["measured"].endswith(f"98.3% CI [{2 - half:+.1f}, {2 + half:+.1f}]")
    # the same differences at 95% alone (t = 4.302653) would exclude 0: the correction is what keeps it open
    assert 2 - 4.302653 * 0.5 / math.sqrt(3) > 0 > 2 - half
    # every rival beaten by a margin that survives the correction: supported
    r = _fig7_rows({8: [70, 71, 72], 0: [60, 60, 61], 4: [60, 61, 61], 12: [50, 51, 52]})
    assert r["verdict"] == "supported" and "rival: taet 4 clean epochs" in r["claim"]  # 4's bound is the lowest
    # one length clearly better: contradicted, named, whatever the others do
    r = _fig7_rows({8: [70, 71, 72], 0: [80, 81, 82], 4: [75, 76, 77], 12: [50, 51, 52]})
    assert r["verdict"] == "contradicted" and "rival: taet 0 clean epochs" in r["claim"]
    assert r["mean"] == pytest.approx(-10.0)


def test_fig7_agreement_names_different_deciding_rivals():
    mine = gathered({f"taet {e} clean epochs": [doc(v) for v in vals]
                     for e, vals in {8: [70, 71, 72], 0: [80, 81, 82], 4: [60, 60, 60], 12: [50, 51, 52]}.items()})
    theirs = gathered({f"taet {e} clean epochs": [dict(doc(v), folder="y") for v in vals]
                       for e, vals in {8: [70, 71, 72], 0: [60, 60, 60], 4: [80, 81, 82], 12: [50, 51, 52]}.items()},
                      source="results")
    r = find(claims.evaluate_claims("fashion", {**mine, "results": theirs["results"]}), "Fig. 7")
    assert r["vs committed"] == ("differs: yours decided by taet 0 clean epochs, committed by taet 4 clean epochs")
    # the same deciding rival: the usual comparison of means against the committed interval
    theirs = gathered({f"taet {e} clean epochs": [dict(doc(v), folder="y") for v in vals]
                       for e, vals in {8: [70, 71, 72], 0: [80, 81, 83], 4: [60, 60, 60], 12: [50, 51, 52]}.items()},
                      source="results")
    r = find(claims.evaluate_claims("fashion", {**mine, "results": theirs["results"]}), "Fig. 7")
    assert r["vs committed"].startswith("agrees: yours -10.0")


def test_a_diverged_factorial_cell_is_an_outcome_reported_exported_and_not_trained_again(tmp_path):
    """HEL ×10 without a clean stage can diverge (NaN loss): its runs' diverged.json stand in for results, the main
    effects average over the settings that trained and say so, and nothing is listed as missing or retrained."""
    cfgs = _fake_all(tmp_path, runs.run_dir)
    dead = [c.label for c in claims.factorial.cells("smoke") if c.levels and c.levels[1:] == (10.0, "none")]
    assert len(dead) == 2
    for lbl in dead:
        for s in (0, 1):
            rd = runs.run_dir(cfgs[(lbl, s)])
            (rd / "eval.json").unlink()
            runs.write_diverged(rd, cfgs[(lbl, s)], epoch=1, batch=7, message="loss became NaN/inf at epoch 1")
    out_dir, res_dir = str(tmp_path / "out"), str(tmp_path / "results")
    g = claims.gather("smoke", out_dir=out_dir, results_dir=res_dir, train_missing=True)  # nothing to train
    assert g["missing"] == [] and sorted(g["diverged"]) == sorted((lbl, s) for lbl in dead for s in (0, 1))
    assert not any((runs.run_dir(cfgs[(lbl, 0)]) / "checkpoint.pt").exists() for lbl in dead)
    res = claims.check("smoke", out_dir=out_dir, results_dir=res_dir)
    md = res["factorial_md"]
    assert "main effect: training attack (TAET's → AT-BSL's) (over the 3 of 4 settings" in md
    assert "main effect: HEL scale (×1 → ×10) (over the 2 of 4 settings" in md
    assert "main effect: clean first stage (kept → removed) (over the 2 of 4 settings" in md
    lr = cfgs[(dead[0], 0)].train.lr
    assert "**Diverged** (NaN/inf loss; no result" in md
    assert f"{dead[0]} (seeds 0, 1 of 2, in epoch 1, lr {lr:g})" in md
    assert "holds for those settings only" in md
    # the evidence export carries the divergence records, and results/ alone rebuilds the same factorial
    written = claims.export_results("smoke", g, res_dir)
    dfolder = tmp_path / "results" / "smoke" / runs.run_dir(cfgs[(dead[0], 0)]).name
    assert dfolder in written and sorted(p.name for p in dfolder.iterdir()) == ["config.json", "diverged.json",
                                                                                "history.csv"]
    import shutil

    shutil.rmtree(tmp_path / "out" / "runs")
    again = claims.check("smoke", out_dir=out_dir, results_dir=res_dir)
    assert again["factorial_md"] == md and sorted(again["gathered"]["diverged"]) == sorted(g["diverged"])


def test_a_claim_whose_run_diverged_says_so_instead_of_asking_to_train_it():
    g = gathered({"taet": [doc(60), doc(61)], "atbsl": [doc(50), doc(52), doc(51)], "at": [doc(50)] * 3})
    g["diverged"] = {("taet", 2): {"epoch": 3, "batch": 1, "message": "x"}}
    rows = claims.evaluate_claims("fashion", g)
    r = find(rows, "above AT-BSL's.")
    assert r["n"] == 2 and r["measured"].endswith("(seed 2 diverged)")
    g["cache"] = {k: v for k, v in g["cache"].items() if k[0] != "taet"}
    g["diverged"] = {("taet", s): {"epoch": 1, "batch": 2, "message": "x"} for s in SEEDS}
    rows = claims.evaluate_claims("fashion", g)
    r = find(rows, "above AT-BSL's.")
    assert r["verdict"] == "not run" and r["diverged"]
    assert r["measured"] == "diverged (NaN/inf loss): taet (seed 0 at epoch 1, seed 1 at epoch 1, seed 2 at epoch 1)"
    text = claims.reading(rows, "fashion")
    assert "**Not measurable: a run diverged**" in text and "above AT-BSL's" in text.split("diverged**")[1]


def test_floor_verdict_reads_the_interval_against_the_floor():
    # mean 0.8653, std 0.0050, t(0.975, 2) = 4.3027: half width 0.0125 -> [0.8528, 0.8778], above 0.85
    assert claims.floor_verdict([0.86, 0.87, 0.866], 0.85) == "met"
    assert claims.floor_verdict([0.84, 0.845, 0.842], 0.85) == "not met"  # [0.8357, 0.8488]
    assert claims.floor_verdict([0.84, 0.86, 0.85], 0.85) == "inconclusive"  # [0.825, 0.875]
    assert claims.floor_verdict([0.99], 0.85) == "inconclusive"  # one seed: no interval


def test_scale_check_reads_ce_on_the_whole_test_set_and_the_report_cites_it(tmp_path):
    res_dir, out_dir = tmp_path / "results", str(tmp_path / "out")
    with pytest.raises(claims.ConfigError, match=r"in \(0, 1\)"):
        claims.scale_check("smoke", floor=85, out_dir=out_dir, results_dir=res_dir)
    with pytest.raises(claims.ConfigError, match="at least 2 seeds"):
        claims.scale_check("smoke", seeds=[0], out_dir=out_dir, results_dir=res_dir)
    assert not (tmp_path / "out").exists()  # bad input: nothing trained
    sc = claims.scale_check("smoke", device="cpu", out_dir=out_dir, results_dir=res_dir, workers=1)
    ce = claims.run_configs("smoke", ["ce"], [0, 1], device="cpu", out_dir=out_dir)
    assert [r["run"] for r in sc["runs"].values()] == [runs.run_dir(ce[("ce", s)]).name for s in (0, 1)]  # claims' CE
    for r in sc["runs"].values():
        assert r["subset_n"] == 200 and r["full_test_n"] > 200  # the profile caps its test set at 200; lifted here
        assert 0.0 <= r["full_test_balanced"] <= 1.0
    vals = [r["full_test_balanced"] for r in sc["runs"].values()]
    assert sc["full_test_balanced"]["mean"] == pytest.approx(sum(vals) / 2)
    assert sc["verdict"] == claims.floor_verdict(vals, 0.85)
    assert claims.read_scale_check("smoke", res_dir) == {**json.loads(json.dumps(sc)), "stale": False}
    _fake_all(tmp_path, lambda cfg: res_dir / "smoke" / runs.run_dir(cfg).name)
    out = claims.check("smoke", out_dir=str(tmp_path / "out2"), results_dir=str(res_dir))
    assert f"On the whole balanced test set ({sc['runs'][0]['full_test_n']:,} images" in out["reading"]
    said = {"met": "met (the whole", "not met": "not met (the whole", "inconclusive": "undecided (the interval"}
    assert f"the 85% floor is {said[sc['verdict']]}" in out["report_md"]
    assert claims.read_scale_check("smoke", res_dir)["stale"] is False
    doc = json.loads((res_dir / "smoke" / claims.SCALE_FILE).read_text())
    doc["runs"]["1"]["run"] = "ce-digits-ir10-small_cnn-e2-s1-00000000"  # a CE run of other settings
    runs.atomic_write_json(res_dir / "smoke" / claims.SCALE_FILE, doc)
    out = claims.check("smoke", out_dir=str(tmp_path / "out2"), results_dir=str(res_dir))
    assert "read CE runs of other settings than this profile's; rerun it" in out["reading"]
    assert "On the whole balanced test set" not in out["reading"]
    (res_dir / "smoke" / claims.SCALE_FILE).write_text("{not json")
    with pytest.raises(claims.ConfigError, match="--scale-check"):
        claims.read_scale_check("smoke", res_dir)
