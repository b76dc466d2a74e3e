"""RoBal (Wu, Liu, Huang, Wang, Lin, CVPR 2021, "Adversarial Robustness under Long-Tailed Distribution";
official code wutong16/Adversarial_Long-Tail, configs `configs/CIFAR10_LT/cifar10_LT0.02_pgdat_robal_{N,R}_{train,
eval}.yaml`, loss `methods/losses_inclass.py: MultiMarginLoss`, training `methods/train_modes.py: add_reg_train`,
heads `models/classifiers/basic_classifiers.py: CosPlus_Classifier, PostProc_Classifier`).

Model: the final linear layer becomes a scale-invariant cosine head (`CosineClassifier`, official `CosPlus`)

    h_c(x) = scale · <f/‖f‖, w_c/(‖w_c‖ + γ)>,      scale = 1 at training, γ = 1/32, no bias (official bias=False)

Training loss on x' (PGD examples) and x (clean), with z = h(x'), prior π_c = n_c / Σ n:

    m_c   = m + τ_m · log(n_c / n_min) / s                         (class-aware margin)
    z̃_j  = s · (z_j − m_y·[j = y]) + τ_b · log π_j                 (margin, scale, balanced logit adjustment)
    L     = CE(z̃, y) + β_reg · (1/N) Σ_i KL(softmax h(x_i) ‖ softmax h(x'_i))

(official `MultiMarginLoss` + `add_reg_train` with beta_adv = 1, beta_nat = 0, reg_opt = trades; the KL is taken
on the head's own outputs, i.e. the scale-1 cosines, with the official log(p' + 1e-12)).
Inner maximisation: PGD-5 on plain CE of h(x') (official `adv_loss_opt: ~`), ε = 0.031, step 0.0078, start
x + ε·U[0, 1) (one-sided, not clipped before the first step, as the official code), in eval mode.

Inference (`eval_model`, official `PostProc_Classifier` with posthoc=True): logits = eval_scale · cos − τ_p · log π,
so every attack of the evaluation suite attacks the adjusted model.

Two official variants. `robal` is RoBal-N (`..._robal_N_train.yaml`: τ_b = 1.2, τ_m = 0; `..._robal_N_eval.yaml`:
eval scale 10, τ_p = 0.1), the one with the inference-time boundary adjustment. `robal_r` is RoBal-R
(`..._robal_R_train.yaml`: τ_b = 1.5, τ_m = 0.3, i.e. the class-aware margin; its eval config is the train config:
scale-1 cosines, no adjustment). Every knob is a hyperparameter, so any mix is one `--method-arg` away.

Where the kit departs from the official code, and why:
- Backbone, optimiser, epochs and LR schedule are the kit's (official: WRN-34-10, 80 epochs, batch 64, wd 2e-4,
  lr 0.1 × 0.1 at 60 and 75; the paper's Table 1 of TAET uses ResNet-18).
- The official train step runs four train-mode forward passes (x', x for the zero-weighted clean CE, x and x'
  again for the KL); the kit runs x' and x once each: the same loss and gradient, but BatchNorm running
  statistics are updated twice instead of four times per batch.
- The unused parts of the official head are left out: the frozen zero bias and the feature moving average
  (`moving_ed`, only read by the TDE classifier, never by RoBal).
- Features are normalised with `F.normalize` (‖f‖ floored at 1e-12) so an all-zero feature gives 0, not NaN.
- `StepOutput.logits` are the head's outputs on x' (train accuracy on the training attack's examples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lib.core.attacks import eval_mode, linf_ascent, random_like
from lib.core.config import ConfigError
from lib.core.methods.base import Method, StepOutput, check_range, register_method
from lib.core.methods.common import check_attack_args, train_pgd

ROBAL_STARTS = ("uniform_pos", "uniform", "normal", "none")
_KL_TINY = 1e-12  # official add_reg_train: torch.log(adv_probs + 1e-12)


# ---------------------------------------------------------------------------------------------------
# The cosine head and the evaluation wrapper
# ---------------------------------------------------------------------------------------------------
class CosineClassifier(nn.Module):
    """scale · <f/‖f‖, w_c/(‖w_c‖ + γ)> (official `CosPlus_Classifier`, bias=False, eta=1)."""

    def __init__(self, in_features: int, out_features: int, scale: float = 1.0, gamma: float = 0.03125):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.scale = float(scale)
        self.gamma = float(gamma)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        bound = 1.0 / math.sqrt(in_features)  # official init_weights: U(-1/sqrt(d), 1/sqrt(d))
        nn.init.uniform_(self.weight, -bound, bound)

    def cosine(self, features: torch.Tensor) -> torch.Tensor:
        ex = F.normalize(features, dim=1)
        ew = self.weight / (self.weight.norm(dim=1, keepdim=True) + self.gamma)
        return ex @ ew.t()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * self.cosine(features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, scale={self.scale}, " \
               f"gamma={self.gamma}"


class AdjustedLogits(nn.Module):
    """Inference-time boundary adjustment (official `PostProc_Classifier`, posthoc=True):
    ``factor · model(x) + bias`` with factor = eval_scale / train scale and bias_c = −τ_p · log π_c."""

    def __init__(self, model: nn.Module, factor: float, bias: torch.Tensor):
        super().__init__()
        self.model = model
        self.factor = float(factor)
        self.register_buffer("bias", bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * self.model(x) + self.bias

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)


def _replace_module(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Put `new` where `old` sits inside `root` (works whatever attribute holds the final layer)."""
    for name, mod in root.named_modules():
        if mod is old and name:
            parent_name, _, attr = name.rpartition(".")
            setattr(root.get_submodule(parent_name) if parent_name else root, attr, new)
            return
    raise ConfigError("could not find the model's final linear layer to replace with the cosine head")


