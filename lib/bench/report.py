"""The benchmark's report: hardware and versions, paper-scale projections from the measured speeds, and the
text summary ``python -m lib bench`` prints (from the JSON document alone)."""

from __future__ import annotations

import os
import platform
import re
import socket
from typing import Any

import numpy as np
import torch


def hardware(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    hw: dict[str, Any] = {"host": socket.gethostname(), "cpu": cpu, "cpu_count": os.cpu_count(),
                          "torch_threads": torch.get_num_threads(), "load_average": list(os.getloadavg())}
    try:
        with open("/proc/cpuinfo") as f:
            flags = re.search(r"^flags\s*:(.*)$", f.read(), re.M)
        if flags:
            hw["cpu_bf16"] = "avx512_bf16" in flags.group(1).split() or "amx_bf16" in flags.group(1).split()
    except OSError:
        pass
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        hw.update({"gpu": p.name, "gpu_memory_gb": round(p.total_memory / 2**30, 1),
                   "gpu_capability": f"{p.major}.{p.minor}", "cuda": torch.version.cuda,
                   "cudnn": torch.backends.cudnn.version()})
    return hw


def versions() -> dict[str, str]:
    import torchvision  # heavy (pulls in torch._dynamo): only the bench's report needs it

    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "python": platform.python_version(),
            "numpy": np.__version__}


def device_slug(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device).lower()
        return "cuda-" + "".join(c if c.isalnum() else "-" for c in name).strip("-")
    return device.type


# CIFAR-10-LT, IR 10: sum(long_tail_counts(5000, 10, 10)) = 20431 train images; 10000 balanced test images.
PAPER = {"train_images": 20431, "test_images": 10000, "epochs": 100, "ce_epochs": 40, "batch_size": 128}


def projections(models: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Hours for a full paper run (CIFAR-10-LT IR 10, ResNet-18, 100 epochs, 40 of them clean for TAET) and the
    evaluation suite on 10000 test images, from the measured ResNet-18 32 px images/s (per loop)."""
    r18 = [v for k, v in models.items() if k.startswith("resnet18 3x32x32")]
    if not r18:
        return {}
    m = max(r18, key=lambda v: v["batch_size"])  # the largest batch measured is closest to the paper's
    out: dict[str, Any] = {"from": m["name"], "device": str(device), "note":
                           "images/s measured at this batch size; steps at batch 128 may be faster per image"}
    P = PAPER
    for side in ("reference", "kit"):
        ips = {w: m["workloads"][w][side]["images_per_s"] for w in m["workloads"] if side in m["workloads"][w]}
        if not {"taet_stage1", "taet_stage2", "atbsl", "pgd20"} <= set(ips):
            continue
        n, e, ce = P["train_images"], P["epochs"], P["ce_epochs"]
        taet_s = n * (ce / ips["taet_stage1"] + (e - ce) / ips["taet_stage2"])
        atbsl_s = n * e / ips["atbsl"]
        pgd20_s = P["test_images"] / ips["pgd20"]
        # suite: clean + FGSM (~1 step) + PGD-20 + PGD-100 (5x) + CW-linf (20 steps, 1x) + CW-L2 (100 steps, 5x)
        suite_s = pgd20_s * (1 + 5 + 1 + 5 + 0.1)
        out[side] = {"taet_full_run_h": taet_s / 3600, "atbsl_full_run_h": atbsl_s / 3600,
                     "pgd20_eval_min": pgd20_s / 60, "suite_without_autoattack_min": suite_s / 60}
    return out


def _fmt_row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def report_lines(doc: dict[str, Any]) -> list[str]:
    hw = doc["hardware"]
    dev = hw.get("gpu", hw["cpu"]) + f" ({hw['torch_threads']} threads)"
    lines = [f"TAET kit bench on {hw['host']}: {dev}; torch {doc['versions']['torch']}; "
             f"kit speed plan {doc['speed_plan']}"]
    widths = [34, 11, 11, 8, 9, 8, 8]
    lines.append(_fmt_row(["model / workload", "ref img/s", "kit img/s", "kit/ref", "CPU-s x", "ref MiB",
                           "kit MiB"], widths))
    for m in doc["models"].values():
        for w, r in m["workloads"].items():
            if "reference" not in r:
                continue
            lines.append(_fmt_row([f"{m['name']} {w}", f"{r['reference']['images_per_s']:.1f}",
                                   f"{r['kit']['images_per_s']:.1f}", f"{r['ratio']:.2f}", f"{r['ratio_cpu']:.2f}",
                                   f"{r['reference']['peak_memory_mb']:.0f}", f"{r['kit']['peak_memory_mb']:.0f}"],
                                  widths))
        for w, vs in m.get("variants", {}).items():
            lines.append(f"  {m['name']} {w}, each feature vs the reference in the same rounds:")
            for v in vs:
                lines.append(f"    {v['variant']:<52} {v['images_per_s']:>9.1f} img/s  x{v['ratio']:.2f}  per CPU-s "
                             f"x{v['ratio_cpu']:.2f}"
                             + (f"  (first call {v['warmup_s']:.1f}s)" if v.get("warmup_s", 0) > 5 else ""))
        nc = m.get("numerical_check")
        if nc:
            lines.append(f"  numerical check (fp32, batch {nc['batch_size']}): HEL |diff| {nc['hel']['abs_diff']:.2e} "
                         f"(grad {nc['hel']['grad_max_abs_diff']:.2e}); TAET stage-2 loss |diff| "
                         f"{nc['taet_stage2']['abs_diff']:.2e}; AT-BSL |diff| {nc['atbsl']['abs_diff']:.2e} -> "
                         f"{'PASS' if nc['passed'] else 'FAIL'} (tol {nc['tolerance']:g})")
            lay = nc["layout"]["train_weight_grad_error_vs_fp64"]
            lines.append(f"    layout: eval-mode input gradient channels_last vs NCHW "
                         f"{nc['layout']['eval']['input_grad_rel_diff']:.1e}; train-mode weight gradients vs fp64: "
                         f"NCHW {lay['contiguous']:.1e}, channels_last {lay['channels_last']:.1e}")
            if "official_unclipped_start" in nc["taet_stage2"]:
                lines.append("    start rule: the kit clips x + 0.001·N(0,1) to [0, 1] before the first step, the "
                             "official code does not; on this batch that moves the TAET loss by "
                             f"{nc['taet_stage2']['official_unclipped_start']['abs_diff_to_kit']:.2e}")
    pr = doc.get("projections") or {}
    for side in ("reference", "kit"):
        if side in pr:
            p = pr[side]
            lines.append(f"projection ({side}, {pr['device']}, from {pr['from']}): full paper TAET run "
                         f"{p['taet_full_run_h']:.2f} h, AT-BSL {p['atbsl_full_run_h']:.2f} h; PGD-20 on 10k test "
                         f"{p['pgd20_eval_min']:.1f} min; suite without AutoAttack "
                         f"{p['suite_without_autoattack_min']:.0f} min")
    costs = doc.get("method_costs")
    if costs:
        lines.append(f"per-method cost ({costs['arch']}, batch {costs['batch_size']}, {costs['dataset']}, profile "
                     f"{costs['profile']}; each method in its own process; notebook 07):")
        for name, c in costs["methods"].items():
            st = ", ".join(f"{k} {v:.4f}s/step" for k, v in c["seconds_per_step"].items())
            lines.append(f"  {name:<8} {st}; {c['seconds_per_epoch']:.3f} s/epoch (schedule mean); peak "
                         f"{c['peak_memory_mb']:.0f} MiB")
    return lines
