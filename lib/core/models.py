"""Models and their registry, in the spirit of timm's ``create_model(name)``.

Every model comes wrapped in :class:`NormalizedModel`: it takes pixels in [0, 1] (attacks work in pixel
space) and does any resizing, gray-to-RGB repetition and the per-channel ``(x - mean) / std`` inside.
Every inner model has ``features(x)`` (penultimate features, e.g. for t-SNE), ``classifier`` (the final
linear layer) and ``forward(x) = classifier(features(x))``.

Architectures (written from their papers' definitions):

- ``resnet18``: ResNet-18 (He et al. 2016) with the CIFAR stem (3x3 conv, stride 1, no max-pool), as in
  the TAET paper and AT-BSL; 11,173,962 parameters for 10 classes.
- ``preact_resnet18``: pre-activation ResNet-18 (He et al. 2016, "Identity mappings"), CIFAR stem.
- ``wrn34_10``: WideResNet-34-10 (Zagoruyko & Komodakis 2016) as used by TRADES / AT-BSL; 46,160,474
  parameters for 10 classes.
- ``small_cnn``: three conv-BN-ReLU layers, the fast CPU demo model (~95k parameters).
- ``small_cnn_fc``: small_cnn's body with a linear head over the whole feature map instead of average pooling
  (it keeps where in the image a feature is); the fashion profile's model (~157k parameters at 28 px).
- ``resnet50_tv``: torchvision ResNet-50, the official TAET notebook's model (which upsamples to 224 px:
  ``resize=224``).
- ``vit_b16``: torchvision ViT-B/16; inputs are resized to 224 px inside the wrapper.

Scratch models end in adaptive average pooling, so 8x8 digits and 28x28 images work unchanged (small_cnn_fc
sizes its head from ``image_size``).
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


# ---------------------------------------------------------------------------------------------------
# ResNet-18, CIFAR stem (He et al. 2016)
# ---------------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN, plus the identity (or a 1x1 conv-BN projection when the shape changes),
    then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(_conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """BN-ReLU-conv-BN-ReLU-conv plus the identity (He et al. 2016, "Identity mappings", Fig. 4e); when
    the shape changes, the shortcut is a 1x1 conv of the pre-activated input."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.shortcut = _conv1x1(cin, cout, stride) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(a)
        out = self.conv1(a)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class CifarResNet(Backbone):
    """ResNet with the CIFAR stem: 3x3 conv (stride 1, no max-pool), four stages of ``blocks`` blocks with
    widths 64-128-256-512 (stride 2 from the second stage), global average pooling, linear.
    ``preact=True`` uses pre-activation blocks, a bare stem conv and a final BN-ReLU before pooling."""

    def __init__(self, blocks: Sequence[int], num_classes: int, in_channels: int = 3, preact: bool = False,
                 widths: Sequence[int] = (64, 128, 256, 512)):
        super().__init__()
        block = PreActBlock if preact else BasicBlock
        self.conv1 = _conv3x3(in_channels, widths[0])
        self.bn1 = nn.Identity() if preact else nn.BatchNorm2d(widths[0])
        self.stem_relu = not preact
        stages = []
        cin = widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            layers = []
            for j in range(n):
                layers.append(block(cin, w, stride=2 if (i > 0 and j == 0) else 1))
                cin = w
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn_final = nn.BatchNorm2d(cin) if preact else None
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)
        _init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.conv1(x))
        if self.stem_relu:
            out = F.relu(out)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        if self.bn_final is not None:
            out = F.relu(self.bn_final(out))
        return torch.flatten(self.pool(out), 1)


@register_model("resnet18")
def resnet18(num_classes: int, *, in_channels: int = 3, image_size: int = 32, pretrained: bool = False):
    return CifarResNet([2, 2, 2, 2], num_classes, in_channels)


@register_model("preact_resnet18")
def preact_resnet18(num_classes: int, *, in_channels: int = 3, image_size: int = 32, pretrained: bool = False):
    return CifarResNet([2, 2, 2, 2], num_classes, in_channels, preact=True)


# ---------------------------------------------------------------------------------------------------
# WideResNet (Zagoruyko & Komodakis 2016), TRADES / AT-BSL variant
# ---------------------------------------------------------------------------------------------------
class WideBlock(nn.Module):
    """Pre-activation wide block: BN-ReLU-conv3x3(stride)-BN-ReLU-[dropout]-conv3x3. When the width
    changes, the shortcut is a 1x1 conv of the pre-activated input."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = _conv3x3(cout, cout)
        self.shortcut = _conv1x1(cin, cout, stride) if (cin != cout or stride != 1) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(a)
        out = self.conv1(a)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + shortcut


class WideResNet(Backbone):
    """WRN-depth-widen: 3x3 conv to 16 channels, three groups of (depth - 4) / 6 wide blocks with widths
    16k, 32k, 64k (stride 1, 2, 2), BN-ReLU, global average pooling, linear."""

    def __init__(self, depth: int, widen: int, num_classes: int, in_channels: int = 3, dropout: float = 0.0):
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ConfigError(f"WideResNet depth must be 6n + 4; got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = _conv3x3(in_channels, widths[0])
        groups = []
        cin = widths[0]
        for i, w in enumerate(widths[1:]):
            groups.append(nn.Sequential(*[
                WideBlock(cin if j == 0 else w, w, stride=(1 if i == 0 else 2) if j == 0 else 1, dropout=dropout)
                for j in range(n)
            ]))
            cin = w
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(cin)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)
        _init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn(out))
        return torch.flatten(self.pool(out), 1)


@register_model("wrn34_10")
def wrn34_10(num_classes: int, *, in_channels: int = 3, image_size: int = 32, pretrained: bool = False,
             dropout: float = 0.0):
    return WideResNet(34, 10, num_classes, in_channels, dropout=dropout)


# ---------------------------------------------------------------------------------------------------
# Small CNN: the CPU demo model
# ---------------------------------------------------------------------------------------------------
class SmallCNN(Backbone):
    """conv(w) - conv(2w, stride 2) - conv(4w, stride 2), each conv3x3-BN-ReLU, global average pooling,
    linear. w = 32 gives ~95k parameters; trains 8x8 digits to >90% in seconds on a CPU."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            _conv3x3(in_channels, w), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            _conv3x3(w, 2 * w, stride=2), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True),
            _conv3x3(2 * w, 4 * w, stride=2), nn.BatchNorm2d(4 * w), nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * w, num_classes)
        _init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.body(x)), 1)


