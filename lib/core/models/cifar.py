"""The CIFAR-sized architectures, written from their papers' definitions: ResNet-18 and pre-activation ResNet-18
with the CIFAR stem, WideResNet-34-10, and the small CPU CNNs (``small_cnn``, ``small_cnn_fc``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lib.core.config import ConfigError
from lib.core.models.registry import (
    Backbone,
    _conv1x1,
    _conv3x3,
    _init_weights,
    register_model,
)


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


@register_model("preact_resnet18_w16")
def preact_resnet18_w16(num_classes: int, *, in_channels: int = 3, image_size: int = 32, pretrained: bool = False):
    """PreAct-ResNet-18 at a quarter of the width (16-32-64-128): about 1/16 of its multiply-adds, a CPU size."""
    return CifarResNet([2, 2, 2, 2], num_classes, in_channels, preact=True, widths=(16, 32, 64, 128))


# ---------------------------------------------------------------------------------------------------
# ResNet-20 (He et al. 2016, Sec. 4.2: the CIFAR family of 6n + 2 layers)
# ---------------------------------------------------------------------------------------------------
class CifarResNet3(Backbone):
    """The paper's CIFAR ResNet: a 3x3 conv of 16 channels, three stages of ``n`` basic blocks at widths 16-32-64
    (stride 2 from the second), global average pooling, linear: 6n + 2 layers (n = 3: ResNet-20, 0.27M
    parameters). Where the shape changes the shortcut is a 1x1 conv-BN projection (the paper's option B), as in
    ResNet-18 here."""

    def __init__(self, n: int, num_classes: int, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64)):
        super().__init__()
        self.conv1 = _conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, cin = [], widths[0]
        for i, w in enumerate(widths):
            stages.append(nn.Sequential(*[BasicBlock(cin if j == 0 else w, w, stride=2 if (i > 0 and j == 0) else 1)
                                          for j in range(n)]))
            cin = w
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)
        _init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return torch.flatten(self.pool(self.layer3(self.layer2(self.layer1(out)))), 1)


@register_model("resnet20")
def resnet20(num_classes: int, *, in_channels: int = 3, image_size: int = 32, pretrained: bool = False):
    return CifarResNet3(3, num_classes, in_channels)


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
    81.3% at 1.6× the time). docs/deviations.md, "Fashion scale", has the probes.
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
