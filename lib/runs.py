"""Run folders, config hashing, the result cache and atomic writes.

`outputs/runs/<name>/` holds `config.json` (resolved config + hash), `history.csv`, `checkpoint.pt`,
`eval.json` and `eval.csv`. Every write goes to a temporary file in the same folder and is renamed over
the target, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .config import NON_RESULT_FIELDS, ConfigError, RunConfig

CODE_VERSION = 1  # bump when a change to the kit alters what a given config computes


class CheckpointError(ConfigError):
    """A checkpoint that cannot be used (truncated, corrupt, or from another config)."""


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
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


def _strip(d: dict[str, Any], fields) -> dict[str, Any]:
    d = json.loads(json.dumps(d))
    for f in fields:
        node = d
        for key in f[:-1]:
            node = node.get(key, {})
        node.pop(f[-1], None)
    return d


def config_hash(cfg: RunConfig) -> str:
    """Hash of every field that affects the trained weights (not names, folders, devices or eval)."""
    d = _strip(cfg.to_dict(), NON_RESULT_FIELDS)
    d["code_version"] = CODE_VERSION
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


def load_checkpoint(path, expect_hash: str | None = None, map_location="cpu") -> dict[str, Any]:
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
    if expect_hash is not None and ckpt["config_hash"] != expect_hash:
        raise CheckpointError(
            f"checkpoint {path} was written for config {ckpt['config_hash']}, not this run's {expect_hash} "
            f"(method {ckpt.get('method')!r}); use another --name, or --force to retrain from scratch"
        )
    return ckpt
