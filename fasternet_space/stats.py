"""The project's statistics, in one home: intervals for accuracies (the binomial noise of one test split, the
spread over training seeds), EDFs and distribution-free medians (pycls style), bootstrap intervals, and rank
correlations (Spearman, Kendall tau-b)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

import numpy as np

Z95 = 1.959963984540054
LEVEL = 0.95  # the confidence level of every interval
RESAMPLES = 2000  # bootstrap resamples
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


def normal_interval(mean: float, sd: float, n: int) -> tuple[float, float]:
    """95% interval of a mean over `n` values whose standard deviation is `sd` (normal: a held-out loss is
    a mean over thousands of images, where the central limit theorem holds)."""
    half = Z95 * sd / math.sqrt(n) if n > 0 else math.inf
    return mean - half, mean + half


def loss_seed_interval(losses: Sequence[float], sds: Sequence[float], n: int) -> tuple[float, float, float, float]:
    """Mean, seed standard deviation and 95% interval of a held-out loss over training seeds on one split of
    `n` images (`sds`: each seed's per-image standard deviation). As `seed_interval` for top-1: the
    t-interval of the seed mean, widened where needed to the interval of the pooled per-image losses."""
    k = len(losses)
    mean = statistics.fmean(losses)
    std = statistics.stdev(losses) if k > 1 else 0.0
    pooled_sd = math.sqrt(statistics.fmean(sd * sd for sd in sds)) if sds else 0.0
    low, high = normal_interval(mean, pooled_sd, n * k)
    if k > 1:
        half = t_quantile(k - 1) * std / math.sqrt(k)
        low, high = min(low, mean - half), max(high, mean + half)
    return mean, std, max(low, 0.0), high  # a cross-entropy is never negative


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


def ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    a = np.asarray(values, dtype=float)
    order = np.argsort(a, kind="mergesort")
    ordered = a[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(a)]
    out = np.empty(len(a))
    out[order] = ((starts + ends + 1) / 2)[np.cumsum(first) - 1]
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (Pearson correlation of the average ranks); nan when either side is constant."""
    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(np.clip(rx @ ry / denominator, -1.0, 1.0)) if denominator > 0 else math.nan


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b: (concordant - discordant) / sqrt(pairs untied in x * pairs untied in y); nan when
    either side is constant."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    upper = np.triu_indices(len(a), 1)
    dx = np.sign(a[:, None] - a[None, :])[upper]
    dy = np.sign(b[:, None] - b[None, :])[upper]
    untied = float(np.count_nonzero(dx)) * float(np.count_nonzero(dy))
    return float(np.clip((dx * dy).sum() / math.sqrt(untied), -1.0, 1.0)) if untied > 0 else math.nan


def bootstrap_interval(statistic: Callable[[np.ndarray, np.ndarray], float], x: Sequence[float],
                       y: Sequence[float], resamples: int = RESAMPLES, level: float = LEVEL,
                       seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of `statistic` over the (x, y) pairs resampled with replacement.
    Resamples where the statistic is undefined (one side constant) are left out; None when all are."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    index = np.random.default_rng(seed).integers(0, len(a), size=(resamples, len(a)))
    values = np.array([statistic(a[i], b[i]) for i in index])
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
