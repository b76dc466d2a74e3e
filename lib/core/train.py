"""The epoch loop: stages, optimizer and schedule, atomic checkpoints with exact resume, history.

`build_training(cfg, device)` makes what a run trains with (data, model, method, speed plan, optimizer, schedule)
and `train_step` is the one training step (attack + loss + backward + optimizer step); the epoch loop here, the
benchmark (`lib.bench.runner`), the cost measurements (`lib.study.costs`) and the bf16 check (`lib.bench.checks`) all
call them.
Schedule (TAET and AT-BSL official code): SGD lr 0.1, momentum 0.9, weight decay 5e-4, batch 128,
100 epochs, lr ×0.1 after epochs 75 and 90 (milestones are fractions of `epochs`, so they scale with it).
Every epoch ends with an atomic checkpoint holding model, optimizer, scheduler, epoch, history and all
RNG states (Python, NumPy, torch CPU/CUDA, the data/attack generator): `resume` continues bit-exactly on CPU.
A run folder has one writer at a time (`lib.core.runs.run_lock`, held for the whole call). Under torchrun the
same loop trains with DistributedDataParallel (see `lib.core.distributed`); without it nothing changes.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from lib.core import distributed, runs, speed
from lib.core.attacks import pgd, trusted_inputs
from lib.core.config import ConfigError, RunConfig, check_switches
from lib.core.data import DATASETS, DataBundle, build_data, iterate_batches, validate_data_config
from lib.core.methods import Method, MethodContext, StepOutput, build_method, resolve_method_args
from lib.core.metrics import per_class_recall
from lib.core.models import MODELS, create_model


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf at `epoch`, `batch` (1-based); the last good checkpoint is kept, and the run folder
    records the divergence in diverged.json (`lib.core.runs.write_diverged`)."""

    def __init__(self, message: str, epoch: int = 0, batch: int = 0):
        super().__init__(message)
        self.epoch, self.batch = epoch, batch


@dataclass
class TrainResult:
    run_dir: Path
    config: RunConfig
    model: torch.nn.Module
    data: DataBundle
    method: Method
    history: list[dict[str, Any]]
    reused: bool


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too


def _rng_state(gen: torch.Generator) -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": gen.get_state(),
    }


