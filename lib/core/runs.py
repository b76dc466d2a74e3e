"""Run folders, config hashing, the result cache and atomic writes.

`outputs/runs/<name>/` holds `config.json` (resolved config + hash), `history.csv`, `checkpoint.pt`,
`eval.json` and `eval.csv`. Every write goes to a temporary file in the same folder and is renamed over
the target, so an interrupted run never leaves a half-written file; a full disk raises `DiskFullError`
with the previous file intact. One process at a time writes a run folder: `run_lock` holds an exclusive
`flock` on `RUN_DIR/.lock` for a whole train or evaluate (the kernel drops it when the process dies, even
on SIGKILL) and refuses a second writer with a message naming the holder.

What the hash covers (`config_hash`): every config field that changes what training computes (data,
including the subsampling seed and test protocol; model; schedule; the method's resolved hyperparameters,
so the *training* attack's ε / step / steps; the kit's `CODE_VERSION`; the method class's `version` when
it is above 1). A switch added after runs were cached enters the hash only when it differs from the value
that reproduces the old behaviour (`HASH_NEUTRAL`), so those runs keep their hashes. It leaves out
`NON_RESULT_FIELDS` (name, out_dir, device, progress bars, data_dir, download) and the `eval` section:
evaluation results are cached per attack in `eval.json`, each with the attack's settings, and an attack is
recomputed when its settings differ (see `lib.core.evaluate`).

Fault-injection hook (tests only; inert unless set): `TAET_KIT_FAULT=<stem>_write:<n>` SIGKILLs the process
on the n-th atomic write of a file whose name up to the first dot is <stem> (`checkpoint_write:2`: the
second `checkpoint.pt`; `eval_write:2`: `eval.json`, written after `eval.csv`), after the temporary file is
complete and before the rename, the worst moment for a crash.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import signal
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from lib.core.config import NON_RESULT_FIELDS, ConfigError, RunConfig

CODE_VERSION = 1  # bump when a change to the kit alters what a given config computes

# Switches added after runs were cached: (section, field) -> the value that reproduces the behaviour from before
# the switch existed. At that value the field is left out of the hash, so cached runs keep their hashes; any other
# value enters it. Register a new switch here in the same change that adds it. A third element names the one method
# the entry applies to (a field name another method already hashes, e.g. TAET's ce_epochs = 0, keeps its hash).
HASH_NEUTRAL: dict[tuple[str, ...], Any] = {
    ("data", "resize_before_crop"): None,  # the official TAET notebook's 224-px path (taet_notebook profile)
    ("method_args", "extra_clean_forward"): False,  # its discarded clean forward (TAET, AT-BSL)
    ("method_args", "hel_scale"): 1.0,  # TAET's loss scale (the claims check's factorial)
    ("method_args", "clean_epochs", "atbsl"): 0,  # AT-BSL's optional clean first stage
}


class CheckpointError(ConfigError):
    """A checkpoint that cannot be used (truncated, corrupt, or from another config)."""


class RunLockedError(ConfigError):
    """Another process is writing this run folder."""


class DiskFullError(OSError):
    """A write ran out of space; the previous version of the file is intact."""


_FAULT_COUNTS: dict[str, int] = {}


def _fault_point(path: Path) -> None:
    """TAET_KIT_FAULT=<stem>_write:<n>: SIGKILL this process before the n-th rename of <stem>.* (tests)."""
    spec = os.environ.get("TAET_KIT_FAULT")
    if not spec:
        return
    target, _, n = spec.partition(":")
    if target != path.name.split(".")[0] + "_write":
        return
    _FAULT_COUNTS[target] = _FAULT_COUNTS.get(target, 0) + 1
    if _FAULT_COUNTS[target] == int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _write_fsync(f, data: bytes) -> None:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_fsync(f, data)
        _fault_point(path)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(
                e.errno, f"no space left on the device while writing {path} ({len(data)} bytes): the previous "
                f"{path.name} is intact (the new one went to a temporary file, now removed). Free space in "
                f"{path.parent} and run again (training continues with --resume)") from e
        raise


def atomic_write_text(path, text: str) -> None:
    _atomic_write_bytes(Path(path), text.encode("utf-8"))


def atomic_write_json(path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    _atomic_write_bytes(Path(path), buf.getvalue())


def atomic_write_csv(path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        atomic_write_text(path, "")
        return
    fields: list[str] = []
    for r in rows:
        for k in r:
            if k not in fields:
                fields.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def train_seconds(history) -> float:
    """A run's training wall time: the sum of its history rows' per-epoch `seconds` (0 for no rows)."""
    return sum(float(r["seconds"]) for r in history)


def epoch_time_spread(history, min_epochs: int = 3) -> float:
    """The largest ratio of an epoch's seconds to the fastest epoch of the same stage (clean or adversarial), each
    stage's first epoch left out (it carries the warm-up: allocation, kernel selection, compilation), over the
    stages with at least `min_epochs` epochs after it; 1.0 when none has. Epochs of one stage do the same work, so a
    spread well above 1 means something else slowed part of the run (other jobs on the same cores)."""
    by_stage: dict[str, list[float]] = {}
    for r in history:
        by_stage.setdefault(r.get("stage", ""), []).append(float(r["seconds"]))
    ratios = [max(v[1:]) / min(v[1:]) for v in by_stage.values() if len(v) > min_epochs and min(v[1:]) > 0]
    return max(ratios, default=1.0)


def _strip(d: dict[str, Any], fields) -> dict[str, Any]:
    d = json.loads(json.dumps(d))
    for f in fields:
        node = d
        for key in f[:-1]:
            node = node.get(key, {})
        node.pop(f[-1], None)
    return d


def config_hash(cfg: RunConfig) -> str:
    """Hash of every field that affects the trained weights (not names, folders, devices or eval).

    The method class's `version` enters only when above 1, so runs from before it existed keep their hash."""
    from lib.core.methods import get_method_class

    d = _strip(cfg.to_dict(), NON_RESULT_FIELDS)
    for (section, key, *only), neutral in HASH_NEUTRAL.items():
        if only and cfg.method not in only:
            continue
        if key in d.get(section, {}) and d[section][key] == neutral:
            del d[section][key]
    d["code_version"] = CODE_VERSION
    if cfg.train.amp not in ("off", "auto"):  # validate() resolved "auto"; fp32 runs keep their old hashes
        d["precision"] = cfg.train.amp
    method_version = get_method_class(cfg.method).version
    if method_version != 1:
        d["method_version"] = method_version
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_run_name(cfg: RunConfig) -> str:
    ir = cfg.data.imbalance_ratio
    ir_s = f"{ir:g}"
    return (f"{cfg.method}-{cfg.data.dataset}-ir{ir_s}-{cfg.model.arch}-e{cfg.train.epochs}"
            f"-s{cfg.train.seed}-{config_hash(cfg)[:8]}")


