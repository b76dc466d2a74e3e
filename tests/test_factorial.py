"""The factorial's method switches (hel_scale, AT-BSL's clean_epochs, the attack helper), their hashes, and the
main effects from a hand-made 2 × 2 × 2 table (t(2, 0.975) = 4.302653)."""

import itertools
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from lib.core import runs
from lib.core.config import EPS_8, ConfigError
from lib.core.methods import MethodContext, build_method
from lib.core.train import validate
from lib.profiles import profile_config
from lib.study import factorial

# Hashes of today's runs (fp32, CPU): they must not move. smoke's were computed before these switches existed;
# fashion's were re-pinned when the profile moved to 12,000 images and small_cnn_fc, then to the whole long-tailed
# set (tests/test_hashes.py).
TODAY = {("smoke", "taet", ()): "acdc6db661ba9ca7", ("smoke", "atbsl", ()): "ced2799cb0f1d384",
         ("fashion", "taet", ()): "a0a578e56f12ee58", ("fashion", "atbsl", ()): "95dfac6a1a0f7009",
         ("fashion", "taet", (("ce_epochs", 0),)): "5971ed3364e4931b"}


def _hash(profile, method, args=()):
    c = profile_config(profile, method)
    c = replace(c, method_args={**c.method_args, **dict(args)}, train=replace(c.train, amp="off", device="cpu"))
    return runs.config_hash(validate(c))


@pytest.mark.parametrize("key", sorted(TODAY))
def test_default_configs_keep_todays_hashes(key):
    assert _hash(*key) == TODAY[key]


def test_the_new_switches_enter_the_hash_only_away_from_their_neutral_value():
    assert _hash("smoke", "taet", {"hel_scale": 1.0}) == TODAY[("smoke", "taet", ())]
    assert _hash("smoke", "taet", {"hel_scale": 10.0}) != TODAY[("smoke", "taet", ())]
    assert _hash("smoke", "atbsl", {"clean_epochs": 0}) == TODAY[("smoke", "atbsl", ())]
    assert _hash("smoke", "atbsl", {"clean_epochs": 1}) != TODAY[("smoke", "atbsl", ())]
    # AT-BSL's neutral clean_epochs = 0 is method-qualified: TAET's ce_epochs = 0 (no stage 1) keeps its own hash
    assert ("method_args", "clean_epochs", "atbsl") in runs.HASH_NEUTRAL
    assert _hash("fashion", "taet", {"ce_epochs": 0}) != _hash("fashion", "taet")


def _ctx():
    return MethodContext(num_classes=3, class_counts=[10, 5, 2], epochs=4, device=torch.device("cpu"))


def test_hel_scale_multiplies_taets_stage2_loss():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.rand(12, 1, 4, 4), torch.tensor([0, 1, 2] * 4)
    losses = []
    for scale in (1.0, 10.0):
        m = build_method("taet", {"ce_epochs": 1, "hel_scale": scale}, _ctx())
        losses.append(m.step(model, x, y, epoch=2, generator=torch.Generator().manual_seed(3)).loss.item())
    assert losses[1] == pytest.approx(10 * losses[0], rel=1e-5)
    with pytest.raises(ConfigError, match="hel_scale"):
        build_method("taet", {"hel_scale": 0.0, "ce_epochs": 1}, _ctx())


def test_atbsl_clean_epochs_trains_clean_ce_first_then_its_own_loss():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    m = build_method("atbsl", {"clean_epochs": 2}, _ctx())
    assert [m.stage(e) for e in range(4)] == ["clean", "clean", "adversarial", "adversarial"]
    out = m.step(model, x, y, epoch=0, generator=None)
    assert out.loss.item() == pytest.approx(F.cross_entropy(model(x), y).item())
    assert build_method("atbsl", {}, _ctx()).stage(0) == "adversarial"  # default: official AT-BSL
    with pytest.raises(ConfigError, match="clean_epochs=5"):
        build_method("atbsl", {"clean_epochs": 5}, _ctx())


def test_attack_helper_gives_atbsls_attack_scaled_by_the_profile():
    a = factorial.attack_args("atbsl", "smoke")
    assert a == {"eps": EPS_8, "step_size": 2 / 255, "steps": 10, "start": "normal", "start_std": 0.001}
    t = factorial.attack_args("taet", "smoke")
    assert (t["eps"], t["step_size"]) == (0.031, 0.003)
    assert factorial.attack_args("atbsl", "demo")["eps"] == pytest.approx(4 * EPS_8)  # the demo's attack_scale


