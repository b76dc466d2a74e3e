"""One run on several processes (torchrun + DistributedDataParallel): the process group, global batches,
all-reduce helpers.

`torchrun --nproc_per_node N -m lib train ...` starts N copies of the command line with RANK, WORLD_SIZE,
LOCAL_RANK and MASTER_ADDR/PORT set; `init_from_env` joins them into one group (NCCL on CUDA, one GPU
per process; gloo on the CPU). Without those variables nothing here does anything and training is the
single-process loop of `lib.core.train`, unchanged.

- **Global batch = the single-process batch.** Every rank draws the same permutation, crop and flip from
  the same generator (same seed, same state) and keeps its contiguous slice (`shard`), so the ranks
  together see exactly the batch one process would; the batch size stays the global one.
- **Gradients.** DDP averages gradients over the W ranks. A loss that is a per-sample mean over the rank's
  n_r samples is weighted by `shard_weight` = n_r·W/N, so the average is the gradient of the mean over
  the global N samples (exact also when N is not a multiple of W). TAET's HEL uses the class means of the
  global batch (`lib.core.losses.class_mean_losses(..., distributed=True)`: all-reduced per-class sums and
  counts), so every rank computes the whole single-process loss L; the all-reduce back-propagates by
  summing the ranks' incoming gradients, Σ_r w_r·∂L = W·∂L (the weights sum to W), and DDP's average
  divides the W back out: again the single-process gradient, with no special case in the trainer.
- **What differs from one process.** BatchNorm normalises each rank's shard with the shard's statistics
  (`--sync-bn` converts to SyncBatchNorm, CUDA only; running statistics are rank 0's, broadcast by DDP);
  the method's own random draws (attack starts) come from a per-rank stream seeded from (seed, epoch, rank),
  re-derived every epoch so that resuming is exact. Weights therefore match a single-process run within a
  tolerance, not bit for bit; world size is recorded in the checkpoint, not in the run hash (like the device).
- **Files.** Only rank 0 holds the run lock and writes (config, checkpoint, history); the others wait at
  barriers. Methods that keep state across steps (e.g. REAT's counts, LAS-AT's policy network) are refused:
  that state would differ between ranks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


def env_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 when not under torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_from_env(device: str = "auto") -> bool:
    """Join the process group torchrun describes in the environment; False (and nothing done) without it."""
    if env_world_size() <= 1:
        return False
    if dist.is_initialized():
        return True
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """A CUDA device becomes this process's GPU (cuda:LOCAL_RANK); the CPU stays the CPU."""
    return torch.device("cuda", local_rank()) if device.type == "cuda" else device


def shard(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's contiguous slice of a global batch (sizes differ by at most one)."""
    r, w = rank(), world_size()
    return torch.tensor_split(x, w)[r], torch.tensor_split(y, w)[r]


def shard_weight(n_local: int, n_global: int) -> float:
    """n_r·W/N: the factor that makes DDP's gradient average of per-shard means the global mean's gradient."""
    return n_local * world_size() / n_global if n_global else 0.0


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    out = t.clone()
    if is_distributed():
        dist.all_reduce(out)
    return out


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    out = t.clone()
    if is_distributed():
        dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


@contextmanager
def on_rank_zero(factory: Callable[[], AbstractContextManager]) -> Iterator[None]:
    """Enter `factory()` (e.g. the run lock) on rank 0 only; if that raises, every rank raises the same
    error. On one process this is just `with factory():`."""
    if not is_distributed():
        with factory():
            yield
        return
    cm, err = None, None
    if is_main():
        cm = factory()
        try:
            cm.__enter__()
        except Exception as e:  # noqa: BLE001 - re-raised on every rank below
            cm, err = None, e
    err = broadcast_object(err)
    if err is not None:
        raise err
    try:
        yield
    finally:
        if cm is not None:
            cm.__exit__(None, None, None)


def stream_seed(seed: int, epoch: int, rank_: int) -> int:
    """Seed of a rank's random stream for one epoch (independent streams from one seed: NumPy SeedSequence)."""
    return int(np.random.SeedSequence([seed, epoch, rank_]).generate_state(1)[0])


def wrap_model(model: torch.nn.Module, device: torch.device, sync_bn: bool = False
               ) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(the model, possibly with SyncBatchNorm; its DDP wrapper). Optimise and save the first, train the second."""
    from torch.nn.parallel import DistributedDataParallel

    from lib.core.config import ConfigError

    if sync_bn:
        if device.type != "cuda":
            raise ConfigError("--sync-bn needs CUDA (torch's SyncBatchNorm has no CPU kernel); drop it on the CPU")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return model, ddp


def shutdown(ok: bool = True) -> None:
    """Leave the process group (after a barrier when every rank got here normally)."""
    if dist.is_available() and dist.is_initialized():
        if ok:
            dist.barrier()
        dist.destroy_process_group()
