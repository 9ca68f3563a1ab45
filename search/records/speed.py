"""The machine's speed during a study, read off the reference network, and what it does to a ms budget.

Paired timing makes a candidate's ratio to the reference repeat; its latency in ms is that ratio times the
reference's calibration, and the reference's own speed moves with the machine (on a shared VM by a third or
more within minutes, with no trace in the load or the steal). Every paired timing records the reference's
fastest call, so a study knows the range of speeds its machine showed. A candidate within the budget at the
reference's fastest but over it at its slowest is borderline *on this machine*: another run may decide it
either way, whatever the precision of its ratio. A budget in the reference's units (`1.2xT0`) does not move.
"""

from __future__ import annotations

from dataclasses import dataclass

from search.records.trial import TrialRecord

IN = "in"
OUT = "out"
BORDERLINE = "borderline"
SLOWEST_QUANTILE = 0.9  # the band's slow end: this quantile of the per-trial speeds, not one burst's maximum
MIN_TRIALS_FOR_QUANTILE = 5  # with fewer paired trials the slow end is their slowest


@dataclass(frozen=True)
class ReferenceSpeed:
    reference: str  # the base reference ("T0")
    calibration_ms: float  # its calibration: the ms of record are ratios x this
    fastest: float  # the fastest speed seen, as a factor of the calibrated latency (1.0, or below where a trial's
    # fastest reference call beat the calibration)
    slowest: float  # the slow end: SLOWEST_QUANTILE of the trials' factors (never below 1.0)
    trials: int  # paired trials that recorded their reference's speed

    @property
    def fastest_ms(self) -> float:
        return self.calibration_ms * self.fastest

    @property
    def slowest_ms(self) -> float:
        return self.calibration_ms * self.slowest

    @property
    def spread(self) -> float:
        """How far the slow end lies above the fast one (0.25: 25% slower)."""
        return self.slowest / self.fastest - 1


def reference_speed(records: list[TrialRecord]) -> ReferenceSpeed | None:
    """The references' speed over the study's paired timings (each trial's fastest reference call over its
    reference's calibration: one scale for every rung of the ladder); None when none recorded it (timed alone,
    on a GPU, predicted, or a study made before this was stored)."""
    timed = [r for r in records if r.latency_ratio and r.reference_min_ms and r.calibration_ms]
    if not timed:
        return None
    factors = sorted(r.reference_min_ms / r.calibration_ms for r in timed)
    slow = factors[-1] if len(factors) < MIN_TRIALS_FOR_QUANTILE else factors[
        round(SLOWEST_QUANTILE * (len(factors) - 1))]
    first = timed[0]
    unit_ratio = first.latency_unit_ratio or first.latency_ratio
    return ReferenceSpeed(reference=first.latency_unit or first.latency_reference or "T0",
                          calibration_ms=first.calibration_ms * first.latency_ratio / unit_ratio,
                          fastest=min(1.0, factors[0]), slowest=max(slow, 1.0), trials=len(timed))


def latency_range_ms(record: TrialRecord, speed: ReferenceSpeed) -> tuple[float, float] | None:
    """The record's latency at the fastest and the slowest speed the study saw."""
    if record.latency_ratio is None or record.latency_ms is None:
        return None
    return record.latency_ms * speed.fastest, record.latency_ms * speed.slowest


def budget_verdict(record: TrialRecord, speed: ReferenceSpeed, budget_ms: float) -> str | None:
    """IN: within the budget even at the slowest speed seen; OUT: over it even at the fastest; BORDERLINE:
    which depends on the machine's speed at the time. None for a record with no ratio."""
    span = latency_range_ms(record, speed)
    if span is None:
        return None
    fast, slow = span
    if slow <= budget_ms:
        return IN
    if fast > budget_ms:
        return OUT
    return BORDERLINE


def borderline_on_speed(records: list[TrialRecord], speed: ReferenceSpeed, budget_ms: float) -> list[TrialRecord]:
    """The distinct measured candidates (repeats left out) that the machine's speed could put on either side."""
    return [r for r in records if r.repeat_of is None and budget_verdict(r, speed, budget_ms) == BORDERLINE]
