"""A candidate's latency for the search: measured in the study's runtime, re-measured longer when its
interval straddles the budget (a "borderline" candidate, so marked in its record) before it is called over
or under; or predicted from a latency table (`--latency predicted`), or predicted first and measured only
when the prediction does not already rule it out (`--latency auto`)."""

from __future__ import annotations

from dataclasses import replace

from fasternet_space.latency_table import LatencyTable
from fasternet_space.measure import Measurement, TimingPolicy
from fasternet_space.runtimes import spec_session
from fasternet_space.spec import ArchSpec
from fasternet_space.spec_io import read_yaml
from search.config import SearchConfig
from search.errors import SearchError


def straddles(measurement: Measurement, budget_ms: float) -> bool:
    """The 95% interval of the median holds the budget: the median alone cannot say over or under."""
    low, high = measurement.latency_ci_ms
    return low <= budget_ms <= high


def longer(policy: TimingPolicy) -> TimingPolicy:
    """The re-measurement of a borderline candidate: three times the repeats and time cap, half the interval."""
    return replace(policy, min_repeats=max(3 * policy.min_repeats, 30), max_repeats=3 * policy.max_repeats,
                   max_time_s=3 * policy.max_time_s, rel_ci=policy.rel_ci / 2)


def measure_candidate(spec: ArchSpec, config: SearchConfig) -> tuple[Measurement, bool]:
    """The candidate's measurement and whether it was borderline (then the measurement is the longer one,
    on the same built and exported model)."""
    with spec_session(spec, config.runtime, device=config.device, threads=config.threads) as session:
        first = session.measure(config.timing)
        if not straddles(first, config.budget_ms):
            return first, False
        return session.measure(longer(config.timing)), True


def load_table(config: SearchConfig) -> LatencyTable | None:
    """The search's latency table (None when latency is measured), refused when it was profiled for another
    space, or on another device or runtime than the search's unless `allow_other_device`."""
    if config.latency == "measured":
        return None
    table = LatencyTable.load(config.latency_table)
    if table.space != read_yaml(config.space):
        raise SearchError("latency_table", config.latency_table, f"was profiled for space "
                          f"{table.space.get('name')!r} ({table.space_source}), not for {config.space}; allowed: a "
                          "table profiled for the search's space")
    table.check_target(config.device, config.runtime, config.allow_other_device)
    return table


def screened_out(prediction_ms: float, table: LatencyTable, config: SearchConfig) -> bool:
    """`auto`: the prediction is over the budget by more than the table's measured error, so the candidate
    is over budget however the prediction errs (measured >= predicted / (1 + error))."""
    return prediction_ms > config.budget_ms * (1 + table.error_bound)
