"""Comparison tables built from saved `eval.json` files only (never from live training)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COLUMN_NAMES = {"clean": "Clean", "fgsm": "FGSM", "pgd20": "PGD-20", "pgd100": "PGD-100", "cw_l2": "CW-L2",
                "cw_linf": "CW-linf", "autoattack": "AA"}


def rarest_classes(train_counts: list[int], k: int = 3) -> list[int]:
    """The k classes with the fewest training images (ties: the higher class index, i.e. later in the tail)."""
    order = sorted(range(len(train_counts)), key=lambda c: (train_counts[c], -c))
    return order[:k]


def percent(v: float | None, digits: int = 2) -> str:
    """A fraction as a percentage cell; "-" where there is no value."""
    return "-" if v is None else f"{100 * v:.{digits}f}"


def metric_cells(doc: dict[str, Any], attacks: list[str], metric: str = "balanced", digits: int = 2) -> list[str]:
    """One cell per attack: `metric` of the eval document's result ("-" where the attack was not run)."""
    return [percent(None if doc["results"].get(a) is None else doc["results"][a][metric], digits) for a in attacks]


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table, aligned so it also reads well in a terminal."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def summary_table(results: list[dict[str, Any]]) -> str:
    """Markdown: one row per grid point, balanced accuracy / robustness (%) per attack, and the run folder."""
    if not results:
        return "(empty sweep)"
    attacks = list(results[0]["results"])
    axes = list(results[0]["point"])
    header = axes + [COLUMN_NAMES.get(a, a) for a in attacks] + ["run"]
    rows = []
    for r in results:
        row = [json.dumps(r["point"][a]) if isinstance(r["point"][a], dict) else str(r["point"][a]) for a in axes]
        row += metric_cells(r, attacks)
        rows.append(row + [Path(r["run_dir"]).name])
    return format_table(header, rows)
