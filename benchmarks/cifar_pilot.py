"""The pilot that picks the `cifar` profile's model (CIFAR-10-LT IR 10 from the JPEG copy, on one CPU core).

Two parts, each writing JSON under `results/pilot/` (commit it as it finishes; the runs' evidence files go to
`results/pilot/runs/`):

- `--timing`: seconds per epoch of TAET's stage 2 and of AT-BSL (20,431 train images, batch 128) for each candidate
  model, in fp32 and under bf16 autocast, one thread, from `lib.study.costs.step_costs` (a few timed steps of the
  kit's own `train_step` on the real data). Says whether other work shared the machine (the load average).
- `--train ARCH METHOD EPOCHS [--amp bf16]`: one run through the kit's trainer (`lib.orchestrate.sweep`, cached),
  evaluated on clean and PGD-20 over the balanced test set; `results/pilot/<run>.json` holds its balanced
  clean / PGD-20, its loss curve and its seconds. The plateau check is the same run at twice the epochs.

    python benchmarks/cifar_pilot.py --timing
    python benchmarks/cifar_pilot.py --train resnet20 ce 20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lib.core import runs  # noqa: E402
from lib.core.config import override  # noqa: E402
from lib.core.evaluate import evaluate_run  # noqa: E402
from lib.core.train import train_run, validate  # noqa: E402
from lib.profiles import profile_config  # noqa: E402
from lib.study.costs import step_costs  # noqa: E402

CANDIDATES = ("small_cnn", "resnet20", "preact_resnet18_w16")
OUT = ROOT / "results" / "pilot"
# CIFAR-10-LT IR 10 (exp profile: 5,000 down to 500, 20,431 images), the balanced test set, the paper's schedule
# scaled to `epochs` (milestones at 75% and 90%), TAET's clean stage 40% of it, 1 thread; a stratified 2,000 of the
# balanced test set (200 per class: the standard error of a balanced accuracy near 50% is about 1.1 points).
BASE = {"data.dataset": "cifar10_jpeg", "data.imbalance_ratio": 10.0, "data.test_protocol": "balanced",
        "data.max_test": 2000, "train.track_every": 0, "train.threads": 1, "train.device": "cpu",
        "train.progress": False, "eval.attacks": ("clean", "pgd20")}


def config(arch: str, method: str, epochs: int, amp: str = "off", out_dir: str = "outputs/pilot"):
    values = {**BASE, "model.arch": arch, "train.epochs": epochs, "train.amp": amp, "out_dir": out_dir}
    if method == "taet":
        values["method_args.ce_epochs"] = round(0.4 * epochs)
    return validate(override(profile_config("paper", method), values))


def timing(steps: int) -> dict:
    load = os.getloadavg()
    rows = []
    for arch in CANDIDATES:
        for method in ("taet", "atbsl", "ce"):
            for amp in ("off", "bf16"):
                cfg = config(arch, method, 20, amp)
                c = step_costs(cfg, steps=steps, threads=1)
                per_step = c["seconds_per_step"]
                stage = "adversarial" if method == "taet" else next(iter(per_step))
                row = {"arch": arch, "method": method, "amp": amp, "stage": stage,
                       "seconds_per_step": per_step[stage], "batches_per_epoch": c["batches_per_epoch"],
                       "seconds_per_epoch": per_step[stage] * c["batches_per_epoch"]}
                rows.append(row)
                print(f"{arch:20s} {method:6s} {amp:4s} {stage:12s} {row['seconds_per_epoch']:8.0f} s/epoch",
                      flush=True)
    doc = {"what": "seconds per epoch, one thread, 20,431 CIFAR-10-LT IR 10 images, batch 128",
           "steps_timed": steps, "load_average_before": load, "load_average_after": os.getloadavg(),
           "host": os.uname().nodename, "rows": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    runs.atomic_write_json(OUT / f"timing-{time.strftime('%Y%m%d-%H%M')}.json", doc)
    return doc


def train(arch: str, method: str, epochs: int, amp: str) -> dict:
    cfg = config(arch, method, epochs, amp)
    t0 = time.time()
    res = train_run(cfg, verbose=True)
    doc = evaluate_run(res.run_dir, ["clean", "pgd20"], device="cpu", verbose=False)
    hist = runs.read_csv(Path(res.run_dir) / "history.csv")
    out = {"run": Path(res.run_dir).name, "arch": arch, "method": method, "epochs": epochs, "amp": amp,
           "clean_balanced": doc["results"]["clean"]["balanced"], "pgd20_balanced": doc["results"]["pgd20"]["balanced"],
           "n_test": doc["protocol"]["n_test"], "train_counts": doc["protocol"]["train_counts"],
           "train_seconds": runs.train_seconds(hist), "wall_seconds": round(time.time() - t0, 1),
           "loss_by_epoch": [float(r["loss"]) for r in hist], "load_average_end": os.getloadavg()}
    OUT.mkdir(parents=True, exist_ok=True)
    runs.atomic_write_json(OUT / f"{out['run']}.json", out)
    runs.export_evidence([res.run_dir], OUT / "runs")
    print(json.dumps({k: v for k, v in out.items() if k != "loss_by_epoch"}, indent=1))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--timing", action="store_true", help="seconds per epoch of each candidate (minutes)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per measurement (default 3)")
    p.add_argument("--train", nargs=3, metavar=("ARCH", "METHOD", "EPOCHS"), help="one pilot run")
    p.add_argument("--amp", default="off", choices=("off", "bf16"), help="precision of --train (default fp32)")
    a = p.parse_args(argv)
    if a.timing:
        timing(a.steps)
    if a.train:
        arch, method, epochs = a.train
        train(arch, method, int(epochs), a.amp)
    if not (a.timing or a.train):
        p.error("give --timing or --train ARCH METHOD EPOCHS")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
