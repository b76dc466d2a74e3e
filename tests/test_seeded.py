"""Experiments over seeds: seeded tables (mean ± std with the t-interval, or "1 seed, no interval"), readings that
call a tie a tie, figures that draw the spread, and runs dispatched for every seed through lib.orchestrate.sweep."""

import math

import pytest

from lib.core import runs
from lib.core.config import ConfigError
from lib.profiles import run_config
from lib.study import seeded

COUNTS = (50, 20, 10, 10)


def doc(clean, pgd, per_class_pgd=None, eps=8 / 255):
    per_class_pgd = per_class_pgd or [pgd] * len(COUNTS)
    return {"protocol": {"dataset": "digits", "imbalance_ratio": 10.0, "test_protocol": "balanced", "n_test": 1200,
                         "train_counts": list(COUNTS)},
            "eval_config": {"eps": eps},
            "results": {"clean": {"balanced": clean, "accuracy": clean, "per_class": [clean] * len(COUNTS)},
                        "pgd20": {"balanced": pgd, "accuracy": pgd, "per_class": per_class_pgd}}}


TWO = {"taet": {0: doc(0.90, 0.50, [0.6, 0.5, 0.4, 0.30]), 1: doc(0.92, 0.54, [0.6, 0.5, 0.4, 0.34])},
       "at": {0: doc(0.80, 0.40), 1: doc(0.84, 0.40)}}


def test_two_seeds_give_mean_std_and_the_t_interval_by_hand():
    header, rows = seeded.robustness_table(TWO, ["clean", "pgd20"])
    assert header == ["method", "Clean", "PGD-20"]
    # PGD-20 of taet: 50 and 54 -> mean 52, sample std 2.83, t(0.975, 1) = 12.706 -> half width 12.706 · 2.83 / √2
    half = 12.7062047 * math.sqrt(8) / math.sqrt(2)
    assert rows[0] == ["taet", f"91.0 ± 1.4 [{91 - half / 2:.1f}, {91 + half / 2:.1f}]",
                       f"52.0 ± 2.8 [{52 - half:.1f}, {52 + half:.1f}]"]
    assert rows[0][2] == "52.0 ± 2.8 [26.6, 77.4]"
    assert rows[1][2] == "40.0 ± 0.0 [40.0, 40.0]"  # equal seeds: no spread, still labelled with its interval
    title = seeded.title("Table 1", "smoke", TWO)
    assert "mean ± std [95% t-interval], n = 2 seeds" in title
    assert "digits-LT IR 10" in title and "ε = 8/255" in title and "balanced test set of 1,200" in title
    assert "90 train images" in title  # 50 + 20 + 10 + 10: a reduced scale reads as such
    assert seeded.figure_title("Fig", "smoke", TWO).endswith("mean ± 1 std (bars, bands) over n = 2 seeds")


def test_one_seed_renders_the_single_values_and_says_so():
    one = {m: {0: by[0]} for m, by in TWO.items()}
    header, rows = seeded.robustness_table(one)
    assert header == ["method", "Clean", "PGD-20"]
    assert rows == [["taet", "90.00", "50.00"], ["at", "80.00", "40.00"]]  # the value itself: no spread, no interval
    assert seeded.title("Table 1", "demo", one).endswith("; 1 seed, no interval)")
    assert seeded.figure_title("Fig", "demo", one).endswith("; 1 seed")
    header, rows = seeded.tail_table(one, k=2, attacks=("pgd20",))
    assert header == ["method", "PGD-20 c3 (train n=10)", "PGD-20 c2 (train n=10)"]  # n is the TRAIN count
    assert rows == [["taet", "30.0", "40.0"], ["at", "40.0", "40.0"]]


def test_tail_table_over_seeds_summarizes_each_class():
    header, rows = seeded.tail_table(TWO, k=1, attacks=("pgd20",))
    assert header == ["method", "PGD-20 c3 (train n=10)"]
    assert rows[0][1].startswith("32.0 ± 2.8 [")


def test_rows_over_different_seeds_are_refused():
    with pytest.raises(ConfigError, match="not over the same seeds"):
        seeded.robustness_table({"taet": TWO["taet"], "at": {0: TWO["at"][0]}})
    with pytest.raises(ConfigError, match="no results"):
        seeded.robustness_table({})


