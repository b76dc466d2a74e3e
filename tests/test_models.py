"""The model registry: shapes, normalisation inside the model, parameter counts, the demo model learns."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lib.core import models
from lib.core.config import ConfigError
from lib.core.models import MODELS, NormalizedModel, count_parameters, create_model, list_models

SCRATCH = ["resnet18", "preact_resnet18", "preact_resnet18_w16", "resnet20", "wrn34_10", "small_cnn"]
TORCHVISION = ["resnet50_tv", "vit_b16"]
FEATURE_DIM = {"resnet18": 512, "preact_resnet18": 512, "preact_resnet18_w16": 128, "resnet20": 64, "wrn34_10": 640,
               "small_cnn": 128,
               "resnet50_tv": 2048, "vit_b16": 768}


def test_registry_holds_every_architecture():
    assert set(SCRATCH + TORCHVISION) <= set(MODELS)
    assert list_models() == sorted(MODELS)


@pytest.mark.parametrize("arch", SCRATCH)
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 8, 8), (1, 28, 28)])
def test_forward_shapes(arch, shape):
    torch.manual_seed(0)
    model = create_model(arch, 7, in_channels=shape[0], image_size=shape[1])
    x = torch.rand(2, *shape)
    assert model(x).shape == (2, 7)  # train mode (BatchNorm on the batch)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 7)
        assert model.features(x).shape == (2, FEATURE_DIM[arch])
    assert model.feature_dim == FEATURE_DIM[arch]


@pytest.mark.parametrize("arch", TORCHVISION)
def test_torchvision_models_forward(arch):
    torch.manual_seed(0)
    model = create_model(arch, 5, image_size=32).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert model(x).shape == (1, 5)
        assert model.features(x).shape == (1, FEATURE_DIM[arch])
    assert model.classifier.out_features == 5


def test_vit_resizes_to_224_and_gray_is_repeated():
    model = create_model("vit_b16", 3, in_channels=1, image_size=8).eval()
    x = torch.rand(1, 1, 8, 8)
    seen = model.preprocess(x)
    assert seen.shape == (1, 3, 224, 224)
    with torch.no_grad():
        assert model(x).shape == (1, 3)
    with pytest.raises(ConfigError, match="224"):
        create_model("vit_b16", 3, resize=64)


def test_resnet50_resize_and_gray():
    # the official TAET notebook upsamples CIFAR to 224 px before the ResNet-50
    model = create_model("resnet50_tv", 10, resize=224)
    assert model.preprocess(torch.rand(1, 3, 32, 32)).shape == (1, 3, 224, 224)
    gray = create_model("resnet50_tv", 4, in_channels=1, image_size=8).eval()
    x = torch.rand(2, 1, 8, 8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(gray.preprocess(x), (x.repeat(1, 3, 1, 1) - mean) / std)
    with torch.no_grad():
        assert gray(x).shape == (2, 4)


@pytest.mark.parametrize("arch", SCRATCH)
def test_normalisation_is_inside_the_model(arch):
    torch.manual_seed(0)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
    model = create_model(arch, 10, mean=mean, std=std).eval()
    x = torch.rand(2, 3, 16, 16)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.inner((x - m) / s))
        torch.testing.assert_close(model.features(x), model.inner.features((x - m) / s))
    assert "mean" in dict(model.named_buffers()) and "std" in dict(model.named_buffers())


def test_normalize_false_is_identity_and_stats_broadcast():
    model = create_model("small_cnn", 10, normalize=False).eval()
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.inner(x))
    gray = create_model("small_cnn", 10, in_channels=1, mean=0.3, std=0.2)
    torch.testing.assert_close(gray.preprocess(torch.full((1, 1, 2, 2), 0.5)), torch.ones(1, 1, 2, 2))
    with pytest.raises(ConfigError, match="channel"):
        create_model("small_cnn", 10, mean=(0.5, 0.5), std=(0.5, 0.5))
    with pytest.raises(ConfigError, match="positive"):
        create_model("small_cnn", 10, std=0.0)


def test_unknown_arch_lists_valid_names():
    with pytest.raises(ConfigError) as err:
        create_model("resnet19", 10)
    for name in SCRATCH + TORCHVISION:
        assert name in str(err.value)


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("small_cnn", 0)
    with pytest.raises(ConfigError, match="pretrained=False"):
        create_model("resnet18", 10, pretrained=True)
    with pytest.raises(ConfigError, match="bogus"):
        create_model("small_cnn", 10, bogus=1)


def test_pretrained_offline_says_how_to_fix(monkeypatch):
    from torchvision.models._api import WeightsEnum

    def offline(self, *args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    for arch in TORCHVISION:
        with pytest.raises(ConfigError, match="couldn't fetch the pretrained weights.*pretrained=False"):
            create_model(arch, 10, pretrained=True)


def test_pretrained_weights_are_loaded_then_head_replaced(monkeypatch):
    from torchvision.models import resnet50
    from torchvision.models._api import WeightsEnum

    torch.manual_seed(1)
    reference = resnet50(weights=None).state_dict()
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, *a, **k: reference)
    model = create_model("resnet50_tv", 10, pretrained=True)
    torch.testing.assert_close(model.inner.net.conv1.weight, reference["conv1.weight"])
    assert model.classifier.out_features == 10


@pytest.mark.parametrize("arch", SCRATCH)
def test_gradient_flows_to_the_input(arch):
    torch.manual_seed(0)
    model = create_model(arch, 10, in_channels=1, image_size=8).eval()
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    loss = F.cross_entropy(model(x), torch.tensor([1, 2]))
    (grad,) = torch.autograd.grad(loss, x)
    assert grad.shape == x.shape and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_known_parameter_counts():
    # CIFAR ResNet-18 (AT-BSL / TAET paper) and WRN-34-10 (TRADES / AT-BSL), 10 classes, RGB.
    assert count_parameters(create_model("resnet18", 10)) == 11_173_962
    assert count_parameters(create_model("wrn34_10", 10)) == 46_160_474
    # He et al. 2016 pre-activation: ResNet-18's count minus the stem BN (128) and shortcut BNs (1,792),
    # plus the final BN (1,024), minus 896 because a downsampling block's first BN sees its narrower input.
    assert count_parameters(create_model("preact_resnet18", 10)) == 11_173_962 - 128 - 1792 + 1024 - 896
    assert 80_000 < count_parameters(create_model("small_cnn", 10)) < 120_000
    # ResNet-20 (He et al. 2016, n = 3), by hand: stem 432 + 32; stage 1, three blocks of two 16->16 convs and two
    # BNs, 3 x 4,672; stage 2, 14,528 (with the 1x1 projection and its BN) + 2 x 18,560; stage 3, 57,728 +
    # 2 x 73,984; linear 650.
    assert count_parameters(create_model("resnet20", 10)) == 464 + 14_016 + 51_648 + 205_696 + 650
    assert count_parameters(create_model("resnet50_tv", 1000)) == 25_557_032  # torchvision's ResNet-50
    frozen = create_model("small_cnn", 10)
    frozen.inner.body.requires_grad_(False)
    assert count_parameters(frozen, trainable_only=True) == 128 * 10 + 10


def test_register_model_adds_a_builder_and_refuses_duplicates():
    name = "tiny_linear_for_test"

    class Tiny(torch.nn.Module):
        def __init__(self, num_classes, in_channels):
            super().__init__()
            self.classifier = torch.nn.Linear(in_channels, num_classes)

        def features(self, x):
            return x.mean(dim=(2, 3))

        def forward(self, x):
            return self.classifier(self.features(x))

    @models.register_model(name)
    def tiny(num_classes, *, in_channels=3, image_size=32, pretrained=False):
        return Tiny(num_classes, in_channels)

    try:
        model = create_model(name, 4)
        assert isinstance(model, NormalizedModel) and model(torch.rand(2, 3, 5, 5)).shape == (2, 4)
        with pytest.raises(ValueError, match="already registered"):
            models.register_model(name)(tiny)
    finally:
        MODELS.pop(name)


def test_small_cnn_learns_digits_quickly():
    """The demo model: 8x8 digits to >90% test accuracy in a few seconds on a CPU."""
    datasets = pytest.importorskip("sklearn.datasets")
    torch.manual_seed(0)
    digits = datasets.load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(y))
    train, test = perm[:1400], perm[1400:]
    model = create_model("small_cnn", 10, in_channels=1, image_size=8, mean=0.3, std=0.4)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for _ in range(5):
        model.train()
        for idx in train[torch.randperm(len(train))].split(64):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x[test]).argmax(1) == y[test]).float().mean().item()
    assert acc > 0.9, acc


@pytest.mark.parametrize("shape,resize", [((1, 28, 28), None), ((1, 8, 8), None), ((3, 32, 32), None),
                                          ((3, 32, 32), 40)])
def test_small_cnn_fc_sizes_its_spatial_head_from_the_input_it_sees(shape, resize):
    torch.manual_seed(0)
    model = create_model("small_cnn_fc", 7, in_channels=shape[0], image_size=shape[1], resize=resize).eval()
    side = -(-(resize or shape[1]) // 4)  # two stride-2 convs: 28 -> 7, 8 -> 2, 32 -> 8, 40 -> 10
    x = torch.rand(2, *shape, requires_grad=True)
    assert model(x).shape == (2, 7)
    assert model.features(x).shape == (2, 128 * side * side) and model.feature_dim == 128 * side * side
    (grad,) = torch.autograd.grad(model(x).sum(), x)
    assert grad.abs().sum() > 0
