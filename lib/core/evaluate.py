"""The robustness suite: clean, FGSM, PGD-20, PGD-100, CW-L2, CW-l_inf, AutoAttack (fra31's `autoattack`; the
official TAET / AT-BSL evaluations' torchattacks version `autoattack_ta`) -> per-class results.

Each result holds per-class accuracy, overall accuracy, balanced accuracy (= balanced robustness under an
attack), the test protocol and the attack's settings, and is written to the run's `eval.json` / `eval.csv`.

Caching: eval settings are not part of the run hash (`lib.core.runs.config_hash`). Instead every attack's result
in `eval.json` carries its settings (`describe_attack`) and attack seed; an attack is recomputed when they
differ (only that attack), and every attack when the file's config hash or test protocol differ. Attacks
draw their randomness from a generator seeded with `EvalConfig.seed`, fresh for each attack, so an
evaluation killed midway and run again writes the same numbers (`eval.json` is written once, at the end,
after `eval.csv`: it is the commit point). `evaluate_run` holds the run folder's lock, like training.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from lib.core import runs
from lib.core.attacks import trusted_inputs
from lib.core.config import ConfigError, EvalConfig
from lib.core.metrics import accuracy, balanced_accuracy, per_class_recall
from lib.core.suite import ATTACKS, EVAL_ORDERS, check_attack_available, describe_attack, get_attack


def check_attacks(names) -> tuple[str, ...]:
    """The attack names as a tuple; ConfigError for an unknown name or a missing optional package (before work)."""
    names = tuple(names)
    for n in names:
        get_attack(n)  # raises ConfigError with the valid names
        check_attack_available(n)  # autoattack: pyautoattack; autoattack_ta: torchattacks
    if not names:
        raise ConfigError(f"no attack selected; valid: {sorted(ATTACKS)}")
    return names


def evaluate_model(model, x_u8: torch.Tensor, y: torch.Tensor, num_classes: int, ecfg: EvalConfig,
                   attacks=None, *, progress: bool = False, verbose: bool = True) -> dict[str, dict[str, Any]]:
    """Run each attack over the (uint8, on-device) test set in batches; return results by attack name."""
    attacks = check_attacks(attacks if attacks is not None else ecfg.attacks)
    if ecfg.order not in EVAL_ORDERS:
        raise ConfigError(f"eval.order must be one of {EVAL_ORDERS}; got {ecfg.order!r}")
    from tqdm.auto import tqdm

    if ecfg.order == "class_sorted":  # the official TAET notebook's stored test set: class by class
        perm = torch.sort(y, stable=True).indices
        x_u8, y = x_u8[perm], y[perm]
    model.eval()
    out: dict[str, dict[str, Any]] = {}
    for name in attacks:
        fn = get_attack(name)
        gen = torch.Generator().manual_seed(ecfg.seed)
        t0 = time.perf_counter()
        preds = []
        bs = ecfg.batch_size if name != "autoattack" else max(ecfg.batch_size, y.numel())
        starts = range(0, y.numel(), bs)
        for i in tqdm(starts, disable=not progress, leave=False, desc=f"eval {name}"):
            xb = x_u8[i:i + bs].float() / 255.0
            yb = y[i:i + bs]
            with trusted_inputs():  # uint8 / 255: in [0, 1] by construction, no range-check sync
                xa = fn(model, xb, yb, ecfg, gen)
            with torch.no_grad():
                preds.append(model(xa).argmax(1))
        p = torch.cat(preds)
        pc = per_class_recall(p, y, num_classes)
        res = {
            "attack": name,
            "settings": describe_attack(name, ecfg),
            "seed": ecfg.seed,
            "accuracy": accuracy(p, y),
            "balanced": balanced_accuracy(p, y, num_classes),
            "per_class": [None if torch.isnan(v) else float(v) for v in pc],
            "n": int(y.numel()),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        out[name] = res
        if verbose:
            print(f"  {name:<10} acc {res['accuracy']:.4f}  balanced {res['balanced']:.4f}  ({res['seconds']:.1f}s)")
    return out


def result_is_current(res: dict[str, Any] | None, name: str, ecfg: EvalConfig) -> bool:
    """A cached result was made with `name`'s settings under `ecfg` and the same attack seed (results written
    before the seed was recorded used the default, 0)."""
    return (res is not None and res.get("settings") == describe_attack(name, ecfg)
            and res.get("seed", 0) == ecfg.seed)


def _protocol(cfg, data) -> dict[str, Any]:
    return {
        "dataset": cfg.data.dataset,
        "imbalance_ratio": cfg.data.imbalance_ratio,
        "lt_profile": cfg.data.lt_profile,
        "test_protocol": cfg.data.test_protocol,
        "n_test": int(data.test_y.numel()),
        "test_counts": torch.bincount(data.test_y.cpu(), minlength=data.num_classes).tolist(),
        "train_counts": list(data.class_counts),
        "max_test": cfg.data.max_test,
    }


def read_eval(run_dir) -> dict[str, Any] | None:
    import json

    p = Path(run_dir) / "eval.json"
    if not p.exists():
        return None
    try:
        doc = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p} is corrupt ({e}); delete it or re-run evaluate with --force") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), dict):
        raise ConfigError(f"{p} is not an eval.json written by this kit (no results); delete it or re-run "
                          "evaluate with --force")
    return doc


def write_eval(run_dir, doc: dict[str, Any]) -> None:
    """eval.csv first, then eval.json (the commit point: a run killed between the two recomputes both)."""
    rd = Path(run_dir)
    rows = []
    for name, r in doc["results"].items():
        row = {"attack": name, "accuracy": r["accuracy"], "balanced": r["balanced"], "n": r["n"]}
        row.update({f"class_{c}": v for c, v in enumerate(r["per_class"])})
        rows.append(row)
    runs.atomic_write_csv(rd / "eval.csv", rows)
    runs.atomic_write_json(rd / "eval.json", doc)


def evaluate_run(run_dir, attacks=None, *, device: str = "auto", ecfg: EvalConfig | None = None,
                 force: bool = False, verbose: bool = True, progress: bool = False) -> dict[str, Any]:
    """Evaluate a trained run folder; results already in eval.json with identical settings are reused.
    Holds the run folder's lock throughout (a second process gets a RunLockedError)."""
    cfg = runs.read_config(run_dir)  # a clear error for a folder that is not a run, before any lock file is made
    check_attacks(attacks if attacks is not None else (ecfg or cfg.eval).attacks)  # names and packages, before work
    with runs.run_lock(run_dir, "evaluate"):
        return _evaluate_locked(run_dir, attacks, device=device, ecfg=ecfg, force=force, verbose=verbose,
                                progress=progress)


