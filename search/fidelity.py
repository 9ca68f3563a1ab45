"""How far to trust the short proxy: retrain a sample of a study's trained trials longer, and correlate.

"Longer" has one meaning here: M times the epochs of the study's proxy recipe, nothing else changed:
the same training and held-out images (data source, `max_train_samples`, the study's split seed and
held-out size), the same resolution, batch size and peak learning rate (the one-cycle schedule spans the
longer run). Both retrainings, the long one and a second short one, use another seed than the study's.

With `long_seeds` K > 1 the longer run is repeated under K seeds: its mean is the reference, and the
Spearman between two of its seeds measures the reference's own noise (the short proxy cannot be expected
to agree with one long run better than one long run agrees with another).

The sample: the Pareto front, then the named configs, then other trained trials (those already retrained
first, then in an order fixed by the study's seed), `sample` of them in all, each architecture once.
Reported: Spearman and Kendall tau-b between the short proxy's top-1 and the long top-1, and the Spearman
between the short proxy and its rerun under the other seed (how stable its ranking is from seed to seed),
each with a percentile bootstrap 95% interval over the pairs; beside them, the Spearman of the short
proxy's held-out cross-entropy (stored by searches since it was added) against the long top-1: the same
training scored on a finer scale than 2,000 right-or-wrong answers.

Every retraining's top-1 is a study user attribute `fidelity:M:TRIAL:SEED` (M = 1: the short recipe),
so a rerun reuses what is stored and concurrent runs never overwrite each other. A short rerun the search
already made (its confirmations, `TrialRecord.seed_accs`) is reused, not trained again.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import optuna

from fasternet_space import zero_cost
from fasternet_space.data import load_dataset
from fasternet_space.named import NAMED_LABELS
from fasternet_space.proxy import ProxyConfig, ProxyDiverged, train_proxy

from .errors import SearchError
from .trial import TRAINED, TrialRecord, finite_number, read_trials

DEFAULT_SAMPLE = 12
DEFAULT_MULTIPLIER = 4
MIN_SAMPLE = 3  # a rank correlation of fewer pairs means nothing
FEW_PAIRS = 10  # below this, say that the bootstrap interval is not to be trusted
RESAMPLES = 2000  # bootstrap resamples
LEVEL = 0.95
PREFIX = "fidelity"
SETUP_DEFAULTS = {"seed": 0, "max_test_samples": 2000}  # SearchConfig's defaults, for studies without proxy_setup
_NAMED_ORDER = list(NAMED_LABELS.values())


# --------------------------------------------------------------------------------------------- statistics


def ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    a = np.asarray(values, dtype=float)
    order = np.argsort(a, kind="mergesort")
    ordered = a[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(a)]
    out = np.empty(len(a))
    out[order] = ((starts + ends + 1) / 2)[np.cumsum(first) - 1]
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (Pearson correlation of the average ranks); nan when either side is constant."""
    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(np.clip(rx @ ry / denominator, -1.0, 1.0)) if denominator > 0 else math.nan


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b: (concordant - discordant) / sqrt(pairs untied in x * pairs untied in y); nan when
    either side is constant."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    upper = np.triu_indices(len(a), 1)
    dx = np.sign(a[:, None] - a[None, :])[upper]
    dy = np.sign(b[:, None] - b[None, :])[upper]
    untied = float(np.count_nonzero(dx)) * float(np.count_nonzero(dy))
    return float(np.clip((dx * dy).sum() / math.sqrt(untied), -1.0, 1.0)) if untied > 0 else math.nan


