"""EDFs of the ranking score's error (pycls style): per free parameter, one curve per value or bin, with n on
each. The error is the held-out loss where the trials rank by it, else the proxy's top-1 error (1 - top-1)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fasternet_space.stats import edf
from search.analysis.data import accuracy_metric, accuracy_value, level_records, levels
from search.records.trial import TrialRecord
from search.space import SearchSpace

MIN_CURVE = 10  # an EDF curve of fewer trials is marked unstable
STABLE_EDF = 100  # RegNet compares EDFs of about 100 or more models per design space


@dataclass(frozen=True)
class EdfCurve:
    """The EDF of the error of the trained trials with one value (or in one bin) of a parameter."""

    label: str
    n: int
    errors: list[float]  # sorted: held-out losses (nats), or top-1 errors (fractions)
    cdf: list[float]  # share of the curve's trials with at most that error
    min_error: float
    mean_error: float
    stable: bool  # n >= MIN_CURVE


@dataclass(frozen=True)
class EdfGroup:
    param: str
    curves: list[EdfCurve]  # one per value or bin that has trials
    metric: str = "top1"  # what the errors are: "loss" (held-out loss, nats) or "top1" (1 - top-1)


def edf_groups(population: Sequence[TrialRecord], space: SearchSpace) -> list[EdfGroup]:
    """Per free parameter, the EDF of the error for each of its levels that has trials in `population`."""
    metric = accuracy_metric(population)
    groups = []
    for free in space.free_params:
        curves = []
        for level in levels(free):
            errors = [e for e in map(accuracy_value, level_records(population, free.param, level)) if e is not None]
            if errors:
                xs, ys = edf(errors)
                curves.append(EdfCurve(level.label, len(xs), xs, ys, xs[0], float(np.mean(xs)), len(xs) >= MIN_CURVE))
        groups.append(EdfGroup(free.param, curves, metric))
    return groups
