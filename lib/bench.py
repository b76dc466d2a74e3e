"""Speed and memory: the kit against the reference-style loop, and each method's cost (paper Fig. 6a).

``python -m lib bench`` (:func:`run_bench`) runs, in one process, on the same model, batch size, seed and attack
steps, the reference-style loop (``benchmarks/reference.py``: DataLoader + PIL transforms on the CPU, fp32,
HEL with a Python loop over classes, official-style PGD) and the kit's loop (``iterate_batches`` with
on-device crop/flip, ``method.step``, the :mod:`lib.speed` settings) for the TAET stage-1 step, the TAET
stage-2 step, the AT-BSL step and PGD-20 evaluation. Timed segments alternate between the loops (ABBA order,
so drifting machine load hits both alike); the speed is the best segment's images/s (the least disturbed
one: on a shared machine the median is also reported). A numerical check in the same run compares both
loops' losses on identical inputs in fp32. Results go to ``outputs/bench/<host>-<device>.json``.

:func:`step_costs` / :func:`measure_costs` time each training method in its own process (notebook 07).
"""

from __future__ import annotations

import copy
import importlib.util
import math
import multiprocessing as mp
import os
import platform
import resource
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .config import ConfigError, RunConfig, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("taet_stage1", "taet_stage2", "atbsl", "pgd20")
CHECK_TOL = 1e-4


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
def step_costs(cfg: RunConfig, steps: int = 5, warmup: int = 1, threads: int | None = None) -> dict[str, Any]:
    """Time `steps` training steps of each stage the method has on one batch of the run's real data, on the
    kit's fast path (lib.speed settings of the config); project seconds per epoch over the whole schedule
    (e.g. TAET: 40 cheap clean epochs of 100)."""
    from . import speed
    from .attacks import trusted_inputs
    from .data import augment_batch, build_data
    from .methods import MethodContext, build_method
    from .train import _build_model, resolve_device, seed_everything

    dev = resolve_device(cfg.train.device)
    sp = speed.plan_for(cfg.train, dev)
    speed.configure_threads(threads or sp.threads)
    data = build_data(cfg.data, device=dev, verbose=False)
    seed_everything(cfg.train.seed)
    ctx = MethodContext(data.num_classes, list(data.class_counts), cfg.train.epochs, dev)
    method = build_method(cfg.method, cfg.method_args, ctx)
    model = _build_model(cfg, data, method, dev)
    model, fwd = speed.prepare_model(model, sp)
    opt = speed.make_optimizer(model.parameters(), cfg.train, dev)
    gen = torch.Generator().manual_seed(0)
    bs = min(cfg.train.batch_size, data.train_y.numel())
    idx = torch.randperm(data.train_y.numel(), generator=gen)[:bs].to(dev)
    x = augment_batch(data.train_x[idx], gen, cfg.data.crop_padding, cfg.data.flip)
    y = data.train_y[idx]
    stage_epoch: dict[str, int] = {}
    for e in range(cfg.train.epochs):
        stage_epoch.setdefault(method.stage(e), e)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    per_step: dict[str, float] = {}
    peak = 0.0
    for stage, epoch in stage_epoch.items():
        def step(epoch=epoch):
            with sp.autocast():
                out = method.step(fwd, x, y, epoch, gen)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()

        with trusted_inputs(), PeakMemory(dev, absolute=True) as mem:
            for _ in range(warmup):
                step()
            sync()
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
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
        "images_per_second": {s: bs / t for s, t in per_step.items()},
        "speed": sp.describe(),
    }


def _worker(cfg_dict: dict[str, Any], steps: int, queue, threads: int | None = None) -> None:
    try:
        queue.put(("ok", step_costs(RunConfig.from_dict(cfg_dict), steps, threads=threads)))
    except BaseException as e:  # report, never hang the parent
        queue.put(("error", f"{type(e).__name__}: {e}"))


def measure_costs(cfgs: list[RunConfig], steps: int = 5, isolate: bool = True, threads: int | None = None
                  ) -> dict[str, dict[str, Any]]:
    """step_costs for each config, each in its own spawned process when `isolate` (clean memory peaks)."""
    out: dict[str, dict[str, Any]] = {}
    for cfg in cfgs:
        if not isolate:
            out[cfg.method] = step_costs(cfg, steps, threads=threads)
            continue
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=_worker, args=(replace(cfg).to_dict(), steps, q, threads))
        p.start()
        status, payload = q.get()
        p.join()
        if status != "ok":
            raise RuntimeError(f"measuring {cfg.method} failed: {payload}")
        out[cfg.method] = payload
    return out


