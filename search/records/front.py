"""What a study's records come to: its Pareto front, its best feasible trial, the candidates tied with
that best within the noise, and the one a rule picks among them."""

from __future__ import annotations

from dataclasses import dataclass

from search.records.study_attrs import PICK_RULES
from search.records.trial import TRAINED, TrialRecord

DEFAULT_PICK = "fastest"  # short-proxy ties are not broken towards larger networks by longer training
# (benchmarks/proxy_recipes.py's tie report: the larger member won 35 of 65 tied pairs, mean gap +0.0003)
PICK_REASONS = {
    "fastest": "the fastest of the tied set: the same score within the noise, with the most headroom under "
               "the budget",
    "best-score": "the best ranking score of the tied set, as measured (the gap to the others is within the "
                  "noise)",
    "most-flops": "the most multiply-adds of the tied set (for a user who expects longer training to favour "
                  "larger networks)",
}


def pareto_front(records: list[TrialRecord]) -> list[TrialRecord]:
    """The feasible Pareto front, fastest first."""
    return sorted((r for r in records if r.pareto), key=lambda r: (r.latency_ms or 0.0, -(r.merit or 0.0)))


def best_feasible(records: list[TrialRecord]) -> TrialRecord | None:
    """The trial with the best ranking score trained within budget (seed mean where confirmed), or in a
    training-free study the best scored one; the faster one on a tie."""
    candidates = [r for r in records if r.merit is not None and r.latency_ms is not None]
    if any(r.status == TRAINED for r in candidates):
        candidates = [r for r in candidates if r.status == TRAINED]
    if not candidates:
        return None
    return max(candidates, key=lambda r: (r.merit, -r.latency_ms))


@dataclass(frozen=True)
class Pick:
    """The best feasible trial, the candidates tied with it and the one `rule` picks among them."""

    best: TrialRecord  # the best ranking score
    tied: tuple[TrialRecord, ...]  # tied with `best` within the noise (itself included), fastest first
    rule: str  # one of PICK_RULES
    chosen: TrialRecord  # what best.yaml holds

    @property
    def confirmed(self) -> bool:
        """Whether the tied set was decided on seed means (False: on a single training somewhere)."""
        return all(r.confirmed for r in self.tied)

    @property
    def reason(self) -> str:
        return PICK_REASONS[self.rule]


def tied_set(records: list[TrialRecord]) -> tuple[TrialRecord, ...]:
    """The members of the Pareto front whose ranking score's 95% interval overlaps the best's, fastest
    first. Only the front: a trial off it is beaten on both latency and score by a member, so it is never
    the answer, whatever its interval (one with fewer seeds has a wider one). Confirmation gives every front
    member the same seeds. Empty without a trained trial."""
    best = best_feasible(records)
    if best is None or best.status != TRAINED:
        return ()
    pool = [r for r in records if r.pareto and r.status == TRAINED and r.merit is not None
            and r.latency_ms is not None]
    best_ci = best.merit_ci
    tied = [r for r in pool if r.number == best.number or (
        best_ci is not None and r.merit_ci is not None and r.merit_ci[1] >= best_ci[0] and best_ci[1] >= r.merit_ci[0])]
    return tuple(sorted(tied, key=lambda r: (r.latency_ms, r.number)))


def pick(records: list[TrialRecord], rule: str = DEFAULT_PICK) -> Pick | None:
    """The trial best.yaml holds: the best feasible trial of a training-free study, else the member of the
    tied set that `rule` picks (fastest; best-score; most-flops). None without a feasible trial."""
    if rule not in PICK_RULES:
        raise ValueError(f"pick rule {rule!r}; allowed: {', '.join(PICK_RULES)}")
    best = best_feasible(records)
    if best is None:
        return None
    tied = tied_set(records) or (best,)
    if rule == "fastest":
        chosen = min(tied, key=lambda r: (r.latency_ms, -r.merit))
    elif rule == "most-flops":
        chosen = max(tied, key=lambda r: (r.flops or 0, r.merit))
    else:
        chosen = best
    return Pick(best, tied, rule, chosen)


def standing(record: TrialRecord, front: list[TrialRecord]) -> str:
    """Where a trained trial stands: on the front, behind it (a front member at most as slow scores better
    beyond both 95% intervals) or tied with it (the gap is within the noise)."""
    if record.pareto:
        return "on the front"
    ci = record.merit_ci
    for other in front:
        other_ci = other.merit_ci
        if other.latency_ms > record.latency_ms or ci is None or other_ci is None:
            continue
        if other_ci[0] > ci[1]:
            better = "has a lower held-out loss" if record.rank_by == "loss" else "is more accurate"
            return f"behind the front (#{other.number} is faster and {better} beyond the noise)"
    return f"tied with the front (within the noise of its {score_name(record.rank_by)})"


def score_name(rank_by: str) -> str:
    return "held-out loss" if rank_by == "loss" else "top-1"