def test_sweep_table_rows_and_combined_per_seed_tables():
    header, rows = seeded.sweep_table({"taet": {10: TWO["taet"], 50: TWO["taet"]}})
    assert [r[0] for r in rows] == ["taet @ IR 10", "taet @ IR 50"]
    a = (["class", "n", "final", "clean"], [["c0", "5", "10.0", "100.0"], ["c1", "3", "x", "nan"]])
    b = (["class", "n", "final", "clean"], [["c0", "5", "14.0", "100.0"], ["c1", "3", "x", "nan"]])
    assert seeded.combine_tables([a]) == a
    header, rows = seeded.combine_tables([a, b])
    # a measured value equal at both seeds carries its (zero) spread; counts and text stay as they are
    assert rows == [["c0", "5", "12.0 ± 2.8 [-13.4, 37.4]", "100.0 ± 0.0 [100.0, 100.0]"], ["c1", "3", "x", "nan"]]


def test_each_notebook_evaluates_and_shows_only_the_attacks_its_paper_table_reports():
    from lib.profiles import table_attacks

    assert table_attacks("demo", "table1") == ["clean", "fgsm", "pgd20", "pgd100", "cw_l2", "cw_linf"]
    assert table_attacks("demo", "table5") == ["clean", "fgsm", "pgd20", "cw_l2", "cw_linf"]  # no PGD-100 column
    assert table_attacks("demo", "ablations") == ["clean", "pgd20"]  # Table 4's PGD-20, Fig. 6b and 7's two series
    assert table_attacks("paper", "ablations") == ["clean", "pgd20", "autoattack"]  # Sec. 6.3 quotes Fig. 7's AA
    with pytest.raises(ConfigError, match="unknown table 'table9'.*ablations"):
        table_attacks("demo", "table9")
    # fashion's whole-set tables read committed runs that hold clean and PGD-20 (no weights to run more on)
    assert table_attacks("fashion", "table1") == table_attacks("fashion", "table5") == ["clean", "pgd20"]
    assert table_attacks("fashion", "ablations") == ["clean", "pgd20"]
    # notebook 02's IR-10 run carries every attack; the others of Table 5 only the table's: the columns asked for
    more = {**TWO["taet"][0], "results": {**TWO["taet"][0]["results"], "fgsm": {"balanced": 0.7, "accuracy": 0.7}}}
    sweep = {"taet": {10: {0: more}, 50: {0: TWO["taet"][1]}}}
    header, rows = seeded.sweep_table(sweep, "IR", ["clean", "pgd20"])
    assert header == ["method", "Clean", "PGD-20"] and rows == [["taet @ IR 10", "90.00", "50.00"],
                                                               ["taet @ IR 50", "92.00", "54.00"]]


def test_table4_grid_is_the_papers_every_weight_01_or_005():
    from itertools import product

    from lib.profiles import notebook_settings

    for profile in ("paper", "demo", "fashion"):
        grid = notebook_settings(profile)["hel_grid"]
        # the paper's Table 4: rows β = 0.1, 0.05; columns (α, γ) = (0.1, 0.1), (0.1, 0.05), (0.05, 0.1), (0.05, 0.05)
        assert grid == [[a, b, g] for b in (0.1, 0.05) for a in (0.1, 0.05) for g in (0.1, 0.05)], profile
        assert sorted(map(tuple, grid)) == sorted(product((0.05, 0.1), repeat=3)) and grid[0] == [0.1, 0.1, 0.1]


def test_table4_in_the_papers_layout_puts_beta_in_rows_and_alpha_gamma_in_columns():
    from lib.profiles import HEL_GRID

    # PGD-20 of each cell at seeds 0 and 1: 40 + 2i and 44 + 2i (%), i the cell's place in the paper's grid
    grid = {f"cell {i}": {0: doc(0.9, (40 + 2 * i) / 100), 1: doc(0.9, (44 + 2 * i) / 100)} for i in range(8)}
    header, rows = seeded.hel_grid_table(grid, HEL_GRID)
    assert header == ["β", "α=0.1 γ=0.1", "α=0.1 γ=0.05", "α=0.05 γ=0.1", "α=0.05 γ=0.05"]
    assert [r[0] for r in rows] == ["β = 0.1", "β = 0.05"]
    # cell 5 = (α 0.1, β 0.05, γ 0.05): 50 and 54 -> 52.0 ± 2.8 [26.6, 77.4] (as in the two-seed test above)
    assert rows[1][2] == "52.0 ± 2.8 [26.6, 77.4]" and rows[0][1] == "42.0 ± 2.8 [16.6, 67.4]"
    two = {k: grid[k] for k in ("cell 0", "cell 2")}  # the smoke grid: (0.1, 0.1, 0.1) and (0.05, 0.1, 0.1)
    header, rows = seeded.hel_grid_table(two, [[0.1, 0.1, 0.1], [0.05, 0.1, 0.1]])
    assert header == ["β", "α=0.1 γ=0.1", "α=0.05 γ=0.1"] and len(rows) == 1
    partial = {k: grid[k] for k in ("cell 0", "cell 5")}
    assert seeded.hel_grid_table(partial, [[0.1, 0.1, 0.1], [0.1, 0.05, 0.05]])[1][0][2] == "-"
    with pytest.raises(ConfigError, match="2 runs for 8 weight triples"):
        seeded.hel_grid_table(two, HEL_GRID)


