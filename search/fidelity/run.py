"""Runs a fidelity plan: trains the retrainings it lists, storing each as it finishes, then reports on the
whole sample; and the lines that follow a run (the plan, each finished retraining).

Every retraining's top-1 is a study user attribute `fidelity:M:TRIAL:SEED` (M = 1: the short recipe),
so a rerun reuses what is stored and concurrent runs never overwrite each other. A short rerun the search
already made (its confirmations, `TrialRecord.seed_accs`) is reused, not trained again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import optuna

from fasternet_space.data import load_dataset
from fasternet_space.proxy import ProxyDiverged, train_proxy
from search.fidelity.plan import DEFAULT_MULTIPLIER, DEFAULT_SAMPLE, Job, Plan, plan, stored_results
from search.fidelity.report import FidelityReport, report
from search.records import study_attrs
from search.records.trial import read_trials


@dataclass(frozen=True)
class Progress:
    """One retraining finished (`index` of `total`); top1 None when it diverged."""

    index: int
    total: int
    job: Job
    top1: float | None
    seconds: float


def run(study: optuna.Study, plan: Plan, on_progress: Callable[[Progress], None] | None = None) -> FidelityReport:
    """Trains the plan's missing retrainings, storing each as it finishes, and reports on the whole sample."""
    recipe = plan.recipe
    specs = {r.number: r.arch_spec() for r, _ in plan.sample}
    dataset = None
    trained: dict[int, int] = {}
    for index, job in enumerate(plan.jobs, 1):
        if study_attrs.has_fidelity_result(study, job.key):  # stored meanwhile by a concurrent run
            continue
        if dataset is None:
            dataset = load_dataset(recipe.data, recipe.resolution, seed=recipe.seed,
                                   max_train=recipe.max_train_samples, max_test=recipe.max_test_samples)
        start = time.perf_counter()
        try:
            top1: float | str = train_proxy(specs[job.number], dataset, recipe.proxy(job.multiplier),
                                            seed=job.seed).top1[-1]
        except ProxyDiverged as exc:
            top1 = f"diverged: {exc}"
        study_attrs.store_fidelity_result(study, job.key, top1)
        trained[job.number] = trained.get(job.number, 0) + 1
        if on_progress is not None:
            on_progress(Progress(index, len(plan.jobs), job, top1 if isinstance(top1, float) else None,
                                 time.perf_counter() - start))
    return report(plan, stored_results(study, read_trials(study)), trained)


def fidelity(study: optuna.Study, sample: int = DEFAULT_SAMPLE, budget_multiplier: int = DEFAULT_MULTIPLIER,
             seed: int | None = None, on_progress: Callable[[Progress], None] | None = None,
             long_seeds: int = 1) -> FidelityReport:
    """`plan` then `run`."""
    return run(study, plan(study, sample, budget_multiplier, seed, long_seeds=long_seeds), on_progress)


def plan_line(plan: Plan) -> str:
    """What the run will do: '12 sampled trials: 5 trainings to run, 31 results stored in the study reused'."""
    return (f"{len(plan.sample)} sampled trials: {len(plan.jobs)} trainings to run, {plan.reused} results "
            "stored in the study reused")


def progress_line(plan: Plan, progress: Progress) -> str:
    """One finished retraining: '[2/5] trial #3: 4 epochs, seed 1: top-1 0.512 (40 s)'."""
    p = progress
    what = f"top-1 {p.top1:.3f}" if p.top1 is not None else "diverged"
    epochs = plan.recipe.epochs * p.job.multiplier
    return (f"[{p.index}/{p.total}] trial #{p.job.number}: {epochs} epoch{'s' * (epochs != 1)}, "
            f"seed {p.job.seed}: {what} ({p.seconds:.0f} s)")
