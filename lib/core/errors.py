"""The kit's user-input error and the small checks that raise it; imports nothing from the kit, so every
module (config, methods, data, attacks) can use it without an import cycle."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad user input, caught before any expensive work starts."""


def check_range(name: str, value: float, lo: float = 0.0, hi: float = 1.0, hint: str = "") -> None:
    """ConfigError unless lo <= value <= hi."""
    if not (lo <= value <= hi):
        raise ConfigError(f"{name}={value} is outside [{lo}, {hi}]{'; ' + hint if hint else ''}")


def check_seeds(seeds, what: str = "seeds") -> list[int]:
    """A list of distinct integer training seeds, or a ConfigError saying what is wrong."""
    seeds = list(seeds)
    if not seeds:
        raise ConfigError(f"{what}: the seed list is empty; give at least one seed, e.g. [0, 1, 2]")
    if any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise ConfigError(f"{what}: seeds must be integers, got {seeds}")
    dup = sorted({s for s in seeds if seeds.count(s) > 1})
    if dup:
        raise ConfigError(f"{what}: seed(s) {dup} listed twice in {seeds}; each seed is one independent run")
    return seeds


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' as [0, 1, 2] (the command line's seed lists); a ConfigError naming the bad entry otherwise."""
    seeds = []
    for part in text.split(","):
        try:
            seeds.append(int(part.strip()))
        except ValueError:
            raise ConfigError(f"seeds: {part.strip()!r} in {text!r} is not an integer; give e.g. 0,1,2") from None
    return seeds