def _evaluate_locked(run_dir, attacks, *, device: str, ecfg: EvalConfig | None, force: bool, verbose: bool,
                     progress: bool) -> dict[str, Any]:
    from lib.core.train import load_run

    cfg, model, data, method, ckpt = load_run(run_dir, device=device)
    ecfg = ecfg or cfg.eval
    attacks = check_attacks(attacks if attacks is not None else ecfg.attacks)
    if not ckpt.get("finished"):
        raise ConfigError(f"{run_dir} has not finished training (epoch {ckpt['epoch']}); resume it with --resume")
    protocol = _protocol(cfg, data)
    doc = None if force else read_eval(run_dir)
    if doc is None or doc.get("config_hash") != ckpt["config_hash"] or doc.get("protocol") != protocol:
        doc = {"run": Path(run_dir).name, "method": cfg.method, "config_hash": ckpt["config_hash"],
               "protocol": protocol, "eval_config": asdict(ecfg), "results": {}}
    todo = [a for a in attacks if not result_is_current(doc["results"].get(a), a, ecfg)]
    if verbose:
        print(f"evaluating {Path(run_dir).name} on {protocol['n_test']} test images ({cfg.data.test_protocol}); "
              f"cached: {sorted(set(attacks) - set(todo)) or 'none'}")
    if todo:
        eval_model = method.eval_model(model)
        new = evaluate_model(eval_model, data.test_x, data.test_y, data.num_classes, ecfg, todo,
                             progress=progress, verbose=verbose)
        doc["results"].update(new)
        doc["eval_config"] = asdict(ecfg)
        write_eval(run_dir, doc)
    return doc


def with_eval_overrides(ecfg: EvalConfig, **kw) -> EvalConfig:
    return replace(ecfg, **{k: v for k, v in kw.items() if v is not None})
