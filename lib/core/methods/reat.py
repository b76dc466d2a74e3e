"""REAT, Re-balancing Adversarial Training (Guanlin Li, Guowen Xu, Tianwei Zhang, "Alleviating the Effect of Data
Imbalance on Adversarial Training", arXiv 2307.10205, v1 titled "Adversarial Training Over Long-Tailed
Distribution"; an ICLR 2024 submission, withdrawn; official code GuanlinLee/REAT, `loss_functions.py: RBL, BSL,
REAT` and `train.py`).

Inner maximisation: PGD-10 (ε = 8/255, step 2/255, start x + U(−ε, ε), not clipped before the first step, in eval
mode) on the re-balancing loss RBL, a class-weighted CE whose weights come from effective numbers:

    β_c = (n_c − 1) / n_c,   E_c = (1 − β_c^{a_c}) / (1 − β_c),   w_c ∝ 1 / (E_c + 1e-5),  Σ_c w_c = C

n_c = train count of class c, a_c = how many training adversarial examples the model *predicted* as class c during
the previous epoch (a_c = n_c before the first epoch), kept as method state and saved in every checkpoint.

Outer minimisation on the adversarial examples x' with penultimate features f = model.features(x'):

    L = BSL(z', y) + TAIL(f, y),      BSL = CE(z' + log n_c, y)

TAIL, the tail feature alignment term, exactly as the official code computes it. Tail classes are the last
C − (⌊C/3⌋·2 + 1) classes (CIFAR-10: 7, 8, 9). With P_i = softmax(f_i) (a constant), log Q_j = log_softmax(f_j),
class weights v_c = sqrt(Σn / n_c), sign s_ij = −1 if y_i = y_j else +1, and W_ij = v_{y_i} + v_{y_j}:

    K̄_i  = (1 / (N·D)) Σ_j Σ_d P_id (log P_id − log Q_jd)      (nn.KLDivLoss(size_average='none') is the legacy
                                                                  'mean' reduction: a scalar per tail sample i)
    TAIL = (1 / |T|) Σ_{i∈T} K̄_i · (1/N) Σ_j s_ij W_ij          (T = tail samples of the batch; 0 if none)

Note the official reduction: the KL is averaged over all pairs before the per-pair sign and weight apply, so TAIL
scales the mean KL from each tail sample to the whole batch by its mean signed weight; the kit follows the code.
Also note that the sign of a per-sample positively weighted CE gradient is that of plain CE, so PGD on RBL gives
the same examples as PGD on CE; the kit still attacks RBL, as the official code does.

Where the kit departs from the official code, and why:
- Tail classes are the last ones in order of decreasing train count (stable on ties). On CIFAR-LT and the kit's
  exp/step profiles (classes sorted head first) that is the official index rule; on a naturally long-tailed set
  (DermaMNIST) the index rule would pick arbitrary classes.
- Backbone, optimiser, epochs and LR schedule are the kit's (official: ResNet-18 or WRN-34-10, 80 epochs, batch 128,
  wd 5e-4, lr 0.1 × 0.1 at 60 and 75, best epoch by PGD-20 on the test set; the kit reports the final epoch).
- The official loop also runs an eval-mode clean forward pass per batch for logging only; the kit skips it.
- Vectorised: the official Python loop over tail samples becomes one N×N matrix of feature KLs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from lib.core.attacks import eval_mode, linf_ascent, random_like
from lib.core.config import EPS_8
from lib.core.losses import balanced_softmax_loss
from lib.core.methods.base import Method, StepOutput, check_range, register_method
from lib.core.methods.common import check_attack_args

_E_TINY = 1e-5  # official RBL: 1. / (E + 1e-5)


def rbl_weights(class_counts, adv_pred_counts) -> torch.Tensor:
    """Effective-number class weights of RBL (official `RBL`), normalised to sum to C; float32, on counts' device."""
    n = torch.as_tensor(class_counts, dtype=torch.float64)
    a = torch.as_tensor(adv_pred_counts, dtype=torch.float64, device=n.device)
    beta = (n - 1.0) / n
    effective = (1.0 - beta.pow(a)) / (1.0 - beta)
    w = 1.0 / (effective + _E_TINY)
    return (w / w.sum() * n.numel()).float()


