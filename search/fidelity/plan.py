"""What a fidelity run will do: the study's short-proxy recipe, the sample of trained trials, and the
retrainings not stored in the study yet.

"Longer" has one meaning here: M times the epochs of the study's proxy recipe, nothing else changed:
the same training and held-out images (data source, `max_train_samples`, the study's split seed and
held-out size), the same resolution, batch size and peak learning rate (the one-cycle schedule spans the
longer run). Both retrainings, the long one and a second short one, use another seed than the study's.
With `long_seeds` K > 1 the longer run is repeated under K seeds.

The sample: the Pareto front, then the named configs, then other trained trials (those already retrained
first, then in an order fixed by the study's seed), `sample` of them in all, each architecture once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from fasternet_space.named import NAMED_LABELS
from fasternet_space.proxy import ProxyConfig
from fasternet_space.spec import network_key
from fasternet_space.stats import RESAMPLES
from search.errors import SearchError
from search.records import study_attrs
from search.records.trial import TRAINED, TrialRecord, read_trials

DEFAULT_SAMPLE = 12
DEFAULT_MULTIPLIER = 4
MIN_SAMPLE = 3  # a rank correlation of fewer pairs means nothing
FEW_PAIRS = 10  # below this, say that the bootstrap interval is not to be trusted
SETUP_DEFAULTS = {"seed": 0, "max_test_samples": 2000}  # SearchConfig's defaults, for studies without proxy_setup
_NAMED_ORDER = list(NAMED_LABELS.values())


# --------------------------------------------------------------------------------------------- recipe


@dataclass(frozen=True)
class Recipe:
    """The study's short-proxy recipe, as its `setting` and `proxy_setup` attributes record it."""

    data: str
    resolution: int
    batch_size: int
    lr: float
    epochs: int  # the short proxy's
    max_train_samples: int | None
    max_test_samples: int | None
    seed: int  # the study's: data split and the short proxy's initialisation
    grad_clip: float | None = None  # None: the study trained without clipping
    label_smoothing: float = 0.0
    assumed: bool = False  # no proxy_setup stored: seed and max_test_samples are SearchConfig's defaults

    def proxy(self, multiplier: int = 1) -> ProxyConfig:
        return ProxyConfig(epochs=self.epochs * multiplier, resolution=self.resolution, batch_size=self.batch_size,
                           lr=self.lr, grad_clip=self.grad_clip, label_smoothing=self.label_smoothing)


def read_recipe(study: optuna.Study) -> Recipe:
    setting = study_attrs.setting(study)
    keys = ("data", "proxy_epochs", "proxy_resolution", "proxy_batch_size", "proxy_lr", "max_train_samples")
    if setting is None or any(k not in setting for k in keys):
        raise SearchError("study", repr(study.study_name), "records no proxy setting; allowed: a study written "
                          "by `search`")
    stored = study_attrs.proxy_setup(study)
    merged = {**SETUP_DEFAULTS, **stored}
    return Recipe(data=setting["data"], resolution=int(setting["proxy_resolution"]),
                  batch_size=int(setting["proxy_batch_size"]), lr=float(setting["proxy_lr"]),
                  epochs=int(setting["proxy_epochs"]), max_train_samples=setting["max_train_samples"],
                  max_test_samples=merged["max_test_samples"], seed=int(merged["seed"]),
                  grad_clip=setting.get("proxy_grad_clip"),
                  label_smoothing=float(setting.get("proxy_label_smoothing", 0.0)),
                  assumed=not all(k in stored for k in SETUP_DEFAULTS))


# --------------------------------------------------------------------------------------------- stored results


def stored_results(study: optuna.Study, records: Sequence[TrialRecord] = ()) -> dict[tuple[int, int, int], Any]:
    """(multiplier, trial, seed) -> top-1, or a "diverged: ..." string, as stored in the study; with `records`,
    also their confirmations (the search's retrainings with other seeds: the short recipe, multiplier 1)."""
    results = study_attrs.fidelity_results(study)
    for r in records:
        results.update({(1, r.number, seed): top1 for seed, top1 in r.seed_accs[1:]})
    return results


# --------------------------------------------------------------------------------------------- the sample


