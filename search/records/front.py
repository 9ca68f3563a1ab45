"""What a study's records come to: its Pareto front and its best feasible trial."""

from __future__ import annotations

from search.records.trial import TRAINED, TrialRecord


def pareto_front(records: list[TrialRecord]) -> list[TrialRecord]:
    """Optuna's feasible Pareto front, fastest first."""
    return sorted((r for r in records if r.pareto), key=lambda r: (r.latency_ms or 0.0, -(r.proxy_acc or 0.0)))


def best_feasible(records: list[TrialRecord]) -> TrialRecord | None:
    """The most accurate trial trained within budget (seed mean where confirmed), or in a training-free
    study the best scored one; the faster one on a tie."""
    candidates = [r for r in records if r.merit is not None and r.latency_ms is not None]
    if any(r.status == TRAINED for r in candidates):
        candidates = [r for r in candidates if r.status == TRAINED]
    if not candidates:
        return None
    return max(candidates, key=lambda r: (r.merit, -r.latency_ms))


def standing(record: TrialRecord, front: list[TrialRecord]) -> str:
    """Where a trained trial stands: on the front, behind it (a front member at most as slow is more
    accurate beyond both 95% intervals) or tied with it (the gap is within the noise)."""
    if record.pareto:
        return "on the front"
    ci = record.accuracy_ci
    for other in front:
        other_ci = other.accuracy_ci
        if other.latency_ms > record.latency_ms or ci is None or other_ci is None:
            continue
        if other_ci[0] > ci[1]:
            return f"behind the front (#{other.number} is faster and more accurate beyond the noise)"
    return "tied with the front (within the noise of its accuracy)"
