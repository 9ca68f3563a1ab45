"""SearchSpace: a design space (`fasternet_space.space`) sampled through Optuna: a trial gives an ArchSpec.

Each free entry is one Optuna parameter, named by its `Free.param` (the field, or `field[i]` for a
per-stage entry); `distribution(free)` is the Optuna distribution it is sampled from.
"""

from __future__ import annotations

import itertools
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from fasternet_space.latency_table import SAMPLED_PER_NETWORK, split_networks
from fasternet_space.space import DesignSpace, Free
from fasternet_space.spec import ArchSpec

__all__ = ["Free", "SearchSpace", "distribution", "profile_networks", "suggest_value"]


class SearchSpace(DesignSpace):
    """Fields of ArchSpec, each fixed or free; `suggest(trial)` gives an ArchSpec."""

    def suggest(self, trial: optuna.Trial, name: str | None = None) -> ArchSpec:
        """The trial's architecture; raises SpecError when the sampled combination is not a valid network."""
        values = {}
        for key, value in self.entries.items():
            if isinstance(value, list):
                values[key] = [suggest_value(e, trial) if isinstance(e, Free) else e for e in value]
            else:
                values[key] = suggest_value(value, trial) if isinstance(value, Free) else value
        values["name"] = name or f"{self.name}-{trial.number}"
        return ArchSpec.from_dict(values)

    def sample_specs(self, count: int, seed: int = 0) -> list[ArchSpec]:
        """Random suggestions (for tests and previews), through an in-memory study."""
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        specs = []
        for _ in itertools.repeat(None, count):
            trial = study.ask()
            specs.append(self.suggest(trial))
            study.tell(trial, 0.0)
        return specs


def suggest_value(free: Free, trial: optuna.Trial) -> Any:
    """The trial's value of the free parameter, sampled from `distribution(free)`."""
    if free.choices is not None:
        return trial.suggest_categorical(free.param, list(free.choices))
    if free.integer:
        return trial.suggest_int(free.param, int(free.low), int(free.high), step=int(free.step or 1), log=free.log)
    return trial.suggest_float(free.param, free.low, free.high, step=free.step, log=free.log)


def distribution(free: Free) -> BaseDistribution:
    """The Optuna distribution `suggest_value` samples the free parameter from."""
    if free.choices is not None:
        return CategoricalDistribution(list(free.choices))
    if free.integer:
        return IntDistribution(int(free.low), int(free.high), log=free.log, step=int(free.step or 1))
    return FloatDistribution(free.low, free.high, log=free.log, step=free.step)


def profile_networks(space: SearchSpace, fit: int, held_out: int, seed: int = 0
                     ) -> tuple[list[ArchSpec], list[ArchSpec]]:
    """Whole networks for `profile`, sampled from the space: `fit` to fit the table's correction on and
    `held_out` others for its error, distinct by what the latency depends on."""
    return split_networks(space.sample_specs(SAMPLED_PER_NETWORK * (fit + held_out), seed=seed), fit, held_out)
