"""LAS-PGD-AT (Jia, Zhang, Wu, Ma, Wang, Cao, CVPR 2022, "LAS-AT: Adversarial Training with Learnable Attack
Strategy").

A strategy network looks at each clean image and outputs three categorical distributions, over the
attack's ε, step size and number of iterations; per example, one of each is sampled and the target model
trains on the PGD example those parameters produce. Every `interval` batches the strategy network is first
updated by REINFORCE: it samples strategies for the batch (in train mode), the reward of the
resulting examples is

    R = a · clamp(CE(f(x'), y), 0, 10)                        (R1: robust loss of the target model)
      + b · R2_param · acc(f̃(PGD-10(x)))                     (R2: robustness of a one-step look-ahead f̃)
      + c · R3_param · acc(f̃(x))                              (R3: its clean accuracy)

where f̃ is a copy of the target model after one SGD step on (x', y) with the label-smoothed loss, and the
policy loss is Σ_heads mean_i(−log π(a_i | x_i) · R), with gradient-norm clipping, on its own SGD optimizer.
The scalar batch reward has no baseline (as the official code). The target model's loss is the
label-smoothed CE (true class `factor`, the others (1 − factor)/(C − 1)).

Official code (jiaxiaojunQAQ/LAS-AT, `LAS_PGD_AT/LAS_AT_train_cifar10.py`, `StrategyNet.py`):
- action spaces (README's CIFAR-10 command): ε ∈ {3, …, 15}/255, step size ∈ {1, …, 5}/255,
  iterations ∈ {3, …, 14}. (The argparse defaults are the narrower range(3, 15), range(1, 5), range(3, 14).)
- the AE generator (`Attack_policy_batch`): start x + U(−8/255, 8/255) for every example (whatever its own ε),
  clipped to [0, 1]; then max_i(iterations_i) sign-gradient steps on the batch-mean CE, example i moving only
  during its first iterations_i steps, every step clipped to each example's own ε-ball and to [0, 1]; the
  target model in eval mode.
- reward (`Get_reward`): a = b = c = 1, R2_param = 4, R3_param = 2; the look-ahead copy takes one SGD step
  (the current target lr, momentum 0.9, weight decay 5e-4, a fresh optimizer) on the label-smoothed loss,
  then PGD-10 (ε 8/255, step 2/255, 2 restarts with U(−ε, ε) starts, each example stops once misclassified,
  the run stops when none is left, the larger-loss restart kept) is run on the copy *in train mode*
  (BatchNorm on batch statistics, updating its running statistics), and R2, R3 are read in eval mode.
- strategy network `ResNet18_Strategy`: the CIFAR ResNet-18 body with one linear head per parameter on the
  512-d pooled features (the kit builds the body from its own model registry: `strategy_arch`, `resnet18`
  by default; the official fourth head, over the single attack type "IFGSM", is always the same action and
  is left out); it sees the raw [0, 1] images.
- policy optimizer: SGD lr 1e-4 without momentum (``--policy_optimizer SGD_without_momentum``), updated
  every 20 batches (``--interval_num``), ``clip_grad_norm_`` 1.0; label smoothing ``--factor`` 0.7.

Departures: the kit's schedule, model and data (official: WRN-34-10, 110 epochs, lr 0.1 ×0.1 at 99/110 and
104/110 of the steps); the official policy scheduler's milestones are counted in batches but stepped once
per policy update, so its lr never drops: the kit keeps it constant. The look-ahead step uses
the trainer's current lr, as the official code (`lookahead_lr` overrides it with a fixed value). All
sampling (strategies, attack starts) uses the run's generator;
the strategy network is initialised from a seed drawn from it, and is saved with its optimizer and batch
counter in every checkpoint.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lib.core.attacks import eval_mode, linf_ascent, random_like
from lib.core.config import ConfigError
from lib.core.methods.base import Method, StepOutput, register_method


# ---------------------------------------------------------------------------------------------------
# Pieces (plain functions, tested on their own)
# ---------------------------------------------------------------------------------------------------
def label_smoothed_ce(logits: torch.Tensor, y: torch.Tensor, factor: float) -> torch.Tensor:
    """Official ``LabelSmoothLoss``: CE against a target with `factor` on the true class and
    (1 − factor)/(C − 1) on each other class, averaged over the batch."""
    c = logits.shape[1]
    target = torch.full_like(logits, (1.0 - factor) / (c - 1)).scatter_(1, y[:, None], factor)
    return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()


def sample_actions(logits: list[torch.Tensor], generator: torch.Generator | None
                   ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """One categorical sample per example from each head's softmax (inverse CDF on the generator's
    uniforms), and its log-probability (differentiable in the logits)."""
    actions, log_probs = [], []
    for lg in logits:  # one entry per head (ε, step, iterations): not a loop over examples
        logp = F.log_softmax(lg, dim=1)
        cdf = logp.detach().exp().cumsum(1)
        u = random_like(cdf, "uniform", generator, shape=(lg.shape[0], 1))
        a = (cdf <= u).sum(1).clamp_max(lg.shape[1] - 1)
        actions.append(a)
        log_probs.append(logp.gather(1, a[:, None]).squeeze(1))
    return actions, log_probs


def per_example_pgd(model, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, step_size: torch.Tensor,
                    iters: torch.Tensor, *, init_eps: float, generator: torch.Generator | None = None
                    ) -> torch.Tensor:
    """Official ``Attack_policy_batch``: l_inf PGD with per-example ε, step and iteration count (tensors of
    shape (N,)). Start x + U(−init_eps, init_eps) clipped to [0, 1]; then max(iters) steps of
    ``x' <- clip_{ε_i-ball, [0,1]}(x' + [t < iters_i]·step_i·sign(∇ CE))``. The model runs in eval mode."""
    x = x.detach()
    view = (-1,) + (1,) * (x.dim() - 1)
    a = step_size.to(x.dtype).view(view)

    def objective(logits: torch.Tensor, t: int) -> torch.Tensor:
        return F.cross_entropy(logits, y)

    def step(t: int) -> torch.Tensor:
        return (iters > t).to(x.dtype).view(view) * a  # examples past their own iteration count stay put

    n_steps = int(iters.max()) if iters.numel() else 0
    x_start = (x + init_eps * (2.0 * random_like(x, "uniform", generator) - 1.0)).clamp(0.0, 1.0)
    with eval_mode(model):
        return linf_ascent(model, x, x_start, eps=eps.to(x.dtype).view(view), step_size=step, steps=n_steps,
                           objective=objective)


def early_stop_pgd(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, step_size: float, steps: int,
                   restarts: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The official reward's ``attack_pgd`` (Wong et al.'s fast-AT helper), run in the model's *current*
    mode: per restart, start U(−ε, ε) clipped to [0, 1]; each step moves only the examples still classified
    correctly and the restart ends early once none is; keep, per example, the restart of largest CE."""
    x = x.detach()
    view = (-1,) + (1,) * (x.dim() - 1)
    best = x.clone()
    best_loss = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)

    def objective(logits: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        return F.cross_entropy(logits, y), logits.argmax(1) == y  # only the still-correct examples move

    for _ in range(restarts):
        x_start = (x + eps * (2.0 * random_like(x, "uniform", generator) - 1.0)).clamp(0.0, 1.0)
        x_adv = linf_ascent(model, x, x_start, eps=eps, step_size=step_size, steps=steps, objective=objective)
        with torch.no_grad():
            loss = F.cross_entropy(model(x_adv), y, reduction="none")
        take = loss >= best_loss
        best = torch.where(take.view(view), x_adv, best)
        best_loss = torch.maximum(best_loss, loss)
    return best

def las_reward(robust_loss: torch.Tensor, lookahead_robust_acc: torch.Tensor, lookahead_clean_acc: torch.Tensor,
               *, a: float = 1.0, b: float = 1.0, c: float = 1.0, r2_param: float = 4.0, r3_param: float = 2.0
               ) -> torch.Tensor:
    """Official ``Get_reward``: a·clamp(R1, 0, 10) + b·clamp(R2_param·acc_rob, ±10) + c·clamp(R3_param·acc, ±10)."""
    r1 = robust_loss.clamp(0.0, 10.0)
    r2 = (r2_param * lookahead_robust_acc).clamp(-10.0, 10.0)
    r3 = (r3_param * lookahead_clean_acc).clamp(-10.0, 10.0)
    return a * r1 + b * r2 + c * r3


class StrategyNet(nn.Module):
    """The strategy network: a kit backbone (official: CIFAR ResNet-18, ``ResNet18_Strategy``) on the raw
    [0, 1] image, and one linear head per attack parameter on its pooled features."""

    def __init__(self, arch: str, in_channels: int, image_size: int, head_sizes: list[int]):
        super().__init__()
        from lib.core.models import create_model

        self.body = create_model(arch, 1, in_channels=in_channels, image_size=image_size, normalize=False)
        dim = self.body.feature_dim
        self.heads = nn.ModuleList(nn.Linear(dim, n) for n in head_sizes)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f = self.body.features(x)
        return [head(f) for head in self.heads]


# ---------------------------------------------------------------------------------------------------
# The method
# ---------------------------------------------------------------------------------------------------
@register_method
class LASAT(Method):
    name = "las_at"
    summary = "LAS-PGD-AT: per-example PGD strategies (ε, step, iterations) from a REINFORCE-trained strategy net"

    @dataclass
    class Args:
        # action spaces, in 1/255 units (official README, CIFAR-10: --epsilon_types 3..15
        # --attack_iters_types 3..14 --step_size_types 1..5)
        eps_types: tuple[int, ...] = tuple(range(3, 16))
        step_size_types: tuple[int, ...] = tuple(range(1, 6))
        iters_types: tuple[int, ...] = tuple(range(3, 15))
        init_eps: float = 8.0 / 255.0  # official Attack_policy_batch: start U(-8/255, 8/255) for every example
        factor: float = 0.7  # official --factor 0.7 (label smoothing of the target and look-ahead losses)
        strategy_arch: str = "resnet18"  # official StrategyNet.ResNet18_Strategy
        policy_lr: float = 1e-4  # official --policy_model_lr 0.0001
        policy_momentum: float = 0.0  # official --policy_optimizer SGD_without_momentum
        interval: int = 20  # official --interval_num 20 (strategy update every 20 batches)
        clip_grad_norm: float = 1.0  # official --clip_grad_norm 1.0
        a: float = 1.0  # official --a 1 (weight of R1)
        b: float = 1.0  # official --b 1 (weight of R2)
        c: float = 1.0  # official --c 1 (weight of R3)
        r2_param: float = 4.0  # official --R2_param 4
        r3_param: float = 2.0  # official --R3_param 2
        reward_eps: float = 8.0 / 255.0  # official Get_reward: attack_pgd ε 8/255
        reward_step_size: float = 2.0 / 255.0  # official Get_reward: step 2/255
        reward_steps: int = 10  # official Get_reward: 10 iterations
        reward_restarts: int = 2  # official Get_reward: 2 restarts
        lookahead_lr: float | None = None  # official: the target's current lr (None = the trainer's)
        lookahead_momentum: float = 0.9  # official train_target_model (a fresh optimizer: no effect on one step)
        lookahead_weight_decay: float = 5e-4  # official train_target_model

    def __init__(self, args, ctx):
        super().__init__(args, ctx)
        self.net: StrategyNet | None = None
        self.opt: torch.optim.Optimizer | None = None
        self.batches = 0  # official global `curr_step`
        self._shape: tuple[int, int] | None = None

    # -- checks and state ----------------------------------------------------------------------------
    def check(self, epochs: int) -> None:
        a = self.args
        if getattr(self.ctx, "distributed", False):
            raise ConfigError("las_at keeps one strategy network (and its REINFORCE updates) per process, so it "
                              "does not run under DDP; train it on one GPU")
        for name in ("eps_types", "step_size_types", "iters_types"):
            values = getattr(a, name)
            if not isinstance(values, (list, tuple)) or not values or any(
                    isinstance(v, bool) or not isinstance(v, int) for v in values):
                raise ConfigError(f"{name}={values} must be a non-empty list of integers (1/255 units for ε and "
                                  "step; a count for iterations)")
        if any(not 0 <= v <= 255 for v in a.eps_types) or any(not 0 < v <= 255 for v in a.step_size_types):
            raise ConfigError(f"eps_types and step_size_types are in 1/255 units within [0, 255]; got "
                              f"{list(a.eps_types)}, {list(a.step_size_types)}")
        if any(v < 1 for v in a.iters_types):
            raise ConfigError(f"iters_types={list(a.iters_types)} must all be >= 1 (official: 3..14)")
        for name in ("init_eps", "reward_eps", "reward_step_size"):
            if not 0 <= getattr(a, name) <= 1:
                raise ConfigError(f"{name}={getattr(a, name)} must be in [0, 1] pixel units (8/255 = 0.0314)")
        if not 0 < a.factor <= 1:
            raise ConfigError(f"factor={a.factor} must be in (0, 1] (the true class's target mass; official: 0.7)")
        if a.interval < 1 or a.reward_steps < 0 or a.reward_restarts < 1:
            raise ConfigError(f"interval={a.interval} and reward_restarts={a.reward_restarts} must be >= 1, "
                              f"reward_steps={a.reward_steps} >= 0 (official: 20, 2, 10)")
        if not (a.policy_lr > 0 and (a.lookahead_lr is None or a.lookahead_lr >= 0) and a.clip_grad_norm > 0):
            raise ConfigError("policy_lr and clip_grad_norm must be > 0 and lookahead_lr >= 0 "
                              "(official: 1e-4, 1.0, 0.1)")
        from lib.core.models import MODELS

        if a.strategy_arch not in MODELS:
            raise ConfigError(f"unknown strategy_arch {a.strategy_arch!r}; valid: {sorted(MODELS)}")

    def _build(self, in_channels: int, image_size: int, seed: int | None) -> None:
        a = self.args
        sizes = [len(a.eps_types), len(a.step_size_types), len(a.iters_types)]
        with torch.random.fork_rng(devices=[]):  # initialise without touching the run's global RNG
            if seed is not None:
                torch.random.default_generator.manual_seed(seed)
            net = StrategyNet(a.strategy_arch, in_channels, image_size, sizes)
        self.net = net.to(self.ctx.device)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=a.policy_lr, momentum=a.policy_momentum)
        self._shape = (in_channels, image_size)

    def _ensure_net(self, x: torch.Tensor, generator: torch.Generator | None) -> None:
        if self.net is not None:
            return
        if generator is None:
            seed = int(torch.randint(0, 2**62, (1,)))
        else:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        self._build(int(x.shape[1]), int(x.shape[-1]), seed)

    def state_dict(self) -> dict[str, Any]:
        if self.net is None:
            return {"batches": self.batches}
        return {"batches": self.batches, "in_channels": self._shape[0], "image_size": self._shape[1],
                "net": self.net.state_dict(), "optimizer": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.batches = int(state.get("batches", 0))
        if "net" in state:
            self._build(int(state["in_channels"]), int(state["image_size"]), seed=None)
            self.net.load_state_dict(state["net"])
            self.opt.load_state_dict(state["optimizer"])

    # -- strategies ----------------------------------------------------------------------------------
    def strategy(self, x: torch.Tensor, generator: torch.Generator | None):
        """Sample per-example (ε, step, iterations) from the strategy network (its current train/eval mode).
        Returns (eps (N,), step (N,) in pixel units, iters (N,) long, log-probs of the three actions)."""
        (ia, sa, na), log_probs = sample_actions(self.net(x), generator)
        dev = x.device
        eps = torch.as_tensor(list(self.args.eps_types), dtype=x.dtype, device=dev)[ia] / 255.0
        step = torch.as_tensor(list(self.args.step_size_types), dtype=x.dtype, device=dev)[sa] / 255.0
        iters = torch.as_tensor(list(self.args.iters_types), dtype=torch.long, device=dev)[na]
        return eps, step, iters, log_probs

    def _lookahead(self, model, x_adv: torch.Tensor, y: torch.Tensor):
        """The official ``train_target_model``: a copy of the target after one SGD step (fresh optimizer)
        on the label-smoothed loss of (x_adv, y), left in train mode."""
        a = self.args
        twin = copy.deepcopy(model)
        for p in twin.parameters():
            p.grad = None
        twin.train()
        lr = a.lookahead_lr if a.lookahead_lr is not None else (self.current_lr or 0.1)
        opt = torch.optim.SGD(twin.parameters(), lr=lr, momentum=a.lookahead_momentum,
                              weight_decay=a.lookahead_weight_decay)
        loss = label_smoothed_ce(twin(x_adv), y, a.factor)
        opt.zero_grad(set_to_none=True)  # the look-ahead copy's own optimizer: the trainer's model is not stepped
        loss.backward()
        opt.step()  # the look-ahead copy only
        return twin

    def reward(self, model, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
               generator: torch.Generator | None) -> torch.Tensor:
        a = self.args
        with eval_mode(model), torch.no_grad():
            r1 = F.cross_entropy(model(x_adv), y)
        twin = self._lookahead(model, x_adv, y)
        x_pgd = early_stop_pgd(twin, x, y, eps=a.reward_eps, step_size=a.reward_step_size, steps=a.reward_steps,
                               restarts=a.reward_restarts, generator=generator)  # in train mode, as official
        twin.eval()
        with torch.no_grad():
            rob = (twin(x_pgd).argmax(1) == y).to(x.dtype).mean()
            clean = (twin(x).argmax(1) == y).to(x.dtype).mean()
        return las_reward(r1, rob, clean, a=a.a, b=a.b, c=a.c, r2_param=a.r2_param, r3_param=a.r3_param)

    def update_strategy(self, model, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
                        ) -> torch.Tensor:
        """One REINFORCE step of the strategy network on this batch; returns the policy loss."""
        a = self.args
        self.net.train()
        eps, step, iters, log_probs = self.strategy(x, generator)
        x_adv = per_example_pgd(model, x, y, eps, step, iters, init_eps=a.init_eps, generator=generator)
        r = self.reward(model, x, x_adv, y, generator).detach()
        policy_loss = sum((-lp * r).mean() for lp in log_probs)
        self.opt.zero_grad(set_to_none=True)  # the strategy network's optimizer (method state), not the trainer's
        policy_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), a.clip_grad_norm)
        self.opt.step()  # the strategy network only
        return policy_loss.detach()

    def step(self, model, x, y, epoch, generator) -> StepOutput:
        if self.ctx.num_classes < 2:
            raise ConfigError("las_at's label smoothing needs at least 2 classes")
        self._ensure_net(x, generator)
        self.batches += 1
        if self.batches % self.args.interval == 0:
            self.update_strategy(model, x, y, generator)
        self.net.eval()
        with torch.no_grad():
            eps, step, iters, _ = self.strategy(x, generator)
        x_adv = per_example_pgd(model, x, y, eps, step, iters, init_eps=self.args.init_eps, generator=generator)
        logits = model(x_adv)
        return StepOutput(label_smoothed_ce(logits, y, self.args.factor), logits)