def run_dir(cfg: RunConfig) -> Path:
    return Path(cfg.out_dir) / (cfg.name or default_run_name(cfg))


def write_config(path: Path, cfg: RunConfig) -> None:
    d = cfg.to_dict()
    d["hash"] = config_hash(cfg)
    d["code_version"] = CODE_VERSION
    atomic_write_json(Path(path) / "config.json", d)


DIVERGED_FILE = "diverged.json"


def write_diverged(path: Path, cfg: RunConfig, *, epoch: int, batch: int, message: str) -> None:
    """Record in the run folder that training `cfg` diverged (NaN/inf loss) at `epoch`, `batch` (1-based)."""
    atomic_write_json(Path(path) / DIVERGED_FILE, {"config_hash": config_hash(cfg), "code_version": CODE_VERSION,
                                                   "epoch": int(epoch), "batch": int(batch), "message": message})


def read_diverged(path, cfg: RunConfig | None = None) -> dict[str, Any] | None:
    """The folder's divergence record (`write_diverged`), or None when there is none or it belongs to another config
    than `cfg`; ConfigError for an unreadable one."""
    p = Path(path) / DIVERGED_FILE
    if not p.exists():
        return None
    try:
        rec = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p} is corrupt ({e}); delete it to let the run be trained again") from None
    if cfg is not None and rec.get("config_hash") != config_hash(cfg):
        return None
    return rec


def read_config(path) -> RunConfig:
    p = Path(path) / "config.json"
    if not p.exists():
        raise ConfigError(f"{path} is not a run folder: no config.json there (train one with `python -m lib train`)")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p} is corrupt ({e}); retrain with --force") from None
    d.pop("code_version", None)
    return RunConfig.from_dict(d)