@register_model("small_cnn")
def small_cnn(num_classes: int, *, in_channels: int = 3, image_size: int = 32, pretrained: bool = False,
              width: int = 32):
    return SmallCNN(num_classes, in_channels, width=width)


class SmallCNNFC(SmallCNN):
    """SmallCNN with the pooled head replaced by a linear layer over the flattened (4w, ⌈s/4⌉, ⌈s/4⌉) feature map.

    Average pooling makes small_cnn a bag of 9×9-pixel patches, which underfits Fashion-MNIST (its CE training
    accuracy stays below 90%); the spatial head costs almost nothing and, on Fashion-MNIST-LT IR 10 with 6,000 train
    images and 20 epochs, lifted balanced clean accuracy from 75.4% to 82.8% (a deeper body with one more conv reached
    81.3% at 1.6× the time). README, Deviations, "Fashion scale", has the probes.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32, image_size: int = 28):
        super().__init__(num_classes, in_channels, width=width)
        side = -(-image_size // 4)  # two stride-2 convs with padding 1: ⌈s/2⌉, then ⌈s/4⌉
        self.pool = nn.Flatten()
        self.classifier = nn.Linear(4 * width * side * side, num_classes)
        _init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x))


@register_model("small_cnn_fc")
def small_cnn_fc(num_classes: int, *, in_channels: int = 3, image_size: int = 32, pretrained: bool = False,
                 width: int = 32):
    return SmallCNNFC(num_classes, in_channels, width=width, image_size=image_size)


# ---------------------------------------------------------------------------------------------------
# torchvision models (ImageNet architectures; optional ImageNet weights)
# ---------------------------------------------------------------------------------------------------
def _load_weights(net: nn.Module, weights, arch: str) -> None:
    """Load torchvision ``weights`` (from the torch hub cache, or downloaded) into ``net``."""
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except (OSError, RuntimeError) as e:  # offline: URLError (an OSError); a bad download: RuntimeError
        raise ConfigError(f"couldn't fetch the pretrained weights for {arch!r} ({weights}): {e}. Connect to the "
                          f"internet once (they are cached under torch.hub.get_dir()) or pass pretrained=False"
                          ) from None
    net.load_state_dict(state)


class TorchvisionResNet(Backbone):
    """torchvision ResNet; features are the pooled output of layer4."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    @property
    def classifier(self) -> nn.Linear:
        return self.net.fc

    def features(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        return torch.flatten(n.avgpool(x), 1)


class TorchvisionViT(Backbone):
    """torchvision VisionTransformer; features are the class token after the encoder."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    @property
    def classifier(self) -> nn.Linear:
        return self.net.heads.head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n._process_input(x)
        x = torch.cat([n.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return n.encoder(x)[:, 0]


@register_model("resnet50_tv", rgb_only=True, imagenet_stats=True, has_pretrained=True)
def resnet50_tv(num_classes: int, *, in_channels: int = 3, image_size: int = 32, pretrained: bool = False):
    from torchvision.models import ResNet50_Weights, resnet50

    if not pretrained:
        return TorchvisionResNet(resnet50(weights=None, num_classes=num_classes))
    net = resnet50(weights=None)
    # V1 = torchvision's `pretrained=True`, which the official TAET notebook uses.
    _load_weights(net, ResNet50_Weights.IMAGENET1K_V1, "resnet50_tv")
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    return TorchvisionResNet(net)


@register_model("vit_b16", rgb_only=True, input_size=224, imagenet_stats=True, has_pretrained=True)
def vit_b16(num_classes: int, *, in_channels: int = 3, image_size: int = 224, pretrained: bool = False):
    from torchvision.models import ViT_B_16_Weights, vit_b_16

    if not pretrained:
        return TorchvisionViT(vit_b_16(weights=None, num_classes=num_classes))
    net = vit_b_16(weights=None)
    _load_weights(net, ViT_B_16_Weights.IMAGENET1K_V1, "vit_b16")
    old = net.heads.head
    net.heads.head = nn.Linear(old.in_features, num_classes)
    return TorchvisionViT(net)
