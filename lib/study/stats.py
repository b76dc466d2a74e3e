"""Seeds -> evidence: mean ± std, Student-t intervals, paired differences and claim verdicts.

A comparison between two methods is the paired difference over seeds (same seed = same data draw,
initialisation and batch order), summarised with its t-interval; a claim is "supported" only when the whole
interval lies on the claimed side of 0. One seed gives no interval, so its verdict is always "inconclusive".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats

from lib.core.config import ConfigError

VERDICTS = ("supported", "contradicted", "inconclusive")


@dataclass(frozen=True)
class Summary:
    """Mean, sample std (ddof = 1), n and the Student-t interval mean ± t(n−1)·std/√n (NaN spread when n = 1)."""

    mean: float
    std: float
    n: int
    low: float
    high: float
    confidence: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def format(self, digits: int = 1, scale: float = 1.0) -> str:
        """'m ± s [lo, hi]' (values times `scale`), or 'm (1 seed)' when there is no spread."""
        m = self.mean * scale
        if self.n < 2:
            return f"{m:.{digits}f} (1 seed)"
        return (f"{m:.{digits}f} ± {self.std * scale:.{digits}f} "
                f"[{self.low * scale:.{digits}f}, {self.high * scale:.{digits}f}]")


def _values(values: Sequence[float], what: str) -> np.ndarray:
    a = np.asarray(list(values), dtype=float)
    if a.ndim != 1 or a.size == 0:
        raise ConfigError(f"{what}: need at least one value, got {list(values)!r}")
    if not np.all(np.isfinite(a)):
        raise ConfigError(f"{what}: values must be finite, got {a.tolist()}")
    return a


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean ± sample std with the two-sided Student-t interval at `confidence` (one value: NaN std and bounds)."""
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence={confidence} must be in (0, 1), e.g. 0.95")
    a = _values(values, "summarize")
    n = int(a.size)
    mean = float(a.mean())
    if n == 1:
        return Summary(mean, math.nan, 1, math.nan, math.nan, confidence)
    std = float(a.std(ddof=1))
    half = float(_scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Summary(mean, std, n, mean - half, mean + half, confidence)


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Summary:
    """The summary of a_i − b_i: a and b hold one value per seed, in the same seed order."""
    xa, xb = _values(a, "paired_difference (a)"), _values(b, "paired_difference (b)")
    if xa.size != xb.size:
        raise ConfigError(f"paired_difference: a has {xa.size} values and b has {xb.size}; pair them by seed "
                          "(train both for the same seeds)")
    return summarize(xa - xb, confidence)


def bonferroni_level(k: int, confidence: float = 0.95) -> float:
    """Each of k intervals' level, 1 − (1 − confidence)/k, so that together they hold at `confidence`."""
    if k < 1:
        raise ConfigError(f"bonferroni_level: k={k} comparisons; it needs at least 1")
    return 1 - (1 - confidence) / k


def verdict(summary: Summary, direction: int = +1) -> str:
    """"supported" when the whole interval lies on the claimed side of 0 (direction +1: above, −1: below),
    "contradicted" when it lies wholly on the other side, else "inconclusive" (always for one seed)."""
    if direction not in (1, -1):
        raise ConfigError(f"direction={direction} must be +1 (claim: difference > 0) or -1 (claim: difference < 0)")
    if summary.n < 2 or math.isnan(summary.low):
        return "inconclusive"
    lo, hi = summary.low * direction, summary.high * direction
    if direction < 0:
        lo, hi = hi, lo
    if lo > 0:
        return "supported"
    if hi < 0:
        return "contradicted"
    return "inconclusive"
