"""What one run is: config dataclasses, errors, data, models, attacks, losses, metrics, methods, the training
loop, checkpoints and run folders, evaluation, speed settings and DDP. Imports nothing else of the kit."""

# The image-folder data sets register themselves into lib.core.data.DATASETS (data.py cannot import them back).
from lib.core import imagefolder  # noqa: F401
