"""The reference-style training and evaluation loop: what the official TAET / AT-BSL code does, written anew.

It is the baseline of ``python -m lib bench``: same model, batch size, seed and attack steps as the kit, but the
way the official scripts run them (facts taken from the official code; the code here is the kit's own):

- data: a ``torch.utils.data.DataLoader`` over uint8 HWC numpy images (as torchvision's CIFAR10 stores them),
  each image through PIL and torchvision transforms on the CPU (``RandomCrop(size, padding)``,
  ``RandomHorizontalFlip``, ``ToTensor``), collated, then copied to the device every step;
- fp32 throughout;
- the training attack of the official ``HARL`` (TAET) and AT-BSL: ``model.eval()``, start
  ``x + 0.001·randn`` (not clipped before the first step), then per step CE with mean reduction,
  ``torch.autograd.grad`` w.r.t. the input, ``x + step·sign(g)``, clip to the ε-ball and to [0, 1];
  ``model.train()`` again for the update;
- TAET's HEL with a Python loop over classes (official ``HARL``: per class a float mask and
  ``(loss·mask).sum() / (mask.sum() + 1e-10)`` written into a zeros tensor; then the mean, the mean squared
  deviation and the squared shares ``(L_c / (Σ L + 1e-10))²``);
- AT-BSL's balanced softmax: CE(z + log n_c);
- evaluation: torchattacks-style PGD (uniform start in the ε-ball, clipped to [0, 1], CE mean, sign steps)
  in eval mode over a DataLoader of the test images with ``ToTensor``;
- per step, the loss goes to the host with ``.item()`` for the running average (and, at evaluation, the
  correct count per batch), as the official loops log them.

Where the kit computes the same thing differently (vectorised HEL, on-device crop/flip, one generator for
every random draw), ``lib.bench.checks.numerical_check`` compares the two on identical inputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

TINY = 1e-10  # the official code's guard in both HEL divisions


# ---------------------------------------------------------------------------------------------------
# Data: PIL + torchvision transforms per image, in a DataLoader
# ---------------------------------------------------------------------------------------------------
class ArrayImages(Dataset):
    """uint8 images (N, H, W, C) and int labels, served as torchvision's CIFAR10 does: PIL image -> transform."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, transform):
        if images_hwc.dtype != np.uint8 or images_hwc.ndim != 4:
            raise ValueError(f"images must be uint8 (N, H, W, C); got {images_hwc.dtype} {images_hwc.shape}")
        self.images = images_hwc
        self.labels = [int(v) for v in labels]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        img = self.images[i]
        img = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)  # 'L' or 'RGB', as torchvision
        return self.transform(img), self.labels[i]


def train_transform(size: int, padding: int, flip: bool):
    from torchvision import transforms

    steps = [transforms.RandomCrop(size, padding=padding)] if padding else []
    if flip:
        steps.append(transforms.RandomHorizontalFlip())
    steps.append(transforms.ToTensor())
    return transforms.Compose(steps)


def test_transform():
    from torchvision import transforms

    return transforms.ToTensor()


def make_loader(images_hwc: np.ndarray, labels: np.ndarray, batch_size: int, *, train: bool, padding: int = 4,
                flip: bool = True, workers: int = 0, seed: int = 0, pin_memory: bool = False) -> DataLoader:
    """The official scripts' loader: shuffled for training (seeded here), in order for the test set."""
    size = images_hwc.shape[1]
    tf = train_transform(size, padding, flip) if train else test_transform()
    g = torch.Generator().manual_seed(seed)
    return DataLoader(ArrayImages(images_hwc, labels, tf), batch_size=batch_size, shuffle=train, generator=g,
                      num_workers=workers, pin_memory=pin_memory, drop_last=False)


def endless(loader: DataLoader) -> Iterator:
    """Batches of `loader`, epoch after epoch (a new epoch re-shuffles, as a training loop would)."""
    while True:
        yield from loader