# ---------------------------------------------------------------------------------------------------
# Kit vs reference-style loop
# ---------------------------------------------------------------------------------------------------
@dataclass
class ModelSpec:
    """One benchmarked model: architecture, input shape, batch size, and where its images come from."""

    arch: str
    channels: int
    size: int
    batch_size: int
    dataset: str = "synthetic"  # "digits" (real 8x8) or "synthetic" (seeded random uint8, long-tailed labels)
    steps: int = 2  # training steps (or eval batches) per timed segment

    @property
    def name(self) -> str:
        return f"{self.arch} {self.channels}x{self.size}x{self.size} b{self.batch_size}"


@dataclass
class BenchSettings:
    device: str = "auto"
    quick: bool = False
    models: list[ModelSpec] = field(default_factory=list)
    workloads: tuple[str, ...] = WORKLOADS
    rounds: int = 3  # timed segments per loop (alternating)
    steps: int | None = None  # per segment; None: 4 for the small CNN, else (and with --quick) 1
    warmup: int = 1
    seed: int = 0
    ref_workers: int | None = None  # DataLoader workers of the reference loop; None: 0 on CPU, 4 on a GPU
    amp: str = "auto"
    channels_last: str = "auto"
    compile: bool = False
    threads: int | None = None
    variants: bool = True  # measure each speed feature on the TAET stage-2 step and PGD-20
    check: bool = True
    costs: bool = True  # per-method cost table (notebook 07), each method in its own process
    cost_methods: tuple[str, ...] | None = None
    cost_profile: str = "smoke"
    out_dir: str = "outputs/bench"
    verbose: bool = True


def parse_model_spec(text: str, quick: bool, steps: int | None = None) -> ModelSpec:
    """"arch:CxS[:bBATCH]", e.g. "small_cnn:1x8", "resnet18:3x32:b128"."""
    parts = text.split(":")
    try:
        arch = parts[0]
        c, s = (int(v) for v in parts[1].lower().split("x"))
        bs = int(parts[2][1:]) if len(parts) > 2 else None
    except (IndexError, ValueError):
        raise ConfigError(f"model spec {text!r} is not ARCH:CxS[:bN], e.g. small_cnn:1x8 or resnet18:3x32:b128") \
            from None
    from .models import MODELS

    if arch not in MODELS:
        raise ConfigError(f"unknown model {arch!r} in {text!r}; valid: {sorted(MODELS)}")
    big = arch != "small_cnn"
    if bs is None:
        bs = (8 if quick else 128) if big else 128
    if steps is None:
        steps = 1 if (big or quick) else 4
    if bs < 1 or c < 1 or s < 1 or steps < 1:
        raise ConfigError(f"model spec {text!r}: channels, size, batch and steps must be >= 1")
    return ModelSpec(arch, c, s, bs, "digits" if (c, s) == (1, 8) else "synthetic", steps)


DEFAULT_MODELS = ("small_cnn:1x8", "small_cnn:1x28", "resnet18:3x32")


def default_models(quick: bool, steps: int | None = None) -> list[ModelSpec]:
    return [parse_model_spec(t, quick, steps) for t in DEFAULT_MODELS]


