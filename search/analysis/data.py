"""What the analysis reads from a study: the space it searched, which trials each part rests on, the value
each importance is computed on, and how a parameter's values are grouped into levels (values or bins)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from fasternet_space.space import Free, same_number
from fasternet_space.spec import FOLDED_FIELDS, TRAINING_ONLY_FIELDS, SpecError
from search.errors import SearchError
from search.records import study_attrs
from search.records.trial import TRAINED, TrialRecord
from search.space import SearchSpace

MAX_LEVELS = 5  # a numeric parameter with at most this many values gets one curve per value, else bins
BINS = 4
NOT_ENOUGH = "not enough trials"

# What each importance is computed on (lower is better for every one, as PED-ANOVA assumes).
TARGETS = {
    "accuracy": "proxy error (1 - top-1) of the feasible trained trials",
    "latency": "log latency of every measured candidate (costs multiply)",
    "flops_per_s": "-log achieved FLOPS of every measured candidate",
}
COST_TARGETS = ("latency", "flops_per_s")
# How "accuracy" is scored, by the score a study ranks on (TrialRecord.rank_by; older studies: top1).
ACCURACY_METRICS = {"top1": "proxy error (1 - top-1)", "loss": "held-out loss"}
# Fields that cannot change the deployed network (training only, or folded into a convolution at inference):
# any latency or FLOPS difference between their values is confounding, so they get no cost entries.
DEPLOY_NEUTRAL_FIELDS = TRAINING_ONLY_FIELDS + FOLDED_FIELDS


# --------------------------------------------------------------------------------------------- the space


def study_space(study: optuna.Study) -> SearchSpace:
    """The space a study searched: its space file where that is still the same file (its SHA-256 is in the
    setting), else the free parameters as its trials' distributions record them."""
    setting = study_attrs.setting(study) or {}
    path = Path(str(setting.get("space", "")))
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == setting.get("space_sha256"):
        try:
            return SearchSpace.from_yaml(path)
        except SpecError:
            pass
    trials = [t for t in study.get_trials(deepcopy=False) if t.distributions]
    if not trials:
        raise SearchError("study", repr(study.study_name), "has no trial with sampled parameters to analyse; "
                          "allowed: a study that a search has run")
    distributions: dict[str, BaseDistribution] = {}
    for trial in sorted(trials, key=lambda t: -len(t.distributions)):
        for name, d in trial.distributions.items():
            distributions.setdefault(name, d)
    return SearchSpace({name: _free_of(name, d) for name, d in distributions.items()}, name=study.study_name)


def _free_of(name: str, d: BaseDistribution) -> Free:
    if isinstance(d, CategoricalDistribution):
        return Free(name, choices=tuple(d.choices))
    if isinstance(d, IntDistribution):
        return Free(name, low=d.low, high=d.high, step=None if d.log else d.step, log=d.log, integer=True)
    assert isinstance(d, FloatDistribution)
    return Free(name, low=d.low, high=d.high, step=d.step, log=d.log)


# --------------------------------------------------------------------------------------------- populations


def field_of(param: str) -> str:
    """The spec field a free parameter sets: 'depths[2]' -> 'depths'."""
    return param.split("[", 1)[0]


def deploy_neutral(frees: Sequence[Free]) -> list[str]:
    """The free parameters that cannot change the deployed network (see DEPLOY_NEUTRAL_FIELDS)."""
    return [f.param for f in frees if field_of(f.param) in DEPLOY_NEUTRAL_FIELDS]


def target_frees(frees: Sequence[Free], target: str) -> list[Free]:
    """The free parameters a target (a key of TARGETS) has entries for: a cost target, none of deploy_neutral."""
    neutral = set(deploy_neutral(frees)) if target in COST_TARGETS else set()
    return [f for f in frees if f.param not in neutral]


def has_every_param(record: TrialRecord, frees: Sequence[Free]) -> bool:
    return all(f.param in record.params for f in frees)


def trained_population(records: Sequence[TrialRecord], frees: Sequence[Free]) -> list[TrialRecord]:
    """The feasible trained trials with every free parameter: what the accuracy parts rest on."""
    return [r for r in records if r.status == TRAINED and r.accuracy is not None and has_every_param(r, frees)]


