"""What the notebooks call: profile-based run configs, train-then-evaluate through the run cache, and tables.

Notebooks hold no logic of their own; everything they compute goes through here, so tests reach it.
Runs are shared through the run cache: the AT-BSL run notebook 01 trains is the one 02 and 03 evaluate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import runs
from .config import ConfigError, RunConfig, notebook_settings, override
from .data import DATASETS, DataError
from .evaluate import evaluate_run
from .methods import METHODS
from .models import create_model
from .profiles import profile_config, table_attacks
from .tables import COLUMN_NAMES, format_table, metric_cells, rarest_classes, tail_cells
from .train import load_run, train_run, validate

# Methods shown in the comparison tables: every registered one except plain standard training first.
REFERENCE_METHODS = ("ce",)


def table_methods(include_reference: bool = False) -> list[str]:
    """Registered methods in a stable order: TAET last (the paper's layout), AT-BSL just before it."""
    names = [m for m in sorted(METHODS) if include_reference or m not in REFERENCE_METHODS]
    tail = [m for m in ("atbsl", "taet") if m in names]
    return [m for m in names if m not in tail] + tail


def run_config(profile: str, method: str, *, device: str = "auto", out_dir: str = "outputs",
               data: dict | None = None, model: dict | None = None, train: dict | None = None,
               method_args: dict | None = None, eval: dict | None = None) -> RunConfig:
    """The profile's validated config for `method`, with section overrides (dicts of field -> value) applied
    through `config.override` (so `{"imbalance_ratio": 10}` and `10.0` are one run)."""
    values: dict[str, Any] = {"out_dir": str(Path(out_dir) / "runs"), "train.device": device, "train.progress": False}
    for section, over in (("data", data), ("model", model), ("train", train), ("eval", eval),
                          ("method_args", method_args)):
        values.update({f"{section}.{k}": v for k, v in (over or {}).items()})
    return validate(override(profile_config(profile, method), values))


def train_eval(cfg: RunConfig, attacks=None, *, verbose: bool = False) -> dict[str, Any]:
    """Train (or reuse) and evaluate (or reuse) one run; returns its eval document plus `run_dir` and
    `history`."""
    res = train_run(cfg, verbose=verbose)
    doc = evaluate_run(res.run_dir, attacks, device=cfg.train.device, verbose=verbose)
    return {**doc, "run_dir": str(res.run_dir), "history": res.history}


def attack_columns(doc: dict[str, Any]) -> list[str]:
    order = list(COLUMN_NAMES)
    return sorted(doc["results"], key=lambda a: order.index(a) if a in order else len(order))


def robustness_table(docs: dict[str, dict[str, Any]], attacks: list[str] | None = None, metric: str = "balanced"
                     ) -> tuple[list[str], list[list[str]]]:
    """Paper Table 1 shape: one row per label, balanced accuracy (Clean) / balanced robustness (attacks), %."""
    if not docs:
        raise ConfigError("no results to tabulate")
    attacks = attacks or attack_columns(next(iter(docs.values())))
    header = ["method"] + [COLUMN_NAMES.get(a, a) for a in attacks]
    return header, [[label] + metric_cells(doc, attacks, metric) for label, doc in docs.items()]


def tail_table(docs: dict[str, dict[str, Any]], k: int = 3, attacks=("clean", "pgd20")
               ) -> tuple[list[str], list[list[str]]]:
    """Paper Table 2 shape: per-class clean accuracy and PGD-20 robustness of the k rarest classes, %."""
    first = next(iter(docs.values()))
    counts = first["protocol"]["train_counts"]
    tail = rarest_classes(counts, k)
    header = ["method"]
    for a in attacks:
        header += [f"{COLUMN_NAMES.get(a, a)} c{c} (n={counts[c]})" for c in tail]
    rows = [[label] + [cell for a in attacks for cell in tail_cells(doc, a, tail)] for label, doc in docs.items()]
    return header, rows


def save_table(name: str, header: list[str], rows: list[list[str]], *, title: str, out_dir: str = "outputs"
               ) -> str:
    """Write outputs/tables/<name>.md and .csv; return the markdown (title + table)."""
    tables = Path(out_dir) / "tables"
    md = f"**{title}**\n\n" + format_table(header, rows) + "\n"
    runs.atomic_write_text(tables / f"{name}.md", md)
    runs.atomic_write_csv(tables / f"{name}.csv", [dict(zip(header, r)) for r in rows])
    return md


def protocol_line(doc: dict[str, Any]) -> str:
    p = doc["protocol"]
    return (f"{p['dataset']}-LT IR {p['imbalance_ratio']:g} ({p['lt_profile']}), train counts {p['train_counts']}; "
            f"{p['test_protocol']} test set of {p['n_test']}")


def tsne_points(run_dir, classes: list[int], per_class: int, *, device: str = "auto", seed: int = 0):
    """2-D t-SNE (scikit-learn) of penultimate features of up to `per_class` test images of each class in
    `classes`; returns (points (n, 2), labels (n,))."""
    from sklearn.manifold import TSNE  # scikit-learn loads only where t-SNE is asked for

    cfg, model, data, method, _ = load_run(run_dir, device=device)
    y = data.test_y
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in classes:
        idx = (y == c).nonzero().flatten().cpu()
        picks.append(idx[torch.randperm(idx.numel(), generator=g)[:per_class]])
    sel = torch.cat(picks).to(y.device)
    with torch.no_grad():
        feats = model.features(data.test_x[sel].float() / 255.0).flatten(1).cpu().numpy()
    labels = y[sel].cpu().numpy()
    perplexity = float(max(2, min(30, len(labels) // 4)))
    xy = TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity).fit_transform(
        feats.astype(np.float64))
    return xy, labels


def wall_table(docs: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Wall time of each run as recorded in its files: training (sum of history's per-epoch seconds) and
    evaluation (sum of the attacks' seconds in eval.json)."""
    header = ["method", "epochs", "train s", "eval s", "total s"]
    rows = []
    for label, doc in docs.items():
        hist = doc.get("history") or []
        train_s = runs.train_seconds(hist)
        eval_s = sum(float(r.get("seconds", 0.0)) for r in doc["results"].values())
        rows.append([label, str(len(hist))] + [_seconds(x) for x in (train_s, eval_s, train_s + eval_s)])
    return header, rows


def _seconds(x: float) -> str:
    """One decimal, or three below a second (a smoke run's few batches must not read as 0.0 s)."""
    return f"{x:.1f}" if x >= 1 else f"{x:.3f}"


def series(docs: dict[str, dict[str, Any]], attacks=("clean", "pgd20"), metric: str = "balanced"
           ) -> dict[str, list[float]]:
    """{column name: [value in % for each doc]} for bar and line plots."""
    return {COLUMN_NAMES.get(a, a): [100 * d["results"][a][metric] for d in docs.values()] for a in attacks}


def per_class_series(docs: dict[str, dict[str, Any]], attack: str = "pgd20") -> tuple[list[str], dict[str, list]]:
    """(class labels with train counts, {method: per-class value in %}) for per-class bar charts."""
    first = next(iter(docs.values()))
    counts = first["protocol"]["train_counts"]
    tail = set(rarest_classes(counts, 3))
    names = [f"c{c} (n={n})" + (" *" if c in tail else "") for c, n in enumerate(counts)]
    return names, {m: [100 * (v or 0.0) for v in d["results"][attack]["per_class"]] for m, d in docs.items()}


def per_class_dynamics(history: list[dict[str, Any]], train_counts: list[int]) -> tuple[list[str], list[list[str]]]:
    """Per class: train count, final PGD robustness, and mean / std over the second half of training."""
    rows_h = [r for r in history if r.get("pgd_c0") not in (None, "")]
    if not rows_h:
        raise ConfigError("the history has no per-class tracking; train with --track-every 1")
    half = rows_h[len(rows_h) // 2:]
    tail = set(rarest_classes(train_counts, 3))
    header = ["class", "train n", "final PGD", "mean (2nd half)", "std (2nd half)", "final clean"]
    rows = []
    for c, n in enumerate(train_counts):
        v = np.array([100 * float(r[f"pgd_c{c}"]) for r in half])
        rows.append([f"c{c}" + (" (tail)" if c in tail else ""), str(n), f"{100 * float(rows_h[-1][f'pgd_c{c}']):.1f}",
                     f"{v.mean():.1f}", f"{v.std():.1f}", f"{100 * float(rows_h[-1][f'clean_c{c}']):.1f}"])
    return header, rows


def dynamics_stats(history: list[dict[str, Any]], train_counts: list[int]) -> tuple[float, float, float, float]:
    """(tail final PGD %, tail swing, head final PGD %, head swing) of one tracked run: the three rarest classes
    against the others, swing = per-class std over the second half of training, averaged."""
    rows_h = [r for r in history if r.get("pgd_c0") not in (None, "")]
    half = rows_h[len(rows_h) // 2:]
    tail = rarest_classes(train_counts, 3)
    head = [c for c in range(len(train_counts)) if c not in tail]

    def stat(cs):
        v = np.array([[100 * float(r[f"pgd_c{c}"]) for r in half] for c in cs])
        return v[:, -1].mean(), v.std(axis=1).mean()

    (tf, ts), (hf, hs) = stat(tail), stat(head)
    return float(tf), float(ts), float(hf), float(hs)


def dynamics_reading(history: list[dict[str, Any]], train_counts: list[int]) -> str:
    tf, ts, hf, hs = dynamics_stats(history, train_counts)
    return (f"On this run the three rarest classes end at **{tf:.1f}%** mean PGD robustness against **{hf:.1f}%** "
            f"for the others, and swing by **{ts:.1f}** points (std over the second half of training) against "
            f"**{hs:.1f}** for the others.")


def ranking_reading(docs: dict[str, dict[str, Any]], attack: str = "pgd20") -> str:
    """One run per label: the values without a ranking (one seed has no interval; see
    `lib.seeded.ranking_reading_seeds` for the reading over seeds)."""
    from .seeded import ranking_reading_seeds

    return ranking_reading_seeds({m: {0: d} for m, d in docs.items()}, attack)


def sweep_table(sweep: dict[str, dict[Any, dict[str, Any]]], key: str = "IR") -> tuple[list[str], list[list[str]]]:
    """Rows `method @ key=value`, columns the attacks, balanced (%)."""
    docs = {f"{m} @ {key} {v:g}": d for m, by in sweep.items() for v, d in sorted(by.items())}
    return robustness_table(docs)


def sweep_reading(sweep: dict[str, dict[Any, dict[str, Any]]], attack: str = "pgd20") -> str:
    """One run per point: TAET − AT-BSL at each IR, labelled as one seed (no interval, not a ranking)."""
    from .seeded import sweep_reading_seeds

    return sweep_reading_seeds({m: {v: {0: d} for v, d in by.items()} for m, by in sweep.items()}, attack)


def separation_table(points: dict[str, tuple[Any, Any]]) -> tuple[list[str], list[list[str]]]:
    """Silhouette score (scikit-learn) of the classes in each t-SNE embedding; NaN where it is undefined (fewer
    than 2 classes, or no class with 2 points: scikit-learn needs 2 <= classes <= points - 1)."""
    from sklearn.metrics import silhouette_score

    rows = []
    for m, (xy, y) in points.items():
        k = len(set(y.tolist()))
        score = silhouette_score(xy, y) if 2 <= k <= len(y) - 1 else float("nan")
        rows.append([m, f"{score:.3f}"])
    return ["method", "silhouette"], rows


def dataset_or_standin(dataset: str, standin: str | list[str] | None, data_dir: str = "data",
                       download: bool = False) -> tuple[str, str]:
    """(dataset to use, a markdown note). When `dataset`'s files are missing (and cannot be downloaded, when
    `download`), the first of the stand-ins `standin` that loads, with a note saying so."""
    try:
        DATASETS[dataset](data_dir, download)
        return dataset, f"Data set: **{dataset}** from `{data_dir}/`."
    except DataError as e:
        standins = [standin] if isinstance(standin, str) else list(standin or [])
        if not standins:
            raise
        skipped = []
        for s in standins[:-1]:
            try:
                DATASETS[s](data_dir, download)
                break
            except DataError as err:
                skipped.append(f"{s} ({err})")
        else:
            s = standins[-1]
            DATASETS[s](data_dir, download)  # the last one's DataError, if any, is the notebook's
        also = f" Stand-in(s) not available either: {'; '.join(skipped)}." if skipped else ""
        return s, (f"**{dataset} is not available here** ({e}). This profile substitutes **{s}** "
                   f"so the notebook runs end to end; its numbers are *not* {dataset} results.{also} "
                   f"Put the files in `{data_dir}/` or run with `--download` online to use {dataset}.")


# DermaMNIST's train set runs from 4,693 melanocytic nevi down to 80 dermatofibromas (MedMNIST v2): ratio 58.7.
DERMA_LARGEST, DERMA_SMALLEST = 4693, 80
DERMA_TRAIN_RATIO = DERMA_LARGEST / DERMA_SMALLEST


def derma_data(d: dict[str, Any], data_dir: str = "data") -> tuple[dict[str, Any], str, str]:
    """Notebook 06's data section, its label for titles, and a markdown note, from a profile's "derma" settings.

    DermaMNIST when `dermamnist.npz` is in `data_dir` (its own naturally long-tailed splits). Otherwise the
    profile's stand-in, with its train set long-tailed at DermaMNIST's own ratio, so that Table 3 measures a
    steeper tail than Table 1 instead of repeating its runs.
    """
    data_dir, download = d.get("data_dir", data_dir), bool(d.get("download", False))  # lib.tiny.prepare_profile
    dataset, note = dataset_or_standin(d["dataset"], d.get("standin"), data_dir, download)
    data: dict[str, Any] = {"dataset": dataset, "data_dir": data_dir}
    if download:
        data["download"] = True
    data.update({k: d[k] for k in ("max_train", "max_test") if d.get(k)})
    if dataset == d["dataset"]:
        return data, "DermaMNIST", note
    data["imbalance_ratio"] = DERMA_TRAIN_RATIO
    note += (f" The stand-in's train set is long-tailed at DermaMNIST's own ratio, {DERMA_TRAIN_RATIO:.1f} "
             f"({DERMA_LARGEST:,} to {DERMA_SMALLEST} images); its test set follows the profile's test protocol.")
    return data, f"stand-in {dataset} at IR {DERMA_TRAIN_RATIO:.1f} (DermaMNIST unavailable)", note


def config_with_weights(profile: str, method: str, **kw) -> tuple[RunConfig, str]:
    """run_config, falling back to random initialisation (with a note) when pretrained weights cannot be
    fetched (offline)."""
    model = dict(kw.pop("model", {}) or {})
    if model.get("pretrained"):
        try:
            create_model(model["arch"], 2, pretrained=True)
        except ConfigError as e:
            model["pretrained"] = False
            return (run_config(profile, method, model=model, **kw),
                    f"**Pretrained weights unavailable** ({e}); training {model['arch']} from random initialisation.")
    return run_config(profile, method, model=model, **kw), ""


def cost_table(costs: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """One row per method: seconds per step in each stage it has (e.g. TAET: clean, adversarial; GAIRAT:
    adversarial, reweighted), the schedule-mean seconds per epoch and the peak memory."""
    stages: list[str] = []
    for c in costs.values():
        stages += [s for s in c["seconds_per_step"] if s not in stages]
    header = (["method"] + [f"s/step {s}" for s in stages]
              + ["s/epoch (schedule mean)", "peak memory (MiB)", "memory measured as"])
    rows = []
    for m, c in costs.items():
        st = c["seconds_per_step"]
        rows.append([m] + [f"{st[s]:.4f}" if s in st else "-" for s in stages]
                    + [f"{c['seconds_per_epoch']:.3f}", f"{c['peak_memory_mb']:.0f}", c["memory_kind"]])
    return header, rows


def cost_reading(costs: dict[str, dict[str, Any]]) -> str:
    if not {"taet", "atbsl"} <= set(costs):
        return ""
    t, a = costs["taet"]["seconds_per_epoch"], costs["atbsl"]["seconds_per_epoch"]
    return (f"Averaged over the schedule, a TAET epoch takes **{t:.3f} s** against **{a:.3f} s** for AT-BSL "
            f"(ratio {t / a:.2f}); peak memory {costs['taet']['peak_memory_mb']:.0f} vs "
            f"{costs['atbsl']['peak_memory_mb']:.0f} MiB.")


# What the notebooks use (tests/test_notebooks.py checks this list against them).
__all__ = ["config_with_weights", "cost_reading", "cost_table", "derma_data", "notebook_settings",
           "per_class_dynamics", "profile_config", "protocol_line", "run_config", "save_table", "separation_table",
           "table_attacks", "table_methods", "tsne_points", "wall_table"]
