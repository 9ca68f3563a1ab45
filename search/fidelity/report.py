"""The fidelity report: the short proxy's top-1 against the longer training's for each sampled trial, rank
correlations with percentile bootstrap 95% intervals over the pairs, and the report as text.

Reported: Spearman and Kendall tau-b between the short proxy's top-1 and the long top-1, and the Spearman
between the short proxy and its rerun under the other seed (how stable its ranking is from seed to seed);
beside them, the Spearman of the short proxy's held-out cross-entropy (stored by searches since it was added)
against the long top-1: the same training scored on a finer scale than 2,000 right-or-wrong answers; and of
each zero-cost score. With several long seeds, their mean is the reference, and the Spearman between two of
them measures the reference's own noise (the short proxy cannot be expected to agree with one long run better
than one long run agrees with another).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fasternet_space import zero_cost
from fasternet_space.report import fixed, format_table
from fasternet_space.stats import LEVEL, RESAMPLES, bootstrap_interval, kendall_tau_b, spearman
from search.fidelity.plan import FEW_PAIRS, MIN_SAMPLE, Plan, Recipe
from search.records.values import finite_number


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
    short_train_loss: float | None = None  # TSE-E: its training loss over the last epoch (None: not stored)


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
    train_loss_spearman: Correlation | None = None  # TSE-E, its last epoch's training loss (lower first) vs long

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
                "tse_e_spearman": asdict(self.train_loss_spearman) if self.train_loss_spearman else None,
                "zero_cost_spearman": {name: asdict(c) for name, c in self.zero_cost.items()},
                "trained": self.trained, "reused": self.reused,
                "notes": list(self.notes), "pairs": [asdict(p) for p in self.pairs]}


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
        short_loss=r.proxy_loss, short_train_loss=r.train_loss,
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
    loss_spearman, train_loss_spearman = (_loss_correlation(long, plan, name, notes) for name in (
        "short_loss", "short_train_loss"))
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
        long_seed_spearman=long_seed_spearman, loss_spearman=loss_spearman, train_loss_spearman=train_loss_spearman)


LOSS_NAMES = {"short_loss": "held-out loss", "short_train_loss": "training loss over the last epoch (TSE-E)"}


def _loss_correlation(pairs: Sequence[Pair], plan: Plan, field_name: str, notes: list[str]) -> Correlation | None:
    """Spearman of a loss of the short training (lower first) against the longer training's top-1, over the
    pairs whose trials stored it (a note where some did not)."""
    present = [p for p in pairs if getattr(p, field_name) is not None]
    if present and len(present) < len(pairs):
        notes.append(f"the {LOSS_NAMES[field_name]} is stored for {len(present)} of the {len(pairs)} pairs (trials "
                     "trained before the search stored it have none): its Spearman covers those alone")
    if not present:
        return None
    return Correlation.of(spearman, [-getattr(p, field_name) for p in present], [p.long_top1 for p in present],
                          plan.seed, plan.resamples)


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


# --------------------------------------------------------------------------------------------- text


def interval_text(c: Correlation) -> str:
    """'0.71 [0.40, 0.90]': the value and its bootstrap interval, or 'undefined (n=2)'."""
    if c.value is None:
        return f"undefined (n={c.n})"
    interval = f" [{c.low:.2f}, {c.high:.2f}]" if c.low is not None else ""
    return f"{c.value:.2f}{interval}"


def format_text(report: FidelityReport) -> str:
    """The report for the terminal: the settings, one row per pair, the correlations, the notes."""
    r, long = report.recipe, report.long_epochs
    seeds = report.reference_seeds
    long_header = (f"{long}-epoch top-1 (seed {seeds[0]})" if len(seeds) == 1
                   else f"{long}-epoch top-1 (mean of seeds {', '.join(map(str, seeds))})")
    table = [[f"#{p.number}", p.named or "", p.why, fixed(p.latency_ms, 2), f"{p.short_top1:.3f}",
              fixed(p.long_top1, 3), fixed(p.rerun_top1, 3)] for p in report.pairs]
    lines = [f"study {report.study!r}: {len(report.pairs)} trials, short proxy {r.epochs} epoch(s) vs {long} "
             f"({report.multiplier}x), {r.data} at {r.resolution} px, batch {r.batch_size}, lr {r.lr:g}",
             "", format_table(["trial", "named", "sampled as", "latency ms", f"short top-1 (seed {r.seed})",
                               long_header,
                               f"short rerun top-1 (seed {report.seed})"], table), ""]
    for name, c in ((f"Spearman, short vs {long} epochs", report.spearman),
                    (f"Kendall tau-b, short vs {long} epochs", report.kendall),
                    (f"seed-to-seed Spearman, short seed {r.seed} vs {report.seed}", report.seed_spearman)):
        lines.append(f"{name}: {interval_text(c)}  (n={c.n})")
    if report.long_seed_spearman is not None:
        c = report.long_seed_spearman
        lines.append(f"seed-to-seed Spearman, {long} epochs seed {seeds[0]} vs {seeds[1]}: {interval_text(c)}  "
                     f"(n={c.n}; the reference's own noise)")
    if report.loss_spearman is not None:
        c = report.loss_spearman
        lines.append(f"Spearman, short held-out loss (lower first) vs {long}-epoch top-1: {interval_text(c)}  "
                     f"(n={c.n}; the same trainings scored by cross-entropy)")
    if report.train_loss_spearman is not None:
        c = report.train_loss_spearman
        lines.append(f"Spearman, short training loss over the last epoch (TSE-E, lower first) vs {long}-epoch top-1: "
                     f"{interval_text(c)}  (n={c.n}; free, collected while training)")
    for name, c in report.zero_cost.items():
        lines.append(f"Spearman, zero-cost {name} (untrained) vs {long} epochs: {interval_text(c)}  (n={c.n})")
    lines.append(f"95% intervals: percentile bootstrap over the pairs, {report.resamples} resamples; trained "
                 f"{report.trained} this run, {report.reused} read from the study")
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)
