"""PGD-AT + HE (Pang, Yang, Dong, Xu, Zhu, Su, NeurIPS 2020, "Boosting Adversarial Training with
Hypersphere Embedding").

The final linear layer becomes a cosine head: logits = s · cos θ_j = s · ⟨f/‖f‖, W_j/‖W_j‖⟩ (no bias), and
the model trains on PGD examples with the additive angular margin

    L = CE(s · (cos θ − m · onehot(y)), y)            (official `he.HELoss` with ``cm=m``)

Official code (ShawnXYang/AT_HE, `CIFAR-10/train_adv_cifar10.py --loss=pgd_he --s=15.0 --m=0.2`,
`losses.pgd_loss`, `he.py`, `models/wideresnet.py` with ``use_FNandWN``):

- s = 15, m = 0.2 (README's PGD-AT + HE command; argparse defaults).
- Training attack: PGD-10, ε = 0.031, step 0.007, start x + 0.001·N(0, 1), ascending
  ``HELoss(model(x'), y)`` with its default ``cm=0``, i.e. CE on the margin-free s · cos θ: that is the
  prepared model's own forward here, so the kit's PGD is used as it is.
- Weight normalisation: the official forward overwrites ``fc.weight.data`` with its row-normalised copy
  before every use, so the weight sits on the unit sphere when the loss is taken and its gradient (and the
  weight decay) is that of a plain linear layer (not projected). The kit does the same: each `step`
  projects the head's weight back onto the unit sphere in place, and the head divides by the detached row
  norms (an identity once projected; it keeps the logits right for a model loaded from any checkpoint).
  Features are normalised with their gradient, as the official ``F.normalize(out)``.

Departures: the kit's schedule, model and data (the official run is WRN-34-10, 82 epochs, weight decay 2e-4,
batch 128, CIFAR-10); the official model returns cos θ and its PGD evaluation attacks CE(cos θ) without
the scale s, while the kit's prepared model returns s · cos θ and every evaluation attack sees those logits
(the predictions are the same); the kit's PGD clips its start x + 0.001·N(0, 1) to [0, 1] before the first
gradient (the official clips after the first step). The initial head weight is the replaced layer's (nn.Linear's default
initialisation, as the official bias-free ``nn.Linear``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lib.core.config import ConfigError
from lib.core.methods.base import Method, StepOutput, register_method
from lib.core.methods.common import check_attack_args, train_pgd


class CosineLinear(nn.Linear):
    """``s · cos θ``: normalised input times row-normalised weight, no bias (the HE head). A subclass of
    nn.Linear (in_features, out_features, weight) so that code reading ``model.classifier`` keeps working."""

    def __init__(self, in_features: int, out_features: int, s: float = 15.0):
        super().__init__(in_features, out_features, bias=False)
        self.s = float(s)

    @classmethod
    def from_linear(cls, linear: nn.Linear, s: float) -> CosineLinear:
        head = cls(linear.in_features, linear.out_features, s)
        head = head.to(device=linear.weight.device, dtype=linear.weight.dtype)
        with torch.no_grad():
            head.weight.copy_(linear.weight)
        return head

    @torch.no_grad()
    def project_(self) -> None:
        """Put every weight row back on the unit sphere (the official ``weight.data = normalize(weight)``)."""
        self.weight.copy_(F.normalize(self.weight, dim=1))

    def cosine(self, features: torch.Tensor) -> torch.Tensor:
        w = self.weight / self.weight.norm(dim=1, keepdim=True).detach().clamp_min(1e-12)
        return F.linear(F.normalize(features, dim=1), w)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.s * self.cosine(features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, s={self.s}"


def replace_classifier(model: nn.Module, new: nn.Module) -> nn.Module:
    """Swap the module ``model.classifier`` refers to (wherever it lives: ``inner.classifier``,
    ``inner.net.fc``, ...) for ``new``, in place; returns ``model``."""
    old = model.classifier
    for name, module in model.named_modules():
        if module is old and name:
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
            return model
    raise ConfigError(f"could not find the classifier of {type(model).__name__} to replace")


def he_loss(logits: torch.Tensor, y: torch.Tensor, s: float, m: float, reduction: str = "mean") -> torch.Tensor:
    """CE(s · (cos θ − m · onehot(y)), y) from the head's logits ``s · cos θ`` (official ``HELoss(..., cm=m)``)."""
    margin = F.one_hot(y, logits.shape[1]).to(logits.dtype) * (s * m)
    return F.cross_entropy(logits - margin, y, reduction=reduction)


@register_method
class HE(Method):
    name = "he"
    summary = "PGD-AT + HE: cosine head s·cos θ, CE with angular margin m on PGD-10 examples"

    @dataclass
    class Args:
        s: float = 15.0  # official train_adv_cifar10.py --s 15.0 (README: --loss=pgd_he --s=15.0 --m=0.2)
        m: float = 0.2  # official train_adv_cifar10.py --m 0.2
        eps: float = 0.031  # official train_adv_cifar10.py --epsilon 0.031
        step_size: float = 0.007  # official train_adv_cifar10.py --step-size 0.007
        steps: int = 10  # official train_adv_cifar10.py --num-steps 10
        start: str = "normal"  # official losses.pgd_loss: x + 0.001·N(0, 1)
        start_std: float = 0.001

    def check(self, epochs: int) -> None:
        check_attack_args(self.args)
        if not self.args.s > 0:
            raise ConfigError(f"s={self.args.s} must be > 0 (the logit scale; official: 15)")
        if not self.args.m >= 0:
            raise ConfigError(f"m={self.args.m} must be >= 0 (the angular margin; official: 0.2)")

    def prepare_model(self, model):
        if isinstance(model.classifier, CosineLinear):
            return model
        return replace_classifier(model, CosineLinear.from_linear(model.classifier, self.args.s))

    def step(self, model, x, y, epoch, generator) -> StepOutput:
        head = getattr(model, "module", model).classifier  # through a DistributedDataParallel wrapper
        if not isinstance(head, CosineLinear):
            raise ConfigError("the `he` method needs the model from its prepare_model (a cosine head)")
        head.project_()
        x_adv = train_pgd(model, x, y, self.args, generator)  # ascends CE(s·cos θ): the official cm=0
        logits = model(x_adv)
        return StepOutput(he_loss(logits, y, self.args.s, self.args.m), logits)