def test_the_grid_has_eight_taet_cells_and_four_atbsl_cells():
    cs = factorial.cells("fashion")
    assert len(cs) == 12 and [c.method for c in cs] == ["taet"] * 8 + ["atbsl"] * 4
    assert cs[0].levels == ("TAET's", 1.0, "clean") and cs[0].method_args == {"ce_epochs": 8}
    last = cs[7]
    assert last.levels == ("AT-BSL's", 10.0, "none")
    assert last.method_args == {"ce_epochs": 0, "hel_scale": 10.0, **factorial.attack_args("atbsl", "fashion")}
    assert [c.role for c in cs[8:]] == ["atbsl", "single", "single", "loss"] and cs[8].method_args == {}
    assert cs[9].method_args == factorial.attack_args("taet", "fashion")
    assert cs[10].method_args == {"clean_epochs": 8}
    # the loss cell: AT-BSL with TAET's attack and clean stage, so only the stage-2 loss differs from TAET's setting
    assert cs[11].method_args == {**factorial.attack_args("taet", "fashion"), "clean_epochs": 8}
    assert [(a, b) for _, a, b in factorial.loss_pairs(cs)] == [(cs[11].label, cs[0].label),
                                                                 (cs[11].label, cs[2].label)]
    assert cs[2].levels == ("TAET's", 10.0, "clean")


def _table(attack_fx, hel_fx, stage_fx, base=(50.0, 52.0, 49.0)):
    """Cells = base per seed + each factor's per-seed effect at its AT-BSL-like level (no interactions)."""
    out = {}
    for a in ("TAET's", "AT-BSL's"):
        for h in (1.0, 10.0):
            for st in ("clean", "none"):
                out[(a, h, st)] = [b + (a == "AT-BSL's") * fa + (h == 10.0) * fh + (st == "none") * fs
                                   for b, fa, fh, fs in zip(base, attack_fx, hel_fx, stage_fx)]
    return out


def test_main_effects_from_a_hand_made_table():
    eff = factorial.main_effects(_table([3.0, 5.0, 4.0], [1.0, -1.0, 0.5], [0.0, 0.0, 0.0]))
    half = 4.302653 * 1.0 / math.sqrt(3)  # std of (3, 5, 4) is 1
    a = eff["attack"]
    assert (a.mean, a.std, a.n) == (pytest.approx(4.0), pytest.approx(1.0), 3)
    assert (a.low, a.high) == (pytest.approx(4 - half, abs=1e-5), pytest.approx(4 + half, abs=1e-5))
    assert eff["hel_scale"].mean == pytest.approx(1 / 6) and eff["hel_scale"].low < 0 < eff["hel_scale"].high
    assert eff["stage1"].mean == pytest.approx(0.0) and eff["stage1"].std == pytest.approx(0.0)
    with pytest.raises(ConfigError, match="lacks the cell"):
        factorial.main_effects({k: v for k, v in list(_table([1] * 3, [1] * 3, [1] * 3).items())[:7]})


def _values(profile, attack_fx, hel_fx, atbsl):
    tab = _table(attack_fx, hel_fx, [0.2, -0.3, 0.1])
    vals = {c.label: tab[c.levels] for c in factorial.cells(profile) if c.levels}
    vals.update({"AT-BSL": atbsl, "AT-BSL · TAET's attack": [50.0, 52.0, 49.0], "AT-BSL · stage 1 8 clean": atbsl,
                 "AT-BSL · TAET's attack · stage 1 8 clean": [50.5, 52.0, 49.5]})
    return vals


def test_reading_names_the_factor_whose_interval_excludes_zero():
    vals = _values("fashion", [3.0, 5.0, 4.0], [1.0, -1.0, 0.5], atbsl=[56.0, 58.5, 55.0])
    eff = factorial.effects(vals, "fashion")
    gap = eff["gap: AT-BSL − TAET"]
    assert gap.mean == pytest.approx(18.5 / 3)  # 56 − 50, 58.5 − 52, 55 − 49
    text = factorial.reading(eff, eff)
    named, rest = text.split("interval excluding 0: ")[1].split(" No conclusive effect")
    assert "training attack" in named and "HEL scale" not in named
    assert "HEL scale" in rest and "clean first stage" in rest  # the ties are named as ties
    header, rows = factorial.effects_rows({"PGD-20": eff})
    assert rows[0][0] == "gap: AT-BSL − TAET" and rows[0][-1] == "3" and "[" in rows[0][1]


