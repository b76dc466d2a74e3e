"""Where a run's result is found: the run cache, else the committed evidence (`results/<profile>/<run name>/`:
config.json, eval.json, history.csv, no weights; `python -m lib export`), else a recorded divergence (diverged.json).

`find` is the one composed lookup: the sweep (`lib.orchestrate.sweep.run_sweep`, its spec's "evidence") and the
claims check (`lib.study.claims_runs.gather`) both read runs through it. `lib.core.train` sits below this layer and
guards only its own run folder, with the primitive `lib.core.runs.read_diverged`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lib.core import runs
from lib.core.config import ConfigError, RunConfig
from lib.core.evaluate import read_eval, result_is_current

Source = Literal["cache", "evidence"]


@dataclass(frozen=True)
class Found:
    """A run found for a config: its eval document, or (`doc` None) the divergence its folder records."""

    doc: dict[str, Any] | None  # eval.json, holding every requested attack with the current settings
    folder: Path  # the run folder it was read from
    source: Source  # "cache": the config's own run folder; "evidence": the committed copy
    diverged: dict[str, Any] | None  # diverged.json (`lib.core.runs.write_diverged`) when there is no result


def _current_eval(folder: Path, cfg: RunConfig, attacks) -> dict[str, Any] | None:
    """`folder`'s eval.json when it is `cfg`'s (same config hash) and holds every attack in `attacks` with the
    current settings (`result_is_current`), else None; a corrupt eval.json counts as none. Reads no checkpoint."""
    try:
        doc = read_eval(folder)
    except ConfigError:
        return None
    if doc is None or doc.get("config_hash") != runs.config_hash(cfg):
        return None
    if not all(result_is_current(doc["results"].get(a), a, cfg.eval) for a in attacks):
        return None
    return doc


def find(cfg: RunConfig, attacks, evidence_dir=None, *, cache: bool = True) -> Found | None:
    """The run of `cfg` evaluated with `attacks`: from the run cache (`runs.run_dir(cfg)`), else from the committed
    evidence `evidence_dir/<run name>/`; where neither holds a current result, the divergence either records for
    this config (cache first); None where there is nothing. `cache=False` reads the evidence alone (the claims check
    compares both places). The one composed lookup of the kit: cache, then evidence, then a recorded divergence.
    ConfigError for a corrupt diverged.json (a corrupt eval.json is no result)."""
    name = runs.run_dir(cfg).name
    places: list[tuple[Source, Path]] = [("cache", runs.run_dir(cfg))] if cache else []
    if evidence_dir is not None:
        places.append(("evidence", Path(evidence_dir) / name))
    for source, folder in places:
        doc = _current_eval(folder, cfg, attacks)
        if doc is not None:
            return Found(doc, folder, source, None)
    for source, folder in places:
        rec = runs.read_diverged(folder, cfg)
        if rec is not None:
            return Found(None, folder, source, rec)
    return None


__all__ = ["Found", "find"]
