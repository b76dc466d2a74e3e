"""Speed and memory: the kit against the reference-style loop (``python -m lib bench``).

:func:`run_bench` runs, in one process, on the same model, batch size, seed and attack steps, the reference-style
loop (``benchmarks/reference.py``: DataLoader + PIL transforms on the CPU, fp32, HEL with a Python loop over classes,
official-style PGD) and the kit's loop (``iterate_batches`` with on-device crop/flip and ``lib.core.train.train_step``
under the :mod:`lib.core.speed` settings) for the TAET stage-1 step, the TAET stage-2 step, the AT-BSL step and PGD-20
evaluation. Timed segments alternate between the loops (ABBA order, so drifting machine load hits both alike); the
speed is the best segment's images/s (the least disturbed one: on a shared machine the median is also reported).
The numerical check (:mod:`lib.bench.checks`) compares both loops' losses on identical inputs in fp32; the per-method
costs come from :mod:`lib.study.costs`; the report from :mod:`lib.bench.report`. Results go to
``outputs/bench/<host>-<device>.json``.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from lib.bench.checks import numerical_check
from lib.bench.harness import (
    WORKLOADS,
    BenchSettings,
    Harness,
    ModelSpec,
    _interleave,
    _sync_fn,
    default_models,
    load_reference,
    parse_model_spec,
)
from lib.bench.report import device_slug, hardware, projections, report_lines, versions
from lib.core import runs, speed
from lib.core.train import resolve_device
from lib.profiles import notebook_settings, run_config, table_methods
from lib.study.costs import measure_costs, memory_kind


# ---------------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------------
def variant_list(device: torch.device, st: BenchSettings) -> list[tuple[str, dict[str, Any]]]:
    """The kit before this work, then one speed feature added at a time (cumulative), then opt-ins."""
    cl = speed.resolve_channels_last(st.channels_last, device)
    out = [("kit before: fp32, NCHW, for-loop SGD, [0,1] check",
            dict(amp="off", channels_last=False, trusted=False, fused_sgd=False, compile=False)),
           ("+ trusted inputs (no [0,1] check)",
            dict(amp="off", channels_last=False, trusted=True, fused_sgd=False, compile=False)),
           ("+ fused SGD", dict(amp="off", channels_last=False, trusted=True, fused_sgd=True, compile=False)),
           ("+ channels_last", dict(amp="off", channels_last=True, trusted=True, fused_sgd=True, compile=False)),
           ("+ bf16 autocast", dict(amp="bf16", channels_last=True, trusted=True, fused_sgd=True, compile=False))]
    if not cl:
        out.append(("fused SGD + bf16 autocast, NCHW", dict(amp="bf16", channels_last=False, trusted=True,
                                                            fused_sgd=True, compile=False)))
    if st.compile:
        out.append(("+ torch.compile (fp32)", dict(amp="off", channels_last=cl, trusted=True, fused_sgd=True,
                                                   compile=True)))
    return out


def run_bench(st: BenchSettings) -> dict[str, Any]:
    dev = resolve_device(st.device)
    speed.configure_threads(st.threads)
    ref = load_reference()
    sp = speed.plan(dev, amp=st.amp, channels_last=st.channels_last, compile=st.compile, threads=st.threads)
    log = print if st.verbose else (lambda *a, **k: None)
    models = st.models or default_models(st.quick, st.steps)
    sync = _sync_fn(dev)
    t_start = time.perf_counter()
    doc: dict[str, Any] = {
        "hardware": hardware(dev), "versions": versions(), "device": str(dev),
        "settings": {**{k: v for k, v in asdict(st).items() if k != "models"},
                     "models": [asdict(m) for m in models]},
        "speed_plan": sp.describe(), "method": (
            "one process; per workload the loops run alternately (ABBA) for `rounds` timed segments of `steps` "
            "steps (or one pass over the eval images) after `warmup` untimed segments; images/s is the best "
            "segment's wall clock, the median is stored too; ratio = kit/reference of those; ratio_cpu = the same "
            "with the median images per process CPU-second (all threads; robust to other jobs on a shared CPU, "
            "exact with --threads 1)"),
        "memory_kind": memory_kind(dev), "models": {},
    }
    log(f"bench on {dev} ({doc['hardware'].get('gpu', doc['hardware']['cpu'])}, {torch.get_num_threads()} threads); "
        f"kit plan {sp.describe()}")
    for spec in models:
        h = Harness(spec, st, dev, ref)
        entry: dict[str, Any] = {"name": spec.name, "arch": spec.arch, "shape": [spec.channels, spec.size, spec.size],
                                 "batch_size": spec.batch_size, "dataset": spec.dataset,
                                 "steps_per_segment": spec.steps, "reference_workers": h.ref_workers,
                                 "train_images": int(len(h.data.train_y)),
                                 "eval_images": int(len(h.data.test_y)),
                                 "workloads": {}}
        doc["models"][spec.name] = entry
        if st.check:
            entry["numerical_check"] = numerical_check(h, st)
            nc = entry["numerical_check"]
            log(f"{spec.name}: numerical check {'PASS' if nc['passed'] else 'FAIL'} (HEL {nc['hel']['abs_diff']:.1e}, "
                f"TAET stage-2 {nc['taet_stage2']['abs_diff']:.1e}, AT-BSL {nc['atbsl']['abs_diff']:.1e})")
        for w in st.workloads:
            sides = [h.reference_side(w), h.kit_side(w)]
            _interleave(sides, st.rounds, st.warmup, sync)
            r = {s.name: s.result() for s in sides}
            r["ratio"] = r["kit"]["images_per_s"] / r["reference"]["images_per_s"]
            r["ratio_median"] = r["kit"]["images_per_s_median"] / r["reference"]["images_per_s_median"]
            r["ratio_cpu"] = r["kit"]["images_per_cpu_s"] / r["reference"]["images_per_cpu_s"]
            entry["workloads"][w] = r
            log(f"{spec.name} {w:<12} reference {r['reference']['images_per_s']:9.1f} img/s  kit "
                f"{r['kit']['images_per_s']:9.1f} img/s  x{r['ratio']:.2f} (median x{r['ratio_median']:.2f}, "
                f"per CPU-second x{r['ratio_cpu']:.2f})")
        if st.variants:
            entry["variants"] = {}
            for w in [w for w in (("taet_stage2",) if st.quick else ("taet_stage2", "pgd20")) if w in st.workloads]:
                vlist = variant_list(dev, st)
                if w == "pgd20":  # the training-step features that matter to an attack, plus frozen parameters
                    vlist = [v for v in vlist if v[0] != "+ fused SGD"]
                    vlist.insert(2, ("+ parameters frozen during the attack",
                                     dict(amp="off", channels_last=False, trusted=True, fused_sgd=False, compile=False,
                                          freeze_attack_params=True)))
                sides = [h.reference_side(w)] + [h.kit_side(w, name, **kw) for name, kw in vlist]
                _interleave(sides, st.rounds, st.warmup, sync)
                ref_res = sides[0].result()
                base, base_cpu = ref_res["images_per_s"], ref_res["images_per_cpu_s"]
                rows = []
                for s in sides[1:]:
                    res = s.result()
                    rows.append({"variant": s.name, "images_per_s": res["images_per_s"], "ratio": res["images_per_s"]
                                 / base, "images_per_s_median": res["images_per_s_median"],
                                 "images_per_cpu_s": res["images_per_cpu_s"],
                                 "ratio_cpu": res["images_per_cpu_s"] / base_cpu,
                                 "peak_memory_mb": res["peak_memory_mb"], "warmup_s": res["warmup_s"]})
                entry["variants"][w] = [{"variant": "reference", "images_per_s": base, "ratio": 1.0,
                                         "images_per_cpu_s": base_cpu, "ratio_cpu": 1.0}] + rows
                for row in rows:
                    log(f"  {spec.name} {w} {row['variant']:<52} {row['images_per_s']:9.1f} img/s "
                        f"x{row['ratio']:.2f} (per CPU-second x{row['ratio_cpu']:.2f})")
        del h
    doc["projections"] = projections(doc["models"], dev)
    if st.costs:
        doc["method_costs"] = _method_costs(st, dev)
    doc["numerical_check_passed"] = all(m.get("numerical_check", {}).get("passed", True)
                                        for m in doc["models"].values())
    doc["seconds"] = round(time.perf_counter() - t_start, 1)
    doc["hardware"]["load_average_end"] = list(os.getloadavg())
    path = Path(st.out_dir) / f"{doc['hardware']['host']}-{device_slug(dev)}.json"
    runs.atomic_write_json(path, doc)
    doc["path"] = str(path)
    for line in report_lines(doc):
        log(line)
    log(f"wrote {path} ({doc['seconds']:.0f} s)")
    return doc


def _method_costs(st: BenchSettings, dev: torch.device) -> dict[str, Any]:
    methods = list(st.cost_methods) if st.cost_methods else (["taet", "atbsl"] if st.quick else table_methods())
    e = notebook_settings(st.cost_profile)["efficiency"]  # what notebook 07 measures for that profile
    cfgs = [run_config(st.cost_profile, m, device=str(dev), out_dir="outputs/bench", data={"dataset": e["dataset"]},
                       model={"arch": e["arch"]}, train={"batch_size": e["batch_size"]}) for m in methods]
    return {"profile": st.cost_profile, "arch": e["arch"], "batch_size": e["batch_size"], "dataset": e["dataset"],
            "methods": measure_costs(cfgs, steps=min(e["steps"], 2) if st.quick else e["steps"], threads=st.threads)}


__all__ = ["run_bench", "BenchSettings", "ModelSpec", "Harness", "parse_model_spec", "default_models",
           "load_reference", "WORKLOADS"]
