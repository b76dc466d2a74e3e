"""Tables from eval documents: Table 1 (balanced), Table 2 (rarest classes), wall time, the demo's comparison."""

from lib.study.experiments import wall_table
from lib.study.seeded import robustness_table, tail_table
from lib.study.tables import format_table, rarest_classes


def doc(clean, pgd, per_class_pgd, counts=(50, 20, 10, 10)):
    return {"protocol": {"train_counts": list(counts)},
            "results": {"clean": {"balanced": clean, "per_class": [clean] * len(counts)},
                        "pgd20": {"balanced": pgd, "per_class": per_class_pgd}}}


DOCS = {"taet": doc(0.9, 0.5, [0.6, 0.5, 0.45, 0.35]), "at": doc(0.8, 0.4, [0.7, 0.4, 0.3, 0.2])}
ONE_SEED = {label: {0: d} for label, d in DOCS.items()}  # {label: {seed: eval document}}, K = 1


def test_rarest_classes_break_ties_towards_the_later_class():
    assert rarest_classes([50, 20, 10, 10], 3) == [3, 2, 1]


def test_table1_rows_are_balanced_percentages_with_a_dash_for_missing_attacks():
    header, rows = robustness_table(ONE_SEED, attacks=["clean", "pgd20", "fgsm"])
    assert header == ["method", "Clean", "PGD-20", "FGSM"]
    assert rows == [["taet", "90.00", "50.00", "-"], ["at", "80.00", "40.00", "-"]]


def test_table2_lists_the_rarest_classes_with_their_counts():
    header, rows = tail_table(ONE_SEED, k=2, attacks=("pgd20",))
    assert header == ["method", "PGD-20 c3 (train n=10)", "PGD-20 c2 (train n=10)"]
    assert rows == [["taet", "35.0", "45.0"], ["at", "20.0", "30.0"]]


def test_a_table_is_aligned_markdown():
    header, rows = robustness_table(ONE_SEED, attacks=["clean", "pgd20"], digits=1)
    assert rows[1] == ["at", "80.0", "40.0"]
    text = format_table(header, rows).splitlines()
    assert len(text) == 4 and len({len(line) for line in text}) == 1  # aligned columns
    assert text[1].startswith("|-") and text[0].startswith("| method")


def test_wall_table_sums_epoch_and_attack_seconds_and_keeps_short_runs_nonzero():
    slow = {"history": [{"seconds": 300.0}, {"seconds": 379.2}],
            "results": {"clean": {"seconds": 4.8}, "pgd20": {"seconds": 50.0}}}
    fast = {"history": [{"seconds": 0.02}, {"seconds": 0.021}], "results": {"clean": {"seconds": 0.003}}}
    header, rows = wall_table({"adt": {0: slow}, "ce": {0: fast}})
    assert header == ["method", "epochs", "train s", "eval s", "total s"]
    assert rows == [["adt", "2", "679.2", "54.8", "734.0"], ["ce", "2", "0.041", "0.003", "0.044"]]
    # over two seeds: training 679.2 and 699.2 s -> 689.2 ± 14.1, half width 12.706 · 14.14 / √2 = 127.1
    slower = {**slow, "history": [{"seconds": 310.0}, {"seconds": 389.2}]}
    _, rows = wall_table({"adt": {0: slow, 1: slower}, "ce": {0: fast, 1: fast}})
    assert rows[0] == ["adt", "2", "689.2 ± 14.1 [562.1, 816.3]", "54.8 ± 0.0 [54.8, 54.8]",
                       "744.0 ± 14.1 [616.9, 871.1]"]
    assert rows[1][:3] == ["ce", "2", "0.041 ± 0.000 [0.041, 0.041]"]