def rbl_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Class-weighted CE, Σ_i w_{y_i} CE_i / Σ_i w_{y_i} (F.cross_entropy with `weight`, as official `RBL`)."""
    return F.cross_entropy(logits, targets, weight=weights.to(device=logits.device, dtype=logits.dtype))


def tail_class_mask(class_counts) -> torch.Tensor:
    """Bool mask of the tail classes: ranks ⌊C/3⌋·2 + 1 … C − 1 by decreasing train count (official: class indices
    C//3*2+1 … C−1, the same when classes are sorted head first)."""
    counts = torch.as_tensor(class_counts, dtype=torch.float64)
    c = counts.numel()
    order = torch.sort(-counts, stable=True).indices  # head first, ties by index
    mask = torch.zeros(c, dtype=torch.bool)
    mask[order[c // 3 * 2 + 1:]] = True
    return mask


def tail_class_weights(class_counts) -> torch.Tensor:
    """v_c = sqrt(1 / (n_c / Σ n)) (official `REAT`: torch.sqrt(1. / (spc / spc.sum())))."""
    n = torch.as_tensor(class_counts, dtype=torch.float64)
    return (1.0 / (n / n.sum())).sqrt().float()


def tail_loss(features: torch.Tensor, targets: torch.Tensor, tail_mask: torch.Tensor,
              class_weights: torch.Tensor) -> torch.Tensor:
    """TAIL of the official `REAT` (see the module docstring), vectorised over the batch."""
    n, d = features.shape
    tail_mask = tail_mask.to(features.device)
    class_weights = class_weights.to(device=features.device, dtype=features.dtype)
    log_q = F.log_softmax(features, dim=1)
    log_p = log_q.detach()
    p = log_p.exp()
    # K[i, j] = Σ_d P_id (log P_id − log Q_jd)
    kl = (p * log_p).sum(1, keepdim=True) - p @ log_q.t()
    kl_mean = kl.sum(1) / (n * d)
    sign = torch.where(targets[:, None] == targets[None, :], -1.0, 1.0).to(features.dtype)
    pair_w = class_weights[targets][:, None] + class_weights[targets][None, :]
    signed = (sign * pair_w).mean(1)
    is_tail = tail_mask[targets].to(features.dtype)
    count = is_tail.sum()
    return (is_tail * kl_mean * signed).sum() / count.clamp(min=1.0)


def rbl_attack(model, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, *, eps: float, step_size: float,
               steps: int, generator: torch.Generator | None) -> torch.Tensor:
    """PGD on RBL from x + U(−ε, ε), not clipped before the first step (official `REAT`), in eval mode."""
    x = x.detach()

    def objective(logits: torch.Tensor, t: int) -> torch.Tensor:
        return rbl_loss(logits, y, weights)

    x_start = x + eps * (2.0 * random_like(x, "uniform", generator) - 1.0)
    with eval_mode(model):
        x_adv = linf_ascent(model, x, x_start, eps=eps, step_size=step_size, steps=steps, objective=objective)
    return x_adv.clamp(0.0, 1.0)

@register_method
class REAT(Method):
    name = "reat"
    summary = "REAT: PGD-10 on effective-number re-weighted CE, then balanced softmax + tail feature alignment"

    @dataclass
    class Args:
        eps: float = EPS_8  # official train.py --eps 8./255.
        step_size: float = 2.0 / 255.0  # official train.py --ss 2./255.
        steps: int = 10  # official train.py --ns 10
        tail_weight: float = 1.0  # official REAT(): loss = BSL + TAIL (weight 1)

    def __init__(self, args, ctx):
        super().__init__(args, ctx)
        c = ctx.num_classes
        counts = torch.as_tensor(ctx.class_counts, dtype=torch.long)
        # a_c for the current epoch (official: pre_at_sample, starting at the train counts) and the running
        # count of adversarial predictions of the epoch under way (official: next_at_sample).
        self.adv_pred_counts = counts.clone()
        self.next_counts = torch.zeros(c, dtype=torch.long, device=ctx.device)
        self.epoch = 0
        self.tail_mask = tail_class_mask(ctx.class_counts).to(ctx.device)
        self.tail_weights = tail_class_weights(ctx.class_counts).to(ctx.device)
        self._rbl_weights: torch.Tensor | None = None  # cached per epoch

    def check(self, epochs: int) -> None:
        check_attack_args(self.args)
        check_range("tail_weight", self.args.tail_weight, 0.0, float("inf"), hint="official: 1")

    def _roll(self, epoch: int) -> None:
        """At the first step of a new epoch, last epoch's adversarial predictions become a_c (official: per epoch)."""
        if epoch != self.epoch:
            self.adv_pred_counts = self.next_counts.cpu().clone()
            self.next_counts = torch.zeros_like(self.next_counts)
            self.epoch = epoch
            self._rbl_weights = None

    def current_rbl_weights(self, device) -> torch.Tensor:
        if self._rbl_weights is None or self._rbl_weights.device != torch.device(device):
            self._rbl_weights = rbl_weights(self.ctx.class_counts, self.adv_pred_counts).to(device)
        return self._rbl_weights

    def step(self, model, x, y, epoch, generator) -> StepOutput:
        a = self.args
        self._roll(epoch)
        weights = self.current_rbl_weights(x.device)
        x_adv = rbl_attack(model, x, y, weights, eps=a.eps, step_size=a.step_size, steps=a.steps,
                           generator=generator)
        feats = model.features(x_adv)
        logits = model.classifier(feats)
        loss = balanced_softmax_loss(logits, y, self.ctx.class_counts)
        if a.tail_weight:
            loss = loss + a.tail_weight * tail_loss(feats, y, self.tail_mask, self.tail_weights)
        pred = logits.detach().argmax(1)
        self.next_counts = self.next_counts.to(pred.device) + torch.bincount(pred, minlength=self.ctx.num_classes)
        return StepOutput(loss, logits)

    def state_dict(self) -> dict[str, Any]:
        return {"adv_pred_counts": self.adv_pred_counts.cpu().clone(), "next_counts": self.next_counts.cpu().clone(),
                "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.adv_pred_counts = state["adv_pred_counts"].clone()
        self.next_counts = state["next_counts"].to(self.ctx.device).clone()
        self.epoch = int(state["epoch"])
        self._rbl_weights = None
