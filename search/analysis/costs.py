"""What each value costs on the device: median latency, achieved FLOPS and FLOPs per value or bin of each
free parameter that can change the deployed network, with distribution-free 95% intervals, over every
candidate with a latency."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fasternet_space.stats import median_interval
from search.analysis.data import flops_per_s, level_records, levels, target_frees
from search.records.trial import TrialRecord
from search.space import SearchSpace


@dataclass(frozen=True)
class Median:
    """A median with its distribution-free 95% interval, over n trials."""

    n: int
    median: float
    low: float
    high: float


def median_of(values: Sequence[float]) -> Median | None:
    found = median_interval(values)
    return None if found is None else Median(len(values), *found)


@dataclass(frozen=True)
class CostRow:
    label: str
    n: int
    latency_ms: Median
    gflops_per_s: Median | None  # achieved G multiply-adds per second
    gflops: Median | None  # G multiply-adds at batch 1


@dataclass(frozen=True)
class CostGroup:
    param: str
    rows: list[CostRow]


def cost_groups(measured: Sequence[TrialRecord], space: SearchSpace) -> list[CostGroup]:
    """Per free parameter that can change the deployed network, a row of medians for each of its levels that
    has candidates in `measured`."""
    groups = []
    for free in target_frees(space.free_params, "latency"):
        rows = []
        for level in levels(free):
            chosen = level_records(measured, free.param, level)
            if not chosen:
                continue
            per_s = [flops_per_s(r) / 1e9 for r in chosen if flops_per_s(r)]
            flops = [r.flops / 1e9 for r in chosen if r.flops]
            rows.append(CostRow(level.label, len(chosen), median_of([r.latency_ms for r in chosen]),
                                median_of(per_s), median_of(flops)))
        groups.append(CostGroup(free.param, rows))
    return groups