def bootstrap_interval(statistic: Callable[[np.ndarray, np.ndarray], float], x: Sequence[float],
                       y: Sequence[float], resamples: int = RESAMPLES, level: float = LEVEL,
                       seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of `statistic` over the (x, y) pairs resampled with replacement.
    Resamples where the statistic is undefined (one side constant) are left out; None when all are."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    index = np.random.default_rng(seed).integers(0, len(a), size=(resamples, len(a)))
    values = np.array([statistic(a[i], b[i]) for i in index])
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


@dataclass(frozen=True)
class Correlation:
    value: float | None  # None: fewer than MIN_SAMPLE pairs, or one side constant
    low: float | None  # the bootstrap interval
    high: float | None
    n: int  # pairs

    @classmethod
    def of(cls, statistic: Callable[[np.ndarray, np.ndarray], float], x: Sequence[float], y: Sequence[float],
           seed: int, resamples: int = RESAMPLES) -> Correlation:
        value = statistic(np.asarray(x, dtype=float), np.asarray(y, dtype=float)) if len(x) >= MIN_SAMPLE else math.nan
        if not math.isfinite(value):
            return cls(None, None, None, len(x))
        interval = bootstrap_interval(statistic, x, y, resamples, seed=seed) or (None, None)
        return cls(value, *interval, len(x))


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
    setting = study.user_attrs.get("setting")
    keys = ("data", "proxy_epochs", "proxy_resolution", "proxy_batch_size", "proxy_lr", "max_train_samples")
    if not isinstance(setting, dict) or any(k not in setting for k in keys):
        raise SearchError("study", repr(study.study_name), "records no proxy setting; allowed: a study written "
                          "by `search`")
    setup = study.user_attrs.get("proxy_setup")
    stored = setup if isinstance(setup, dict) else {}
    merged = {**SETUP_DEFAULTS, **stored}
    return Recipe(data=setting["data"], resolution=int(setting["proxy_resolution"]),
                  batch_size=int(setting["proxy_batch_size"]), lr=float(setting["proxy_lr"]),
                  epochs=int(setting["proxy_epochs"]), max_train_samples=setting["max_train_samples"],
                  max_test_samples=merged["max_test_samples"], seed=int(merged["seed"]),
                  grad_clip=setting.get("proxy_grad_clip"),
                  label_smoothing=float(setting.get("proxy_label_smoothing", 0.0)),
                  assumed=not all(k in stored for k in SETUP_DEFAULTS))


# --------------------------------------------------------------------------------------------- storage


def result_key(multiplier: int, number: int, seed: int) -> str:
    """The study user attribute holding one retraining's top-1 (multiplier 1: the short recipe)."""
    return f"{PREFIX}:{multiplier}:{number}:{seed}"


def stored_results(study: optuna.Study, records: Sequence[TrialRecord] = ()) -> dict[tuple[int, int, int], Any]:
    """(multiplier, trial, seed) -> top-1, or a "diverged: ..." string, as stored in the study; with `records`,
    also their confirmations (the search's retrainings with other seeds: the short recipe, multiplier 1)."""
    results: dict[tuple[int, int, int], Any] = {}
    for key, value in study.user_attrs.items():
        parts = key.split(":")
        if len(parts) == 4 and parts[0] == PREFIX and all(p.lstrip("-").isdigit() for p in parts[1:]):
            results[(int(parts[1]), int(parts[2]), int(parts[3]))] = value
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
        architecture = json.dumps({k: v for k, v in record.spec.items() if k != "name"}, sort_keys=True)
        if architecture not in seen:
            seen.add(architecture)
            ordered.append((record, why))
    return ordered


def choose_sample(records: Sequence[TrialRecord], size: int, order_seed: int,
                  done: set[int] | frozenset[int] = frozenset()) -> list[tuple[TrialRecord, str]]:
    """The first `size` of `candidates`."""
    return candidates(records, order_seed, done)[:size]


# --------------------------------------------------------------------------------------------- plan and run


@dataclass(frozen=True)
class Job:
    number: int
    multiplier: int  # 1: the short recipe
    seed: int

    @property
    def key(self) -> str:
        return result_key(self.multiplier, self.number, self.seed)


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


@dataclass(frozen=True)
class Progress:
    """One retraining finished (`index` of `total`); top1 None when it diverged."""

    index: int
    total: int
    job: Job
    top1: float | None
    seconds: float


@dataclass(frozen=True)
class Pair:
    number: int
    named: str | None
    why: str  # front, named or other
    pareto: bool
    latency_ms: float | None
    short_top1: float  # the study's proxy (the study's seed)
    long_top1: float | None  # M times the epochs: the mean over the long seeds that did not diverge; None: all did
    rerun_top1: float | None  # the short recipe again, seed `seed`; None: diverged
    trained_now: int  # retrainings of this trial done by this run (0: all read from the study)
    zero_cost: dict[str, float] | None = None  # the trial's zero-cost scores, untrained (where the search stored them)
    long_seeds_top1: tuple[float | None, ...] = ()  # per long seed, in the plan's order (None: diverged)
    short_loss: float | None = None  # the study's proxy's held-out cross-entropy (None: not stored)


@dataclass(frozen=True)
class FidelityReport:
    study: str
    recipe: Recipe
    multiplier: int
    seed: int
    requested: int
    pairs: tuple[Pair, ...]
    spearman: Correlation  # short proxy vs long
    kendall: Correlation  # short proxy vs long (tau-b)
    seed_spearman: Correlation  # short proxy vs its rerun under `seed`
    trained: int  # retrainings done by this run
    reused: int  # results read from the study
    resamples: int = RESAMPLES
    notes: tuple[str, ...] = field(default_factory=tuple)
    zero_cost: dict[str, Correlation] = field(default_factory=dict)  # each score's Spearman vs long
    long_seeds: tuple[int, ...] = ()  # the longer run's seeds
    long_seed_spearman: Correlation | None = None  # the longer run's first two seeds against each other
    loss_spearman: Correlation | None = None  # the short proxy's held-out loss (lower first) vs long top-1

    @property
    def long_epochs(self) -> int:
        return self.recipe.epochs * self.multiplier

    @property
    def reference_seeds(self) -> tuple[int, ...]:
        """The longer run's seeds (`seed` alone unless several were asked for), as Plan.reference_seeds."""
        return self.long_seeds or (self.seed,)

    def settings(self) -> dict[str, Any]:
        r = self.recipe
        return {"study": self.study, "sample": self.requested, "sampled": len(self.pairs),
                "budget_multiplier": self.multiplier, "short_epochs": r.epochs, "long_epochs": self.long_epochs,
                "seed": self.seed, "long_seeds": list(self.reference_seeds), "study_seed": r.seed, "data": r.data,
                "resolution": r.resolution,
                "batch_size": r.batch_size, "lr": r.lr, "max_train_samples": r.max_train_samples,
                "max_test_samples": r.max_test_samples, "setup_assumed": r.assumed,
                "bootstrap_resamples": self.resamples, "interval": LEVEL,
                "longer": f"{self.multiplier}x the proxy epochs; same data, resolution, batch size and peak lr"}

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings(), "spearman": asdict(self.spearman), "kendall_tau_b": asdict(self.kendall),
                "seed_spearman": asdict(self.seed_spearman),
                "long_seed_spearman": asdict(self.long_seed_spearman) if self.long_seed_spearman else None,
                "held_out_loss_spearman": asdict(self.loss_spearman) if self.loss_spearman else None,
                "zero_cost_spearman": {name: asdict(c) for name, c in self.zero_cost.items()},
                "trained": self.trained, "reused": self.reused,
                "notes": list(self.notes), "pairs": [asdict(p) for p in self.pairs]}


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


