"""TAET kit: adversarial training on long-tailed data (TAET, CVPR 2025, and the baselines it compares with)."""

__version__ = "0.1.0"
