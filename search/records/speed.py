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
    reference: str  # "T0"
    calibration_ms: float  # the study's calibration: the ms of record are ratio x this
    fastest_ms: float  # the reference's fastest: the calibration or a trial's fastest call, whichever is lower
    slowest_ms: float  # the slow end: SLOWEST_QUANTILE of the trials' fastest calls (never below the calibration)
    trials: int  # paired trials that recorded the reference's speed

    @property
    def spread(self) -> float:
        """How far the slow end lies above the fast one (0.25: 25% slower)."""
        return self.slowest_ms / self.fastest_ms - 1


def reference_speed(records: list[TrialRecord]) -> ReferenceSpeed | None:
    """The reference's speed over the study's paired timings; None when none recorded it (timed alone, on a GPU,
    predicted, or a study made before this was stored)."""
    timed = [r for r in records if r.latency_ratio is not None and r.reference_min_ms is not None
             and r.calibration_ms is not None]
    if not timed:
        return None
    calibration = timed[0].calibration_ms
    speeds = sorted(r.reference_min_ms for r in timed)
    slow = speeds[-1] if len(speeds) < MIN_TRIALS_FOR_QUANTILE else speeds[round(SLOWEST_QUANTILE * (len(speeds) - 1))]
    return ReferenceSpeed(reference=timed[0].latency_reference or "T0", calibration_ms=calibration,
                          fastest_ms=min(calibration, speeds[0]), slowest_ms=max(slow, calibration), trials=len(timed))


def latency_range_ms(record: TrialRecord, speed: ReferenceSpeed) -> tuple[float, float] | None:
    """The record's latency at the reference's fastest and slowest speed of the study (its ratio x each)."""
    if record.latency_ratio is None:
        return None
    return record.latency_ratio * speed.fastest_ms, record.latency_ratio * speed.slowest_ms


def budget_verdict(record: TrialRecord, speed: ReferenceSpeed, budget_ms: float) -> str | None:
    """IN: within the budget even at the reference's slowest; OUT: over it even at its fastest; BORDERLINE:
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
