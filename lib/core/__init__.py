"""What one run is: config dataclasses, errors, data, models, attacks, losses, metrics, methods, the training
loop, checkpoints and run folders, evaluation, speed settings and DDP. Imports nothing else of the kit."""
