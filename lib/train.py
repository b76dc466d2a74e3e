"""The epoch loop: stages, optimizer and schedule, atomic checkpoints with exact resume, history.

Schedule (TAET and AT-BSL official code): SGD lr 0.1, momentum 0.9, weight decay 5e-4, batch 128,
100 epochs, lr ×0.1 after epochs 75 and 90 (milestones are fractions of `epochs`, so they scale with it).
Every epoch ends with an atomic checkpoint holding model, optimizer, scheduler, epoch, history and all
RNG states (Python, NumPy, torch CPU/CUDA, the data/attack generator): `resume` continues bit-exactly on CPU.
A run folder has one writer at a time (`lib.runs.run_lock`, held for the whole call). Under torchrun the
same loop trains with DistributedDataParallel (see `lib.distributed`); without it nothing changes.
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed, runs, speed
from .attacks import trusted_inputs
from .config import ConfigError, RunConfig, check_switches
from .data import DATASETS, DataBundle, build_data, iterate_batches, validate_data_config
from .methods import Method, MethodContext, build_method, resolve_method_args
from .metrics import per_class_recall
from .models import MODELS, create_model


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


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


def _milestones(cfg: RunConfig) -> list[int]:
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
    from .attacks import pgd

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


def _train_locked(cfg: RunConfig, *, resume: str | bool, force: bool, verbose: bool, stop_after_epoch: int | None,
                  sync_bn: bool) -> TrainResult:
    device = resolve_device(cfg.train.device)
    dist_on = distributed.is_distributed()  # under torchrun; every `if dist_on` below is the DDP path only
    main = distributed.is_main()
    if dist_on:
        device = distributed.local_device(device)
    h = runs.config_hash(cfg)
    rd = runs.run_dir(cfg)
    ckpt_path = rd / "checkpoint.pt"
    log = print if verbose and main else (lambda *a, **k: None)

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

    data = build_data(cfg.data, device=device, verbose=verbose and main)
    seed_everything(cfg.train.seed)
    ctx = MethodContext(data.num_classes, list(data.class_counts), cfg.train.epochs, device, distributed=dist_on)
    method = build_method(cfg.method, cfg.method_args, ctx)
    sp = speed.plan_for(cfg.train, device)
    speed.configure_threads(sp.threads)
    model = _build_model(cfg, data, method, device)
    model, net = speed.prepare_model(model, sp)  # net: what `method.step` calls (compiled, or the model itself)
    if dist_on:
        _check_distributed(cfg, data, method)
        model, net = distributed.wrap_model(model, device, sync_bn)
        net = speed.maybe_compile(net, sp.compile)
    opt = speed.make_optimizer(model.parameters(), cfg.train, device)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=_milestones(cfg), gamma=cfg.train.lr_gamma)
    gen = torch.Generator().manual_seed(cfg.train.seed)
    history: list[dict[str, Any]] = []
    start_epoch = 0

    if existing is not None and existing.get("finished") and not force:
        model.load_state_dict(existing["model"])
        if main and _csv_rows(rd / "history.csv") != len(existing["history"]):  # killed before its last write
            runs.atomic_write_csv(rd / "history.csv", existing["history"])
        log(f"reusing finished run {rd} (config {h}); pass --force to retrain")
        return TrainResult(rd, cfg, model, data, method, existing["history"], reused=True)
    if existing is not None and resume in ("auto", True):
        model.load_state_dict(existing["model"])
        method.load_state_dict(existing.get("method_state", {}))
        opt.load_state_dict(existing["optimizer"])
        sched.load_state_dict(existing["scheduler"])
        _set_rng_state(existing["rng"], gen)
        history = list(existing["history"])
        start_epoch = existing["epoch"]
        log(f"resuming {rd} after epoch {start_epoch}/{cfg.train.epochs}")

    if main:
        rd.mkdir(parents=True, exist_ok=True)
        runs.write_config(rd, cfg)
    track = None
    if cfg.train.track_every > 0:
        track = _tracking_subset(data, cfg.train.track_size, cfg.data.seed)

    log(f"training {cfg.method} ({method.summary}) on {data.name}, {cfg.model.arch}, {device}; run folder {rd}")
    show = _progress_enabled(cfg)
    from tqdm.auto import tqdm

    for epoch in range(start_epoch, cfg.train.epochs):
        t0 = time.perf_counter()
        model.train()
        stage = method.stage(epoch)
        method.current_lr = opt.param_groups[0]["lr"]
        step_gen = gen  # one process: one generator for batches and the method's draws
        if dist_on:  # the batch generator stays shared; the method's draws get a per-rank, per-epoch stream
            seed_everything(distributed.stream_seed(cfg.train.seed, epoch, distributed.rank()))
            step_gen = torch.Generator(device=gen.device).manual_seed(
                distributed.stream_seed(cfg.train.seed, epoch, distributed.rank()))
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        bad_batch = torch.full((), -1, device=device, dtype=torch.long)
        batches = iterate_batches(data.train_x, data.train_y, cfg.train.batch_size, generator=gen, shuffle=True,
                                  augment=cfg.data.augment, padding=cfg.data.crop_padding, flip=cfg.data.flip)
        n_batches = math.ceil(data.train_y.numel() / cfg.train.batch_size)
        bar = tqdm(batches, total=n_batches, disable=not show, leave=False,
                   desc=f"{cfg.method} epoch {epoch + 1}/{cfg.train.epochs} [{stage}]")
        for i, (xb, yb) in enumerate(bar):
            n_global = yb.numel()
            if dist_on:
                xb, yb = distributed.shard(xb, yb)
            with sp.autocast(), trusted_inputs():  # batches from iterate_batches are in [0, 1]: no check sync
                out = method.step(net, xb, yb, epoch, step_gen)
            finite = torch.isfinite(out.loss.detach())
            bad_batch = torch.where((bad_batch < 0) & ~finite, torch.full_like(bad_batch, i), bad_batch)
            opt.zero_grad(set_to_none=True)
            if dist_on:  # DDP averages over ranks: weight shard means so the update is the global batch's
                (out.loss * distributed.shard_weight(yb.numel(), n_global)).backward()
            else:
                out.loss.backward()
            opt.step()
            loss_sum += out.loss.detach() * yb.numel()
            correct += (out.logits.detach().argmax(1) == yb).sum()
            seen += yb.numel()
        if dist_on:  # epoch statistics of the global batches
            loss_sum, correct = distributed.all_reduce_sum(loss_sum), distributed.all_reduce_sum(correct)
            seen = int(distributed.all_reduce_sum(torch.tensor(seen, device=device)))
            bad_batch = distributed.all_reduce_max(bad_batch)
        if int(bad_batch) >= 0:
            raise TrainingDiverged(
                f"loss became NaN/inf at epoch {epoch + 1}, batch {int(bad_batch) + 1}; the last good checkpoint "
                f"({ckpt_path}, after epoch {epoch}) is kept. Lower --lr or check the data and method settings"
            )
        lr = opt.param_groups[0]["lr"]
        sched.step()
        row: dict[str, Any] = {
            "epoch": epoch + 1, "stage": stage, "loss": float(loss_sum) / seen, "train_acc": int(correct) / seen,
            "lr": lr, "seconds": round(time.perf_counter() - t0, 4),
        }
        if track is not None and main and ((epoch + 1) % cfg.train.track_every == 0
                                           or epoch + 1 == cfg.train.epochs):
            row.update(track_per_class(method.eval_model(model), track[0], track[1], data.num_classes,
                                       eps=cfg.train.track_eps, step_size=cfg.train.track_step_size,
                                       steps=cfg.train.track_pgd_steps))
        history.append(row)
        finished = epoch + 1 == cfg.train.epochs
        ckpt = {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "epoch": epoch + 1, "rng": _rng_state(gen), "history": history, "config_hash": h,
            "method": cfg.method, "finished": finished, "method_state": method.state_dict(),
        }
        if dist_on:
            ckpt["distributed"] = {"world_size": distributed.world_size(), "sync_bn": sync_bn}
        if main:
            runs.atomic_torch_save(ckpt_path, ckpt)
            runs.atomic_write_csv(rd / "history.csv", history)
        distributed.barrier()
        msg = f"epoch {epoch + 1}/{cfg.train.epochs} [{stage}] loss {row['loss']:.4f} acc {row['train_acc']:.3f}"
        if "track_pgd_bal" in row:
            msg += f" | tracked clean {row['track_clean_bal']:.3f} pgd {row['track_pgd_bal']:.3f}"
        log(msg + f" ({row['seconds']:.1f}s)")
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and not finished:
            log(f"stopping after epoch {epoch + 1} as asked; continue with --resume")
            break
    return TrainResult(rd, cfg, model, data, method, history, reused=False)


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
    model = speed.to_channels_last(_build_model(cfg, data, method, dev),  # eval only: channels_last is exact there
                                   speed.resolve_channels_last(cfg.train.channels_last, dev, training=False))
    model.load_state_dict(ckpt["model"])
    method.load_state_dict(ckpt.get("method_state", {}))
    model.eval()
    return cfg, model, data, method, ckpt


def _build_model(cfg: RunConfig, data: DataBundle, method: Method, device: torch.device) -> torch.nn.Module:
    model = create_model(cfg.model.arch, data.num_classes, in_channels=data.channels, image_size=data.image_size,
                         mean=data.mean, std=data.std, normalize=cfg.model.normalize,
                         pretrained=cfg.model.pretrained, resize=cfg.model.resize)
    return method.prepare_model(model).to(device)