def test_reading_says_none_conclusively_when_every_interval_includes_zero():
    vals = _values("fashion", [1.0, -1.0, 0.5], [1.0, -1.0, 0.5], atbsl=[56.0, 58.5, 55.0])
    assert "none conclusively" in factorial.reading(factorial.effects(vals, "fashion"))
    one = {k: v[:1] for k, v in vals.items()}
    assert "With one seed" in factorial.reading(factorial.effects(one, "fashion"))


def test_simple_effects_pair_each_one_factor_cell_with_taets_own_over_shared_seeds():
    cs = factorial.cells("fashion")
    base, attack_only = cs[0].label, cs[4].label  # TAET's own setting; AT-BSL's attack, the rest TAET's
    assert cs[4].levels == ("AT-BSL's", 1.0, "clean")
    vals = {base: {0: 60.0, 1: 61.0, 2: 59.0}, attack_only: {0: 66.0, 1: 71.0},  # seed 2 not run yet
            "AT-BSL": {0: 67.0, 1: 68.5, 2: 66.0}, cs[6].label: {0: 1.0}}  # a two-factor cell: not a simple effect
    eff = factorial.simple_effects(vals, "fashion")
    left = f"remaining gap (1 of 3 factors at AT-BSL's levels): AT-BSL − {attack_only}"  # cs[6]: one seed, no interval
    assert list(eff) == ["gap: AT-BSL − TAET", "simple effect: training attack (TAET's → AT-BSL's)", left]
    assert (eff[left].mean, eff[left].n) == (pytest.approx(-0.75), 2)  # 67 − 66, 68.5 − 71
    gap, att = eff["gap: AT-BSL − TAET"], eff["simple effect: training attack (TAET's → AT-BSL's)"]
    assert (gap.mean, gap.n) == (pytest.approx(21.5 / 3), 3)  # 67 − 60, 68.5 − 61, 66 − 59
    assert (att.mean, att.std, att.n) == (pytest.approx(8.0), pytest.approx(math.sqrt(8.0)), 2)  # 6 and 10
    half = 12.706205 * math.sqrt(8.0) / math.sqrt(2)
    assert att.low == pytest.approx(8.0 - half, abs=1e-4)  # t(1): two seeds give a wide interval
    text = factorial.reading(eff)
    assert "simple effect" in text and "not main effects" in text and "n = 2" in text
    assert "none conclusively" in text  # [−17.4, 33.4] includes 0
    assert "nearest AT-BSL's levels run so far (1 of 3" in text and "Not every such difference excludes 0" in text
    assert "No factor is measured yet" in factorial.reading(factorial.simple_effects(
        {base: {0: 60.0, 1: 61.0}, "AT-BSL": {0: 67.0, 1: 68.0}}, "fashion"))


def test_a_partial_grid_says_when_one_factor_moved_to_atbsls_level_leaves_the_gap_open():
    cs = factorial.cells("fashion")
    base, no_stage = cs[0].label, cs[1].label  # TAET's own setting; the same with no clean stage
    assert cs[1].levels == ("TAET's", 1.0, "none")
    vals = {base: {0: 73.0, 1: 71.5, 2: 70.0}, no_stage: {0: 74.7, 1: 72.6, 2: 73.2},
            "AT-BSL": {0: 77.9, 1: 76.9, 2: 77.9}}
    eff = factorial.simple_effects(vals, "fashion")
    left = eff[f"remaining gap (1 of 3 factors at AT-BSL's levels): AT-BSL − {no_stage}"]
    assert left.mean == pytest.approx((3.2 + 4.3 + 4.7) / 3) and left.low > 0  # still trails, interval clear of 0
    text = factorial.reading(eff)
    assert "none conclusively" in text  # the stage's simple effect, +1.7, +1.1, +3.2: interval includes 0
    assert f"{no_stage}: 4.1 ± 0.8" in text and "still trails AT-BSL with an interval excluding 0" in text
    assert "moving 1 of the 3 factors" in text and "the 2 factors left at TAET's levels" in text