def run(study: optuna.Study, plan: Plan, on_progress: Callable[[Progress], None] | None = None) -> FidelityReport:
    """Trains the plan's missing retrainings, storing each as it finishes, and reports on the whole sample."""
    recipe = plan.recipe
    specs = {r.number: r.arch_spec() for r, _ in plan.sample}
    dataset = None
    trained: dict[int, int] = {}
    for index, job in enumerate(plan.jobs, 1):
        if job.key in study.user_attrs:  # stored meanwhile by a concurrent run
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
        study.set_user_attr(job.key, top1)
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


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def report(plan: Plan, stored: dict[tuple[int, int, int], Any], trained: dict[int, int]) -> FidelityReport:
    """The pairs and correlations of a plan's sample from the stored results."""
    long_runs = {r.number: tuple(finite_number(stored.get((plan.multiplier, r.number, s)))
                                 for s in plan.reference_seeds) for r, _ in plan.sample}
    pairs = tuple(Pair(
        number=r.number, named=r.named, why=why, pareto=r.pareto, latency_ms=r.latency_ms, short_top1=r.proxy_acc,
        long_top1=_mean(long_runs[r.number]),
        rerun_top1=finite_number(stored.get((1, r.number, plan.seed))), trained_now=trained.get(r.number, 0),
        zero_cost=r.zero_cost, long_seeds_top1=long_runs[r.number] if plan.long_seeds else (),
        short_loss=r.proxy_loss,
    ) for r, why in plan.sample)
    long = [p for p in pairs if p.long_top1 is not None]
    rerun = [p for p in pairs if p.rerun_top1 is not None]
    xs, ys = [p.short_top1 for p in long], [p.long_top1 for p in long]
    correlations = {
        "Spearman": Correlation.of(spearman, xs, ys, plan.seed, plan.resamples),
        "Kendall tau-b": Correlation.of(kendall_tau_b, xs, ys, plan.seed, plan.resamples),
        "seed-to-seed Spearman": Correlation.of(spearman, [p.short_top1 for p in rerun],
                                                [p.rerun_top1 for p in rerun], plan.seed, plan.resamples)}
    notes = _notes(plan, pairs) + [f"{name} is undefined: fewer than {MIN_SAMPLE} pairs, or one side has a single "
                                   "value" for name, c in correlations.items() if c.value is None]
    spearman_, kendall, seed_spearman = correlations.values()
    zero_cost_correlations = _zero_cost_correlations(long, plan)
    with_loss = [p for p in long if p.short_loss is not None]
    loss_spearman = Correlation.of(spearman, [-p.short_loss for p in with_loss], [p.long_top1 for p in with_loss],
                                   plan.seed, plan.resamples) if with_loss else None
    if with_loss and len(with_loss) < len(long):
        notes.append(f"the held-out loss is stored for {len(with_loss)} of the {len(long)} pairs (trials trained "
                     "before the search stored it have none): its Spearman covers those alone")
    long_seed_spearman = None
    if plan.long_seeds:
        both = [p.long_seeds_top1[:2] for p in pairs if None not in p.long_seeds_top1[:2]]
        long_seed_spearman = Correlation.of(spearman, [a for a, _ in both], [b for _, b in both], plan.seed,
                                            plan.resamples)
    return FidelityReport(
        study=plan.study_name, recipe=plan.recipe, multiplier=plan.multiplier, seed=plan.seed,
        requested=plan.requested, pairs=pairs, spearman=spearman_, kendall=kendall, seed_spearman=seed_spearman,
        trained=sum(trained.values()), reused=(len(plan.reference_seeds) + 1) * len(pairs) - sum(trained.values()),
        resamples=plan.resamples, notes=tuple(notes), zero_cost=zero_cost_correlations, long_seeds=plan.long_seeds,
        long_seed_spearman=long_seed_spearman, loss_spearman=loss_spearman)