def pgd_docs(values_by_method):
    return {m: {s: doc(0.9, v) for s, v in enumerate(vals)} for m, vals in values_by_method.items()}


def test_a_difference_whose_interval_includes_zero_is_called_a_tie():
    docs = pgd_docs({"atbsl": [0.49, 0.53, 0.47], "taet": [0.50, 0.52, 0.48]})  # TAET − AT-BSL: +1, −1, +1
    text = seeded.ranking_reading(docs)
    assert "a tie (the interval includes 0)" in text and "over 3 paired seeds" in text
    assert "ahead" not in text and "behind" not in text
    ahead = seeded.ranking_reading(pgd_docs({"atbsl": [0.40, 0.41, 0.42], "taet": [0.45, 0.47, 0.49]}))
    assert "**taet**" in ahead.split(".")[0]  # highest mean
    behind = seeded.ranking_reading(pgd_docs({"atbsl": [0.45, 0.47, 0.49], "taet": [0.40, 0.41, 0.42]}))
    assert "**`taet` behind**" in behind and "TAET" not in behind.split(":")[0]


def test_simultaneous_intervals_widen_so_a_per_comparison_verdict_can_become_a_tie():
    # HEL's paired differences (points) from four cells over 3 seeds; 95% t (2 df) = 4.303, Bonferroni over 4 at
    # 98.75% each: t = 8.860. HEL − BCL = −2, −3, −2: mean −2.33, std 0.577 -> 95% [−3.77, −0.90] behind, 98.75%
    # [−5.29, +0.62] a tie. HEL − BCL+RCEL = −1.2, −1.3, −1.3: mean −1.27, std 0.058 -> 98.75% [−1.56, −0.97], still
    # behind.
    # HEL − BCL+HDL (−1, −2, −0.5) and HEL − no stage 1 (−0.5, +0.5, −1.5): ties at either level.
    cells = {"BCL": [0.74, 0.75, 0.73], "BCL+HDL": [0.73, 0.74, 0.715], "BCL+RCEL": [0.732, 0.733, 0.723],
             "HEL (all)": [0.72, 0.72, 0.71], "HEL, no stage 1": [0.725, 0.715, 0.725]}
    docs = pgd_docs(cells)
    against = ("BCL", "BCL+HDL", "BCL+RCEL", "HEL, no stage 1")
    one = seeded.ranking_reading(docs, focus=("HEL (all)",), against=against)
    together = seeded.ranking_reading(docs, focus=("HEL (all)",), against=against, simultaneous=True)
    assert "Bonferroni" not in one and "The 4 intervals are Bonferroni-simultaneous (98.8% each)" in together
    assert "`HEL (all)` − `BCL` = -2.3 ± 0.6 [-3.8, -0.9] points over 3 paired seeds: **`HEL (all)` behind**" in one
    assert "`HEL (all)` − `BCL` = -2.3 ± 0.6 [-5.3, +0.6] points over 3 paired seeds: **a tie" in together
    assert "`HEL (all)` − `BCL+RCEL` = -1.3 ± 0.1 [-1.6, -1.0] points over 3 paired seeds: **`HEL (all)` behind**" \
        in together
    assert one.count("**`HEL (all)` behind**") == 2 and together.count("**`HEL (all)` behind**") == 1
    # one comparison: nothing to correct for
    assert "Bonferroni" not in seeded.ranking_reading(docs, focus=("HEL (all)",), against=(), simultaneous=True)


def test_one_seed_ranks_nothing():
    docs = pgd_docs({"atbsl": [0.49], "taet": [0.60]})
    text = seeded.ranking_reading(docs)
    assert "1 seed, no interval" in text and "Highest" not in text and "ranks" not in text
    assert "atbsl 49.0%, taet 60.0%" in text
    one = seeded.sweep_reading({"taet": {10: docs["taet"]}, "atbsl": {10: docs["atbsl"]}})
    assert one == ("Balanced PGD-20 robustness by imbalance ratio. IR 10: TAET − AT-BSL = +11.0 points (1 seed, "
                   "no interval: not a ranking).")


