"""Stopping rules over the per-epoch proxy accuracy of a multi-objective study.

Optuna's pruners read intermediate values, and `Trial.report` is not supported for
multi-objective studies, so each trial stores its per-epoch top-1 as the `proxy_curve` user
attribute and these rules (Optuna's median and percentile stopping rules) read it from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import TrialState

PRUNERS = ("median", "percentile", "none")


@dataclass(frozen=True)
class CurvePruner:
    percentile: float = 50.0  # prune below this percentile of earlier trials at the same epoch
    n_startup_trials: int = 4  # finished trained trials needed before anything is pruned
    n_warmup_epochs: int = 1  # never prune before this many epochs are done

    def describe(self) -> str:
        return "median" if self.percentile == 50 else f"{self.percentile:g}th percentile"

    def should_prune(self, study: optuna.Study, trial_number: int, curve: list[float]) -> bool:
        epoch = len(curve) - 1
        if len(curve) <= self.n_warmup_epochs:
            return False
        others = [
            t.user_attrs["proxy_curve"][epoch]
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            if t.number != trial_number and len(t.user_attrs.get("proxy_curve") or []) > epoch
        ]
        if not others or len(others) < self.n_startup_trials:
            return False
        return curve[epoch] < float(np.percentile(others, self.percentile))


def make_pruner(name: str, warmup_epochs: int = 1) -> CurvePruner | None:
    if name == "median":
        return CurvePruner(50.0, n_warmup_epochs=warmup_epochs)
    if name == "percentile":
        return CurvePruner(25.0, n_warmup_epochs=warmup_epochs)
    if name == "none":
        return None
    raise ValueError(f"unknown pruner {name!r}; allowed: {', '.join(PRUNERS)}")