def test_an_atbsl_run_with_a_clean_stage_trains_it_first(tmp_path):
    from lib.core.train import train_run
    from lib.profiles import run_config

    cfg = run_config("smoke", "atbsl", device="cpu", out_dir=str(tmp_path), train={"track_every": 0},
                     method_args={"clean_epochs": 1})
    res = train_run(cfg, verbose=False)
    assert [r["stage"] for r in res.history] == ["clean", "adversarial"]
    assert res.config.method_args["clean_epochs"] == 1


# A synthetic 2 × 2 × 2 grid for the diverged-cell tests: an attack effect of 4 + x (x = −1, 0, 1 by seed), 2 for
# HEL ×10, 1 for no clean stage and an HEL × stage-1 interaction of 6; the two cells at HEL ×10 with no clean
# stage are the ones that diverge.
SEED_OFFSETS = (-1.0, 0.0, 1.0)
DEAD_LEVELS = (("TAET's", 10.0, "none"), ("AT-BSL's", 10.0, "none"))


def _grid_value(levels, x):
    A, H, S = levels[0] == "AT-BSL's", levels[1] == 10.0, levels[2] == "none"
    return 60 + A * (4 + x) + 2 * H + S + 6 * H * S


def test_main_effects_with_diverged_cells_average_over_the_settings_that_trained():
    table = {lv: [_grid_value(lv, x) for x in SEED_OFFSETS]
             for lv in itertools.product(("TAET's", "AT-BSL's"), (1.0, 10.0), ("clean", "none"))}
    dead = set(DEAD_LEVELS)
    alive = {k: v for k, v in table.items() if k not in dead}
    assert factorial.settings_kept(dead) == {"attack": 3, "hel_scale": 2, "stage1": 2}
    eff = factorial.main_effects(alive, diverged=dead)
    half = 4.302653 / math.sqrt(3)  # the attack effect per seed: 3, 4, 5 (std 1) in each of its 3 settings
    assert (eff["attack"].mean, eff["attack"].std) == (pytest.approx(4.0), pytest.approx(1.0))
    assert eff["attack"].low == pytest.approx(4 - half, abs=1e-5)
    # with every cell the HEL effect would be 2 + 6/2 = 5; over the clean-stage settings alone it is 2
    assert eff["hel_scale"].mean == pytest.approx(2.0) and factorial.main_effects(table)["hel_scale"].mean == \
        pytest.approx(5.0)
    assert eff["stage1"].mean == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="lacks the cell"):  # a cell that is only missing is still refused
        factorial.main_effects({k: v for k, v in alive.items() if k != ("TAET's", 1.0, "clean")}, diverged=dead)
    # effects() by label: the main effects say over how many settings; the gap and AT-BSL's rows are kept
    labels = {c.levels: c.label for c in factorial.cells("fashion") if c.levels}
    vals = {labels[k]: v for k, v in alive.items()}
    vals.update({"AT-BSL": [70.0] * 3, "AT-BSL · TAET's attack": [70.0] * 3,
                 "AT-BSL · stage 1 8 clean": [69.0] * 3, "AT-BSL · TAET's attack · stage 1 8 clean": [69.0] * 3})
    out = factorial.effects(vals, "fashion", diverged=[labels[k] for k in dead])
    assert "main effect: HEL scale (×1 → ×10) (over the 2 of 4 settings of the other factors that trained)" in out
    assert out["gap: AT-BSL − TAET"].mean == pytest.approx(10.0)
    assert "over the 3 of 4" in factorial.reading(out)  # the reading names each effect with its qualifier


