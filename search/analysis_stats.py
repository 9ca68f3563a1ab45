"""The statistics of a design-space analysis: EDFs (pycls style), medians with distribution-free intervals,
and bootstrap intervals of a difference or a ratio between two independent groups."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from fasternet_space.stats import t_quantile

LEVEL = 0.95
RESAMPLES = 2000


def edf(values: Sequence[float]) -> tuple[list[float], list[float]]:
    """The empirical distribution function as pycls draws it: the values sorted, and after the i-th of k
    the share i/k of values at most that large (the last point is 1)."""
    ordered = sorted(float(v) for v in values)
    k = len(ordered)
    return ordered, [(i + 1) / k for i in range(k)]


def median_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float] | None:
    """(median, low, high): the order-statistic interval of the median, which assumes nothing about the
    distribution (the binomial count of values below the median). With fewer than 6 values it cannot reach
    95% and spans min..max. None without values."""
    a = sorted(float(v) for v in values)
    n = len(a)
    if not n:
        return None
    median = float(np.median(a))
    tail = (1 - level) / 2
    # the largest k with P(Binomial(n, 1/2) < k) <= tail: then [a[k-1], a[n-k]] covers the median
    cumulative, k = 0.0, 0
    while k < n and cumulative + math.comb(n, k) / 2**n <= tail:
        cumulative += math.comb(n, k) / 2**n
        k += 1
    low, high = (a[k - 1], a[n - k]) if k >= 1 else (a[0], a[-1])
    return median, low, high


def bootstrap_two(a: Sequence[float], b: Sequence[float], statistic: Callable[[np.ndarray, np.ndarray], float],
                  resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0) -> tuple[float, float, float]:
    """(statistic, low, high): `statistic(a, b)` with a percentile bootstrap interval, each group resampled
    with replacement on its own (the groups are independent samples of the space)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    values = np.array([statistic(x[rng.integers(0, len(x), len(x))], y[rng.integers(0, len(y), len(y))])
                       for _ in range(resamples)])
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(statistic(x, y)), float(low), float(high)


def mean_interval(values: Sequence[float], resamples: int = RESAMPLES, level: float = LEVEL,
                  seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the mean with a percentile bootstrap interval."""
    x = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(x.mean()), float(low), float(high)


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    """mean(b) - mean(a)."""
    return float(np.mean(b) - np.mean(a))


def geometric_mean_ratio(a: np.ndarray, b: np.ndarray) -> float:
    """The geometric mean of b over that of a: how many times larger b's values are, typically."""
    return float(np.exp(np.mean(np.log(b)) - np.mean(np.log(a))))


def adjusted_ratio(values: Sequence[float], indicator: Sequence[bool], covariates: Sequence[Sequence[float]]
                   ) -> tuple[float, float, float, int] | None:
    """How many times larger `values` are where `indicator` holds, the covariates held equal: the least-squares
    fit of log(value) on an intercept, the indicator and the covariates; (ratio, low, high, residual degrees
    of freedom) with the t 95% interval of the indicator's coefficient. None when the fit is not identified
    (too few rows, or the indicator is constant or a combination of the covariates)."""
    y = np.log(np.asarray(values, dtype=float))
    columns = [np.ones(len(y)), np.asarray(indicator, dtype=float), *(np.asarray(c, dtype=float) for c in covariates)]
    x = np.column_stack(columns)
    dof = len(y) - x.shape[1]
    if dof < 2 or np.linalg.matrix_rank(x) < x.shape[1]:
        return None
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    residual = y - x @ coef
    variance = float(residual @ residual) / dof
    se = math.sqrt(variance * float(np.linalg.inv(x.T @ x)[1, 1]))
    half = t_quantile(dof) * se
    return math.exp(coef[1]), math.exp(coef[1] - half), math.exp(coef[1] + half), dof