def measured_population(records: Sequence[TrialRecord], frees: Sequence[Free]) -> list[TrialRecord]:
    """Every candidate with a latency (measured or predicted) and every free parameter: what the cost parts
    rest on."""
    return [r for r in records if r.latency_ms and has_every_param(r, frees)]


def target_population(records: Sequence[TrialRecord], target: str, frees: Sequence[Free]) -> list[TrialRecord]:
    """The trials a target (a key of TARGETS) is computed on."""
    if target == "accuracy":
        return trained_population(records, frees)
    return measured_population(records, frees)


def flops_per_s(record: TrialRecord) -> float | None:
    """Achieved multiply-adds per second: as stored, else from the FLOPs and the latency."""
    if record.flops_per_s is not None:
        return record.flops_per_s
    if record.flops and record.latency_ms:
        return record.flops / (record.latency_ms / 1e3)
    return None


def _log(value: float | None) -> float | None:
    return math.log(value) if value is not None and value > 0 else None


def accuracy_metric(records: Sequence[TrialRecord]) -> str:
    """The key of ACCURACY_METRICS the "accuracy" target is scored by: held-out loss where every trial ranks on it."""
    return "loss" if records and all(r.rank_by == "loss" for r in records) else "top1"


def accuracy_value(record: TrialRecord) -> float | None:
    """What "accuracy" is for one trial (lower is better): its held-out loss where it ranks on the loss, else its
    proxy error."""
    if record.rank_by == "loss":
        return record.loss
    return None if record.accuracy is None else 1.0 - record.accuracy


# Per key of TARGETS: the value of a trial (None: it has none).
TARGET_VALUES: dict[str, Callable[[TrialRecord], float | None]] = {
    "accuracy": accuracy_value,
    "latency": lambda r: _log(r.latency_ms),
    "flops_per_s": lambda r: None if _log(flops_per_s(r)) is None else -_log(flops_per_s(r)),
}


# --------------------------------------------------------------------------------------------- levels


@dataclass(frozen=True)
class Level:
    """One value of a parameter, or one bin of a numeric one (low..high, both included)."""

    label: str
    value: Any = None  # the value, for a categorical parameter or a numeric one with few values
    low: float | None = None
    high: float | None = None
    closed: bool = True  # high included (the last bin of a continuous range, and every bin of listed values)

    def holds(self, v: Any) -> bool:
        if self.low is None:
            return v == self.value and type(v) is type(self.value) or same_number(v, self.value)
        if isinstance(v, bool) or not isinstance(v, int | float):
            return False
        return self.low <= v <= self.high if self.closed else self.low <= v < self.high


def levels(free: Free) -> list[Level]:
    """A categorical parameter's values; a numeric one's values when few, else BINS bins of its range."""
    values = free.grid_values()
    if values is not None and (free.choices is not None or len(values) <= MAX_LEVELS):
        return [Level(show_value(v), value=v) for v in values]
    if values is not None:  # many integer (or stepped) values: contiguous groups of about equal size
        return [Level(f"{show_value(part[0])}–{show_value(part[-1])}", low=part[0], high=part[-1])
                for part in (list(p) for p in np.array_split(np.array(values), BINS)) if part]
    edges = (np.geomspace if free.log else np.linspace)(free.low, free.high, BINS + 1)
    return [Level(f"{show_value(lo)}–{show_value(hi)}", low=float(lo), high=float(hi), closed=i == BINS - 1)
            for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True))]


def show_value(v: Any) -> str:
    """A parameter value as a label: floats to 4 significant digits, numpy scalars as Python's."""
    if isinstance(v, float | np.floating):
        return f"{float(v):.4g}"
    return str(v.item() if isinstance(v, np.generic) else v)


def level_records(records: Sequence[TrialRecord], param: str, level: Level) -> list[TrialRecord]:
    """The records whose value of `param` is in `level`."""
    return [r for r in records if param in r.params and level.holds(r.params[param])]
