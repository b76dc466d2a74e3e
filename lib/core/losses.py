"""Losses: balanced softmax (AT-BSL) and TAET's Hierarchical Equalization Loss (HEL); plain CE is
`torch.nn.functional.cross_entropy`.

HEL (TAET, arXiv 2503.01924, Sec. 4; official `HARL` function) works on the batch's class-wise mean
losses L_c of the unreduced per-sample loss:

    BCL  = (1/C) · Σ_c L_c                      (balanced class loss)
    HDL  = (1/C) · Σ_c (L_c − BCL)²             (hierarchical deviation loss)
    RCEL = Σ_c (L_c / Σ_j L_j)²                 (rare-class equalization loss)
    HEL  = α·BCL + β·HDL + γ·RCEL

Class means are computed with `index_add_` / `bincount`: no Python loop over classes.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from lib.core.config import ConfigError

# The official code guards both divisions with 1e-10; the kit keeps the same guard.
_TINY = 1e-10

ABSENT_RULES = ("zero", "exclude")


def balanced_softmax_loss(
    logits: torch.Tensor, targets: torch.Tensor, class_counts, reduction: str = "mean"
) -> torch.Tensor:
    """Balanced softmax (Ren et al. 2020), AT-BSL's loss: CE(logits + log n_c, y).

    AT-BSL's official `BSL` adds log of the per-class train counts with no temperature, so neither does
    the kit.
    """
    counts = torch.as_tensor(class_counts, dtype=logits.dtype, device=logits.device)
    if counts.numel() != logits.shape[1]:
        raise ConfigError(
            f"balanced_softmax_loss got {counts.numel()} class counts for {logits.shape[1]} logits; "
            "pass one train count per class"
        )
    if (counts <= 0).any():
        raise ConfigError("balanced_softmax_loss needs every class count > 0 (log n_c); check the train set")
    return F.cross_entropy(logits + counts.log(), targets, reduction=reduction)


def class_mean_losses(
    per_sample_loss: torch.Tensor, targets: torch.Tensor, num_classes: int, distributed: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_c for every class, presence mask). A class absent from the batch has L_c = 0.

    distributed=True (each rank of a torch.distributed group holds its shard of the global batch): the
    per-class sums and counts are summed over ranks, so every rank gets the global batch's L_c, equal to
    the single-process value. See `_global_class_sums` for the gradient."""
    if per_sample_loss.dim() != 1 or per_sample_loss.shape != targets.shape:
        raise ConfigError(
            f"per_sample_loss must be the unreduced loss of shape (N,) matching targets; got "
            f"{tuple(per_sample_loss.shape)} and {tuple(targets.shape)} (use reduction='none')"
        )
    sums = per_sample_loss.new_zeros(num_classes).index_add(0, targets, per_sample_loss)
    counts = torch.bincount(targets, minlength=num_classes).to(per_sample_loss.dtype)
    if distributed:
        sums, counts = _global_class_sums(sums, counts)
    return sums / (counts + _TINY), counts > 0


def _global_class_sums(sums: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All-reduce per-class sums (differentiably) and counts.

    `torch.distributed.nn.functional.all_reduce` back-propagates by all-reducing the gradient. Every rank
    computes the same global loss L; the trainer weights rank r's loss by w_r = n_r·W/N
    (`lib.core.distributed.shard_weight`), and since Σ_r w_r = W, each rank receives W·∂L/∂(its own sums). DDP's
    gradient average over the W ranks then leaves exactly the single-process ∂L/∂θ (unweighted losses, as
    with equal shards where w_r = 1, give the same)."""
    import torch.distributed as dist
    from torch.distributed.nn.functional import all_reduce

    counts = counts.clone()
    dist.all_reduce(counts)
    with warnings.catch_warnings():  # deprecated in recent torch; kept: it back-propagates on every torch >= 2.3
        warnings.simplefilter("ignore", FutureWarning)
        return all_reduce(sums), counts


def hel_terms(
    per_sample_loss: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    *,
    absent: str = "zero",
    distributed: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(BCL, HDL, RCEL), unweighted (`hel_loss` weights them by α, β, γ).

    absent="zero": a class missing from the batch counts as L_c = 0 over all C classes (official code).
    absent="exclude": means over the classes present in the batch only.
    distributed=True: class means over the global batch of all ranks (see `class_mean_losses`).
    """
    if absent not in ABSENT_RULES:
        raise ConfigError(f"unknown absent-class rule {absent!r}; valid: {list(ABSENT_RULES)}")
    lc, present = class_mean_losses(per_sample_loss, targets, num_classes, distributed=distributed)
    if absent == "exclude":
        lc = lc[present]
    bcl = lc.mean()
    hdl = ((lc - bcl) ** 2).mean()
    rcel = ((lc / (lc.sum() + _TINY)) ** 2).sum()
    return bcl, hdl, rcel


def hel_loss(
    per_sample_loss: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    alpha: float = 0.1,
    beta: float = 0.1,
    gamma: float = 0.1,
    absent: str = "zero",
    distributed: bool = False,
) -> torch.Tensor:
    """HEL = α·BCL + β·HDL + γ·RCEL (paper Eq. for L_HEL; defaults α=β=γ=0.1 as the official code).
    distributed=True: over the global batch of all ranks, as one process on the whole batch would."""
    bcl, hdl, rcel = hel_terms(per_sample_loss, targets, num_classes, absent=absent, distributed=distributed)
    return alpha * bcl + beta * hdl + gamma * rcel
