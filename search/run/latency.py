"""A candidate's latency for the search: measured in the study's runtime (on the CPU in pairs with the
reference network, as a ratio times the study's calibration of it; stopping as soon as the ratio's interval
lies wholly over or under the budget), re-measured longer when its interval straddles the budget (a
"borderline" candidate, so marked in its record) before it is called over or under; or predicted from a
latency table (`--latency predicted`), or predicted first and measured only when the prediction does not
already rule it out (`--latency auto`)."""

from __future__ import annotations

from dataclasses import replace

import optuna

from fasternet_space.ladder import RUNGS, ReferencePool, nearest_rung, rung_flops
from fasternet_space.latency_table import LatencyTable
from fasternet_space.measure import Measurement, TimingPolicy
from fasternet_space.paired import Calibration, PairPolicy
from fasternet_space.relative import measure_relative
from fasternet_space.runtimes import ModelSession, spec_session
from fasternet_space.spec import ArchSpec
from fasternet_space.spec_io import read_yaml
from search.config import SearchConfig
from search.errors import SearchError
from search.records import study_attrs


def straddles(measurement: Measurement, budget_ms: float) -> bool:
    """The 95% interval of the median holds the budget: the median alone cannot say over or under."""
    low, high = measurement.latency_ci_ms
    return low <= budget_ms <= high


def longer(policy: TimingPolicy) -> TimingPolicy:
    """The re-measurement of a borderline candidate: three times the repeats and time cap, half the interval."""
    return replace(policy, min_repeats=max(3 * policy.min_repeats, 30), max_repeats=3 * policy.max_repeats,
                   max_time_s=3 * policy.max_time_s, rel_ci=policy.rel_ci / 2)


def longer_pairs(policy: PairPolicy) -> PairPolicy:
    """The paired re-measurement of a borderline candidate: three times the pairs and cap, half the interval."""
    return replace(policy, min_pairs=max(3 * policy.min_pairs, 30), max_pairs=3 * policy.max_pairs,
                   max_time_s=3 * policy.max_time_s, rel_ci=policy.rel_ci / 2)


class References:
    """The references of paired timing in this process: a ladder (`fasternet_space.ladder`) whose base is the
    study's reference, calibrations read from the study (made here, and stored, when the study has none or
    once per process on `recalibrate`). A candidate pairs with the rung nearest it in FLOPs, up to the rung
    nearest twice the budget (a candidate far over the budget is called over as soon with that rung)."""

    def __init__(self, config: SearchConfig):
        self.config = config
        self.study: optuna.Study | None = None
        self.renewed: set[str] = set()
        self.pool = ReferencePool(config.runtime, device=config.device, threads=config.threads,
                                  window_s=config.calibration_s, base=config.reference(), stored=self._stored,
                                  store=self._store)

    def _stored(self, key: str) -> dict | None:
        if self.config.recalibrate and key not in self.renewed:
            return None
        return study_attrs.calibration(self.study, key)

    def _store(self, key: str, value: dict) -> None:
        study_attrs.store_calibration(self.study, key, value)
        self.renewed.add(key)

    def get(self, study: optuna.Study, input_size: int, in_chans: int, flops: int | None = None,
            budget_ms: float | None = None) -> tuple[ModelSession, Calibration]:
        """The base's session and calibration, or with `flops` the candidate's rung's."""
        self.study = study
        base = self.config.reference()
        rung = base
        if flops is not None:
            highest = RUNGS[-1]
            if budget_ms is not None:
                calibration = self.pool.calibration(base, input_size, in_chans)
                base_flops = rung_flops(input_size, in_chans)[base]
                highest = nearest_rung(2 * budget_ms / calibration.ms * base_flops, input_size, in_chans, lowest=base)
            rung = nearest_rung(flops, input_size, in_chans, lowest=base, highest=highest)
        return self.pool.get(rung, input_size, in_chans)

    def close(self) -> None:
        self.pool.close()


def measure_candidate(spec: ArchSpec, config: SearchConfig,
                      reference: tuple[ModelSession, Calibration] | None = None) -> tuple[Measurement, bool]:
    """The candidate's measurement and whether it was borderline (then the measurement is the longer one,
    on the same built and exported model). With `reference` (a session and its calibration), in pairs."""
    with spec_session(spec, config.runtime, device=config.device, threads=config.threads) as session:
        if reference is None:
            first = session.measure(config.timing)
            if not straddles(first, config.budget_ms):
                return first, False
            return session.measure(longer(config.timing)), True
        ref, calibration = reference
        first = measure_relative(session, ref, calibration, config.pairing, threshold_ms=config.budget_ms,
                                 seed=config.seed)
        if first.extra["relative"]["verdict"] or not straddles(first, config.budget_ms):
            return first, False
        return measure_relative(session, ref, calibration, longer_pairs(config.pairing),
                                threshold_ms=config.budget_ms, seed=config.seed + 1), True


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
