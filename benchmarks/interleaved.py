"""Interleaved timing for the speed benchmarks: every path timed in turn, repetition after repetition, so
that the machine's drift (clock, load, other processes) falls on all of them alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_medians_ms(paths: dict[str, Callable[[], object]], budget_s: float,
                           repeats: int | None = None) -> tuple[int, dict[str, float]]:
    """(repeats, median milliseconds per path). The caller warms the paths up first. `repeats` None: as many
    as fit in `budget_s` going by one timed pass over all the paths, within [11, 201]."""
    if repeats is None:
        start = time.perf_counter()
        for run in paths.values():
            run()
        repeats = int(min(201, max(11, budget_s / (time.perf_counter() - start))))
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats):
        for name, run in paths.items():
            begin = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - begin)
    return repeats, {name: statistics.median(t) * 1e3 for name, t in times.items()}
