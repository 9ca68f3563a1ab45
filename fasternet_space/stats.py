"""Intervals for accuracies: the binomial noise of one test split, and the spread over training seeds."""

from __future__ import annotations

import math
import statistics

Z95 = 1.959963984540054
# Two-sided 95% Student t quantiles for 1..10 degrees of freedom (then the normal value is close enough).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def wilson_interval(accuracy: float, n: int, z: float = Z95) -> tuple[float, float]:
    """95% interval of a top-1 measured on `n` held-out images (Wilson score interval for a binomial
    proportion: unlike the normal approximation it stays inside [0, 1] and is honest near 0 and 1)."""
    if n <= 0:
        return 0.0, 1.0
    p = min(max(accuracy, 0.0), 1.0)
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def t_quantile(dof: int) -> float:
    return _T95[dof - 1] if 1 <= dof <= len(_T95) else Z95


def seed_interval(accuracies: list[float], n: int) -> tuple[float, float, float, float]:
    """Mean, seed standard deviation and 95% interval of top-1 over training seeds on one test split of
    `n` images. The interval covers both noises: the t-interval of the seed mean, widened where needed
    to the binomial interval of the pooled predictions (K seeds x n images)."""
    k = len(accuracies)
    mean = statistics.fmean(accuracies)
    std = statistics.stdev(accuracies) if k > 1 else 0.0
    low, high = wilson_interval(mean, n * k)
    if k > 1:
        half = t_quantile(k - 1) * std / math.sqrt(k)
        low, high = min(low, max(0.0, mean - half)), max(high, min(1.0, mean + half))
    return mean, std, low, high