# ---------------------------------------------------------------------------------------------------
# Attacks and losses, official style
# ---------------------------------------------------------------------------------------------------
def pgd_official(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, step_size: float, steps: int,
                 start: str = "normal", start_std: float = 0.001, noise: torch.Tensor | None = None,
                 clip_start: bool = False) -> torch.Tensor:
    """l_inf PGD on mean CE in eval mode (leaves the model in eval mode, as the official code).

    start="normal": x + start_std·N(0,1), *not* clipped before the first step (official HARL / AT-BSL /
    TRADES), unless ``clip_start``; start="uniform": x + U(-eps, eps) clipped to [0, 1] (torchattacks.PGD).
    ``noise``: the N(0,1) draw (normal) or the U(-eps, eps) offset (uniform) to use instead of a fresh one
    from the global RNG (the numerical check passes the kit's draw).
    """
    model.eval()
    x = x.detach()
    if start == "normal":
        if noise is None:
            noise = torch.randn(x.shape).to(x.device)
        x_adv = x + start_std * noise.detach()
        if clip_start:
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
    elif start == "uniform":
        if noise is None:
            noise = torch.empty_like(x).uniform_(-eps, eps)
        x_adv = (x + noise.detach()).clamp(0.0, 1.0)
    else:
        raise ValueError(f"start must be 'normal' or 'uniform'; got {start!r}")
    for _ in range(steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            loss = F.cross_entropy(model(x_adv), y)
        grad = torch.autograd.grad(loss, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    return x_adv.detach()


def hel_loop(per_sample: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float = 0.1, beta: float = 0.1,
             gamma: float = 0.1) -> torch.Tensor:
    """HEL as the official HARL computes it: a Python loop over classes (absent classes count as 0)."""
    class_losses = torch.zeros(num_classes, device=per_sample.device)
    for c in range(num_classes):
        mask = (y == c).float()
        class_losses[c] = (per_sample * mask).sum() / (mask.sum() + TINY)
    avg = class_losses.mean()
    shares = class_losses / (class_losses.sum() + TINY)
    return alpha * avg + beta * ((class_losses - avg) ** 2).mean() + gamma * (shares ** 2).sum()


def taet_stage2_loss(model, x, y, num_classes: int, *, eps: float = 0.031, step_size: float = 0.003,
                     steps: int = 10, noise: torch.Tensor | None = None, clip_start: bool = False,
                     alpha: float = 0.1, beta: float = 0.1, gamma: float = 0.1):
    """(HEL, logits) of the official HARL: PGD in eval mode, then train mode, per-sample CE, class loop."""
    x_adv = pgd_official(model, x, y, eps=eps, step_size=step_size, steps=steps, noise=noise, clip_start=clip_start)
    model.train()
    logits = model(x_adv)
    per_sample = F.cross_entropy(logits, y, reduction="none")
    return hel_loop(per_sample, y, num_classes, alpha, beta, gamma), logits


def atbsl_loss(model, x, y, class_counts, *, eps: float = 8 / 255, step_size: float = 2 / 255, steps: int = 10,
               noise: torch.Tensor | None = None, clip_start: bool = False):
    """(loss, logits) of AT-BSL: the same PGD, then CE(z + log n_c) in train mode."""
    x_adv = pgd_official(model, x, y, eps=eps, step_size=step_size, steps=steps, noise=noise, clip_start=clip_start)
    model.train()
    logits = model(x_adv)
    prior = torch.tensor(class_counts, dtype=torch.float32, device=logits.device)
    return F.cross_entropy(logits + torch.log(prior), y), logits


def taet_notebook_loss(model, x, y, num_classes: int, *, adversarial: bool, noise: torch.Tensor | None = None,
                       clip_start: bool = False, **attack):
    """(loss, logits) of one batch of the official TAET notebook's loop (cell 7): in train mode it first runs
    ``outputs = model(inputs)`` on the clean batch, before the stage branch; stage 1 then computes the clean
    forward again for CE, stage 2 runs HARL (PGD in eval mode, HEL in train mode). The first output is unused:
    it only moves BatchNorm's running statistics."""
    model.train()
    model(x)
    if not adversarial:
        logits = model(x)
        return F.cross_entropy(logits, y), logits
    return taet_stage2_loss(model, x, y, num_classes, noise=noise, clip_start=clip_start, **attack)


def atbsl_notebook_loss(model, x, y, class_counts, *, noise: torch.Tensor | None = None, clip_start: bool = False,
                        eps: float = 0.031, step_size: float = 0.003, steps: int = 10):
    """(loss, logits) of the TAET repository's AT-BSL baseline (``code/AT-BSL``): the same discarded clean forward
    in train mode, then AT-BSL's loss on PGD examples made with TAET's attack (0.031, step 0.003, 10 steps)."""
    model.train()
    model(x)
    return atbsl_loss(model, x, y, class_counts, eps=eps, step_size=step_size, steps=steps, noise=noise,
                      clip_start=clip_start)


# ---------------------------------------------------------------------------------------------------
# One training step / one evaluation pass, as the official loops run them
# ---------------------------------------------------------------------------------------------------
def train_step(kind: str, model, opt, batch, device, *, num_classes: int, class_counts, clip_start: bool = False
               ) -> float:
    """One step of `kind` ("taet_stage1", "taet_stage2", "atbsl") on a loader batch; returns loss.item()."""
    x, y = batch
    x, y = x.to(device), y.to(device)
    if kind == "taet_stage1":
        model.train()
        loss = F.cross_entropy(model(x), y)
    elif kind == "taet_stage2":
        loss, _ = taet_stage2_loss(model, x, y, num_classes, clip_start=clip_start)
    elif kind == "atbsl":
        loss, _ = atbsl_loss(model, x, y, class_counts, clip_start=clip_start)
    else:
        raise ValueError(f"unknown step kind {kind!r}")
    opt.zero_grad()  # the reference-style loop the kit is measured against: its own step, not the kit's
    loss.backward()
    opt.step()  # (independent of lib.core.train.train_step by design)
    return loss.item()


def eval_pgd(model, loader, device, *, eps: float = 8 / 255, step_size: float = 1 / 255, steps: int = 20
             ) -> float:
    """Robust accuracy under torchattacks-style PGD over `loader` (per batch: attack, predict, .item())."""
    correct = total = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        x_adv = pgd_official(model, x, y, eps=eps, step_size=step_size, steps=steps, start="uniform")
        with torch.no_grad():
            correct += (model(x_adv).argmax(1) == y).sum().item()
        total += y.numel()
    return correct / max(total, 1)


def make_optimizer(model, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4):
    """The official scripts' optimizer: plain torch.optim.SGD (PyTorch's default implementation choice)."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def batches_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


__all__ = ["ArrayImages", "make_loader", "endless", "pgd_official", "hel_loop", "taet_stage2_loss", "atbsl_loss",
           "taet_notebook_loss", "atbsl_notebook_loss", "train_step", "eval_pgd", "make_optimizer"]
