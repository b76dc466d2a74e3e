"""Every figure, drawn from saved results only (history rows, eval documents, measured costs).

Figures are built with matplotlib's object API (no global pyplot state) and saved as PNG and PDF with
atomic writes. Tail classes (the rarest in the train set) are drawn thick and named with their train count.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lib.orchestrate.tiny import TINY_MARKER
from lib.study.tables import COLUMN_NAMES, rarest_classes

TAIL_K = 3


def save_figure(fig: Figure, name: str, out_dir: str = "outputs") -> Path:
    """Write outputs/figures/<name>.png and .pdf atomically; return the PNG path. In the folder of a `--tiny`
    run (it holds TINY_MARKER) the figure is stamped as such."""
    if (Path(out_dir) / TINY_MARKER).exists():
        fig.text(0.5, 1.0, "TINY RUN: a code-path check, not a result", ha="center", va="bottom", color="red",
                 fontsize=11, fontweight="bold")
    folder = Path(out_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "pdf"):
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".{ext}", dir=folder)
        os.close(fd)
        try:
            fig.savefig(tmp, format=ext, dpi=150 if ext == "png" else None, bbox_inches="tight")
            os.replace(tmp, folder / f"{name}.{ext}")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return folder / f"{name}.png"


def _class_label(c: int, counts: list[int], names: list[str] | None = None) -> str:
    name = names[c] if names else f"class {c}"
    return f"{name} (n={counts[c]})"


def per_class_curves(histories: list[list[dict]], train_counts: list[int], *, title: str,
                     class_names: list[str] | None = None) -> Figure:
    """Paper Fig. 1 and 2: per-class clean accuracy (left) and PGD robustness (right) over epochs. `histories`
    holds one run's rows per seed: the line is the mean over seeds and, with several, the tail classes carry a
    band of ± one std."""
    runs_rows = [[r for r in h if "clean_c0" in r and r["clean_c0"] not in ("", None)] for h in histories]
    if not all(runs_rows):
        raise ValueError("the history has no per-class tracking; train with --track-every 1")
    n = min(len(h) for h in runs_rows)
    rows = runs_rows[0][:n]
    epochs = [int(r["epoch"]) for r in rows]
    C = len(train_counts)
    tail = set(rarest_classes(train_counts, TAIL_K))
    fig = Figure(figsize=(12, 4.6))
    axes = fig.subplots(1, 2, sharey=True)
    cmap = _colors(C)
    for ax, key, label in ((axes[0], "clean", "clean accuracy"), (axes[1], "pgd", "PGD robustness")):
        for c in range(C):
            ys = np.array([[100 * float(r[f"{key}_c{c}"]) for r in h[:n]] for h in runs_rows])
            is_tail = c in tail
            mean = ys.mean(axis=0)
            ax.plot(epochs, mean, color=cmap[c], lw=2.6 if is_tail else 1.0, ls="-" if is_tail else "--",
                    alpha=1.0 if is_tail else 0.75,
                    label=_class_label(c, train_counts, class_names) + (" [tail]" if is_tail else ""))
            if len(runs_rows) > 1 and is_tail:  # bands for the tail classes only: ten bands hide the lines
                sd = ys.std(axis=0, ddof=1)
                ax.fill_between(epochs, mean - sd, mean + sd, color=cmap[c], alpha=0.15, lw=0)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"per-class {label} (%)" + (", seed mean" if len(runs_rows) > 1 else ""))
        ax.set_title(label)
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, title="class (train count)")
    fig.suptitle(title)
    fig.subplots_adjust(top=0.8 if "\n" in title else 0.88)  # the suptitle clears the panels' titles
    return fig


def honest_ylim(ax, lows: list[float], highs: list[float], min_span: float = 20.0) -> None:
    """Y limits (in %) spanning at least `min_span` points within [0, 100], so a 2-point gap between two lines
    does not fill the plot."""
    lo, hi = float(np.nanmin(lows)), float(np.nanmax(highs))
    pad = max(0.0, min_span - (hi - lo)) / 2
    lo, hi = lo - pad - 1, hi + pad + 1
    if lo < 0:
        lo, hi = 0.0, min(100.0, hi - lo)
    if hi > 100:
        lo, hi = max(0.0, lo - (hi - 100)), 100.0
    ax.set_ylim(lo, hi)


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def metric_vs_ir(results: dict[str, dict[float, dict]], attacks=("clean", "pgd20"), *, title: str) -> Figure:
    """Table 5 as a figure: balanced accuracy / robustness against the imbalance ratio, one line per method.
    `results` is {method: {ir: {seed: eval doc}}}: the line is the mean and the bars ± one std over seeds."""
    fig = Figure(figsize=(5.5 * len(attacks), 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(attacks)))
    all_irs = sorted({ir for by in results.values() for ir in by})
    for ax, a in zip(axes, attacks):
        lows, highs = [], []
        for m, by_ir in results.items():
            irs = sorted(by_ir)
            per_seed = [[100 * d["results"][a]["balanced"] for _, d in sorted(by_ir[ir].items())] for ir in irs]
            ys = np.array([np.mean(v) for v in per_seed])
            err = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in per_seed])
            ax.errorbar(irs, ys, yerr=err if err.any() else None, marker="o", capsize=3, label=m)
            lows += list(ys - err)
            highs += list(ys + err)
        ax.set_xscale("log")
        ax.set_xticks(all_irs)
        ax.set_xticklabels([f"{ir:g}" for ir in all_irs])
        ax.minorticks_off()  # no "2 × 10^1" labels between the measured ratios
        ax.set_xlabel("imbalance ratio (n_max / n_min)")
        ax.set_ylabel(("balanced accuracy" if a == "clean" else f"balanced robustness, {COLUMN_NAMES.get(a, a)}")
                      + " (%)")
        honest_ylim(ax, lows, highs)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return fig


def grouped_bars(labels: list[str], series: dict[str, list[float]], *, ylabel: str, title: str,
                 xlabel: str | None = None, errors: dict[str, list[float]] | None = None) -> Figure:
    """Bars per label, one colour per series (Fig. 6b components; Fig. 5 per-class results); `errors` (same
    shape as `series`, e.g. the std over seeds) draws error bars. The axis starts at 0."""
    fig = Figure(figsize=(max(6.0, 1.1 * len(labels) + 2), 4.4))
    ax = fig.subplots()
    k = len(series)
    width = 0.8 / max(k, 1)
    x = np.arange(len(labels))
    for i, (name, vals) in enumerate(series.items()):
        err = (errors or {}).get(name)
        err = err if err is not None and any(e > 0 for e in err) else None
        bars = ax.bar(x + (i - (k - 1) / 2) * width, vals, width, label=name, yerr=err, capsize=2 if err else 0)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1, label_type="center" if err else "edge")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=20 if max(len(s) for s in labels) > 8 else 0, ha="right")
    ax.set_ylabel(ylabel)
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_title(title)
    top = np.nanmax([v + (e if errors and name in errors else 0.0) for name, vals in series.items()
                     for v, e in zip(vals, (errors or {}).get(name, [0.0] * len(vals)))] + [1.0])
    ax.set_ylim(0, 1.2 * top)  # headroom: the legend sits above the bars, never over a value label
    ax.legend(fontsize=8, ncol=k, loc="upper center")
    ax.grid(axis="y", alpha=0.3)
    return fig


def lines(xs: list[float], series: dict[str, list[float]], *, xlabel: str, ylabel: str, title: str,
          errors: dict[str, list[float]] | None = None) -> Figure:
    """Line plot (Fig. 7: results against the number of clean-CE epochs); `errors` (e.g. the std over seeds)
    draws a band around each line. The y axis spans at least 20 points (`honest_ylim`)."""
    fig = Figure(figsize=(6, 4.2))
    ax = fig.subplots()
    lows, highs = [], []
    for name, ys in series.items():
        ys = np.asarray(ys, dtype=float)
        err = np.asarray((errors or {}).get(name, np.zeros_like(ys)), dtype=float)
        line, = ax.plot(xs, ys, marker="o", label=name)
        if err.any():
            ax.fill_between(xs, ys - err, ys + err, color=line.get_color(), alpha=0.2, lw=0)
        lows += list(ys - err)
        highs += list(ys + err)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    honest_ylim(ax, lows, highs)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def tsne_panels(points: dict[str, tuple[np.ndarray, np.ndarray]], train_counts: list[int], *, title: str,
                class_names: list[str] | None = None) -> Figure:
    """Paper Fig. 3: one t-SNE panel per method; points coloured by class, tail classes marked."""
    n = len(points)
    cols = min(n, 2) if n <= 4 else 3
    nrows = math.ceil(n / cols)
    fig = Figure(figsize=(5.2 * cols, 4.6 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, cols)).ravel()
    C = len(train_counts)
    colors = _colors(C)
    tail = set(rarest_classes(train_counts, TAIL_K))
    for ax, (method, (xy, y)) in zip(axes, points.items()):
        for c in sorted(set(int(v) for v in y)):
            sel = y == c
            ax.scatter(xy[sel, 0], xy[sel, 1], s=14 if c in tail else 6, color=colors[c],
                       marker="^" if c in tail else "o", alpha=0.9 if c in tail else 0.5,
                       label=_class_label(c, train_counts, class_names) + (" [tail]" if c in tail else ""))
        ax.set_title(method)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(points):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, markerscale=2,
               title="class (train count)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def efficiency_bars(costs: dict[str, dict[str, float]], *, title: str) -> Figure:
    """Paper Fig. 6a: seconds per epoch and peak memory of each method."""
    methods = list(costs)
    fig = Figure(figsize=(max(8.0, 1.0 * len(methods) + 4), 4.2))
    ax1, ax2 = fig.subplots(1, 2)
    x = np.arange(len(methods))
    secs = [costs[m]["seconds_per_epoch"] for m in methods]
    mem = [costs[m]["peak_memory_mb"] for m in methods]
    colors = ["tab:red" if m == "taet" else "tab:blue" for m in methods]
    for ax, vals, label, fmt in ((ax1, secs, "time per epoch (s)", "%.2f"), (ax2, mem, "peak memory (MiB)", "%.0f")):
        bars = ax.bar(x, vals, color=colors)
        ax.bar_label(bars, fmt=fmt, fontsize=7, padding=1)
        ax.set_xticks(x)
        ax.set_xticklabels(methods, rotation=30, ha="right")
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
