"""The model registry (``create_model(name)``, in the spirit of timm's) and what every model shares: the
:class:`NormalizedModel` wrapper (pixels in [0, 1] in; resize, gray-to-RGB and ``(x - mean) / std`` inside) and
the :class:`Backbone` contract (``features(x)``, ``classifier``, ``forward = classifier(features(x))``). The
architectures register themselves from :mod:`lib.core.models.cifar` and :mod:`lib.core.models.torchvision_nets`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lib.core.config import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_MEAN = (0.5,)  # used when no per-dataset statistics are given: maps [0, 1] to [-1, 1]
DEFAULT_STD = (0.5,)


# ---------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelInfo:
    """What the wrapper must do before an architecture sees its input."""

    rgb_only: bool = False  # the stem takes 3 channels: gray input is repeated inside the wrapper
    input_size: int | None = None  # fixed input size: inputs are resized to it inside the wrapper
    imagenet_stats: bool = False  # default mean/std are ImageNet's (torchvision models)
    has_pretrained: bool = False  # torchvision weights can be loaded


Builder = Callable[..., nn.Module]
MODELS: dict[str, Builder] = {}


def register_model(name: str, **info) -> Callable[[Builder], Builder]:
    """Register ``builder(num_classes, *, in_channels, image_size, pretrained, **kwargs) -> nn.Module``
    under ``name``; keyword arguments fill the builder's :class:`ModelInfo`."""

    def decorator(builder: Builder) -> Builder:
        if name in MODELS:
            raise ValueError(f"model {name!r} is already registered")
        builder.model_info = ModelInfo(**info)
        MODELS[name] = builder
        return builder

    return decorator


def list_models() -> list[str]:
    return sorted(MODELS)


def create_model(
    arch: str,
    num_classes: int,
    *,
    in_channels: int = 3,
    image_size: int = 32,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    normalize: bool = True,
    pretrained: bool = False,
    resize: int | None = None,
    **kwargs,
) -> NormalizedModel:
    """Build ``arch`` for ``num_classes`` classes, wrapped in :class:`NormalizedModel`.

    ``mean``/``std``: per-channel statistics (one value or one per channel); None = ImageNet's for the
    torchvision models, 0.5 otherwise. ``normalize=False`` makes the normalisation the identity.
    ``resize``: resize inputs to ``resize`` x ``resize`` inside the wrapper (bilinear), e.g. 224 for the
    official TAET notebook's ResNet-50; ``vit_b16`` always resizes to 224. Extra ``kwargs`` go to the
    builder (e.g. ``dropout`` for ``wrn34_10``, ``width`` for ``small_cnn``).
    """
    if arch not in MODELS:
        raise ConfigError(f"unknown model {arch!r}; valid: {list_models()}")
    builder = MODELS[arch]
    info: ModelInfo = builder.model_info
    _check_positive_int("num_classes", num_classes)
    _check_positive_int("in_channels", in_channels)
    _check_positive_int("image_size", image_size)
    if resize is not None:
        _check_positive_int("resize", resize)
    if pretrained and not info.has_pretrained:
        with_weights = sorted(n for n, b in MODELS.items() if b.model_info.has_pretrained)
        raise ConfigError(f"model {arch!r} has no pretrained weights; pass pretrained=False "
                          f"(models with weights: {with_weights})")
    if info.input_size is not None:
        if resize not in (None, info.input_size):
            raise ConfigError(f"model {arch!r} takes {info.input_size}x{info.input_size} inputs; "
                              f"got resize={resize} (leave it None: inputs are resized inside the model)")
        if image_size != info.input_size:
            resize = info.input_size
    repeat = info.rgb_only and in_channels != 3
    if repeat and in_channels != 1:
        raise ConfigError(f"model {arch!r} takes 1- or 3-channel images; got in_channels={in_channels}")
    stem_channels = 3 if info.rgb_only else in_channels

    if mean is None:
        mean = IMAGENET_MEAN if info.imagenet_stats else DEFAULT_MEAN
    if std is None:
        std = IMAGENET_STD if info.imagenet_stats else DEFAULT_STD
    mean_t = _channel_stats("mean", mean, stem_channels)
    std_t = _channel_stats("std", std, stem_channels)
    if (std_t <= 0).any():
        raise ConfigError(f"std must be positive; got {std_t.tolist()}")
    if not normalize:
        mean_t, std_t = torch.zeros_like(mean_t), torch.ones_like(std_t)

    try:
        # the inner model sees the resized image when the wrapper resizes
        inner = builder(num_classes, in_channels=stem_channels, image_size=resize or image_size,
                        pretrained=pretrained, **kwargs)
    except TypeError as e:
        if kwargs:
            raise ConfigError(f"bad extra argument(s) {sorted(kwargs)} for model {arch!r}: {e}") from None
        raise
    return NormalizedModel(inner, mean_t, std_t, resize=resize, repeat_gray=repeat)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (buffers such as BatchNorm running statistics are not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer; got {value!r}")


def _channel_stats(name: str, values, channels: int) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float32).flatten()
    if t.numel() == 1:
        t = t.expand(channels)
    if t.numel() != channels:
        raise ConfigError(f"{name} has {t.numel()} values but the model normalises {channels} channel(s); "
                          f"give one value or one per channel")
    return t.clone().view(1, channels, 1, 1)


# ---------------------------------------------------------------------------------------------------
# The wrapper
# ---------------------------------------------------------------------------------------------------
class NormalizedModel(nn.Module):
    """``inner`` behind the input pipeline: [0, 1] pixels -> optional resize -> optional gray-to-RGB ->
    ``(x - mean) / std`` (buffers, per channel). Attacks and training see only [0, 1] inputs."""

    def __init__(self, inner: nn.Module, mean: torch.Tensor, std: torch.Tensor, *, resize: int | None = None,
                 repeat_gray: bool = False):
        super().__init__()
        self.inner = inner
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1).clone())
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1).clone())
        self.resize = resize
        self.repeat_gray = repeat_gray

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """What ``inner`` sees for pixel input ``x``."""
        if self.resize is not None and tuple(x.shape[-2:]) != (self.resize, self.resize):
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        if self.repeat_gray and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (the classifier's input), shape (N, feature_dim)."""
        return self.inner.features(self.preprocess(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(self.preprocess(x))

    @property
    def classifier(self) -> nn.Linear:
        return self.inner.classifier

    @property
    def feature_dim(self) -> int:
        return self.inner.classifier.in_features

    def extra_repr(self) -> str:
        return f"resize={self.resize}, repeat_gray={self.repeat_gray}"


class Backbone(nn.Module):
    """Base of the inner models: ``forward = classifier(features(x))``."""

    classifier: nn.Linear

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _init_weights(model: nn.Module) -> None:
    """He (fan-out) init for convolutions, BatchNorm to identity, zero linear biases."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