def _zero_cost_correlations(pairs: Sequence[Pair], plan: Plan) -> dict[str, Correlation]:
    """Spearman of each zero-cost score (and of their vote) against the longer training, over the pairs
    whose trials stored every score: which signal to trust, beside the short proxy's."""
    scored = [p for p in pairs if p.zero_cost]
    names = sorted(set.intersection(*(set(p.zero_cost) for p in scored))) if scored else []
    ys = [p.long_top1 for p in scored]
    found = {name: Correlation.of(spearman, [p.zero_cost[name] for p in scored], ys, plan.seed, plan.resamples)
             for name in names}
    if set(zero_cost.VOTE_SCORES) <= set(names):
        votes = zero_cost.vote({p.number: p.zero_cost for p in scored})
        found["vote"] = Correlation.of(spearman, [votes[p.number] for p in scored], ys, plan.seed, plan.resamples)
    return found


def _notes(plan: Plan, pairs: Sequence[Pair]) -> list[str]:
    notes = []
    if plan.available < plan.requested:
        notes.append(f"the study has {plan.available} trained architectures: the sample is {plan.available}, "
                     f"not {plan.requested}")
    if plan.repeats:
        notes.append(f"{plan.repeats} trained trial(s) repeat the architecture of another and are not sampled")
    if plan.front > len(pairs):
        notes.append(f"the sample is the {len(pairs)} fastest of the {plan.front} trials on the Pareto front; "
                     f"a sample of {plan.front} or more takes the whole front")
    if len(pairs) < FEW_PAIRS:
        notes.append(f"{len(pairs)} pairs are few: a bootstrap over so few understates the uncertainty (an "
                     "interval can collapse to a point); sample more trials")
    if plan.recipe.assumed:
        notes.append(f"the study does not record its proxy seed and held-out size: assumed seed {plan.recipe.seed} "
                     f"and {plan.recipe.max_test_samples} held-out images, SearchConfig's defaults")
    for p in pairs:
        longs = p.long_seeds_top1 or (p.long_top1,)
        runs = [(f"{plan.multiplier}x epochs", s, v) for s, v in zip(plan.reference_seeds, longs, strict=True)]
        for what, seed, value in runs + [("short rerun", plan.seed, p.rerun_top1)]:
            if value is None:
                notes.append(f"trial #{p.number}: the {what} training (seed {seed}) diverged; left out")
    return notes
