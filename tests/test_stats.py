import math

import pytest

from fasternet_space.stats import seed_interval, t_quantile, wilson_interval


def test_wilson_interval_against_hand_values():
    # p = 0.5, n = 100: centre 0.5, half-width 1.96 * sqrt(0.25/100 + 1.96^2/40000) / (1 + 1.96^2/100)
    low, high = wilson_interval(0.5, 100)
    z = 1.959963984540054
    half = z * math.sqrt(0.0025 + z * z / 40000) / (1 + z * z / 100)
    assert (low, high) == pytest.approx((0.5 - half, 0.5 + half))
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)  # the textbook value


def test_wilson_interval_stays_inside_and_shrinks_with_more_images():
    assert wilson_interval(1.0, 50)[1] == 1.0 and wilson_interval(1.0, 50)[0] == pytest.approx(0.9287, abs=1e-4)
    assert wilson_interval(0.0, 50)[0] == pytest.approx(0.0, abs=1e-12)
    widths = [h - lo for lo, h in (wilson_interval(0.86, n) for n in (100, 1000, 10000))]
    assert widths[0] > widths[1] > widths[2]
    assert widths[1] == pytest.approx(2 * 1.96 * math.sqrt(0.86 * 0.14 / 1000), rel=0.02)  # ~ normal for large n


def test_seed_interval_covers_seed_spread_and_test_noise():
    mean, std, low, high = seed_interval([0.80, 0.82, 0.84], 2000)
    assert mean == pytest.approx(0.82) and std == pytest.approx(0.02)
    t_half = t_quantile(2) * 0.02 / math.sqrt(3)
    assert (low, high) == pytest.approx((0.82 - t_half, 0.82 + t_half))  # the seed spread dominates here
    mean, std, low, high = seed_interval([0.5, 0.5, 0.5], 30)  # no seed spread: the binomial noise remains
    assert std == 0 and (low, high) == pytest.approx(wilson_interval(0.5, 90))
    assert seed_interval([0.7], 100)[2:] == pytest.approx(wilson_interval(0.7, 100))
