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

from lib.core.models import cifar, torchvision_nets  # noqa: F401  (each registers its architectures)
from lib.core.models.registry import (
    MODELS,
    Backbone,
    ModelInfo,
    NormalizedModel,
    count_parameters,
    create_model,
    list_models,
    register_model,
)

__all__ = ["MODELS", "Backbone", "ModelInfo", "NormalizedModel", "count_parameters", "create_model", "list_models",
           "register_model"]
