"""What a study holds, as rows: one per trial, with feasibility, Pareto membership and metrics."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from fasternet_space import ArchSpec
from fasternet_space.spec import SpecError


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str
    feasible: bool | None
    pareto: bool
    named: str | None
    proxy_acc: float | None
    latency_ms: float | None
    flops: int | None
    flops_per_s: float | None
    params: int | None
    reason: str | None
    spec_yaml: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def spec(self) -> ArchSpec | None:
        if not self.spec_yaml:
            return None
        try:
            return ArchSpec.from_dict(yaml.safe_load(self.spec_yaml))
        except (SpecError, yaml.YAMLError, TypeError):
            return None


def pareto_numbers(study: optuna.Study) -> set[int]:
    """Optuna's own Pareto front (feasible trials only, when constraints were set)."""
    return {t.number for t in study.best_trials}


def trial_rows(study: optuna.Study) -> list[TrialRow]:
    front = pareto_numbers(study)
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        rows.append(TrialRow(
            number=t.number, state=t.state.name, feasible=feasible(t), pareto=t.number in front,
            named=a.get("named"), proxy_acc=a.get("proxy_acc"), latency_ms=a.get("latency_ms"), flops=a.get("flops"),
            flops_per_s=a.get("flops_per_s"), params=a.get("params"), reason=a.get("fail_reason"),
            spec_yaml=a.get("spec_yaml"),
        ))
    return rows


def feasible(trial: FrozenTrial) -> bool | None:
    """Within budget by the trial's constraints (or its `feasible` attribute); None where neither was set."""
    if trial.constraints:
        return all(v <= 0 for v in trial.constraints.values())
    value = trial.user_attrs.get("feasible")
    return value if isinstance(value, bool) else None


def best_feasible(rows: list[TrialRow]) -> TrialRow | None:
    """The most accurate complete, feasible trial; the faster one on a tie."""
    candidates = [r for r in rows if r.state == TrialState.COMPLETE.name and r.feasible and r.proxy_acc is not None]
    if not candidates:
        return None
    return max(candidates, key=lambda r: (r.proxy_acc, -r.latency_ms))
