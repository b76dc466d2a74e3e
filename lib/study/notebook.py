"""The one module a notebook imports: `setup`, then every study function the notebooks call, re-exported.

A notebook's setup cell clones and installs the kit on Colab, then calls `setup`; the rest of it calls `kit.<name>`
only, so what a notebook computes lives (and is tested) in `lib/`. Results are {label: {seed: eval document}}; a
single run is one seed. `__all__` is exactly what the notebooks call (tests/test_notebooks.py checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lib.orchestrate.tiny import prepare_profile
from lib.profiles import notebook_settings, profile_config, reduced_scale, run_config, table_attacks, table_methods
from lib.study.claims import check as check_claims
from lib.study.claims import settings as claims_settings
from lib.study.costs import measure_costs
from lib.study.experiments import (
    config_with_weights,
    cost_reading,
    cost_table,
    derma_data,
    per_class_dynamics,
    protocol_line,
    save_table,
    separation_table,
    tsne_points,
    wall_table,
)
from lib.study.plots import (
    efficiency_bars,
    grouped_bars,
    lines,
    metric_vs_ir,
    per_class_curves,
    save_figure,
    tsne_panels,
)
from lib.study.seeded import (
    at_reduced,
    dynamics_reading,
    figure_title,
    first_doc,
    hel_grid_table,
    per_class_series,
    ranking_reading,
    robustness_table,
    seeds_of,
    series,
    sweep_reading,
    sweep_seeds,
    sweep_table,
    tail_table,
    title,
    train_eval_seeds,
)
from lib.study.tables import rarest_classes


@dataclass(frozen=True)
class Notebook:
    """What a notebook's setup gives the cells after it."""

    profile: str  # the profile the notebook runs: "<profile>-tiny" when `tiny`
    settings: dict[str, Any]  # its notebook settings (`lib.profiles.notebook_settings`)
    device: str
    out_dir: str
    data_dir: str
    download: bool
    tiny: bool


def setup(profile: str, *, tiny: bool = False, device: str = "auto", out_dir: str = "outputs",
          data_dir: str = "data", download: bool = False) -> Notebook:
    """The profile a notebook runs (`lib.orchestrate.tiny.prepare_profile`: `tiny`, `data_dir`, `download`) and
    its settings; prints the profile, device and output folder."""
    name = prepare_profile(profile, tiny=tiny, data_dir=data_dir, download=download)
    print(f"profile {name!r}, device {device!r}, outputs in {out_dir!r}")
    return Notebook(name, notebook_settings(name), device, out_dir, data_dir, download, tiny)


__all__ = [
    "at_reduced", "check_claims", "claims_settings", "config_with_weights", "cost_reading", "cost_table",
    "derma_data", "dynamics_reading", "efficiency_bars", "figure_title", "first_doc", "grouped_bars",
    "hel_grid_table", "lines", "measure_costs", "metric_vs_ir", "per_class_curves", "per_class_dynamics",
    "per_class_series", "profile_config", "protocol_line", "ranking_reading", "rarest_classes", "reduced_scale",
    "robustness_table", "run_config", "save_figure", "save_table", "seeds_of", "separation_table", "series", "setup",
    "sweep_reading", "sweep_seeds", "sweep_table", "table_attacks", "table_methods", "tail_table", "title",
    "train_eval_seeds", "tsne_panels", "tsne_points", "wall_table",
]
