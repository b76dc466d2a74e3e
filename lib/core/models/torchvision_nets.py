"""torchvision's ImageNet architectures behind the kit's wrapper: ResNet-50 (the official TAET notebook's model,
which it trains from scratch) and ViT-B/16 (DermaMNIST in the paper), each with optional ImageNet weights."""

from __future__ import annotations

import torch
from torch import nn

from lib.core.config import ConfigError
from lib.core.models.registry import (
    Backbone,
    register_model,
)


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
