"""The benchmark's harness: the settings, the two loops it compares (the reference-style loop of
``benchmarks/reference.py`` and the kit's own), their shared data and the interleaved timing of their segments.
:mod:`lib.bench.runner` runs it; :mod:`lib.bench.checks` compares its two sides' numbers."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lib.core import speed
from lib.core.attacks import _frozen_params, trusted_inputs  # attacks.py has no public name for _frozen_params yet
from lib.core.config import ConfigError, DataConfig, EvalConfig, TrainConfig
from lib.core.data import build_data, iterate_batches, long_tail_counts
from lib.core.evaluate import evaluate_model
from lib.core.methods import MethodContext, build_method
from lib.core.models import MODELS, create_model
from lib.core.train import EpochStats, Training, train_step
from lib.study.costs import PeakMemory

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = ("taet_stage1", "taet_stage2", "atbsl", "pgd20")


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


def load_reference():
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
                frozen = _frozen_params(model) if freeze_attack_params else contextlib.nullcontext()
                with trust(), sp.autocast(), frozen:
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
        t = Training(model, fwd, opt, None, method, sp)
        stats = EpochStats(dev)

        def run() -> int:  # the body of lib.core.train's epoch loop: train_step and the epoch statistics
            n = 0
            model.train()
            method.current_lr = opt.param_groups[0]["lr"]
            for i in range(steps):
                xb, yb = next(it)
                stats.add(i, train_step(t, xb, yb, epoch, gen, trusted=trusted), yb)
                n += yb.numel()
            return n
        return Side(name, run, dev)


def _sync_fn(device: torch.device):
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