def trained_records(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    return [r for r in records if r.status == TRAINED and r.proxy_acc is not None and r.arch_spec() is not None]


def _draw(seed: int, number: int) -> float:
    # Per-trial, so that trials added to the study later do not reshuffle the earlier ones.
    return float(np.random.default_rng([seed, number]).random())


def candidates(records: Sequence[TrialRecord], order_seed: int,
               done: set[int] | frozenset[int] = frozenset()) -> list[tuple[TrialRecord, str]]:
    """(record, why) for every trained architecture once, in sampling order: the front (fastest first), the
    named configs, then the others, those in `done` (already retrained) first, then in an order fixed by
    `order_seed`. A trial repeating an earlier one's architecture is left out: it adds no information."""
    trained = trained_records(records)
    front = sorted((r for r in trained if r.pareto), key=lambda r: (r.latency_ms or 0.0, r.number))
    named = sorted((r for r in trained if r.named and not r.pareto),
                   key=lambda r: (_NAMED_ORDER.index(r.named) if r.named in _NAMED_ORDER else len(_NAMED_ORDER),
                                  r.number))
    chosen = {r.number for r in front + named}
    others = sorted((r for r in trained if r.number not in chosen),
                    key=lambda r: (r.number not in done, _draw(order_seed, r.number)))
    ordered, seen = [], set()
    for record, why in [(r, "front") for r in front] + [(r, "named") for r in named] + [(r, "other") for r in others]:
        architecture = network_key(record.spec)
        if architecture not in seen:
            seen.add(architecture)
            ordered.append((record, why))
    return ordered


def choose_sample(records: Sequence[TrialRecord], size: int, order_seed: int,
                  done: set[int] | frozenset[int] = frozenset()) -> list[tuple[TrialRecord, str]]:
    """The first `size` of `candidates`."""
    return candidates(records, order_seed, done)[:size]


# --------------------------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Job:
    number: int
    multiplier: int  # 1: the short recipe
    seed: int

    @property
    def key(self) -> str:
        return study_attrs.fidelity_key(self.multiplier, self.number, self.seed)


@dataclass(frozen=True)
class Plan:
    """What a fidelity run will do: the sample, the recipe, and the retrainings not stored yet."""

    study_name: str
    recipe: Recipe
    multiplier: int
    seed: int  # the short rerun's training seed, and the first long run's
    requested: int
    sample: tuple[tuple[TrialRecord, str], ...]  # (record, why: front, named or other)
    jobs: tuple[Job, ...]  # to train, the long ones first
    reused: int  # results already stored for the sample
    available: int  # distinct trained architectures in the study
    repeats: int  # trained trials left out for repeating an architecture
    front: int  # of the available, on the Pareto front
    resamples: int = RESAMPLES
    long_seeds: tuple[int, ...] = ()  # the longer run's seeds (() : `seed` alone)

    @property
    def reference_seeds(self) -> tuple[int, ...]:
        return self.long_seeds or (self.seed,)


def check_arguments(sample: int, budget_multiplier: int, long_seeds: int = 1) -> None:
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < MIN_SAMPLE:
        raise SearchError("sample", sample, f"allowed: an integer >= {MIN_SAMPLE} (a rank correlation of fewer "
                          "pairs means nothing)")
    if isinstance(budget_multiplier, bool) or not isinstance(budget_multiplier, int) or budget_multiplier < 2:
        raise SearchError("budget_multiplier", budget_multiplier, "allowed: an integer >= 2 (the longer run "
                          "trains that many times the proxy epochs)")
    if isinstance(long_seeds, bool) or not isinstance(long_seeds, int) or long_seeds < 1:
        raise SearchError("long_seeds", long_seeds, "allowed: an integer >= 1 (seeds of the longer run; 2 or more "
                          "also measure how far one longer run is from another)")


def plan(study: optuna.Study, sample: int = DEFAULT_SAMPLE, budget_multiplier: int = DEFAULT_MULTIPLIER,
         seed: int | None = None, resamples: int = RESAMPLES, long_seeds: int = 1) -> Plan:
    """Chooses the sample and lists the retrainings still missing from the study. `seed`: the training seed
    of the short rerun and of the longer run (None: the study's seed + 1; the study's own seed is refused);
    with `long_seeds` K > 1 the longer run is also trained under the next K - 1 seeds (the study's skipped)."""
    check_arguments(sample, budget_multiplier, long_seeds)
    recipe = read_recipe(study)
    seed = recipe.seed + 1 if seed is None else seed
    if seed == recipe.seed:
        raise SearchError("seed", seed, "is the study's own seed, the short proxy's; the seed-to-seed comparison "
                          "needs another; allowed: any other integer")
    records = read_trials(study)
    stored = stored_results(study, records)
    seeds = [seed]
    while len(seeds) < long_seeds:
        candidate = seeds[-1] + 1
        seeds.append(candidate + 1 if candidate == recipe.seed else candidate)
    runs = [(budget_multiplier, s) for s in seeds] + [(1, seed)]
    done = {r.number for r in records if all((m, r.number, s) in stored for m, s in runs)}
    ordered = candidates(records, recipe.seed, done)
    if len(ordered) < MIN_SAMPLE:
        raise SearchError("study", repr(study.study_name), f"has {len(ordered)} trained architecture(s); allowed: "
                          f"a study with at least {MIN_SAMPLE}")
    chosen = ordered[:sample]
    jobs = [Job(r.number, m, s) for m, s in runs for r, _ in chosen if (m, r.number, s) not in stored]
    return Plan(study.study_name, recipe, budget_multiplier, seed, sample, tuple(chosen), tuple(jobs),
                reused=len(runs) * len(chosen) - len(jobs), available=len(ordered),
                repeats=len(trained_records(records)) - len(ordered),
                front=sum(why == "front" for _, why in ordered), resamples=resamples,
                long_seeds=tuple(seeds) if long_seeds > 1 else ())