def remove_stale_temps(folder) -> list[Path]:
    """Delete temporary files a killed writer left in `folder` (call only while holding its lock)."""
    gone = []
    for p in Path(folder).glob(".*.tmp"):
        try:
            p.unlink()
            gone.append(p)
        except FileNotFoundError:
            pass
    return gone


@contextmanager
def run_lock(folder, what: str = "train") -> Iterator[Path]:
    """Hold an exclusive lock on `folder/.lock` (created with the folder if needed) for the whole block.

    A second process asking for it gets a RunLockedError naming the holder's pid. The lock is an flock:
    the kernel releases it when the holder exits, however it exits, so a crash never leaves it stuck.
    On entry, temporary files a killed writer left behind are removed (nobody else can be writing)."""
    try:
        import fcntl
    except ImportError:  # not POSIX (Windows): no locking
        yield Path(folder)
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    f = open(path, "a+")
    try:
        locked = True
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise RunLockedError(
                f"run folder {folder} is in use: {holder} holds {path}. Only one process may write a run. "
                f"Wait for it to finish (or stop it); its lock goes away when it exits, even on a crash. "
                f"To train this config twice at once, give the second one another --name or --out-dir"
            ) from None
        except OSError as e:  # a file system without flock (some network mounts): go on, unprotected
            warnings.warn(f"cannot lock {path} ({e}); nothing stops a second process from writing this run",
                          stacklevel=3)
            locked = False
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} ({what}, since {time.strftime('%Y-%m-%d %H:%M:%S')})")
        f.flush()
        if locked:
            remove_stale_temps(folder)
        yield folder
    finally:
        f.close()  # releases the flock


def load_checkpoint(path, expect_hash: str | None = None, map_location="cpu",
                    expect_method: str | None = None) -> dict[str, Any]:
    """Load a checkpoint, turning a truncated file or a config mismatch into a clear CheckpointError."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # truncated zip, pickle errors, ...
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(e).__name__}: {e}); "
            "delete it or retrain with --force"
        ) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config_hash" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint written by this kit; retrain with --force")
    if expect_method is not None and ckpt.get("method") not in (None, expect_method):
        raise CheckpointError(
            f"checkpoint {path} was written by method {ckpt.get('method')!r}, not {expect_method!r} (config "
            f"{ckpt['config_hash']}); it does not belong in this run folder: use another --name, or --force "
            "to retrain from scratch"
        )
    if expect_hash is not None and ckpt["config_hash"] != expect_hash:
        raise CheckpointError(
            f"checkpoint {path} was written for config {ckpt['config_hash']}, not this run's {expect_hash} "
            f"(method {ckpt.get('method')!r}); use another --name, or --force to retrain from scratch"
        )
    return ckpt


EVIDENCE_FILES = ("config.json", "eval.json", "history.csv")
RESULTS_DIR = "results"  # committed evidence: results/<profile>/<run name>/


def export_evidence(run_dirs, dest_root) -> list[Path]:
    """Copy each finished run's evidence files (config.json, eval.json, history.csv, and diverged.json where the
    run diverged; no weights) to dest_root/<run name>/, e.g. results/<profile>/; returns the folders written.
    Every folder is checked before anything is copied: a ConfigError names those that are not finished runs."""
    srcs = [Path(r) for r in run_dirs]
    bad = [str(r) for r in srcs if not (r / "config.json").exists()
           or not ((r / "eval.json").exists() or (r / DIVERGED_FILE).exists())]
    if bad:
        raise ConfigError(f"not finished runs (no config.json with an eval.json or {DIVERGED_FILE}): {bad}; "
                          "train and evaluate them first (python -m lib train ... --evaluate, or their notebook)")
    written = []
    for src in sorted(set(srcs)):
        dest = Path(dest_root) / src.name
        if dest.resolve() == src.resolve():
            continue
        dest.mkdir(parents=True, exist_ok=True)
        for f in EVIDENCE_FILES + (DIVERGED_FILE,):
            if (src / f).exists():
                atomic_write_text(dest / f, (src / f).read_text())
        written.append(dest)
    return written
