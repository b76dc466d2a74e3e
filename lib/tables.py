"""Comparison tables built from saved `eval.json` files only (never from live training)."""

from __future__ import annotations

from typing import Any

COLUMN_NAMES = {"clean": "Clean", "fgsm": "FGSM", "pgd20": "PGD-20", "pgd100": "PGD-100", "cw_l2": "CW-L2",
                "cw_linf": "CW-linf", "autoattack": "AA"}


def rarest_classes(train_counts: list[int], k: int = 3) -> list[int]:
    """The k classes with the fewest training images (ties: the higher class index, i.e. later in the tail)."""
    order = sorted(range(len(train_counts)), key=lambda c: (train_counts[c], -c))
    return order[:k]


def comparison_rows(docs: dict[str, dict[str, Any]], attacks: list[str], tail_attack: str = "pgd20",
                    k_tail: int = 3) -> tuple[list[str], list[list[str]]]:
    """Header and rows: balanced accuracy (clean) / balanced robustness (attacks), in %, then the per-class
    robustness of the k rarest classes under `tail_attack`."""
    first = next(iter(docs.values()))
    tail = rarest_classes(first["protocol"]["train_counts"], k_tail)
    header = ["method"] + [f"{COLUMN_NAMES.get(a, a)} bal" for a in attacks]
    header += [f"{COLUMN_NAMES.get(tail_attack, tail_attack)} c{c} (n={first['protocol']['train_counts'][c]})"
               for c in tail]
    rows = []
    for label, doc in docs.items():
        r = [label]
        for a in attacks:
            res = doc["results"].get(a)
            r.append("-" if res is None else f"{100 * res['balanced']:.1f}")
        res = doc["results"].get(tail_attack)
        for c in tail:
            v = None if res is None else res["per_class"][c]
            r.append("-" if v is None else f"{100 * v:.1f}")
        rows.append(r)
    return header, rows


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table, aligned so it also reads well in a terminal."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])
