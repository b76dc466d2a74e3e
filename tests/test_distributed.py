"""One run on several processes (CPU, gloo, 2 ranks): HEL over the global batch, the DDP update equal to the
single-process one, and `torchrun -m lib train` matching a single-process run."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from lib.core import distributed
from lib.core.losses import hel_loss

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="needs torch.distributed with gloo")


def _batch():
    """7 samples (shards of 4 and 3), 4 classes; class 3 only on rank 1, class 0 only on rank 0."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 3, 3])
    return x, y


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4))


def _single(loss_name, absent):
    x, y = _batch()
    model = _model()
    per = F.cross_entropy(model(x), y, reduction="none")
    loss = hel_loss(per, y, 4, 0.3, 0.5, 0.7, absent=absent) if loss_name == "hel" else per.mean()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def _ddp_worker(rank, world, store, loss_name, absent):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        x, y = _batch()
        n_global = y.numel()
        xs, ys = distributed.shard(x, y)
        model, ddp = distributed.wrap_model(_model(), torch.device("cpu"))
        per = F.cross_entropy(ddp(xs), ys, reduction="none")
        if loss_name == "hel":
            loss = hel_loss(per, ys, 4, 0.3, 0.5, 0.7, absent=absent, distributed=True)
        else:
            loss = per.mean()
        # exactly what lib.core.train does on every rank
        (loss * distributed.shard_weight(ys.numel(), n_global)).backward()
        ref_loss, ref_grads = _single(loss_name, absent)
        if loss_name == "hel":  # every rank holds the global loss
            torch.testing.assert_close(loss.detach(), ref_loss, rtol=1e-6, atol=1e-7)
        for p, g in zip(model.parameters(), ref_grads):  # DDP's averaged gradient = single-process gradient
            torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7)
    finally:
        dist.barrier()
        dist.destroy_process_group()


@pytest.mark.parametrize("loss_name, absent", [("hel", "zero"), ("hel", "exclude"), ("ce_mean", "zero")])
def test_ddp_update_equals_single_process_on_the_global_batch(tmp_path, loss_name, absent):
    """HEL with all-reduced class sums/counts gives every rank the single-process loss, and after DDP's
    gradient average (with the trainer's shard weighting, unequal shards 4/3) the single-process gradient."""
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "store"), loss_name, absent), nprocs=2, join=True)


def test_single_process_paths_do_not_touch_torch_distributed():
    assert not distributed.is_distributed() and distributed.world_size() == 1 and distributed.rank() == 0
    x, y = _batch()
    assert distributed.shard(x, y)[0] is not None and distributed.shard(x, y)[0].shape == x.shape
    assert distributed.shard_weight(7, 7) == 1.0
    assert distributed.init_from_env("cpu") is False  # no torchrun variables: nothing happens


RUNNER = """
import os, sys
sys.path.insert(0, {root!r})
import torch.nn as nn
from lib.core.models import register_model


class MLP(nn.Module):  # no BatchNorm: per-rank batch statistics would make the runs differ
    def __init__(self, num_classes, in_channels, image_size):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size ** 2, 64), nn.ReLU())
        self.classifier = nn.Linear(64, num_classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.classifier(self.body(x))


@register_model("mlp_test")
def mlp_test(num_classes, *, in_channels=3, image_size=32, pretrained=False):
    return MLP(num_classes, in_channels, image_size)


from lib.cli.main import main

args = sys.argv[1:]
rc = main(args + ["--name", "ddp"])  # under torchrun: DDP on all ranks
if rc == 0 and os.environ.get("RANK", "0") == "0":
    os.environ.pop("WORLD_SIZE")  # then the same run on one process, for comparison
    rc = main(args + ["--name", "single"])
sys.stdout.flush()
sys.stderr.flush()
# Skip the interpreter's teardown: once the work is written, torch's c10d threads can still abort it (SIGABRT,
# "terminate called without an active exception") on a loaded machine, which torchrun reports as a failed rank.
os._exit(rc)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(tmp_path, *args, script=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("TAET_KIT_FAULT", None)
    target = [str(script)] if script else ["-m", "lib"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), *target, *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)


def _weights(rd):
    return torch.load(rd / "checkpoint.pt", map_location="cpu", weights_only=False)


@pytest.mark.parametrize("method, extra, rtol", [
    ("ce", [], 1e-5),  # plain per-sample mean
    ("taet", ["--ce-epochs", "1", "--method-arg", "start=none"], 1e-5),  # PGD-10 + HEL over the global batch
    ("taet", ["--ce-epochs", "1"], 0.1),  # PGD starts drawn per rank (x + 0.001·N(0,1)): close, not equal
])
def test_torchrun_train_matches_single_process(tmp_path, method, extra, rtol):
    """`torchrun --nproc_per_node 2 ... train` (gloo) ends with the single-process weights up to float summation
    order: the global batch is the single-process batch (the last batch of each epoch, 3 of 515 samples at
    batch 64, is split 2/1, so the shard weighting is exercised too). With random attack starts each rank
    draws its own noise, so only closeness is expected."""
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(root=str(ROOT)))
    r = _torchrun(tmp_path, "train", "--profile", "smoke", "--method", method, "--arch", "mlp_test", "--epochs", "3",
                  "--device", "cpu", "--out-dir", "runs", "--no-progress", *extra, script=script)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ddp, single = _weights(tmp_path / "runs" / "ddp"), _weights(tmp_path / "runs" / "single")
    assert ddp["distributed"] == {"world_size": 2, "sync_bn": False} and "distributed" not in single
    assert ddp["config_hash"] == single["config_hash"]  # world size is not part of the run's identity
    num = sum(((ddp["model"][k] - v) ** 2).sum() for k, v in single["model"].items())
    den = sum((v ** 2).sum() for v in single["model"].values())
    assert float(num.sqrt() / den.sqrt()) < rtol
    for a, b in zip(ddp["history"], single["history"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=rtol)
        assert a["train_acc"] == pytest.approx(b["train_acc"], abs=max(rtol, 1 / 515))
    # only rank 0 wrote: one config, one history, no stray temporary files
    assert sorted(p.name for p in (tmp_path / "runs" / "ddp").iterdir()) == [
        ".lock", "checkpoint.pt", "config.json", "history.csv"]


def test_torchrun_lib_train_with_batchnorm_and_evaluate(tmp_path):
    """The README command as it is (small CNN with BatchNorm: per-rank statistics, so only close to one
    process), then evaluation on rank 0; the run folder is an ordinary one (load_run, evaluate)."""
    r = _torchrun(tmp_path, "train", "--profile", "smoke", "--method", "taet", "--epochs", "2", "--ce-epochs", "1",
                  "--device", "cpu", "--out-dir", "runs", "--name", "bn", "--no-progress", "--evaluate", "--attacks",
                  "clean,fgsm")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("run folder: ") == 1 and r.stdout.count("evaluating bn") == 1  # rank 0 only
    ck = _weights(tmp_path / "runs" / "bn")
    assert ck["finished"] and ck["distributed"]["world_size"] == 2
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    import json

    doc = json.loads((tmp_path / "runs" / "bn" / "eval.json").read_text())
    assert set(doc["results"]) == {"clean", "fgsm"}