def test_sweep_reading_over_seeds_calls_ties_per_ratio():
    sweep = {"taet": {10: pgd_docs({"x": [0.50, 0.52, 0.48]})["x"], 50: pgd_docs({"x": [0.30, 0.31, 0.32]})["x"]},
             "atbsl": {10: pgd_docs({"x": [0.49, 0.53, 0.47]})["x"], 50: pgd_docs({"x": [0.35, 0.37, 0.39]})["x"]}}
    text = seeded.sweep_reading(sweep)
    ir10, ir50 = text.split("IR 10: ")[1].split("; IR 50: ")
    assert "a tie" in ir10 and "TAET behind" in ir50


def test_series_give_the_spread_for_error_bars():
    means, stds = seeded.series(TWO, ("pgd20",))
    assert means["PGD-20"] == pytest.approx([52.0, 40.0]) and stds["PGD-20"] == pytest.approx([math.sqrt(8), 0.0])
    names, m, s = seeded.per_class_series(TWO)
    assert names[3] == "c3 (train n=10) *" and m["taet"][3] == pytest.approx(32.0)
    assert s["taet"] == pytest.approx([0.0, 0.0, 0.0, math.sqrt(8)])
    one = {m: {0: by[0]} for m, by in TWO.items()}  # one seed: its values, no spread to draw
    means, stds = seeded.series(one, ("clean", "pgd20"))
    assert means == {"Clean": pytest.approx([90.0, 80.0]), "PGD-20": pytest.approx([50.0, 40.0])}
    assert stds == {"Clean": [0.0, 0.0], "PGD-20": [0.0, 0.0]}
    names, m, s = seeded.per_class_series(one)
    assert m["taet"] == pytest.approx([60.0, 50.0, 40.0, 30.0]) and s["taet"] == [0.0] * 4


def tracked(tail_pgd, head_pgd=(0.8, 0.8, 0.7, 0.9)):
    """Four tracked epochs: class 0 (the head) at `head_pgd`, the three rarest (1, 2, 3) at `tail_pgd`."""
    return [{"epoch": e + 1, "pgd_c0": head_pgd[e], **{f"pgd_c{c}": tail_pgd[e] for c in (1, 2, 3)},
             **{f"clean_c{c}": 1.0 for c in range(4)}} for e in range(4)]


def test_per_class_dynamics_and_its_reading_over_one_and_two_seeds():
    from lib.study.experiments import per_class_dynamics

    # second half of training = epochs 3, 4. Seed 0: tail 10, 50 -> final 50, mean 30, std 20; head 70, 90 -> final
    # 90, mean 80, std 10. Seed 1: tail 30, 70 -> final 70, mean 50, std 20.
    one, two = tracked((0.2, 0.4, 0.1, 0.5)), tracked((0.2, 0.4, 0.3, 0.7))
    header, rows = per_class_dynamics([one], list(COUNTS))
    assert header == ["class", "train n", "final PGD", "mean (2nd half)", "std (2nd half)", "final clean"]
    assert rows[0] == ["c0", "50", "90.0", "80.0", "10.0", "100.0"]
    assert rows[3] == ["c3 (tail)", "10", "50.0", "30.0", "20.0", "100.0"]
    assert seeded.dynamics_reading([one], list(COUNTS)) == (
        "On 1 seed (no interval): the three rarest classes end at **50.0%** mean PGD robustness against **90.0%** "
        "for the others, and swing by **20.0** points (std over the second half of training) against **10.0** for "
        "the others.")
    # two seeds: 50 and 70 -> 60.0 ± 14.1, half width 12.706 · 14.14 / √2 = 127.1
    _, rows = per_class_dynamics([one, two], list(COUNTS))
    assert rows[3][:3] == ["c3 (tail)", "10", "60.0 ± 14.1 [-67.1, 187.1]"]
    assert rows[0][2] == "90.0 ± 0.0 [90.0, 90.0]"
    text = seeded.dynamics_reading([one, two], list(COUNTS))
    assert text.startswith("Over 2 seeds (mean ± std [95% t-interval]): the three rarest classes end at "
                           "**60.0 ± 14.1 [-67.1, 187.1]%**")
    assert "**90.0 ± 0.0 [90.0, 90.0]%** for the others" in text


