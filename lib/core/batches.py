"""Device-resident batches: resize once, then crop, flip and shuffle a whole batch at a time on the device.

Re-exported by :mod:`lib.core.data`. Crop offsets and flips are drawn from the caller's generator, so a seeded run's
batches are the same on every call (the trainer's and the benchmark's alike).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

RESIZE_CHUNK = 1024  # images resized at once (bounds the float intermediate on the device)


def resize_images(x_uint8: torch.Tensor, size: int, chunk: int = RESIZE_CHUNK) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> (N, C, size, size) uint8, bilinear with antialiasing, on x's device, in chunks.

    torchvision's tensor resize, which on uint8 matches PIL's ``Resize`` (the official TAET notebook's data
    transform) to the grey level on the CPU. Done once per data set: every epoch then crops the resized images."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    if x_uint8.shape[-2:] == (size, size):
        return x_uint8
    out = torch.empty((*x_uint8.shape[:2], size, size), dtype=torch.uint8, device=x_uint8.device)
    for i in range(0, len(x_uint8), chunk):
        out[i:i + chunk] = TF.resize(x_uint8[i:i + chunk], [size, size], interpolation=InterpolationMode.BILINEAR,
                                     antialias=True)
    return out


# ---------------------------------------------------------------------------------------------------
# On-device augmentation and batches
# ---------------------------------------------------------------------------------------------------
def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1]."""
    return x.to(torch.float32).div_(255.0)


def crop_flip_params(n: int, generator: torch.Generator, padding: int = 4, flip: bool = True
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample (top, left, flipped) for :func:`apply_crop_flip`, drawn from `generator` on its device:
    offsets uniform in [0, 2*padding] (torchvision RandomCrop), flip with probability 1/2 (RandomHorizontalFlip)."""
    g_dev = generator.device
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=g_dev)
    flipped = (torch.rand(n, generator=generator, device=g_dev) < 0.5) if flip else torch.zeros(n, dtype=torch.bool)
    return offsets[0], offsets[1], flipped


def apply_crop_flip(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flipped: torch.Tensor,
                    padding: int = 4) -> torch.Tensor:
    """Zero-pad each image by `padding`, crop it back to H x W at (top, left), mirror it where `flipped`:
    one gather for the whole batch (the flip is folded into the column index)."""
    N, C, H, W = x.shape
    dev = x.device
    top, left, flipped = top.to(dev), left.to(dev), flipped.to(dev)
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    rows = top[:, None] + torch.arange(H, device=dev)  # (N, H)
    cols = left[:, None] + torch.arange(W, device=dev)  # (N, W)
    cols = torch.where(flipped[:, None], cols.flip(1), cols)
    n_idx = torch.arange(N, device=dev)[:, None, None, None]
    c_idx = torch.arange(C, device=dev)[None, :, None, None]
    return padded[n_idx, c_idx, rows[:, None, :, None], cols[:, None, None, :]]


def augment_batch(x_uint8: torch.Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True
                  ) -> torch.Tensor:
    """Random crop with zero padding + random horizontal flip of a uint8 batch, on its device -> float32 [0, 1]."""
    top, left, flipped = crop_flip_params(len(x_uint8), generator, padding, flip)
    return to_float(apply_crop_flip(x_uint8, top, left, flipped, padding))


def iterate_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, *, generator: torch.Generator | None,
                    shuffle: bool = True, augment: bool = False, padding: int = 4, flip: bool = True,
                    drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (float x in [0, 1], y) batches on x's device. All randomness (order, crop, flip) comes from
    `generator` (CPU or x's device), so restoring its state resumes the same sequence."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if generator is None and (shuffle or augment):
        raise ValueError("shuffle/augment need a torch.Generator; pass generator=torch.Generator().manual_seed(s)")
    n = len(y)
    if shuffle:
        order = torch.randperm(n, generator=generator, device=generator.device).to(x.device)
    else:
        order = torch.arange(n, device=x.device)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        idx = order[i: i + batch_size]
        xb = x[idx]
        yield (augment_batch(xb, generator, padding, flip) if augment else to_float(xb)), y[idx]
