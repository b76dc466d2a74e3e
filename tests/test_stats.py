"""lib.study.stats against hand-computed values (t quantiles from printed tables: t(3, 0.975) = 3.182446,
t(1, 0.975) = 12.706205, t(4, 0.95) = 2.131847)."""

import math

import pytest

from lib.core.config import ConfigError
from lib.study.stats import bonferroni_level, paired_difference, summarize, verdict


def test_summarize_four_values_by_hand():
    s = summarize([1.0, 2.0, 3.0, 4.0])
    std = math.sqrt((1.5**2 + 0.5**2 + 0.5**2 + 1.5**2) / 3)  # ddof = 1
    half = 3.182446 * std / math.sqrt(4)
    assert (s.mean, s.n) == (2.5, 4)
    assert s.std == pytest.approx(std, abs=1e-12)
    assert (s.low, s.high) == (pytest.approx(2.5 - half, abs=1e-5), pytest.approx(2.5 + half, abs=1e-5))


def test_summarize_two_values_and_another_confidence():
    s = summarize([0.5, 1.5])
    assert s.half_width == pytest.approx(12.706205 * math.sqrt(0.5) / math.sqrt(2), abs=1e-5)
    s90 = summarize([1.0, 2.0, 4.0, 5.0, 8.0], confidence=0.90)
    std = math.sqrt(sum((v - 4.0) ** 2 for v in [1, 2, 4, 5, 8]) / 4)
    assert s90.half_width == pytest.approx(2.131847 * std / math.sqrt(5), abs=1e-5)


def test_one_seed_has_no_spread_and_is_inconclusive():
    s = summarize([0.7])
    assert s.mean == 0.7 and s.n == 1
    assert math.isnan(s.std) and math.isnan(s.low) and math.isnan(s.high)
    assert verdict(s) == "inconclusive" and verdict(s, -1) == "inconclusive"
    assert s.format() == "0.7 (1 seed)"


def test_paired_difference_pairs_by_seed():
    a, b = [0.50, 0.55, 0.60], [0.40, 0.47, 0.49]
    d = paired_difference(a, b)
    diffs = [0.10, 0.08, 0.11]
    assert d.mean == pytest.approx(sum(diffs) / 3)
    assert d.std == pytest.approx(summarize(diffs).std)
    # Pairing removes the seed-to-seed spread that unpaired values carry.
    assert d.std < summarize(a).std


def test_verdicts_follow_the_interval_and_the_claimed_direction():
    up = summarize([0.10, 0.08, 0.11])
    down = summarize([-0.10, -0.08, -0.11])
    straddle = summarize([0.05, -0.04, 0.02])
    assert verdict(up) == "supported" and verdict(up, -1) == "contradicted"
    assert verdict(down) == "contradicted" and verdict(down, -1) == "supported"
    assert verdict(straddle) == "inconclusive" and verdict(straddle, -1) == "inconclusive"


def test_bad_input_is_refused_with_a_clear_message():
    with pytest.raises(ConfigError, match="pair them by seed"):
        paired_difference([1, 2, 3], [1, 2])
    with pytest.raises(ConfigError, match="at least one value"):
        summarize([])
    with pytest.raises(ConfigError, match="finite"):
        summarize([1.0, float("nan")])
    with pytest.raises(ConfigError, match="confidence"):
        summarize([1, 2], confidence=95)
    with pytest.raises(ConfigError, match="direction"):
        verdict(summarize([1, 2]), direction=2)


def test_profiles_name_their_seeds_and_bad_seed_lists_are_refused():
    from lib.core.errors import check_seeds
    from lib.profiles import profile_seeds

    assert profile_seeds("smoke") == [0, 1] and profile_seeds("demo") == [0]
    assert len(profile_seeds("fashion")) >= 3 and len(profile_seeds("paper")) == 3
    with pytest.raises(ConfigError, match="listed twice"):
        check_seeds([0, 1, 1])
    with pytest.raises(ConfigError, match="empty"):
        check_seeds([])
    with pytest.raises(ConfigError, match="unknown profile"):
        profile_seeds("nope")


def test_bonferroni_level_splits_the_error_rate_over_the_comparisons():
    assert bonferroni_level(1) == pytest.approx(0.95) and bonferroni_level(4) == pytest.approx(0.9875)
    assert bonferroni_level(3, 0.9) == pytest.approx(1 - 0.1 / 3)
    with pytest.raises(ConfigError, match="at least 1"):
        bonferroni_level(0)