# ---------------------------------------------------------------------------------------------------
# The loss
# ---------------------------------------------------------------------------------------------------
def log_prior(class_counts, device=None, dtype=torch.float32) -> torch.Tensor:
    """log π_c = log(n_c / Σ n) of the long-tailed train counts."""
    counts = torch.as_tensor(class_counts, dtype=torch.float64)
    if (counts <= 0).any():
        raise ConfigError("RoBal needs every class count > 0 (log prior); check the train set")
    return (counts / counts.sum()).log().to(device=device, dtype=dtype)


def class_margins(class_counts, m: float, tau_m: float, s: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """m_c = m + τ_m · log(n_c / n_min) / s (official `MultiMarginLoss.m_list`)."""
    counts = torch.as_tensor(class_counts, dtype=torch.float64)
    return (m + tau_m * (counts / counts.min()).log() / s).to(device=device, dtype=dtype)


def robal_logits(cos_logits: torch.Tensor, targets: torch.Tensor, margins: torch.Tensor, log_pi: torch.Tensor, *,
                 s: float, tau_b: float) -> torch.Tensor:
    """s · (z − m_y on the target logit) + τ_b · log π (the logits the official `MultiMarginLoss` feeds to CE);
    `margins` from `class_margins`, `log_pi` from `log_prior`."""
    onehot = F.one_hot(targets, cos_logits.shape[1]).to(cos_logits.dtype)
    z = cos_logits - onehot * margins[targets].unsqueeze(1)
    return s * z + tau_b * log_pi


def trades_kl(nat_logits: torch.Tensor, adv_logits: torch.Tensor) -> torch.Tensor:
    """(1/N) Σ_i KL(softmax(z_i) ‖ softmax(z'_i)) with log(p' + 1e-12), as official `add_reg_train` (reg_opt=trades);
    gradients flow through both sides."""
    nat_probs = F.softmax(nat_logits, dim=1)
    adv_probs = F.softmax(adv_logits, dim=1)
    return F.kl_div(torch.log(adv_probs + _KL_TINY), nat_probs, reduction="sum") / nat_logits.shape[0]


def robal_loss(adv_logits: torch.Tensor, nat_logits: torch.Tensor, targets: torch.Tensor, margins: torch.Tensor,
               log_pi: torch.Tensor, *, s: float, tau_b: float, beta_reg: float) -> torch.Tensor:
    """CE(robal_logits(h(x')), y) + β_reg · trades_kl(h(x), h(x')); h = the head's raw (scale-1) outputs."""
    ce = F.cross_entropy(robal_logits(adv_logits, targets, margins, log_pi, s=s, tau_b=tau_b), targets)
    return ce + beta_reg * trades_kl(nat_logits, adv_logits)


# ---------------------------------------------------------------------------------------------------
# The training attack
# ---------------------------------------------------------------------------------------------------
def pgd_one_sided_start(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, step_size: float, steps: int,
                        generator: torch.Generator | None) -> torch.Tensor:
    """PGD on CE(model(x'), y) from x + ε·U[0, 1) (official `add_reg_train`: no clip before the first step)."""
    x = x.detach()

    def objective(logits: torch.Tensor, t: int) -> torch.Tensor:
        return F.cross_entropy(logits, y)

    with eval_mode(model):
        x_adv = linf_ascent(model, x, x + eps * random_like(x, "uniform", generator), eps=eps, step_size=step_size,
                            steps=steps, objective=objective)
    return x_adv.clamp(0.0, 1.0)

# ---------------------------------------------------------------------------------------------------
# The methods
# ---------------------------------------------------------------------------------------------------
@register_method
class RoBal(Method):
    name = "robal"
    summary = "RoBal-N: cosine head, margin + balanced CE + TRADES KL on PGD-5; test-time logit adjustment"

    @dataclass
    class Args:
        scale: float = 1.0  # official robal_N_train.yaml classifier_opt.scale: 1 (head output at training)
        gamma: float = 0.03125  # official robal_N_train.yaml classifier_opt.gamma: 0.03125
        s: float = 10.0  # official robal_N_train.yaml loss_opt.MultiMargin.s: 10
        m: float = 0.1  # official robal_N_train.yaml loss_opt.MultiMargin.m: 0.1
        tau_m: float = 0.0  # official robal_N_train.yaml loss_opt.MultiMargin.tau_m: 0 (RoBal-R: 0.3)
        tau_b: float = 1.2  # official robal_N_train.yaml loss_opt.MultiMargin.tau_b: 1.2 (RoBal-R: 1.5)
        beta_reg: float = 6.0  # official robal_N_train.yaml train_mode.add_reg.beta_reg: 6.
        tau_p: float = 0.1  # official robal_N_eval.yaml classifier_opt.tau_p: 0.1 (RoBal-R: none)
        eval_scale: float = 10.0  # official robal_N_eval.yaml classifier_opt.scale: 10 (RoBal-R: 1)
        eps: float = 0.031  # official robal_N_train.yaml train_epsilon: 0.031
        step_size: float = 0.0078  # official robal_N_train.yaml train_step_size: 0.0078
        steps: int = 5  # official robal_N_train.yaml train_num_steps: 5
        start: str = "uniform_pos"  # official add_reg_train: x + eps * U[0, 1)
        start_std: float = 0.001  # only for start="normal"

    def __init__(self, args, ctx):
        super().__init__(args, ctx)
        self.margins = class_margins(ctx.class_counts, args.m, args.tau_m, args.s, ctx.device)
        self.log_prior = log_prior(ctx.class_counts, ctx.device)

    def check(self, epochs: int) -> None:
        a = self.args
        check_attack_args(a)
        if a.start not in ROBAL_STARTS:
            raise ConfigError(f"start={a.start!r} is not one of {list(ROBAL_STARTS)} (official: uniform_pos)")
        inf = float("inf")
        check_range("scale", a.scale, 1e-12, inf, hint="the cosine head's training scale (official: 1)")
        check_range("eval_scale", a.eval_scale, 1e-12, inf, hint="official RoBal-N: 10")
        check_range("s", a.s, 1e-12, inf, hint="the loss scale (official: 10)")
        check_range("gamma", a.gamma, 0.0, inf, hint="official: 0.03125")
        check_range("beta_reg", a.beta_reg, 0.0, inf, hint="official: 6")
        check_range("start_std", a.start_std, 0.0, 1.0, hint="only used with start='normal'")

    # -- model ----------------------------------------------------------------------------------------
    def prepare_model(self, model):
        """Swap the final linear layer for a cosine head of the same shape (train scale `scale`)."""
        old = model.classifier
        head = CosineClassifier(old.in_features, old.out_features, scale=self.args.scale, gamma=self.args.gamma)
        head = head.to(device=old.weight.device, dtype=old.weight.dtype)
        _replace_module(model, old, head)
        return model

    def eval_model(self, model):
        """The adjusted model: (eval_scale / scale) · model(x) − τ_p · log π (the model itself when that is
        the identity, as RoBal-R)."""
        a = self.args
        factor = a.eval_scale / a.scale
        if factor == 1.0 and a.tau_p == 0.0:
            return model
        dev = next(model.parameters()).device
        return AdjustedLogits(model, factor, -a.tau_p * self.log_prior.to(dev))

    # -- training -------------------------------------------------------------------------------------
    def attack(self, model, x, y, generator):
        a = self.args
        if a.start == "uniform_pos":
            return pgd_one_sided_start(model, x, y, eps=a.eps, step_size=a.step_size, steps=a.steps,
                                       generator=generator)
        return train_pgd(model, x, y, a, generator)

    def step(self, model, x, y, epoch, generator) -> StepOutput:
        a = self.args
        x_adv = self.attack(model, x, y, generator)
        adv_logits = model(x_adv)
        nat_logits = model(x)
        loss = robal_loss(adv_logits, nat_logits, y, self.margins.to(adv_logits.device),
                          self.log_prior.to(adv_logits.device), s=a.s, tau_b=a.tau_b, beta_reg=a.beta_reg)
        return StepOutput(loss, adv_logits)


@register_method
class RoBalR(RoBal):
    name = "robal_r"
    summary = "RoBal-R: RoBal with class-aware margin (tau_m 0.3, tau_b 1.5), no test-time adjustment"

    @dataclass
    class Args(RoBal.Args):
        tau_m: float = 0.3  # official robal_R_train.yaml loss_opt.MultiMargin.tau_m: 0.3
        tau_b: float = 1.5  # official robal_R_train.yaml loss_opt.MultiMargin.tau_b: 1.5
        tau_p: float = 0.0  # official robal_R_eval.yaml: CosPlus head, posthoc off
        eval_scale: float = 1.0  # official robal_R_eval.yaml classifier_opt.scale: 1