def test_the_remaining_gap_compares_atbsl_with_the_taet_cells_nearest_its_levels():
    cs = factorial.cells("fashion")
    by_levels = {c.levels: c.label for c in cs if c.levels}
    all_three = by_levels[("AT-BSL's", 10.0, "none")]
    # every TAET cell at 60 + 1 per AT-BSL-like factor (seed offsets 0, 1, −1); AT-BSL at 70, 72, 68
    vals = {c.label: [60.0 + factorial.atbsl_like(c) + x for x in (0.0, 1.0, -1.0)] for c in cs if c.levels}
    vals.update({"AT-BSL": [70.0, 72.0, 68.0], "AT-BSL · TAET's attack": [70.0] * 3,
                 "AT-BSL · stage 1 8 clean": [70.0] * 3, "AT-BSL · TAET's attack · stage 1 8 clean": [70.0] * 3})
    eff = factorial.effects(vals, "fashion")
    left = {k: s for k, s in eff.items() if k.startswith("remaining gap")}
    assert list(left) == [f"remaining gap (3 of 3 factors at AT-BSL's levels): AT-BSL − {all_three}"]
    s = next(iter(left.values()))
    assert (s.mean, s.std) == (pytest.approx(7.0), pytest.approx(1.0))  # 70 − 63, 72 − 64, 68 − 62
    text = factorial.reading(eff)
    assert "with all three factors at AT-BSL's levels" in text and "70% of the gap" in text  # gap: 10
    assert "It still trails" in text and "its loss (HEL" in text
    # the all-AT-BSL-like cell diverged: the three two-factor cells stand in for it, and the reading says so
    dead = [all_three]
    eff = factorial.effects({k: v for k, v in vals.items() if k != all_three}, "fashion", diverged=dead)
    left = [k for k in eff if k.startswith("remaining gap")]
    assert len(left) == 3 and all(k.startswith("remaining gap (2 of 3") for k in left)
    text = factorial.reading(eff)
    assert "the cell with all three diverged" in text and "the one factor left at TAET's level" in text
    # a remaining gap whose interval includes 0 is a tie, not a residue
    vals["AT-BSL"] = [64.0, 62.0, 63.5]
    text = factorial.reading(factorial.effects(vals, "fashion"))
    assert "Not every such difference excludes 0" in text and "It still trails" not in text


def test_a_partial_grid_gives_main_effects_once_the_taet_cells_have_settled():
    # the eight TAET cells as in the diverged test above (two diverged), AT-BSL's own run in, its two single changes
    # not yet: the main effects come from the TAET cells alone, and the reading reads them
    labels = {c.levels: c.label for c in factorial.cells("fashion") if c.levels}
    dead = [labels[lv] for lv in DEAD_LEVELS]
    vals = {"AT-BSL": {0: 75.0, 1: 76.0, 2: 77.0}}
    vals.update({lbl: {s: _grid_value(lv, x) for s, x in enumerate(SEED_OFFSETS)}
                 for lv, lbl in labels.items() if lv not in DEAD_LEVELS})
    eff = factorial.simple_effects(vals, "fashion", diverged=dead)
    att = eff["main effect: training attack (TAET's → AT-BSL's) (over the 3 of 4 settings of the other factors that "
              "trained)"]
    assert (att.mean, att.std, att.n) == (pytest.approx(4.0), pytest.approx(1.0), 3)
    assert eff["main effect: HEL scale (×1 → ×10) (over the 2 of 4 settings of the other factors that trained)"].mean \
        == pytest.approx(2.0)
    assert eff["simple effect: training attack (TAET's → AT-BSL's)"].mean == pytest.approx(4.0)  # still shown
    text = factorial.reading(eff)
    assert "Factors whose main effect moves robustness the way of the gap" in text  # +4 ± 1, [1.5, 6.5]
    assert "training attack (TAET's → AT-BSL's) (over the 3 of 4 settings of the other factors that trained) (+4.0" \
        in text
    assert "not main effects" not in text and "the cell with all three diverged" in text
    # a TAET cell short of a seed the others have: no main effects yet, and the reading says simple effects
    short = {**vals, labels[("AT-BSL's", 1.0, "none")]: {0: 65.0, 1: 66.0}}
    eff2 = factorial.simple_effects(short, "fashion", diverged=dead)
    assert not any(k.startswith("main effect") for k in eff2) and "not main effects" in factorial.reading(eff2)
    # without the diverged labels the grid is not settled either (two cells simply missing)
    assert not any(k.startswith("main effect") for k in factorial.simple_effects(vals, "fashion"))


