"""The notebooks' helpers beside the tables over seeds (`lib.study.seeded`): saving tables, the protocol line, t-SNE,
wall time, per-class dynamics, DermaMNIST's data, and training costs.

Results are {label: {seed: eval document}} as `lib.study.seeded` returns them; one seed is a single run. Notebooks
reach all of it through `lib.study.notebook`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lib.core import runs
from lib.core.config import ConfigError, RunConfig
from lib.core.data import DATASETS, DataError
from lib.core.models import create_model
from lib.core.train import load_run
from lib.profiles import run_config
from lib.study.seeded import Docs, combine_tables, first_doc, seeds_of
from lib.study.tables import format_table, rarest_classes


def save_table(name: str, header: list[str], rows: list[list[str]], *, title: str, out_dir: str = "outputs"
               ) -> str:
    """Write outputs/tables/<name>.md and .csv; return the markdown (title + table)."""
    tables = Path(out_dir) / "tables"
    md = f"**{title}**\n\n" + format_table(header, rows) + "\n"
    runs.atomic_write_text(tables / f"{name}.md", md)
    runs.atomic_write_csv(tables / f"{name}.csv", [dict(zip(header, r)) for r in rows])
    return md


def protocol_line(docs: Docs) -> str:
    """The data set, imbalance ratio, train counts and test set of the runs (the same for every seed)."""
    p = first_doc(docs)["protocol"]
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


def wall_table(docs: Docs) -> tuple[list[str], list[list[str]]]:
    """Wall time of each label's runs as recorded in their files: training (sum of history's per-epoch seconds)
    and evaluation (sum of the attacks' seconds in eval.json); over several seeds, `mean ± std [interval]`."""
    header = ["method", "epochs", "train s", "eval s", "total s"]
    tables = []
    for s in seeds_of(docs):
        rows = []
        for label, by in docs.items():
            hist = by[s].get("history") or []
            train_s = runs.train_seconds(hist)
            eval_s = sum(float(r.get("seconds", 0.0)) for r in by[s]["results"].values())
            rows.append([label, str(len(hist))] + [_seconds(x) for x in (train_s, eval_s, train_s + eval_s)])
        tables.append((header, rows))
    return combine_tables(tables)


def _seconds(x: float) -> str:
    """One decimal, or three below a second (a smoke run's few batches must not read as 0.0 s)."""
    return f"{x:.1f}" if x >= 1 else f"{x:.3f}"


def per_class_dynamics(histories: list[list[dict[str, Any]]], train_counts: list[int]
                       ) -> tuple[list[str], list[list[str]]]:
    """Per class: train count, final PGD robustness, and mean / std over the second half of training; `histories`
    holds one tracked run per seed (several: each value as `mean ± std [interval]` over them)."""
    return combine_tables([_dynamics_rows(h, train_counts) for h in histories])


def _dynamics_rows(history: list[dict[str, Any]], train_counts: list[int]) -> tuple[list[str], list[list[str]]]:
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


def separation_table(points: dict[str, dict[int, tuple[Any, Any]]]) -> tuple[list[str], list[list[str]]]:
    """Silhouette score (scikit-learn) of the classes in each t-SNE embedding, {label: {seed: (points, labels)}},
    over seeds; NaN where it is undefined (fewer than 2 classes, or no class with 2 points: scikit-learn needs
    2 <= classes <= points - 1)."""
    from sklearn.metrics import silhouette_score

    def score(xy, y) -> str:
        k = len(set(y.tolist()))
        return f"{silhouette_score(xy, y) if 2 <= k <= len(y) - 1 else float('nan'):.3f}"

    header = ["method", "silhouette"]
    return combine_tables([(header, [[m, score(*by[s])] for m, by in points.items()]) for s in seeds_of(points)])


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
    data_dir, download = d.get("data_dir", data_dir), bool(d.get("download", False))  # tiny.prepare_profile
    dataset, note = dataset_or_standin(d["dataset"], d.get("standin"), data_dir, download)
    # DermaMNIST's runs keep its native size: a fixed-size model (ViT-B/16) resizes inside its wrapper, as in the
    # paper; a profile's 224-px path (taet_notebook: the official TAET notebook's, for CIFAR-10) is not theirs
    data: dict[str, Any] = {"dataset": dataset, "data_dir": data_dir, "resize_before_crop": None}
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
    """TAET's schedule-mean seconds per epoch and peak memory against AT-BSL's ("" where either was not measured)."""
    if not {"taet", "atbsl"} <= set(costs):
        return ""
    t, a = costs["taet"]["seconds_per_epoch"], costs["atbsl"]["seconds_per_epoch"]
    return (f"Averaged over the schedule, a TAET epoch takes **{t:.3f} s** against **{a:.3f} s** for AT-BSL "
            f"(ratio {t / a:.2f}); peak memory {costs['taet']['peak_memory_mb']:.0f} vs "
            f"{costs['atbsl']['peak_memory_mb']:.0f} MiB.")