def _set_rng_state(state: dict[str, Any], gen: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    gen.set_state(state["generator"])


def validate(cfg: RunConfig) -> RunConfig:
    """Check everything that can be checked without data or compute; return the config with the method's
    hyperparameters resolved (so that the hash covers them)."""
    if cfg.data.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {cfg.data.dataset!r}; valid: {sorted(DATASETS)}")
    if cfg.model.arch not in MODELS:
        raise ConfigError(f"unknown model {cfg.model.arch!r}; valid: {sorted(MODELS)}")
    if cfg.model.pretrained and not MODELS[cfg.model.arch].model_info.has_pretrained:
        raise ConfigError(f"--pretrained: {cfg.model.arch} has no pretrained weights; "
                          f"use resnet50_tv or vit_b16, or drop --pretrained")
    if cfg.data.imbalance_ratio < 1:
        raise ConfigError(
            f"imbalance ratio {cfg.data.imbalance_ratio} < 1; it is n_max / n_min (paper: 10, 20, 50, 100)"
        )
    validate_data_config(cfg.data)
    check_switches(cfg, MODELS[cfg.model.arch].model_info.input_size)
    t = cfg.train
    if t.epochs < 1 or t.batch_size < 1:
        raise ConfigError(f"epochs ({t.epochs}) and batch size ({t.batch_size}) must be >= 1")
    if not t.lr > 0:
        raise ConfigError(f"learning rate {t.lr} must be > 0 (paper: 0.1)")
    if any(not 0 < m <= 1 for m in t.milestones):
        raise ConfigError(f"milestones {t.milestones} must be fractions of the epochs in (0, 1] (paper: 0.75, 0.9)")
    if t.track_every and not (0 <= t.track_eps <= 1 and 0 < t.track_step_size <= 1 and t.track_pgd_steps >= 1):
        raise ConfigError(f"per-class tracking attack: track_eps={t.track_eps} must be in [0, 1], track_step_size="
                          f"{t.track_step_size} in (0, 1] and track_pgd_steps={t.track_pgd_steps} >= 1 "
                          "(pixel units: 8/255 = 0.0314)")
    sp = speed.plan_for(t, resolve_device(t.device))
    args = resolve_method_args(cfg.method, cfg.method_args)
    cfg = replace(cfg, method_args=args, train=replace(t, amp=sp.amp))  # the hash covers the precision used
    # The method's own checks (ε ranges, ce_epochs <= epochs), with a dummy context.
    build_method(cfg.method, args, MethodContext(2, [1, 1], t.epochs, torch.device("cpu")))
    return cfg


def milestones(cfg: RunConfig) -> list[int]:
    """The epochs after which the learning rate drops (`train.milestones` are fractions of `epochs`)."""
    return sorted({max(1, int(round(f * cfg.train.epochs))) for f in cfg.train.milestones})


def _progress_enabled(cfg: RunConfig) -> bool:
    return bool(cfg.train.progress) and sys.stderr.isatty()


def _tracking_subset(data: DataBundle, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, stratified subset of the test set for per-epoch per-class tracking (paper Fig. 1-2)."""
    n = data.test_y.numel()
    if size >= n:
        return data.test_x, data.test_y
    g = torch.Generator().manual_seed(seed)
    y = data.test_y.cpu()
    keep = []
    frac = size / n
    for c in range(data.num_classes):
        idx = (y == c).nonzero().flatten()
        k = max(1, int(round(frac * idx.numel()))) if idx.numel() else 0
        keep.append(idx[torch.randperm(idx.numel(), generator=g)[:k]])
    sel = torch.cat(keep).sort().values.to(data.test_y.device)
    return data.test_x[sel], data.test_y[sel]


def track_per_class(model, x_u8, y, num_classes, *, eps, step_size, steps, batch_size=256) -> dict[str, Any]:
    """Per-class clean accuracy and PGD robustness on a fixed subset (seeded attack, training RNG untouched)."""
    gen = torch.Generator().manual_seed(1234)
    was_training = model.training
    model.eval()
    clean_p, adv_p = [], []
    for i in range(0, y.numel(), batch_size):
        xb = x_u8[i:i + batch_size].float() / 255.0
        yb = y[i:i + batch_size]
        with torch.no_grad():
            clean_p.append(model(xb).argmax(1))
        xa = pgd(model, xb, yb, eps=eps, step_size=step_size, steps=steps, generator=gen)
        with torch.no_grad():
            adv_p.append(model(xa).argmax(1))
    model.train(was_training)
    rc = per_class_recall(torch.cat(clean_p), y, num_classes)
    ra = per_class_recall(torch.cat(adv_p), y, num_classes)
    row: dict[str, Any] = {
        "track_clean_bal": float(np.nanmean(rc.numpy())),
        "track_pgd_bal": float(np.nanmean(ra.numpy())),
    }
    row.update({f"clean_c{c}": float(rc[c]) for c in range(num_classes)})
    row.update({f"pgd_c{c}": float(ra[c]) for c in range(num_classes)})
    return row


def train_run(cfg: RunConfig, *, resume: str | bool = "auto", force: bool = False, verbose: bool = True,
              stop_after_epoch: int | None = None, sync_bn: bool = False) -> TrainResult:
    """Train (or reuse) the run `cfg` describes.

    resume: "auto" continues a compatible unfinished checkpoint, True requires one, False starts over.
    force: retrain from scratch even if a finished run with the same config exists.
    stop_after_epoch: stop cleanly after this many epochs (tests use it to simulate an interruption).
    sync_bn: under torchrun, SyncBatchNorm across the processes (CUDA only).
    The run folder's lock is held throughout: a second process on the same folder gets a RunLockedError.
    """
    cfg = validate(cfg)
    rd = runs.run_dir(cfg)
    if resume is True and not (rd / "checkpoint.pt").exists():
        raise ConfigError(f"--resume: no checkpoint at {rd / 'checkpoint.pt'}; train without --resume first")
    with distributed.on_rank_zero(lambda: runs.run_lock(rd, "train")):
        return _train_locked(cfg, resume=resume, force=force, verbose=verbose, stop_after_epoch=stop_after_epoch,
                             sync_bn=sync_bn)


@dataclass
class Training:
    """Everything one run trains with, built once by :func:`build_training` and stepped by :func:`train_step`."""

    model: torch.nn.Module  # what is optimised and saved (the bare model, never a DDP or compiled wrapper)
    net: Callable  # what `method.step` calls: the model, or its DDP / compiled wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    method: Method
    plan: speed.SpeedPlan
    data: DataBundle | None = None  # None where the caller brings its own batches (the benchmark harness)
    ddp: bool = False  # one of several torchrun processes: the loss is weighted to the global batch


def build_training(cfg: RunConfig, device: torch.device, *, ddp: bool = False, sync_bn: bool = False,
                   threads: int | None = None, verbose: bool = False) -> Training:
    """Data, seeded model, method, speed plan, optimizer and schedule of `cfg` on `device` (a validated config).

    Schedule as the TAET and AT-BSL official code: SGD with momentum and weight decay, lr ×`lr_gamma` at the
    milestones. `ddp`: this process is one of a torchrun group (DistributedDataParallel around the model).
    `threads` overrides the config's torch intra-op threads (the cost measurements pin them)."""
    data = build_data(cfg.data, device=device, verbose=verbose)
    seed_everything(cfg.train.seed)
    ctx = MethodContext(data.num_classes, list(data.class_counts), cfg.train.epochs, device, distributed=ddp)
    method = build_method(cfg.method, cfg.method_args, ctx)
    sp = speed.plan_for(cfg.train, device)
    speed.configure_threads(threads or sp.threads)
    model, net = speed.prepare_model(build_model(cfg, data, method, device), sp)
    if ddp:
        _check_distributed(cfg, data, method)
        model, net = distributed.wrap_model(model, device, sync_bn)
        net = speed.maybe_compile(net, sp.compile)
    opt = speed.make_optimizer(model.parameters(), cfg.train, device)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones(cfg), gamma=cfg.train.lr_gamma)
    return Training(model, net, opt, sched, method, sp, data, ddp)


def train_step(t: Training, x: torch.Tensor, y: torch.Tensor, epoch: int, generator: torch.Generator | None, *,
               n_global: int | None = None, trusted: bool = True) -> StepOutput:
    """One optimizer step: `method.step` (attack and loss, under the speed plan's autocast), backward, SGD step.

    The only place the kit steps an optimizer: the epoch loop, the benchmark and the cost measurements call it.
    `n_global`: under DDP, the size of the global batch this shard belongs to (DDP averages the ranks' gradients,
    so each shard's mean is weighted by n_r·W/N). `trusted`: the batch is known to lie in [0, 1] (batches from
    `iterate_batches` are), so attacks skip their range check and its device sync."""
    with t.plan.autocast(), trusted_inputs(trusted):
        out = t.method.step(t.net, x, y, epoch, generator)
    t.optimizer.zero_grad(set_to_none=True)
    if t.ddp:
        (out.loss * distributed.shard_weight(y.numel(), n_global or y.numel())).backward()
    else:
        out.loss.backward()
    t.optimizer.step()
    return out


def _train_locked(cfg: RunConfig, *, resume: str | bool, force: bool, verbose: bool, stop_after_epoch: int | None,
                  sync_bn: bool) -> TrainResult:
    ddp = distributed.is_distributed()  # under torchrun; `ddp` marks the DDP-only paths
    device = distributed.local_device(resolve_device(cfg.train.device)) if ddp else resolve_device(cfg.train.device)
    main = distributed.is_main()
    log = print if verbose and main else (lambda *a, **k: None)
    h, rd = runs.config_hash(cfg), runs.run_dir(cfg)
    existing = _existing_checkpoint(cfg, rd, h, resume, force)
    recorded = runs.read_diverged(rd, cfg)
    if recorded is not None and not force:  # the same config and seed diverge the same way: say so, train nothing
        raise TrainingDiverged(f"{recorded['message']} (recorded by an earlier attempt in {rd / runs.DIVERGED_FILE}; "
                               "pass --force, or force=True, to train it again)", recorded["epoch"], recorded["batch"])
    if recorded is not None and main:
        (rd / runs.DIVERGED_FILE).unlink()
    t = build_training(cfg, device, ddp=ddp, sync_bn=sync_bn, verbose=verbose and main)
    gen = torch.Generator().manual_seed(cfg.train.seed)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if existing is not None and existing.get("finished") and not force:
        t.model.load_state_dict(existing["model"])
        if main and _csv_rows(rd / "history.csv") != len(existing["history"]):  # killed before its last write
            runs.atomic_write_csv(rd / "history.csv", existing["history"])
        log(f"reusing finished run {rd} (config {h}); pass --force to retrain")
        return TrainResult(rd, cfg, t.model, t.data, t.method, existing["history"], reused=True)
    if existing is not None and resume in ("auto", True):
        _restore(existing, t, gen)
        history, start_epoch = list(existing["history"]), existing["epoch"]
        log(f"resuming {rd} after epoch {start_epoch}/{cfg.train.epochs}")
    if main:
        rd.mkdir(parents=True, exist_ok=True)
        runs.write_config(rd, cfg)
    track = _tracking_subset(t.data, cfg.train.track_size, cfg.data.seed) if cfg.train.track_every > 0 else None
    log(f"training {cfg.method} ({t.method.summary}) on {t.data.name}, {cfg.model.arch}, {device}; run folder {rd}")

    for epoch in range(start_epoch, cfg.train.epochs):
        try:
            row = train_epoch(cfg, t, epoch, gen, rd / "checkpoint.pt")
        except TrainingDiverged as e:
            if main:  # a result in its own right (e.g. a factorial cell that cannot be trained): kept, not retried
                runs.write_diverged(rd, cfg, epoch=e.epoch, batch=e.batch, message=str(e))
            raise
        if track is not None and main and ((epoch + 1) % cfg.train.track_every == 0 or epoch + 1 == cfg.train.epochs):
            row.update(track_per_class(t.method.eval_model(t.model), track[0], track[1], t.data.num_classes,
                                       eps=cfg.train.track_eps, step_size=cfg.train.track_step_size,
                                       steps=cfg.train.track_pgd_steps))
        history.append(row)
        _save(rd, t, gen, history, cfg, h, sync_bn)
        finished = epoch + 1 == cfg.train.epochs
        msg = f"epoch {epoch + 1}/{cfg.train.epochs} [{row['stage']}] loss {row['loss']:.4f} acc {row['train_acc']:.3f}"
        if "track_pgd_bal" in row:
            msg += f" | tracked clean {row['track_clean_bal']:.3f} pgd {row['track_pgd_bal']:.3f}"
        log(msg + f" ({row['seconds']:.1f}s)")
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and not finished:
            log(f"stopping after epoch {epoch + 1} as asked; continue with --resume")
            break
    return TrainResult(rd, cfg, t.model, t.data, t.method, history, reused=False)


def train_epoch(cfg: RunConfig, t: Training, epoch: int, gen: torch.Generator, ckpt_path: Path | None = None
                ) -> dict[str, Any]:
    """One epoch over the shuffled, augmented train set; its history row (loss, train accuracy, lr, seconds).
    Raises TrainingDiverged after the epoch if a loss was NaN/inf (checked without a per-step device sync)."""
    t0 = time.perf_counter()
    t.model.train()
    stage = t.method.stage(epoch)
    t.method.current_lr = t.optimizer.param_groups[0]["lr"]
    step_gen = gen  # one process: one generator for batches and the method's draws
    if t.ddp:  # the batch generator stays shared; the method's draws get a per-rank, per-epoch stream
        seed = distributed.stream_seed(cfg.train.seed, epoch, distributed.rank())
        seed_everything(seed)
        step_gen = torch.Generator(device=gen.device).manual_seed(seed)
    stats = EpochStats(t.data.train_y.device)
    batches = iterate_batches(t.data.train_x, t.data.train_y, cfg.train.batch_size, generator=gen, shuffle=True,
                              augment=cfg.data.augment, padding=cfg.data.crop_padding, flip=cfg.data.flip)
    bar = tqdm(batches, total=math.ceil(t.data.train_y.numel() / cfg.train.batch_size), leave=False,
               disable=not _progress_enabled(cfg), desc=f"{cfg.method} epoch {epoch + 1}/{cfg.train.epochs} [{stage}]")
    for i, (xb, yb) in enumerate(bar):
        n_global = yb.numel()
        if t.ddp:
            xb, yb = distributed.shard(xb, yb)
        stats.add(i, train_step(t, xb, yb, epoch, step_gen, n_global=n_global), yb)
    if t.ddp:  # epoch statistics of the global batches
        stats.all_reduce()
    if int(stats.bad_batch) >= 0:
        bad = int(stats.bad_batch) + 1
        if ckpt_path is None:
            kept = ""
        elif epoch == 0:
            kept = " (no epoch had finished, so there is no checkpoint)"
        else:
            kept = f"; the last good checkpoint ({ckpt_path}, after epoch {epoch}) is kept"
        raise TrainingDiverged(f"loss became NaN/inf at epoch {epoch + 1}, batch {bad}{kept}. "
                               "Lower --lr or check the data and method settings", epoch + 1, bad)
    lr = t.optimizer.param_groups[0]["lr"]
    t.scheduler.step()
    return {"epoch": epoch + 1, "stage": stage, "loss": float(stats.loss_sum) / stats.seen,
            "train_acc": int(stats.correct) / stats.seen, "lr": lr, "seconds": round(time.perf_counter() - t0, 4)}


class EpochStats:
    """An epoch's loss sum, correct predictions, samples seen and first non-finite batch, kept on the device so
    that a step never waits for the GPU."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.seen = 0
        self.bad_batch = torch.full((), -1, device=device, dtype=torch.long)

    def add(self, i: int, out: StepOutput, y: torch.Tensor) -> None:
        finite = torch.isfinite(out.loss.detach())
        self.bad_batch = torch.where((self.bad_batch < 0) & ~finite, torch.full_like(self.bad_batch, i), self.bad_batch)
        self.loss_sum += out.loss.detach() * y.numel()
        self.correct += (out.logits.detach().argmax(1) == y).sum()
        self.seen += y.numel()

    def all_reduce(self) -> None:
        """Sums (and the first bad batch) over the torchrun processes: the global batches' statistics."""
        self.loss_sum = distributed.all_reduce_sum(self.loss_sum)
        self.correct = distributed.all_reduce_sum(self.correct)
        self.seen = int(distributed.all_reduce_sum(torch.tensor(self.seen, device=self.loss_sum.device)))
        self.bad_batch = distributed.all_reduce_max(self.bad_batch)


def _existing_checkpoint(cfg: RunConfig, rd: Path, h: str, resume: str | bool, force: bool) -> dict | None:
    """The run folder's checkpoint when it belongs to this config (None when there is none, or with `force`);
    ConfigError for a folder holding another config, or --resume without a checkpoint."""
    ckpt_path = rd / "checkpoint.pt"
    existing = None
    if (rd / "config.json").exists() and not force:
        old = runs.read_config(rd)
        if runs.config_hash(old) != h:
            raise ConfigError(
                f"run folder {rd} holds a run with a different config (hash {runs.config_hash(old)} != {h}); "
                "choose another --name or pass --force to overwrite it"
            )
        if ckpt_path.exists():
            existing = runs.load_checkpoint(ckpt_path, expect_hash=h, expect_method=cfg.method)
    elif resume is True and not ckpt_path.exists():
        raise ConfigError(f"--resume: no checkpoint at {ckpt_path}; train without --resume first")
    if resume is True and existing is None and not force:
        raise ConfigError(f"--resume: no checkpoint at {ckpt_path}; train without --resume first")
    return existing


def _restore(ckpt: dict[str, Any], t: Training, gen: torch.Generator) -> None:
    """Model, method, optimizer, schedule and every RNG as the checkpoint left them (exact resume)."""
    t.model.load_state_dict(ckpt["model"])
    t.method.load_state_dict(ckpt.get("method_state", {}))
    t.optimizer.load_state_dict(ckpt["optimizer"])
    t.scheduler.load_state_dict(ckpt["scheduler"])
    _set_rng_state(ckpt["rng"], gen)


def _save(rd: Path, t: Training, gen: torch.Generator, history: list[dict[str, Any]], cfg: RunConfig, h: str,
          sync_bn: bool) -> None:
    """The checkpoint after the last epoch of `history` and history.csv, written atomically by the main process;
    every process waits for it."""
    epoch = history[-1]["epoch"]
    ckpt = {
        "model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(), "scheduler": t.scheduler.state_dict(),
        "epoch": epoch, "rng": _rng_state(gen), "history": history, "config_hash": h, "method": cfg.method,
        "finished": epoch == cfg.train.epochs, "method_state": t.method.state_dict(),
    }
    if t.ddp:
        ckpt["distributed"] = {"world_size": distributed.world_size(), "sync_bn": sync_bn}
    if distributed.is_main():
        runs.atomic_torch_save(rd / "checkpoint.pt", ckpt)
        runs.atomic_write_csv(rd / "history.csv", history)
    distributed.barrier()


def _csv_rows(path: Path) -> int:
    try:
        return len(runs.read_csv(path))
    except (OSError, ValueError):
        return -1


def _check_distributed(cfg: RunConfig, data: DataBundle, method: Method) -> None:
    """What DDP training cannot do, said before the first step."""
    if type(method).state_dict is not Method.state_dict:
        raise ConfigError(f"method {cfg.method!r} keeps state across steps (saved in its checkpoints) that would "
                          "differ between processes; train it with one process (python -m lib train, no torchrun)")
    last = data.train_y.numel() % cfg.train.batch_size
    if 0 < last < distributed.world_size():
        raise ConfigError(f"the last batch of each epoch has {last} sample(s), fewer than the "
                          f"{distributed.world_size()} processes; change --batch-size or --nproc_per_node")


def load_run(run_dir, device: str = "auto", verbose: bool = False):
    """(config, model with the final weights, data bundle, method) of a trained run folder."""
    rd = Path(run_dir)
    cfg = runs.read_config(rd)
    cfg = replace(cfg, train=replace(cfg.train, device=device))
    dev = resolve_device(device)
    ckpt_path = rd / "checkpoint.pt"
    if not ckpt_path.exists():
        raise ConfigError(f"{rd} has no checkpoint.pt; train it first (python -m lib train ...)")
    ckpt = runs.load_checkpoint(ckpt_path, expect_hash=runs.config_hash(cfg), expect_method=cfg.method)
    data = build_data(cfg.data, device=dev, verbose=verbose)
    ctx = MethodContext(data.num_classes, list(data.class_counts), cfg.train.epochs, dev)
    method = build_method(cfg.method, cfg.method_args, ctx)
    seed_everything(cfg.train.seed)
    model = speed.to_channels_last(build_model(cfg, data, method, dev),  # eval only: channels_last is exact there
                                   speed.resolve_channels_last(cfg.train.channels_last, dev, training=False))
    model.load_state_dict(ckpt["model"])
    method.load_state_dict(ckpt.get("method_state", {}))
    model.eval()
    return cfg, model, data, method, ckpt


def build_model(cfg: RunConfig, data: DataBundle, method: Method, device: torch.device) -> torch.nn.Module:
    """The run's model, adapted by its method (`prepare_model`), on `device`."""
    model = create_model(cfg.model.arch, data.num_classes, in_channels=data.channels, image_size=data.image_size,
                         mean=data.mean, std=data.std, normalize=cfg.model.normalize,
                         pretrained=cfg.model.pretrained, resize=cfg.model.resize)
    return method.prepare_model(model).to(device)