def test_figures_draw_the_spread_and_do_not_blow_up_a_small_gap():
    from lib.study import plots

    fig = plots.grouped_bars(["a", "b"], {"PGD-20": [50.0, 52.0]}, errors={"PGD-20": [2.0, 1.0]}, ylabel="%",
                             title="t")
    assert any(getattr(c, "has_yerr", False) for c in fig.axes[0].containers)
    plain = plots.grouped_bars(["a", "b"], {"PGD-20": [50.0, 52.0]}, ylabel="%", title="t")
    assert not any(getattr(c, "has_yerr", False) for c in plain.axes[0].containers)
    assert plain.axes[0].get_ylim()[0] == 0  # bars start at 0
    fig = plots.lines([0, 4], {"PGD-20": [50.0, 52.0], "Clean": [51.0, 51.5]}, errors={"PGD-20": [1.0, 1.0]},
                      xlabel="x", ylabel="%", title="t")
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    assert hi - lo >= 20 and lo <= 49 and hi >= 53  # a 2-point gap is not stretched over the whole axis
    assert len(ax.collections) == 1  # one band: the series that has a spread
    sweep = {"taet": {10: TWO["taet"], 50: TWO["taet"]}, "atbsl": {10: TWO["at"], 50: TWO["at"]}}
    fig = plots.metric_vs_ir(sweep, attacks=("pgd20",), title="t")
    assert any(c.has_yerr for c in fig.axes[0].containers)


def test_every_seed_is_trained_through_one_sweep_and_seed_zero_is_the_single_run(tmp_path):
    base = {"train": {"epochs": 1, "track_every": 0}, "method_args": {"ce_epochs": 0}}
    out = str(tmp_path / "out")
    docs = seeded.sweep_seeds("smoke", {"at": {"method": "at", **base}, "taet": base}, device="cpu", out_dir=out,
                              executor="inline", attacks=["clean"])
    assert set(docs) == {"at", "taet"} and all(sorted(by) == [0, 1] for by in docs.values())
    assert docs["taet"][1]["config"].train.seed == 1 and docs["taet"][1]["config"].method == "taet"
    assert docs["at"][0]["protocol"]["train_counts"] == docs["at"][1]["protocol"]["train_counts"]  # paired data
    assert docs["at"][0]["run_dir"] != docs["at"][1]["run_dir"]
    single = run_config("smoke", "at", device="cpu", out_dir=out, train=base["train"])  # AT has no ce_epochs
    assert docs["at"][0]["run_dir"] == str(runs.run_dir(single))  # seed 0 keeps today's hash and folder
    again = seeded.train_eval_seeds("smoke", "at", [1], device="cpu", out_dir=out, train=base["train"],
                                    executor="inline", attacks=["clean"])
    assert again[1]["run_dir"] == docs["at"][1]["run_dir"]
    with pytest.raises(ConfigError, match="listed twice"):
        seeded.train_eval_seeds("smoke", "at", [0, 0], out_dir=out)


def test_per_class_curves_over_seeds_band_the_tail_classes():
    from lib.study import plots

    def history(shift):
        return [{"epoch": e, **{f"{k}_c{c}": min(1.0, 0.1 * c + 0.2 * e + shift) for k in ("clean", "pgd")
                                for c in range(4)}} for e in (1, 2, 3)]

    one = plots.per_class_curves([history(0.0)], list(COUNTS), title="t")
    assert all(len(ax.collections) == 0 for ax in one.axes[:2])  # one run: no band
    two = plots.per_class_curves([history(0.0), history(0.1)], list(COUNTS), title="t\nseeds")
    assert [len(ax.collections) for ax in two.axes[:2]] == [3, 3]  # the three rarest classes, in both panels
    line = two.axes[1].lines[0]  # class 0's PGD line is the seed mean
    assert list(line.get_ydata()) == pytest.approx([100 * (0.2 * e + 0.05) for e in (1, 2, 3)])


def test_silhouette_is_nan_where_undefined_and_nan_survives_combining():
    import numpy as np

    from lib.study.experiments import separation_table

    xy = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    two, four = (xy, np.array([0, 0, 1, 1])), (xy, np.array([0, 1, 2, 3]))  # 4 classes on 4 points: undefined
    header, ok = separation_table({"m": {0: two}})
    _, one_each = separation_table({"m": {0: four}})
    assert header == ["method", "silhouette"] and float(ok[0][1]) > 0.9 and one_each[0][1] == "nan"
    assert separation_table({"m": {0: two, 1: four}})[1][0][1] == "nan"
    assert separation_table({"m": {0: two, 1: two}})[1][0][1] == f"{ok[0][1]} ± 0.000 [{ok[0][1]}, {ok[0][1]}]"


