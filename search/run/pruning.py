"""Stopping rules over the per-epoch ranking score of a multi-objective study.

Optuna's pruners read intermediate values, and `Trial.report` is not supported for multi-objective
studies, so each trial stores its per-epoch held-out top-1 and loss in its record (`TrialRecord.curve`,
`loss_curve`) and these rules (Optuna's median and percentile stopping rules) compare a running trial's
ranking score (`TrialRecord.merit_curve`: minus the loss, or the top-1) with earlier ones there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import TrialState

from search.errors import SearchError
from search.records import study_attrs
from search.records.trial import TrialRecord

PRUNERS = ("median", "percentile", "none")


@dataclass(frozen=True)
class Verdict:
    """A pruning decision with what it compared: the threshold and how many earlier trials set it."""

    prune: bool
    threshold: float | None = None
    compared: int = 0


@dataclass(frozen=True)
class CurvePruner:
    percentile: float = 50.0  # prune below this percentile of earlier trials at the same epoch
    n_startup_trials: int = 4  # finished trained trials needed before anything is pruned
    n_warmup_epochs: int = 1  # never prune before this many epochs are done

    def describe(self) -> str:
        return "median" if self.percentile == 50 else f"{self.percentile:g}th percentile"

    def judge(self, study: optuna.Study, trial_number: int, curve: list[float]) -> Verdict:
        """`curve`: the running trial's ranking score after each epoch so far (higher is better)."""
        epoch = len(curve) - 1
        if len(curve) <= self.n_warmup_epochs:
            return Verdict(False)
        rank_by = study_attrs.rank_by(study)
        records = (TrialRecord.from_trial(t, rank_by=rank_by) for t in
                   study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        others = [r.merit_curve[epoch] for r in records if r.number != trial_number and len(r.merit_curve) > epoch]
        if len(others) < max(self.n_startup_trials, 1):
            return Verdict(False)
        threshold = float(np.percentile(others, self.percentile))
        return Verdict(curve[epoch] < threshold, threshold, len(others))


def make_pruner(name: str, warmup_epochs: int = 1) -> CurvePruner | None:
    if name == "median":
        return CurvePruner(50.0, n_warmup_epochs=warmup_epochs)
    if name == "percentile":
        return CurvePruner(25.0, n_warmup_epochs=warmup_epochs)
    if name == "none":
        return None
    raise SearchError("pruner", repr(name), f"not known; allowed: {', '.join(PRUNERS)}")
