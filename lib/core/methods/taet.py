"""TAET (CVPR 2025, arXiv 2503.01924): Two-Stage Adversarial Equalization Training.

Stage 1 (epochs < ce_epochs): cross-entropy on clean images (paper: 40 of 100 epochs).
Stage 2: PGD examples and the Hierarchical Equalization Loss HEL = α·BCL + β·HDL + γ·RCEL over the batch's
class-wise mean CE (see `lib.core.losses.hel_loss`); HEL alone, no extra CE term, as the official code.
Training attack as the official `HARL`: ε = 0.031, step 0.003, 10 steps, start x + 0.001·N(0,1).
``extra_clean_forward`` adds the official notebook's discarded train-mode forward on the clean batch before the
stage branch (BatchNorm statistics only; `taet_notebook` profile).
`hel_scale` multiplies HEL (default 1: the official loss; the claims check's factorial tries 10, a CE-sized
gradient). Under DDP (torchrun) the class means L_c are those of the global batch (all ranks), as on one process.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from lib.core.config import ConfigError
from lib.core.losses import ABSENT_RULES, hel_loss
from lib.core.methods.base import Method, StepOutput, register_method
from lib.core.methods.common import check_attack_args, extra_clean_forward, train_pgd


@register_method
class TAET(Method):
    name = "taet"
    summary = "TAET: clean CE for ce_epochs, then PGD-10 + Hierarchical Equalization Loss"

    @dataclass
    class Args:
        ce_epochs: int = 40  # paper: 40 of 100
        alpha: float = 0.1  # paper: 0.1 (BCL weight)
        beta: float = 0.1  # paper: 0.1 (HDL weight)
        gamma: float = 0.1  # paper: 0.1 (RCEL weight)
        absent: str = "zero"  # classes missing from a batch count as L_c = 0 (official code)
        eps: float = 0.031  # official: 0.031
        step_size: float = 0.003  # official: 0.003
        steps: int = 10  # official: 10
        start: str = "normal"  # official: x + 0.001·N(0, 1)
        start_std: float = 0.001
        extra_clean_forward: bool = False  # official notebook: True (a discarded clean forward, BatchNorm stats only)
        hel_scale: float = 1.0  # not in the paper: HEL times this factor (the factorial's loss-scale switch)

    def check(self, epochs: int) -> None:
        check_attack_args(self.args)
        if not 0 <= self.args.ce_epochs <= epochs:
            raise ConfigError(
                f"ce_epochs={self.args.ce_epochs} must be between 0 and epochs={epochs} "
                "(paper: 40 of 100); lower --ce-epochs or raise --epochs"
            )
        if self.args.absent not in ABSENT_RULES:
            raise ConfigError(f"absent={self.args.absent!r} is not one of {list(ABSENT_RULES)}")
        if not self.args.hel_scale > 0:
            raise ConfigError(f"hel_scale={self.args.hel_scale} must be > 0 (1 = the official HEL)")

    def stage(self, epoch: int) -> str:
        return "clean" if epoch < self.args.ce_epochs else "adversarial"

    def step(self, model, x, y, epoch, generator) -> StepOutput:
        if self.args.extra_clean_forward:
            extra_clean_forward(model, x)
        if self.stage(epoch) == "clean":
            logits = model(x)
            return StepOutput(F.cross_entropy(logits, y), logits)
        x_adv = train_pgd(model, x, y, self.args, generator)
        logits = model(x_adv)
        per_sample = F.cross_entropy(logits, y, reduction="none")
        loss = hel_loss(per_sample, y, self.ctx.num_classes, self.args.alpha, self.args.beta, self.args.gamma,
                        absent=self.args.absent, distributed=self.ctx.distributed)
        if self.args.hel_scale != 1.0:
            loss = loss * self.args.hel_scale
        return StepOutput(loss, logits)
