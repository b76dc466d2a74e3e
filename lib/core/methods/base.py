"""The method interface and its registry (one file per training method, registered by name)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch

from lib.core.errors import ConfigError, check_range  # noqa: F401  (check_range: re-exported to the methods)


class StepOutput(NamedTuple):
    loss: torch.Tensor  # scalar to back-propagate
    logits: torch.Tensor  # logits of the inputs the loss was computed on (for train accuracy)


@dataclass
class MethodContext:
    num_classes: int
    class_counts: list[int]
    epochs: int
    device: torch.device
    distributed: bool = False  # one of several DDP processes: `step` sees this rank's shard of the global batch


class Method:
    """A training method: `step(model, x, y, epoch, generator)` builds what the current stage needs
    (adversarial examples or not) and returns the loss. Hyperparameters live in the nested `Args`
    dataclass, whose defaults are the official code's values.

    The contract of `step` (tests/test_methods_contract.py checks it for every registered method):
    - it returns `StepOutput(loss, logits)`: a finite scalar to back-propagate and the logits of the batch
      the loss was computed on, shape (N, C); the trainer calls `backward` and steps the optimizer, never
      `step`, so the model's parameters and their `.grad` are as the trainer left them (an attack
      differentiates with respect to its input only, `lib.core.attacks.linf_ascent`). Allowed exceptions: the
      BatchNorm statistics of train-mode forward passes, and a re-parametrisation the method declares (HE
      projects its head's weight onto the unit sphere, as its official code);
    - every random draw comes from `generator` (the global RNG only when it is None), so one seed gives one
      loss; the model's own randomness (dropout) is the trainer's;
    - state kept across steps (counts, an auxiliary network and its own optimizer, as LAS-AT's strategy
      network) goes through `state_dict` / `load_state_dict`, so an exact resume reproduces the run;
    - `self.current_lr` is an input: the trainer sets it at the start of every epoch, `step` only reads it;
    - `epoch` (0-indexed) selects the stage (`stage(epoch)`); `self.ctx` gives the class counts.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    # Bump when a change to the method's code changes what a given config trains: it enters the run hash
    # (lib.runs.config_hash), so cached runs of the old code are not reused.
    version: ClassVar[int] = 1

    @dataclass
    class Args:
        pass

    def __init__(self, args: Any, ctx: MethodContext):
        self.args = args
        self.ctx = ctx
        self.current_lr: float | None = None  # the trainer sets it at the start of every epoch

    # The stage an epoch belongs to; two-stage methods override it.
    def stage(self, epoch: int) -> str:
        return "adversarial"

    def step(self, model, x, y, epoch: int, generator: torch.Generator | None) -> StepOutput:
        raise NotImplementedError

    def check(self, epochs: int) -> None:
        """Raise ConfigError for hyperparameters that cannot work with this schedule."""

    def prepare_model(self, model):
        """Adapt a freshly built model before the optimizer sees it (e.g. swap in a cosine classifier head).
        Called at training and at loading time, so a saved state dict fits the prepared model."""
        return model

    def eval_model(self, model):
        """The model to evaluate (methods with an inference-time adjustment wrap it)."""
        return model

    def state_dict(self) -> dict[str, Any]:
        """State the method keeps across steps (e.g. an auxiliary network), saved in every checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a `name`")
    METHODS[cls.name] = cls
    return cls


def get_method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; valid: {sorted(METHODS)}")
    return METHODS[name]


def method_arg_names(name: str) -> list[str]:
    return [f.name for f in dataclasses.fields(get_method_class(name).Args)]


def resolve_method_args(name: str, values: dict[str, Any], strict: bool = True) -> dict[str, Any]:
    """Fill `values` with the method's defaults. Unknown keys raise (strict) or are dropped (profiles
    give e.g. `ce_epochs` to every method; only TAET uses it)."""
    cls = get_method_class(name)
    fields = {f.name: f for f in dataclasses.fields(cls.Args)}
    unknown = sorted(set(values) - set(fields))
    if unknown and strict:
        hint = ""
        if "extra_clean_forward" in unknown:
            takers = sorted(n for n in METHODS if "extra_clean_forward" in method_arg_names(n))
            hint = (f" (extra_clean_forward: {name} has no clean pass to add before its stage branch; methods "
                    f"with one: {takers})")
        raise ConfigError(
            f"method {name!r} has no hyperparameter(s) {unknown}; its hyperparameters: {sorted(fields)}{hint}"
        )
    kw = {k: v for k, v in values.items() if k in fields}
    for k, v in list(kw.items()):
        default = getattr(cls.Args(), k)
        if isinstance(default, float) and isinstance(v, int) and not isinstance(v, bool):
            kw[k] = float(v)
    return dataclasses.asdict(cls.Args(**kw))


def build_method(name: str, args: dict[str, Any], ctx: MethodContext) -> Method:
    cls = get_method_class(name)
    method = cls(cls.Args(**resolve_method_args(name, args)), ctx)
    method.check(ctx.epochs)
    return method

