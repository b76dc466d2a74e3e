"""The scale check: is the profile's scale under-trained? Standard training (CE) as the claims train it, evaluated
clean on the whole balanced test set against the floor a model that is not under-trained reaches on Fashion-MNIST-LT
(results/<profile>/scale_check.json; `python -m lib claims --scale-check`), and its reading for the claims report.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from lib.core import runs
from lib.core.config import ConfigError
from lib.core.data import build_data
from lib.core.errors import check_seeds
from lib.core.evaluate import evaluate_model
from lib.core.train import load_run
from lib.profiles import profile_seeds
from lib.study.claims_runs import RESULTS_DIR, run_configs
from lib.study.claims_verdicts import train_seconds
from lib.study.seeded import train_eval_seeds
from lib.study.stats import summarize, verdict

SCALE_FLOOR = 0.85  # balanced clean accuracy a model that is not under-trained should reach on Fashion-MNIST-LT
SCALE_FILE = "scale_check.json"  # results/<profile>/: the scale check's evidence (no weights)


def scale_check(profile: str, *, seeds=None, device: str = "cpu", out_dir: str = "outputs",
                results_dir=RESULTS_DIR, workers: int | None = None, floor: float = SCALE_FLOOR,
                write: bool = True) -> dict[str, Any]:
    """Is the profile's scale under-trained? Standard training (CE) exactly as the claims train it, for each seed,
    evaluated clean on the whole balanced test set (the profile's `data.max_test` cap lifted), so the floor is read
    from 10,000 test images rather than the claims' subset of the test set. The runs go through the run cache
    (weights are needed: trained where the cache lacks them). Returns, and with `write` saves atomically to
    results/<profile>/scale_check.json, the per-seed values, their `lib.study.stats.summarize` and a verdict: "met" when
    the whole 95% interval lies at or above `floor`, "not met" when it lies below, "inconclusive" otherwise."""
    if not 0.0 < floor < 1.0:
        raise ConfigError(f"scale check: the floor is a balanced accuracy in (0, 1), e.g. 0.85; got {floor}")
    seeds = profile_seeds(profile) if seeds is None else check_seeds(seeds, "scale check seeds")
    if len(seeds) < 2:
        raise ConfigError(f"the scale check needs at least 2 seeds for an interval, got {seeds}; e.g. 0,1,2")
    docs = train_eval_seeds(profile, "ce", seeds, device=device, out_dir=out_dir, workers=workers,
                            attacks=("clean",), evidence=None)
    per_seed = {}
    for sd in seeds:
        cfg, model, _, _, _ = load_run(docs[sd]["run_dir"], device=device)
        full = build_data(replace(cfg.data, max_test=None), device=next(model.parameters()).device, verbose=False)
        res = evaluate_model(model, full.test_x, full.test_y, full.num_classes, cfg.eval, ["clean"],
                             verbose=False)["clean"]
        per_seed[sd] = {"run": Path(docs[sd]["run_dir"]).name, "full_test_balanced": res["balanced"],
                        "full_test_n": res["n"], "subset_balanced": docs[sd]["results"]["clean"]["balanced"],
                        "subset_n": docs[sd]["results"]["clean"]["n"],
                        "train_seconds": round(train_seconds(docs[sd]), 1)}
    values = [per_seed[sd]["full_test_balanced"] for sd in seeds]
    out = {"profile": profile, "method": "ce", "floor": floor, "seeds": list(seeds), "runs": per_seed,
           "full_test_balanced": asdict(summarize(values)), "verdict": floor_verdict(values, floor), "device": device}
    if write:
        runs.atomic_write_json(Path(results_dir) / profile / SCALE_FILE, out)
    return out


def floor_verdict(values: list[float], floor: float) -> str:
    """"met" when the 95% t-interval of `values` lies wholly at or above `floor`, "not met" when wholly below,
    "inconclusive" otherwise (and for one value)."""
    return {"supported": "met", "contradicted": "not met"}.get(verdict(summarize([x - floor for x in values])),
                                                               "inconclusive")


def read_scale_check(profile: str, results_dir=RESULTS_DIR) -> dict[str, Any] | None:
    """results/<profile>/scale_check.json, or None where the scale check has not been run."""
    path = Path(results_dir) / profile / SCALE_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); rerun `python -m lib claims --profile {profile} "
                          "--scale-check`") from None
    # stale when its CE runs are not the ones the profile trains now (e.g. the profile's size changed since)
    seeds = [int(s) for s in doc.get("runs", {})]
    now = {str(s): runs.run_dir(c).name for (_, s), c in run_configs(profile, ["ce"], seeds).items()}
    doc["stale"] = any(now[s] != r.get("run") for s, r in doc.get("runs", {}).items())
    return doc


def scale_reading(gathered: dict[str, Any], floor: float = 100 * SCALE_FLOOR, scale: dict[str, Any] | None = None
                  ) -> str:
    """How well standard training (CE) learns at this scale: a model far below `floor` is under-trained. `scale`:
    the scale check's result (`scale_check`), the floor read on the whole test set, with its interval."""
    merged = {**gathered["results"], **gathered["cache"]}
    vals = [100 * merged[("ce", s)]["results"]["clean"]["balanced"] for s in gathered["seeds"] if ("ce", s) in merged]
    if not vals and not scale:
        return ""
    text = ""
    if vals:
        s = summarize(vals)
        n_test = next(merged[("ce", sd)]["results"]["clean"].get("n") for sd in gathered["seeds"]
                      if ("ce", sd) in merged)
        spread = f" ± {s.std:.1f}" if s.n > 1 else " (1 seed)"
        text = (f"Scale: standard training (CE) reaches {s.mean:.1f}{spread}% balanced clean accuracy on the claims' "
                f"test set{f' of {n_test:,}' if n_test else ''}, against the {floor:g}% a model that is not "
                f"under-trained should reach on this data.")
    if scale and scale.get("stale"):
        p = scale.get("profile", "<profile>")
        text += (f"{' ' if text else 'Scale: '}The scale check on file (results/{p}/{SCALE_FILE}) read CE runs of "
                 f"other settings than this profile's; rerun it (`python -m lib claims --profile {p} --scale-check`).")
    elif scale:
        f = scale["full_test_balanced"]
        n_full = next(iter(scale["runs"].values()))["full_test_n"]
        vals_full = ", ".join(f"{100 * r['full_test_balanced']:.1f}" for r in scale["runs"].values())
        sub = ", ".join(f"{100 * r['subset_balanced']:.1f}" for r in scale["runs"].values())
        text += (f"{' ' if text else 'Scale: '}On the whole balanced test set ({n_full:,} images; `python -m lib "
                 f"claims --profile {scale.get('profile', '<profile>')} --scale-check`), CE at the same settings "
                 f"reaches {100 * f['mean']:.1f} ± "
                 f"{100 * f['std']:.1f}% "
                 f"({vals_full}; 95% interval [{100 * f['low']:.1f}, {100 * f['high']:.1f}], n = {f['n']}; these "
                 f"retrained runs score {sub} on the claims' test subsets): the {100 * scale['floor']:g}% floor is "
                 + {"met": "met (the whole interval lies above it).",
                    "not met": "not met (the whole interval lies below it)."}.get(
                     scale["verdict"], "undecided (the interval includes it)."))
    elif vals:
        text += f" The mean is {'at or above' if summarize(vals).mean >= floor else 'below'} it."
    return text
