"""What each training method costs (paper Fig. 6a, notebook 07): seconds per step of each of its stages, seconds
per epoch over its schedule, and peak memory, measured on the kit's own training step.

:func:`step_costs` times one method in this process; :func:`measure_costs` runs each in its own spawned process so
that memory peaks do not mix. :class:`PeakMemory` is shared with the benchmark (``lib.bench.runner``).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from lib.core.config import RunConfig
from lib.core.data import augment_batch
from lib.core.train import build_training, resolve_device, train_step


# ---------------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


class PeakMemory:
    """Peak memory of a block above what was in use when it started (MiB).

    CUDA: peak allocated tensor memory (``torch.cuda.max_memory_allocated``). CPU: the process's resident set,
    sampled every ``interval`` seconds by a thread (the kernel's high-water mark cannot be reset)."""

    def __init__(self, device: torch.device, interval: float = 0.005, absolute: bool = False):
        self.device, self.interval, self.absolute = device, interval, absolute
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = self._max = _rss_mb()
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._max = max(self._max, _rss_mb())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            base = 0 if self.absolute else self._base
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - base) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self._max, _rss_mb()) - self._base
        return False


def memory_kind(device: torch.device, absolute: bool = False) -> str:
    if device.type == "cuda":
        return "CUDA peak allocated" + ("" if absolute else " above the resident models")
    return "CPU RSS peak above start (5 ms samples)"


# ---------------------------------------------------------------------------------------------------
# Per-method costs (notebook 07, paper Fig. 6a)
# ---------------------------------------------------------------------------------------------------
def step_costs(cfg: RunConfig, steps: int = 5, warmup: int = 1, threads: int | None = None,
               before_timing: Callable[[], None] | None = None) -> dict[str, Any]:
    """Time `steps` training steps (:func:`lib.core.train.train_step`) of each stage the method has, on one batch of
    the run's real data with the run's model, optimizer and speed plan (:func:`lib.core.train.build_training`);
    project seconds per epoch over the whole schedule (e.g. TAET: 40 cheap clean epochs of 100).
    `before_timing` is called once the model, data and batch are built, before the first timed step."""
    dev = resolve_device(cfg.train.device)
    t = build_training(cfg, dev, threads=threads)
    data, method = t.data, t.method
    gen = torch.Generator().manual_seed(0)
    bs = min(cfg.train.batch_size, data.train_y.numel())
    idx = torch.randperm(data.train_y.numel(), generator=gen)[:bs].to(dev)
    x = augment_batch(data.train_x[idx], gen, cfg.data.crop_padding, cfg.data.flip)
    y = data.train_y[idx]
    if before_timing is not None:
        before_timing()
    stage_epoch: dict[str, int] = {}
    for e in range(cfg.train.epochs):
        stage_epoch.setdefault(method.stage(e), e)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    per_step: dict[str, float] = {}
    peak = 0.0
    timed_from = time.time()
    for stage, epoch in stage_epoch.items():
        with PeakMemory(dev, absolute=True) as mem:
            for _ in range(warmup):
                train_step(t, x, y, epoch, gen)
            sync()
            t0 = time.perf_counter()
            for _ in range(steps):
                train_step(t, x, y, epoch, gen)
            sync()
            per_step[stage] = (time.perf_counter() - t0) / steps
        peak = max(peak, mem.peak_mb)
    n_batches = math.ceil(data.train_y.numel() / cfg.train.batch_size)
    epoch_secs = [per_step[method.stage(e)] * n_batches for e in range(cfg.train.epochs)]
    return {
        "method": cfg.method, "device": str(dev), "arch": cfg.model.arch, "batch_size": bs,
        "seconds_per_step": per_step, "batches_per_epoch": n_batches,
        "seconds_per_epoch": sum(epoch_secs) / len(epoch_secs), "seconds_total": sum(epoch_secs),
        "peak_memory_mb": peak,
        "memory_kind": memory_kind(dev, absolute=True),
        "images_per_second": {s: bs / sec for s, sec in per_step.items()},
        "speed": t.plan.describe(),
        "timed": (timed_from, time.time()),  # wall clock (s since the epoch) around the warm-up and timed steps
    }


def _worker(cfg_dict: dict[str, Any], steps: int, queue, threads: int | None = None, go=None) -> None:
    def ready() -> None:  # built: say so, then wait until the parent lets this process time alone
        if go is not None:
            queue.put(("ready", None))
            go.wait()

    try:
        queue.put(("ok", step_costs(RunConfig.from_dict(cfg_dict), steps, threads=threads, before_timing=ready)))
    except BaseException as e:  # report, never hang the parent
        queue.put(("error", f"{type(e).__name__}: {e}"))


def _receive(queue, proc) -> tuple[str, Any]:
    """The next message of a measuring process; an error if it died without one (killed, out of memory)."""
    import queue as queue_module

    while True:
        try:
            return queue.get(timeout=1.0)
        except queue_module.Empty:
            if not proc.is_alive():
                try:
                    return queue.get(timeout=1.0)
                except queue_module.Empty:
                    return "error", f"its process ended with exit code {proc.exitcode} and no result"


# Measuring processes built at once: setting one up (importing torch, loading the data, building the model) takes
# seconds, timing it a fraction of that, so up to this many are set up side by side; each is then timed alone.
PREPARE_AHEAD = 4


def measure_costs(cfgs: list[RunConfig], steps: int = 5, isolate: bool = True, threads: int | None = None,
                  prepare_ahead: int = PREPARE_AHEAD) -> dict[str, dict[str, Any]]:
    """step_costs for each config, each in its own spawned process when `isolate` (clean memory peaks).

    Isolated, up to `prepare_ahead` processes are set up side by side; once all of them are built, each times its
    steps while the others wait idle, so no timing shares the machine with another process's work."""
    out: dict[str, dict[str, Any]] = {}
    if not isolate:
        for cfg in cfgs:
            out[cfg.method] = step_costs(cfg, steps, threads=threads)
        return out
    if prepare_ahead < 1:
        raise ValueError(f"prepare_ahead={prepare_ahead} must be >= 1")
    ctx = mp.get_context("spawn")
    for start in range(0, len(cfgs), prepare_ahead):
        group = []
        for cfg in cfgs[start:start + prepare_ahead]:
            q, go = ctx.Queue(), ctx.Event()
            p = ctx.Process(target=_worker, args=(replace(cfg).to_dict(), steps, q, threads, go))
            p.start()
            group.append((cfg, p, q, go))
        try:
            first = [_receive(q, p) for cfg, p, q, _ in group]  # every one built before any is timed
            for (cfg, p, q, go), (status, payload) in zip(group, first):
                if status == "ready":
                    go.set()
                    status, payload = _receive(q, p)
                p.join()
                if status != "ok":
                    raise RuntimeError(f"measuring {cfg.method} failed: {payload}")
                out[cfg.method] = payload
        finally:
            for _, p, _, _ in group:
                if p.is_alive():
                    p.terminate()
                    p.join()
    return out
