"""RobustLT ("Taming the Long Tail: Rebalancing Adversarial Training via Adaptive Perturbation", CVPR 2026,
arXiv 2605.13395; official code zhang-lilin/RobustLT): an enhancer that wraps an adversarial training method and
gives each class its own l_inf budget, larger for rarer classes. The base method is unchanged; only its training
attack (`common.train_pgd`) sees the class-wise sizes.

Budget (official `core/methods/robustlt.py`), from the train counts n_c (n_max = max_c n_c, N = Σ_c n_c):
    s_c = sqrt(log(n_max / n_c)),   τ = α / Σ_c (n_c / N)·s_c,   ε_c = (1 − α)·ε + τ·s_c·ε,
so the head class gets (1 − α)·ε, rarer classes more, and the training-set mean of ε_c stays ε. Warm-up: ε_c is
scaled by I = min((e − 1) / (β·E), 1) at 1-indexed epoch e of E (I = 1 when β = 0): the first epoch attacks with
ε_c = 0, and β = 1 never quite reaches the full budget. In the kit's 0-indexed epochs I = min(epoch / (β·E), 1).
The step scales as the budget, step_c = step·ε_c / ε. The official trainer (`core/methods/utils.py`,
`AdversarialTraining.get_adversarial_examples`, given ε = 8/255, step 2/255, 10 steps by `core/trainer`) starts from
x + U(−ε, ε) of the base ε for every class, clipped to [0, 1] only, and crafts in train mode with BatchNorm's
running statistics frozen (`robustlt_start="base"`, `attack_mode="train_frozen_bn"`; "class" and "eval" are the
kit's usual choices). Official configurations (CIFAR-10-LT, IR 50): α = 0.3, β = 0.8 on AT-BSL, β = 1.0 on TAET.

Kit choice: a balanced train set (every n_c equal, no rarer class) keeps ε_c = ε (the official formula divides 0
by 0). `robustlt_alpha = robustlt_beta = 0` gives ε_c = ε from the first epoch: the base method under RobustLT's
attack protocol, its official baselines. `wrap(base)` makes the wrapper of any method whose training attack is
`train_pgd` (LINF_PGD_BASES); docs/robustlt.md maps the official protocol to the kit's switches.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from lib.core.config import EPS_8, ConfigError
from lib.core.methods.atbsl import ATBSL  # noqa: F401  (registers the bases before they are wrapped)
from lib.core.methods.base import METHODS, Method, StepOutput, get_method_class, register_method
from lib.core.methods.common import ATTACK_MODES, BUDGET_STARTS, ClassBudget, class_budget
from lib.core.methods.taet import TAET  # noqa: F401

# Methods whose training examples come from `common.train_pgd` alone (l_inf PGD on CE), so the class-wise budgets
# reach their attack: RobustLT can wrap these. Others craft with their own ascent (TRADES' KL, GAIRAT, LAS-AT, REAT,
# RoBal's one-sided start, ADT's distribution) and are refused.
LINF_PGD_BASES = ("at", "atbsl", "he", "mart", "taet")

# The official trainer's attack (core/trainer/parser.py defaults, passed by Trainer.init_training_method):
# ε 8/255, step 2/255, 10 steps, x + U(−ε, ε) (core/methods/utils.py); the class's own defaults 0.031 / 0.003 are
# overridden by the trainer.
OFFICIAL_ATTACK = {"eps": EPS_8, "step_size": 2.0 / 255.0, "steps": 10, "start": "uniform"}


def class_scale(class_counts: list[int], alpha: float) -> torch.Tensor:
    """ε_c / ε = (1 − α) + τ·sqrt(log(n_max / n_c)), τ = α / Σ_c (n_c / N)·sqrt(log(n_max / n_c)): a float64 (C,)
    tensor (official `robustlt`: `classwise_epsilon_max / epsilon`). All ones for a balanced set (kit choice)."""
    empty = [c for c, n in enumerate(class_counts) if n <= 0]
    if empty:
        raise ConfigError(f"RobustLT needs training images of every class: class(es) {empty} have none (counts "
                          f"{list(class_counts)}); ε_c grows as sqrt(log(n_max / n_c)), infinite at n_c = 0. Lower "
                          "the imbalance ratio or raise data.max_train")
    n = torch.as_tensor(class_counts, dtype=torch.float64)
    s = torch.log(n.max() / n).sqrt()
    spread = float((n / n.sum() * s).sum())
    if spread == 0.0:  # balanced: no class is rarer than another
        return torch.ones_like(n)
    return (1.0 - alpha) + (alpha / spread) * s


def intensity(epoch: int, epochs: int, beta: float) -> float:
    """The warm-up factor of the budget at the kit's 0-indexed `epoch` of `epochs`: min(epoch / (β·E), 1), the
    official min((e − 1) / (β·E), 1) at 1-indexed e = epoch + 1; 1 when β = 0."""
    return min(epoch / (beta * epochs), 1.0) if beta > 0 else 1.0


class RobustLT(Method):
    """The wrapper: `base` built from the base's own fields of `args`; `step` runs the base's step inside
    `class_budget` with this epoch's ε_c / ε on the device (indexed by the labels in `train_pgd`, no class loop)."""

    base_name = ""

    def __init__(self, args: Any, ctx):
        base_cls = get_method_class(self.base_name)
        own = {f.name: getattr(args, f.name) for f in dataclasses.fields(base_cls.Args)}
        self.base = base_cls(base_cls.Args(**own), ctx)
        super().__init__(args, ctx)
        self.ratio = class_scale(ctx.class_counts, args.robustlt_alpha)
        self._scale: tuple[int, torch.Tensor] | None = None  # (epoch, ε_c / ε on the device), one copy per epoch

    # the trainer sets current_lr on the wrapper; the base reads its own
    @property
    def current_lr(self) -> float | None:
        return self.base.current_lr

    @current_lr.setter
    def current_lr(self, value: float | None) -> None:
        self.base.current_lr = value

    def check(self, epochs: int) -> None:
        a = self.args
        if not (isinstance(a.robustlt_alpha, (int, float)) and 0.0 <= a.robustlt_alpha < 1.0):
            raise ConfigError(f"robustlt_alpha={a.robustlt_alpha!r} must be in [0, 1): the share of ε moved from "
                              "frequent to rare classes (official CIFAR-10: 0.3)")
        if not (isinstance(a.robustlt_beta, (int, float)) and 0.0 <= a.robustlt_beta < math.inf):
            raise ConfigError(f"robustlt_beta={a.robustlt_beta!r} must be >= 0: the warm-up length as a fraction of "
                              "the epochs, 0 = no warm-up (official CIFAR-10: 0.8 on AT-BSL, 1.0 on TAET)")
        if a.robustlt_start not in BUDGET_STARTS:
            raise ConfigError(f"robustlt_start={a.robustlt_start!r} is not one of {list(BUDGET_STARTS)} (official: "
                              "'base', the start drawn with the base ε for every class)")
        if a.attack_mode not in ATTACK_MODES:
            raise ConfigError(f"attack_mode={a.attack_mode!r} is not one of {list(ATTACK_MODES)} (official: "
                              "'train_frozen_bn')")
        self.base.check(epochs)

    def budgets(self, epoch: int) -> torch.Tensor:
        """ε_c at the kit's 0-indexed `epoch` (float64, CPU): what the official code logs as eps_c."""
        return self.ratio * intensity(epoch, self.ctx.epochs, self.args.robustlt_beta) * self.args.eps

    def stage(self, epoch: int) -> str:
        return self.base.stage(epoch)

    def step(self, model, x, y, epoch, generator) -> StepOutput:
        if self._scale is None or self._scale[0] != epoch:
            scale = self.ratio * intensity(epoch, self.ctx.epochs, self.args.robustlt_beta)
            self._scale = (epoch, scale.to(device=x.device, dtype=torch.float32))
        budget = ClassBudget(self._scale[1], start=self.args.robustlt_start, mode=self.args.attack_mode)
        with class_budget(budget):
            out = self.base.step(model, x, y, epoch, generator)
        if budget.calls == 0 and self.base.stage(epoch) != "clean":
            raise RuntimeError(f"{self.name}: {self.base_name}'s {self.base.stage(epoch)!r} stage ran no train_pgd, "
                               "so the class-wise budgets reached no attack; it cannot be wrapped by RobustLT")
        return out

    def prepare_model(self, model):
        return self.base.prepare_model(model)

    def eval_model(self, model):
        return self.base.eval_model(model)

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict()  # the budgets are a function of the epoch: nothing of RobustLT's own

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base.load_state_dict(state)