def _load_reference():
    """benchmarks/reference.py of the source tree (the bench needs the repository, not only the package)."""
    path = ROOT / "benchmarks" / "reference.py"
    if not path.exists():
        raise ConfigError(f"{path} not found: `python -m lib bench` runs from the kit's source tree")
    if "taet_bench_reference" in sys.modules:
        return sys.modules["taet_bench_reference"]
    spec = importlib.util.spec_from_file_location("taet_bench_reference", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@dataclass
class BenchData:
    train_hwc: np.ndarray  # uint8 (N, H, W, C): what the reference DataLoader reads
    train_y: np.ndarray
    test_hwc: np.ndarray
    test_y: np.ndarray
    num_classes: int
    class_counts: list[int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    padding: int
    flip: bool


def bench_data(spec: ModelSpec, seed: int, n_eval: int) -> BenchData:
    """Real long-tailed digits for 1x8x8 (padding 1, no flip: the demo profile), else seeded random uint8
    images with CIFAR-10-LT-like labels (IR 10; crop padding 4 and flip, the paper's augmentation)."""
    from .config import DataConfig
    from .data import build_data, long_tail_counts

    if spec.dataset == "digits":
        d = build_data(DataConfig(dataset="digits", imbalance_ratio=10.0), device="cpu", verbose=False)
        to_hwc = lambda t: t.permute(0, 2, 3, 1).contiguous().numpy()  # noqa: E731
        test_x, test_y = d.test_x[:n_eval], d.test_y[:n_eval]
        return BenchData(to_hwc(d.train_x), d.train_y.numpy(), to_hwc(test_x), test_y.numpy(), d.num_classes,
                         list(d.class_counts), d.mean, d.std, 1, False)
    rng = np.random.RandomState(seed)
    counts = long_tail_counts(2 * spec.batch_size, 10, 10.0)  # about 8 batches per epoch
    y = np.repeat(np.arange(10), counts)
    rng.shuffle(y)
    x = rng.randint(0, 256, size=(len(y), spec.size, spec.size, spec.channels), dtype=np.uint8)
    tx = rng.randint(0, 256, size=(n_eval, spec.size, spec.size, spec.channels), dtype=np.uint8)
    ty = rng.randint(0, 10, size=n_eval)
    return BenchData(x, y.astype(np.int64), tx, ty.astype(np.int64), 10, list(counts), (0.5,) * spec.channels,
                     (0.25,) * spec.channels, 4, True)


def _nchw(a: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(a).permute(0, 3, 1, 2).contiguous().to(device)


class Side:
    """One loop under test: a name, a function running one timed segment (returns images processed), and
    what it measured."""

    def __init__(self, name: str, run: Callable[[], int], device: torch.device):
        self.name, self.run, self.device = name, run, device
        self.times: list[float] = []
        self.cpu_times: list[float] = []  # process CPU seconds (all threads): robust to other jobs on the machine
        self.images: list[int] = []
        self.peak_mb = 0.0
        self.first_s = 0.0

    def segment(self, sync) -> None:
        with PeakMemory(self.device) as mem:
            t0, c0 = time.perf_counter(), time.process_time()
            n = self.run()
            sync()
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
        self.times.append(dt)
        self.cpu_times.append(dc)
        self.images.append(n)
        self.peak_mb = max(self.peak_mb, mem.peak_mb)

    def result(self) -> dict[str, Any]:
        ips = [n / t for n, t in zip(self.images, self.times)]
        cps = [n / max(t, 1e-9) for n, t in zip(self.images, self.cpu_times)]
        return {"images_per_s": max(ips), "images_per_s_median": float(np.median(ips)),
                "images_per_cpu_s": float(np.median(cps)),
                "seconds_per_segment": self.times, "cpu_seconds_per_segment": self.cpu_times,
                "images_per_segment": self.images,
                "peak_memory_mb": round(self.peak_mb, 1), "warmup_s": round(self.first_s, 3)}


def _interleave(sides: list[Side], rounds: int, warmup: int, sync) -> None:
    for s in sides:
        t0 = time.perf_counter()
        for _ in range(warmup):
            s.run()
        sync()
        s.first_s = time.perf_counter() - t0
    for r in range(rounds):
        for s in (sides if r % 2 == 0 else sides[::-1]):
            s.segment(sync)


class Harness:
    """The models, optimizers, data iterators and step functions of one ModelSpec, for both loops."""

    def __init__(self, spec: ModelSpec, st: BenchSettings, device: torch.device, ref):
        from .models import create_model

        self.spec, self.st, self.device, self.ref = spec, st, device, ref
        self.data = bench_data(spec, st.seed, n_eval=spec.batch_size * spec.steps)
        torch.manual_seed(st.seed)
        d = self.data
        self.base = create_model(spec.arch, d.num_classes, in_channels=spec.channels, image_size=spec.size,
                                 mean=d.mean, std=d.std).to(device)
        self.train_x = _nchw(d.train_hwc, device)
        self.train_y = torch.from_numpy(d.train_y).to(device)
        self.test_x = _nchw(d.test_hwc, device)
        self.test_y = torch.from_numpy(d.test_y).to(device)
        self.tcfg = TrainConfig(batch_size=spec.batch_size)
        # The official scripts load with worker processes on a GPU machine; on a small CPU the workers' prefetching
        # shares the cores with both loops' compute (and with the timed segments of the other loop), so none.
        self.ref_workers = st.ref_workers if st.ref_workers is not None else (
            0 if device.type == "cpu" else min(4, os.cpu_count() or 1))

    # ---- the reference-style loop -----------------------------------------------------------------
    def reference_side(self, workload: str) -> Side:
        ref, d, bs, dev = self.ref, self.data, self.spec.batch_size, self.device
        model = copy.deepcopy(self.base)
        steps = self.spec.steps
        pin = dev.type == "cuda"
        if workload == "pgd20":
            loader = ref.make_loader(d.test_hwc, d.test_y, bs, train=False, workers=self.ref_workers,
                                     pin_memory=pin)

            def run() -> int:
                ref.eval_pgd(model, loader, dev, steps=20)
                return len(d.test_y)
        else:
            opt = ref.make_optimizer(model)
            loader = ref.make_loader(d.train_hwc, d.train_y, bs, train=True, padding=d.padding, flip=d.flip,
                                     workers=self.ref_workers, seed=self.st.seed, pin_memory=pin)
            it = ref.endless(loader)
            log = []

            def run() -> int:
                n = 0
                for _ in range(steps):
                    batch = next(it)
                    log.append(ref.train_step(workload, model, opt, batch, dev, num_classes=d.num_classes,
                                              class_counts=d.class_counts))
                    n += len(batch[1])
                return n
        return Side("reference", run, dev)

    # ---- the kit's loop -----------------------------------------------------------------------------
    def kit_side(self, workload: str, name: str = "kit", *, amp: str | None = None,
                 channels_last: str | bool | None = None, compile: bool | None = None, trusted: bool = True,
                 fused_sgd: bool = True, freeze_attack_params: bool = False) -> Side:
        from . import speed
        from .attacks import _frozen_params, trusted_inputs
        from .config import EvalConfig
        from .data import iterate_batches
        from .evaluate import evaluate_model
        from .methods import MethodContext, build_method

        st, d, dev, bs = self.st, self.data, self.device, self.spec.batch_size
        layout = st.channels_last if channels_last is None else channels_last
        if workload == "pgd20":  # evaluation: eval mode only, where "auto" is channels_last on every device
            layout = speed.resolve_channels_last(layout, dev, training=False)
        sp = speed.plan(dev, amp=st.amp if amp is None else amp, channels_last=layout,
                        compile=st.compile if compile is None else compile, threads=st.threads)
        model = copy.deepcopy(self.base)
        model, fwd = speed.prepare_model(model, sp)
        steps = self.spec.steps
        def trust():
            return trusted_inputs(trusted)
        if workload == "pgd20":
            ecfg = EvalConfig(batch_size=bs)

            def run() -> int:
                with trust(), sp.autocast(), (_frozen_params(model) if freeze_attack_params else _null()):
                    evaluate_model(fwd, self.test_x, self.test_y, d.num_classes, ecfg, ["pgd20"], verbose=False)
                return int(self.test_y.numel())
            return Side(name, run, dev)

        ctx = MethodContext(d.num_classes, list(d.class_counts), 2, dev)
        method = build_method("atbsl" if workload == "atbsl" else "taet", {} if workload == "atbsl"
                              else {"ce_epochs": 1}, ctx)
        epoch = 0 if workload == "taet_stage1" else 1
        opt = (speed.make_optimizer(model.parameters(), self.tcfg, dev) if fused_sgd else
               torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4))
        gen = torch.Generator().manual_seed(st.seed)

        def batches():
            while True:
                yield from iterate_batches(self.train_x, self.train_y, bs, generator=gen, shuffle=True, augment=True,
                                           padding=d.padding, flip=d.flip)

        it = batches()
        acc = {"loss": torch.zeros((), device=dev), "correct": torch.zeros((), device=dev, dtype=torch.long),
               "bad": torch.full((), -1, device=dev, dtype=torch.long)}

        def run() -> int:  # the body of lib.train's epoch loop, plus the speed plan
            n = 0
            model.train()
            method.current_lr = opt.param_groups[0]["lr"]
            with trust():
                for i in range(steps):
                    xb, yb = next(it)
                    with sp.autocast():
                        out = method.step(fwd, xb, yb, epoch, gen)
                    finite = torch.isfinite(out.loss.detach())
                    acc["bad"] = torch.where((acc["bad"] < 0) & ~finite, torch.full_like(acc["bad"], i), acc["bad"])
                    opt.zero_grad(set_to_none=True)
                    out.loss.backward()
                    opt.step()
                    acc["loss"] += out.loss.detach() * yb.numel()
                    acc["correct"] += (out.logits.detach().argmax(1) == yb).sum()
                    n += yb.numel()
            return n
        return Side(name, run, dev)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _sync_fn(device: torch.device):
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


# ---------------------------------------------------------------------------------------------------
# Numerical check: the two loops compute the same losses (fp32, identical inputs)
# ---------------------------------------------------------------------------------------------------
def kit_clips_normal_start() -> bool:
    """Whether lib.attacks.pgd clips the start x + std·N(0,1) to [0, 1] before the first forward pass (the
    official code does not). Probed, so the check follows the kit if that changes."""
    from .attacks import pgd

    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(float(x.detach().min()))
            return x.flatten(1)[:, :2] * 1.0

    x = torch.zeros(1, 1, 2, 2)
    pgd(Probe(), x, torch.zeros(1, dtype=torch.long), eps=1.0, step_size=0.0, steps=1, start="normal", start_std=1.0,
        generator=torch.Generator().manual_seed(1))
    return seen[0] >= 0.0


def _clone_gen(gen: torch.Generator) -> torch.Generator:
    g = torch.Generator(device=gen.device)
    g.set_state(gen.get_state())
    return g


def numerical_check(h: Harness, st: BenchSettings) -> dict[str, Any]:
    """See :func:`_numerical_check`; run in true fp32 (no TF32) with deterministic cuDNN on a GPU."""
    from .attacks import _strict_fp32

    det = torch.backends.cudnn.deterministic
    try:
        torch.backends.cudnn.deterministic = True
        with _strict_fp32(h.device):
            return _numerical_check(h, st)
    finally:
        torch.backends.cudnn.deterministic = det


def _numerical_check(h: Harness, st: BenchSettings) -> dict[str, Any]:
    """Kit vs reference on the same batch, same weights, same start noise, fp32:

    1. HEL: the official class loop vs ``lib.losses.hel_loss`` on identical per-sample losses (a batch with a
       class missing): value and gradient.
    2. TAET stage-2 loss: ``TAET.step`` (lib PGD + vectorised HEL, the kit's layout) vs the reference HARL
       given the kit's start noise; also the adversarial images themselves.
    3. AT-BSL loss, the same way.
    4. The official start rule: the reference with x + 0.001·N(0,1) not clipped before the first step,
       against the kit (reported; it is a rule difference, not a numerical one, when the kit clips).
    """
    from . import speed
    from .attacks import trusted_inputs
    from .data import iterate_batches
    from .losses import hel_loss
    from .methods import MethodContext, build_method
    from .methods.common import train_pgd

    ref, d, dev = h.ref, h.data, h.device
    # Loop against loop in one layout: PGD's sign() turns rounding-level differences (another convolution
    # algorithm) into whole steps on a few pixels, so the layout is checked on its own below (5.).
    sp = speed.plan(dev, amp="off", channels_last=False, compile=False)
    bs = min(h.spec.batch_size, 64)
    gen = torch.Generator().manual_seed(st.seed + 7)
    xb, yb = next(iterate_batches(h.train_x, h.train_y, bs, generator=gen, shuffle=True, augment=True,
                                  padding=d.padding, flip=d.flip))
    kit_model = speed.prepare_model(copy.deepcopy(h.base), sp)[0].train()
    ref_model = copy.deepcopy(h.base).train()
    out: dict[str, Any] = {"batch_size": bs, "tolerance": CHECK_TOL}

    # 1. HEL on identical per-sample losses, with the batch's most frequent class removed (absent class).
    drop = int(torch.bincount(yb, minlength=d.num_classes).argmax())
    keep = yb != drop
    with torch.no_grad():
        base_losses = F.cross_entropy(ref_model.eval()(xb[keep]), yb[keep], reduction="none")
    ref_model.train()
    ps1 = base_losses.clone().requires_grad_(True)
    ps2 = base_losses.clone().requires_grad_(True)
    v_ref = ref.hel_loop(ps1, yb[keep], d.num_classes)
    v_kit = hel_loss(ps2, yb[keep], d.num_classes)
    g_ref, = torch.autograd.grad(v_ref, ps1)
    g_kit, = torch.autograd.grad(v_kit, ps2)
    v_ref, v_kit = float(v_ref.detach()), float(v_kit.detach())
    out["hel"] = {"reference": v_ref, "kit": v_kit, "abs_diff": abs(v_ref - v_kit),
                  "grad_max_abs_diff": float((g_ref - g_kit).abs().max()), "absent_class": drop}

    clip = kit_clips_normal_start()
    out["kit_clips_normal_start"] = clip
    ctx = MethodContext(d.num_classes, list(d.class_counts), 2, dev)
    for name, margs in (("taet_stage2", {"ce_epochs": 1}), ("atbsl", {})):
        method_name = "taet" if name == "taet_stage2" else "atbsl"
        method = build_method(method_name, margs, ctx)
        a = method.args
        km, rm = copy.deepcopy(kit_model), copy.deepcopy(ref_model)
        g = torch.Generator().manual_seed(st.seed + 11)
        noise = torch.randn(xb.shape, generator=_clone_gen(g), device=g.device, dtype=torch.float32).to(dev)
        x_adv_kit = train_pgd(copy.deepcopy(km), xb, yb, a, _clone_gen(g))
        with trusted_inputs():
            kit_out = method.step(km, xb, yb, 1, g)
        x_adv_ref = ref.pgd_official(copy.deepcopy(rm).train(), xb, yb, eps=a.eps, step_size=a.step_size,
                                     steps=a.steps, noise=noise, clip_start=clip)

        def reference_loss(model, clip_start, a=a, noise=noise, name=name):
            """The reference loop's loss and logits for this workload on the batch (same weights and noise)."""
            if name == "taet_stage2":
                return ref.taet_stage2_loss(model, xb, yb, d.num_classes, eps=a.eps, step_size=a.step_size,
                                            steps=a.steps, noise=noise, clip_start=clip_start)
            return ref.atbsl_loss(model, xb, yb, d.class_counts, eps=a.eps, step_size=a.step_size, steps=a.steps,
                                  noise=noise, clip_start=clip_start)

        ref_loss, ref_logits = reference_loss(rm, clip)
        ref_v, kit_v = float(ref_loss.detach()), float(kit_out.loss.detach())
        res = {"reference": ref_v, "kit": kit_v, "abs_diff": abs(ref_v - kit_v),
               "logits_max_abs_diff": float((ref_logits - kit_out.logits.float()).detach().abs().max()),
               "x_adv_max_abs_diff": float((x_adv_ref - x_adv_kit).abs().max()),
               "x_adv_pixels_differing": int((x_adv_ref != x_adv_kit).sum())}
        if clip:  # what the official, unclipped start gives on the same batch and noise
            off, _ = reference_loss(copy.deepcopy(ref_model), False)
            res["official_unclipped_start"] = {"reference": float(off.detach()), "abs_diff_to_kit":
                                               abs(float(off.detach()) - kit_v)}
        out[name] = res
    out["layout"] = _layout_check(h, xb, yb, trains_channels_last=speed.resolve_channels_last(st.channels_last, dev))
    out["passed"] = bool(out["hel"]["abs_diff"] <= CHECK_TOL and out["hel"]["grad_max_abs_diff"] <= CHECK_TOL
                         and out["taet_stage2"]["abs_diff"] <= CHECK_TOL and out["atbsl"]["abs_diff"] <= CHECK_TOL
                         and out["layout"]["passed"])
    return out


def _layout_check(h: Harness, xb: torch.Tensor, yb: torch.Tensor, trains_channels_last: bool) -> dict[str, Any]:
    """channels_last against contiguous weights, fp32, on one batch (relative max differences).

    Gated: eval mode (the attack) logits and input gradient, train mode logits: same arithmetic up to
    summation order, so within the tolerance. The train-mode weight gradients' error against fp64 is reported
    for both layouts, and gated (channels_last within 10x NCHW's, or 1e-4) when the kit trains in channels_last
    on this device: PyTorch's CPU channels_last batch-norm backward is far less accurate (README, Performance)."""
    from . import speed

    rel = lambda u, v: float((u - v).abs().max() / v.abs().max().clamp_min(1e-30))  # noqa: E731
    out: dict[str, Any] = {}
    for mode in ("eval", "train"):
        res = []
        for m in (copy.deepcopy(h.base), speed.to_channels_last(copy.deepcopy(h.base))):
            m.train(mode == "train")
            xr = xb.clone().requires_grad_(True)
            z = m(xr)
            g, = torch.autograd.grad(F.cross_entropy(z, yb, reduction="sum"), xr)
            res.append((z.detach(), g))
        out[mode] = {"logits_rel_diff": rel(res[1][0], res[0][0])}
        if mode == "eval":
            out[mode]["input_grad_rel_diff"] = rel(res[1][1], res[0][1])
    grads = {}
    for name, m, dtype in (("fp64", copy.deepcopy(h.base).double(), torch.float64),
                           ("contiguous", copy.deepcopy(h.base), torch.float32),
                           ("channels_last", speed.to_channels_last(copy.deepcopy(h.base)), torch.float32)):
        m.train()
        F.cross_entropy(m(xb.to(dtype)), yb, reduction="sum").backward()
        grads[name] = [p.grad.double() for p in m.parameters()]
    out["train_weight_grad_error_vs_fp64"] = {
        k: max(rel(a, b) for a, b in zip(grads[k], grads["fp64"])) for k in ("contiguous", "channels_last")}
    err = out["train_weight_grad_error_vs_fp64"]
    out["channels_last_training_ok"] = err["channels_last"] <= max(10 * err["contiguous"], CHECK_TOL)
    out["gates_training_layout"] = trains_channels_last
    out["passed"] = (all(v <= CHECK_TOL for mode in ("eval", "train") for v in out[mode].values())
                     and (out["channels_last_training_ok"] or not trains_channels_last))
    return out


# ---------------------------------------------------------------------------------------------------
# Hardware, projections, the report
# ---------------------------------------------------------------------------------------------------
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
        import re
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
    import torchvision

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


# ---------------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------------
def variant_list(device: torch.device, st: BenchSettings) -> list[tuple[str, dict[str, Any]]]:
    """The kit before this work, then one speed feature added at a time (cumulative), then opt-ins."""
    from . import speed

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
    from . import runs, speed
    from .train import resolve_device

    dev = resolve_device(st.device)
    speed.configure_threads(st.threads)
    ref = _load_reference()
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


# ---------------------------------------------------------------------------------------------------
# bf16 accuracy check: a short TAET run in bf16 against the same run in fp32
# ---------------------------------------------------------------------------------------------------
def short_run(cfg: RunConfig, amp: str, *, attacks=("clean", "pgd20"), verbose: bool = False) -> dict[str, Any]:
    """Train `cfg` with lib.train's loop body and schedule under the speed plan (amp as given), then evaluate in
    fp32 (attacks without autocast). Nothing is written to disk."""
    from . import speed
    from .attacks import trusted_inputs
    from .data import build_data, iterate_batches
    from .evaluate import evaluate_model
    from .methods import MethodContext, build_method
    from .train import _build_model, _milestones, resolve_device, seed_everything, validate

    cfg = validate(cfg)
    dev = resolve_device(cfg.train.device)
    sp = speed.plan(dev, amp=amp, channels_last="auto")
    data = build_data(cfg.data, device=dev, verbose=False)
    seed_everything(cfg.train.seed)
    method = build_method(cfg.method, cfg.method_args, MethodContext(data.num_classes, list(data.class_counts),
                                                                     cfg.train.epochs, dev))
    model, fwd = speed.prepare_model(_build_model(cfg, data, method, dev), sp)
    opt = speed.make_optimizer(model.parameters(), cfg.train, dev)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=_milestones(cfg), gamma=cfg.train.lr_gamma)
    gen = torch.Generator().manual_seed(cfg.train.seed)
    t0 = time.perf_counter()
    with trusted_inputs():
        for epoch in range(cfg.train.epochs):
            model.train()
            method.current_lr = opt.param_groups[0]["lr"]
            for xb, yb in iterate_batches(data.train_x, data.train_y, cfg.train.batch_size, generator=gen,
                                          shuffle=True, augment=cfg.data.augment, padding=cfg.data.crop_padding,
                                          flip=cfg.data.flip):
                with sp.autocast():
                    out = method.step(fwd, xb, yb, epoch, gen)
                opt.zero_grad(set_to_none=True)
                out.loss.backward()
                opt.step()
            sched.step()
    train_s = time.perf_counter() - t0
    model.eval()
    res = evaluate_model(method.eval_model(model), data.test_x, data.test_y, data.num_classes, cfg.eval, attacks,
                         verbose=verbose)
    return {"amp": sp.amp, "train_seconds": round(train_s, 1),
            **{f"{a}_balanced": res[a]["balanced"] for a in attacks}}


def bf16_check(profile: str = "demo", device: str = "auto", epochs: int | None = None, seed: int = 0,
               tolerance: float = 0.01, verbose: bool = True) -> dict[str, Any]:
    """TAET under `profile` trained in fp32 and in bf16 (same seed, same data), evaluated in fp32; also fp32 with
    the next seed, to show the seed-to-seed spread. Passes when bf16's balanced PGD-20 robustness is within
    `tolerance` (1 point) of fp32's."""
    from dataclasses import replace as dc_replace

    from .config import profile_config

    cfg = profile_config(profile, "taet")
    train = dc_replace(cfg.train, device=device, seed=seed, progress=False, track_every=0)
    args = dict(cfg.method_args)
    if epochs is not None:
        args["ce_epochs"] = max(0, min(args.get("ce_epochs", 0), int(round(epochs * 0.4))))
        train = dc_replace(train, epochs=epochs)
    cfg = dc_replace(cfg, train=train, method_args=args)
    log = print if verbose else (lambda *a, **k: None)
    runs_ = {}
    for name, amp, sd in (("fp32", "off", seed), ("bf16", "bf16", seed), ("fp32_next_seed", "off", seed + 1)):
        c = dc_replace(cfg, train=dc_replace(cfg.train, seed=sd))
        runs_[name] = short_run(c, amp)
        log(f"bf16 check ({profile}, {cfg.model.arch}, {cfg.train.epochs} epochs) {name}: clean "
            f"{runs_[name]['clean_balanced']:.4f}, PGD-20 {runs_[name]['pgd20_balanced']:.4f} "
            f"({runs_[name]['train_seconds']:.0f} s training)")
    diff = abs(runs_["bf16"]["pgd20_balanced"] - runs_["fp32"]["pgd20_balanced"])
    spread = abs(runs_["fp32_next_seed"]["pgd20_balanced"] - runs_["fp32"]["pgd20_balanced"])
    out = {"profile": profile, "arch": cfg.model.arch, "dataset": cfg.data.dataset, "epochs": cfg.train.epochs,
           "runs": runs_, "pgd20_balanced_abs_diff": diff, "fp32_seed_spread": spread, "tolerance": tolerance,
           "passed": diff <= tolerance}
    log(f"bf16 check: |bf16 - fp32| balanced PGD-20 = {diff:.4f} (fp32 seed-to-seed {spread:.4f}) -> "
        f"{'PASS' if out['passed'] else 'FAIL'} (tolerance {tolerance})")
    return out


def _method_costs(st: BenchSettings, dev: torch.device) -> dict[str, Any]:
    from .config import notebook_settings
    from .experiments import run_config, table_methods

    methods = list(st.cost_methods) if st.cost_methods else (["taet", "atbsl"] if st.quick else table_methods())
    e = notebook_settings(st.cost_profile)["efficiency"]  # what notebook 07 measures for that profile
    cfgs = [run_config(st.cost_profile, m, device=str(dev), out_dir="outputs/bench", data={"dataset": e["dataset"]},
                       model={"arch": e["arch"]}, train={"batch_size": e["batch_size"]}) for m in methods]
    return {"profile": st.cost_profile, "arch": e["arch"], "batch_size": e["batch_size"], "dataset": e["dataset"],
            "methods": measure_costs(cfgs, steps=min(e["steps"], 2) if st.quick else e["steps"], threads=st.threads)}


__all__ = ["step_costs", "measure_costs", "run_bench", "bf16_check", "short_run", "BenchSettings", "ModelSpec",
           "parse_model_spec", "numerical_check", "default_models", "projections", "PeakMemory",
           "kit_clips_normal_start"]
