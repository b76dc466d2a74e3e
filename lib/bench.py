"""Cost of each training method: seconds per step and per epoch, and peak memory (paper Fig. 6a).

Each method is measured in a fresh spawned process, so its peak memory is its own (CUDA: peak allocated
tensor memory; CPU: growth of the process's peak resident set over the measured steps).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import resource
import time
from dataclasses import replace
from typing import Any

import torch

from .config import RunConfig


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def step_costs(cfg: RunConfig, steps: int = 5, warmup: int = 1) -> dict[str, Any]:
    """Time `steps` training steps of each stage the method has on one batch of the run's real data;
    project seconds per epoch over the whole schedule (e.g. TAET: 40 cheap clean epochs of 100)."""
    from .data import augment_batch, build_data
    from .methods import MethodContext, build_method
    from .train import _build_model, resolve_device, seed_everything

    dev = resolve_device(cfg.train.device)
    data = build_data(cfg.data, device=dev, verbose=False)
    seed_everything(cfg.train.seed)
    ctx = MethodContext(data.num_classes, list(data.class_counts), cfg.train.epochs, dev)
    method = build_method(cfg.method, cfg.method_args, ctx)
    model = _build_model(cfg, data, method, dev)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.train.lr, momentum=cfg.train.momentum,
                          weight_decay=cfg.train.weight_decay)
    gen = torch.Generator().manual_seed(0)
    bs = min(cfg.train.batch_size, data.train_y.numel())
    idx = torch.randperm(data.train_y.numel(), generator=gen)[:bs].to(dev)
    x = augment_batch(data.train_x[idx], gen, cfg.data.crop_padding, cfg.data.flip)
    y = data.train_y[idx]
    stage_epoch: dict[str, int] = {}
    for e in range(cfg.train.epochs):
        stage_epoch.setdefault(method.stage(e), e)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base_rss = _rss_mb()
    per_step: dict[str, float] = {}
    for stage, epoch in stage_epoch.items():
        def step(epoch=epoch):
            out = method.step(model, x, y, epoch, gen)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()

        for _ in range(warmup):
            step()
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        per_step[stage] = (time.perf_counter() - t0) / steps
    n_batches = math.ceil(data.train_y.numel() / cfg.train.batch_size)
    epoch_secs = [per_step[method.stage(e)] * n_batches for e in range(cfg.train.epochs)]
    peak = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda"
            else max(0.0, _peak_rss_mb() - base_rss))
    return {
        "method": cfg.method, "device": str(dev), "arch": cfg.model.arch, "batch_size": bs,
        "seconds_per_step": per_step, "batches_per_epoch": n_batches,
        "seconds_per_epoch": sum(epoch_secs) / len(epoch_secs), "seconds_total": sum(epoch_secs),
        "peak_memory_mb": peak,
        "memory_kind": "CUDA peak allocated" if dev.type == "cuda" else "CPU peak RSS growth",
        "images_per_second": {s: bs / t for s, t in per_step.items()},
    }


def _worker(cfg_dict: dict[str, Any], steps: int, queue) -> None:
    try:
        torch.set_num_threads(torch.get_num_threads())
        queue.put(("ok", step_costs(RunConfig.from_dict(cfg_dict), steps)))
    except BaseException as e:  # report, never hang the parent
        queue.put(("error", f"{type(e).__name__}: {e}"))


def measure_costs(cfgs: list[RunConfig], steps: int = 5, isolate: bool = True) -> dict[str, dict[str, Any]]:
    """step_costs for each config, each in its own spawned process when `isolate` (clean memory peaks)."""
    out: dict[str, dict[str, Any]] = {}
    for cfg in cfgs:
        if not isolate:
            out[cfg.method] = step_costs(cfg, steps)
            continue
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=_worker, args=(replace(cfg).to_dict(), steps, q))
        p.start()
        status, payload = q.get()
        p.join()
        if status != "ok":
            raise RuntimeError(f"measuring {cfg.method} failed: {payload}")
        out[cfg.method] = payload
    return out


__all__ = ["step_costs", "measure_costs"]