def wrap(base: str, *, alpha: float = 0.3, beta: float = 0.8, name: str | None = None,
         register: bool = True) -> type[RobustLT]:
    """The RobustLT method over registered method `base` (its hyperparameters, the official trainer's attack
    OFFICIAL_ATTACK, and robustlt_alpha, robustlt_beta, robustlt_start, attack_mode), named `robustlt_<base>` and
    registered unless `register` is False. ConfigError for a base whose training attack is not `train_pgd`."""
    if base not in LINF_PGD_BASES:
        known = f"; registered methods: {sorted(METHODS)}" if base not in METHODS else ""
        raise ConfigError(f"RobustLT wraps a method whose training attack is an l_inf PGD on CE (train_pgd): one of "
                          f"{list(LINF_PGD_BASES)}; {base!r} is not{known}")
    base_cls = get_method_class(base)
    name = name or f"robustlt_{base}"
    cls_name = "RobustLT" + "".join(p.capitalize() for p in base.split("_"))
    base_fields = {f.name for f in dataclasses.fields(base_cls.Args)}
    fields: list[tuple[str, type, Any]] = [(k, type(v), dataclasses.field(default=v))
                                          for k, v in OFFICIAL_ATTACK.items() if k in base_fields]
    fields += [("robustlt_alpha", float, dataclasses.field(default=float(alpha))),
               ("robustlt_beta", float, dataclasses.field(default=float(beta))),
               ("robustlt_start", str, dataclasses.field(default="base")),
               ("attack_mode", str, dataclasses.field(default="train_frozen_bn"))]
    args_cls = dataclasses.make_dataclass("Args", fields, bases=(base_cls.Args,))
    args_cls.__module__, args_cls.__qualname__ = __name__, f"{cls_name}.Args"  # picklable as <module>.<cls>.Args
    args_cls.__doc__ = (f"{base_cls.__name__}'s hyperparameters with the official RobustLT trainer's attack (ε 8/255, "
                        f"step 2/255, 10 steps, uniform start), and RobustLT's α = {alpha}, β = {beta}.")
    cls = type(cls_name, (RobustLT,), {
        "name": name, "base_name": base, "Args": args_cls, "__module__": __name__, "__qualname__": cls_name,
        "summary": f"RobustLT on {base_cls.name}: class-wise eps_c (larger for rarer classes, warm-up beta) in its PGD",
        "__doc__": f"RobustLT over {base_cls.__name__} (official configuration robustlt_{base}).",
    })
    return register_method(cls) if register else cls


# The official configurations (configs/cifar10lf/robustlt_{atbsl,taet}_cifar10.yaml).
RobustLTAtbsl = wrap("atbsl", alpha=0.3, beta=0.8)
RobustLTTaet = wrap("taet", alpha=0.3, beta=1.0)