def test_the_loss_cell_swaps_only_the_loss_at_taets_attack_and_clean_stage():
    cs = factorial.cells("fashion")
    loss = cs[11].label
    # TAET cells at 60 + 1 per AT-BSL-like factor (seed offsets 0, 1, −1); AT-BSL at 70, 72, 68 (gap 10, 11, 9)
    vals = {c.label: [60.0 + factorial.atbsl_like(c) + x for x in (0.0, 1.0, -1.0)] for c in cs if c.levels}
    vals.update({"AT-BSL": [70.0, 72.0, 68.0], "AT-BSL · TAET's attack": [70.0] * 3,
                 "AT-BSL · stage 1 8 clean": [70.0] * 3, loss: [68.0, 70.0, 66.0]})
    eff = factorial.effects(vals, "fashion")
    rows = {k: s for k, s in eff.items() if k.startswith("loss effect")}
    assert list(rows) == [f"loss effect (HEL ×1 → balanced-softmax CE): {loss} − {cs[0].label}",
                          f"loss effect (HEL ×10 → balanced-softmax CE): {loss} − {cs[2].label}"]
    one, ten = rows.values()
    assert (one.mean, one.std, one.n) == (pytest.approx(8.0), pytest.approx(1.0), 3)  # 8, 9, 7
    assert one.low == pytest.approx(8 - 4.302653 / math.sqrt(3), abs=1e-5)
    assert (ten.mean, ten.std) == (pytest.approx(7.0), pytest.approx(1.0))  # against HEL ×10 (61, 62, 60)
    text = factorial.reading(eff)
    assert "The loss alone (AT-BSL trained with TAET's attack and clean stage" in text
    assert "from HEL ×1: 8.0 ± 1.0 [5.5, 10.5], 80% of the gap" in text and "from HEL ×10: 7.0 ± 1.0" in text
    assert "Swapping HEL ×1 and HEL ×10 for balanced-softmax CE moves robustness the way of the gap" in text
    # what the swap leaves: AT-BSL − loss cell (attack and clean stage together), 2 at every seed
    left = eff[f"gap left by the loss cell: AT-BSL − {loss}"]
    assert (left.mean, left.std, left.n) == (pytest.approx(2.0), pytest.approx(0.0), 3)
    assert ("What the swap leaves, AT-BSL − the loss cell (AT-BSL's attack and no clean stage against TAET's, "
            "together): 2.0 ± 0.0 [2.0, 2.0], 20% of the gap, interval excluding 0: the attack and clean stage "
            "together explain that share.") in text
    tie = dict(vals, **{loss: [71.0, 70.0, 69.0]})  # AT-BSL − loss cell: -1, 2, -1
    assert "together): 0.0 ± 1.7 [-4.3, 4.3], 0% of the gap; its interval includes 0: a tie" in factorial.reading(
        factorial.effects(tie, "fashion"))
    # a loss cell level with TAET's setting: a tie, said as one
    vals[loss] = [60.5, 60.0, 59.5]
    text = factorial.reading(factorial.effects(vals, "fashion"))
    assert "No interval excludes 0: the loss is not shown to explain the gap" in text and "Swapping" not in text
    # a partial grid: the loss rows come from the seeds each pair shares, before the rest has run
    part = {"AT-BSL": {0: 70.0, 1: 72.0}, cs[0].label: {0: 60.0, 1: 61.0}, loss: {0: 68.0, 1: 70.0, 2: 66.0}}
    simple = factorial.simple_effects(part, "fashion")
    row = simple[f"loss effect (HEL ×1 → balanced-softmax CE): {loss} − {cs[0].label}"]
    assert (row.mean, row.n) == (pytest.approx(8.5), 2)
    assert not any(k.startswith("loss effect (HEL ×10") for k in simple)  # its TAET cell has not run
    text = factorial.reading(simple)  # read even before any factor is: gap 10, 11 (10.5), both over seeds 0 and 1
    assert "No factor is measured yet" in text and "from HEL ×1: 8.5 ± 0.7 [2.1, 14.9], 81% of the gap." in text
    assert "together): 2.0 ± 0.0 [2.0, 2.0], 19% of the gap, interval excluding 0" in text  # 70 − 68, 72 − 70
    # the gap over 3 seeds (10, 11, 10), the loss row over the 2 its cells share: its n is said
    part = {"AT-BSL": {0: 70.0, 1: 72.0, 2: 69.0}, cs[0].label: {0: 60.0, 1: 61.0, 2: 59.0}, loss: {0: 68.0, 1: 70.0}}
    assert "from HEL ×1: 8.5 ± 0.7 [2.1, 14.9], 82% of the gap, n = 2." in factorial.reading(
        factorial.simple_effects(part, "fashion"))
    # the loss cell diverged: no loss rows, and effects() still gives the rest
    assert not any(k.startswith(("loss effect", "gap left")) for k in factorial.effects(
        {k: v for k, v in vals.items() if k != loss}, "fashion", diverged=[loss]))
