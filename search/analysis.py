"""What a study says about its design space (RegNet's method, Radosavovic et al. 2020), as plain data.

`analyze(records, space, ...)` gives an `Analysis`:
- per free parameter, its importance for accuracy, latency and achieved FLOPS, from Optuna's evaluators
  (fANOVA and PED-ANOVA), with the number of trials behind each;
- EDFs of proxy error among the feasible trained trials (pycls style: one curve per value of a categorical
  parameter or per bin of a numeric one, n on each), the named configs left out (they are enqueued, not sampled);
- latency and achieved FLOPS per value or bin of each parameter: medians with distribution-free 95% intervals,
  over every candidate whose latency was measured (trained, over budget, pruned, scored or a census);
- the FasterNet paper's choices answered from the study, each with numbers and 95% intervals, or "not enough
  trials": the best partial ratio at the study's budget, ReLU against GELU, BN against LN, stage 3's depth share;
- warnings: a study not sampled at random (a guided sampler biases EDFs and importances), too few trials.
No plotting and no printing here: `search.analysis_report` draws and writes it.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from fasternet_space import NAMED_SPECS
from fasternet_space.spec import SpecError

from .analysis_stats import (
    adjusted_ratio,
    bootstrap_two,
    edf,
    geometric_mean_ratio,
    mean_difference,
    mean_interval,
    median_interval,
)
from .errors import SearchError
from .space import Free, SearchSpace
from .trial import TRAINED, TrialRecord

MIN_IMPORTANCE_TRIALS = 10  # fewer: no importance (a forest or a Parzen estimator of a handful says nothing)
MIN_GROUP = 3  # fewer trials in a group: that comparison is "not enough trials"
MIN_CURVE = 10  # an EDF curve of fewer trials is marked unstable
STABLE_EDF = 100  # RegNet compares EDFs of about 100 or more models per design space
MAX_LEVELS = 5  # a numeric parameter with at most this many values gets one curve per value, else bins
BINS = 4
# PED-ANOVA's target quantile: what it takes to reach the space's best quarter (Optuna's default, the top 10%, is
# a search's question, and on 60 random trials its top 6 makes chance correlations look important), raised so
# that the top holds at least PED_ANOVA_MIN_TOP trials (Optuna advises at least 5).
PED_ANOVA_TOP = 0.25
PED_ANOVA_MIN_TOP = 10
NOT_ENOUGH = "not enough trials"

# What each importance is computed on (lower is better for every one, as PED-ANOVA assumes).
TARGETS = {
    "accuracy": "proxy error (1 - top-1) of the feasible trained trials",
    "latency": "log latency of every measured candidate (costs multiply)",
    "flops_per_s": "-log achieved FLOPS of every measured candidate",
}


# --------------------------------------------------------------------------------------------- parameters


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
            return v == self.value and type(v) is type(self.value) or _same_number(v, self.value)
        if isinstance(v, bool) or not isinstance(v, int | float):
            return False
        return self.low <= v <= self.high if self.closed else self.low <= v < self.high


def _same_number(a: Any, b: Any) -> bool:
    numbers = int | float
    return (isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool | str)
            and not isinstance(b, bool | str) and float(a) == float(b))


def levels(free: Free) -> list[Level]:
    """A categorical parameter's values; a numeric one's values when few, else BINS bins of its range."""
    values = free.grid_values()
    if values is not None and (free.choices is not None or len(values) <= MAX_LEVELS):
        return [Level(_show(v), value=v) for v in values]
    if values is not None:  # many integer (or stepped) values: contiguous groups of about equal size
        return [Level(f"{_show(part[0])}–{_show(part[-1])}", low=part[0], high=part[-1])
                for part in (list(p) for p in np.array_split(np.array(values), BINS)) if part]
    edges = (np.geomspace if free.log else np.linspace)(free.low, free.high, BINS + 1)
    return [Level(f"{_show(lo)}–{_show(hi)}", low=float(lo), high=float(hi), closed=i == BINS - 1)
            for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True))]


def _show(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return f"{float(v):.4g}"
    return str(v.item() if isinstance(v, np.generic) else v)


def distribution(free: Free) -> BaseDistribution:
    """The Optuna distribution `Free.suggest` samples from."""
    if free.choices is not None:
        return CategoricalDistribution(list(free.choices))
    if free.integer:
        return IntDistribution(int(free.low), int(free.high), log=free.log, step=int(free.step or 1))
    return FloatDistribution(free.low, free.high, log=free.log, step=free.step)


# --------------------------------------------------------------------------------------------- importances


@dataclass(frozen=True)
class Importance:
    """Importances of the free parameters for one target by one evaluator (normalised to sum to 1)."""

    target: str  # a key of TARGETS
    evaluator: str  # fanova or ped-anova
    n_trials: int
    values: dict[str, float]  # parameter -> importance, most important first; empty when not computed
    note: str | None = None  # why it was not computed, or how (PED-ANOVA's quantile)

    @property
    def ranking(self) -> list[str]:
        return list(self.values)


def importances(records: Sequence[TrialRecord], space: SearchSpace, target: str, seed: int = 0) -> list[Importance]:
    """fANOVA and PED-ANOVA importances of every free parameter for `target` (see TARGETS)."""
    frees = space.free_params
    value_of = _TARGET_VALUE[target]
    chosen = [(r, value_of(r)) for r in _population(records, target, frees)]
    chosen = [(r, v) for r, v in chosen if v is not None and math.isfinite(v)]
    n = len(chosen)
    if n < MIN_IMPORTANCE_TRIALS or not frees:
        why = f"{NOT_ENOUGH}: {n} < {MIN_IMPORTANCE_TRIALS}" if frees else "the space has no free parameter"
        return [Importance(target, name, n, {}, why) for name in ("fanova", "ped-anova")]
    distributions = {f.param: distribution(f) for f in frees}
    study = optuna.create_study(direction="minimize")  # in memory: only the trials chosen, one objective
    study.add_trials([optuna.trial.create_trial(params={p: r.params[p] for p in distributions},
                                                distributions=distributions, value=v) for r, v in chosen])
    quantile = max(PED_ANOVA_TOP, min(0.5, PED_ANOVA_MIN_TOP / n))
    out = []
    for name, make in (("fanova", lambda: optuna.importance.FanovaImportanceEvaluator(seed=seed)),
                       ("ped-anova", lambda: optuna.importance.PedAnovaImportanceEvaluator(
                           target_quantile=quantile, evaluate_on_local=False))):
        note = f"top {quantile:.0%} of {n} trials against all of them" if name == "ped-anova" else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # experimental-feature warnings
                values = optuna.importance.get_param_importances(study, evaluator=make())
        except ImportError:
            out.append(Importance(target, name, n, {}, "fANOVA needs scikit-learn: pip install -e '.[analysis]'"))
            continue
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # degenerate data, e.g. every value equal
            out.append(Importance(target, name, n, {}, f"could not be computed: {str(exc).splitlines()[0][:200]}"))
            continue
        out.append(Importance(target, name, n, {k: float(v) for k, v in values.items()}, note))
    return out


def _full(record: TrialRecord, frees: Sequence[Free]) -> bool:
    return all(f.param in record.params for f in frees)


def _population(records: Sequence[TrialRecord], target: str, frees: Sequence[Free]) -> list[TrialRecord]:
    if target == "accuracy":
        return [r for r in records if r.status == TRAINED and r.accuracy is not None and _full(r, frees)]
    return [r for r in records if r.latency_ms and _full(r, frees)]


def _log(value: float | None) -> float | None:
    return math.log(value) if value is not None and value > 0 else None


_TARGET_VALUE: dict[str, Callable[[TrialRecord], float | None]] = {
    "accuracy": lambda r: None if r.accuracy is None else 1.0 - r.accuracy,
    "latency": lambda r: _log(r.latency_ms),
    "flops_per_s": lambda r: None if _log(_flops_per_s(r)) is None else -_log(_flops_per_s(r)),
}


def _flops_per_s(record: TrialRecord) -> float | None:
    if record.flops_per_s is not None:
        return record.flops_per_s
    if record.flops and record.latency_ms:
        return record.flops / (record.latency_ms / 1e3)
    return None


# --------------------------------------------------------------------------------------------- EDFs


@dataclass(frozen=True)
class EdfCurve:
    """The EDF of proxy error of the trained trials with one value (or in one bin) of a parameter."""

    label: str
    n: int
    errors: list[float]  # sorted, fractions
    cdf: list[float]  # share of the curve's trials with at most that error
    min_error: float
    mean_error: float
    stable: bool  # n >= MIN_CURVE


@dataclass(frozen=True)
class EdfGroup:
    param: str
    curves: list[EdfCurve]  # one per value or bin that has trials


def edf_groups(population: Sequence[TrialRecord], space: SearchSpace) -> list[EdfGroup]:
    groups = []
    for free in space.free_params:
        curves = []
        for level in levels(free):
            errors = [1.0 - r.accuracy for r in population if free.param in r.params and level.holds(r.params[free.param])]
            if errors:
                xs, ys = edf(errors)
                curves.append(EdfCurve(level.label, len(xs), xs, ys, xs[0], float(np.mean(xs)), len(xs) >= MIN_CURVE))
        groups.append(EdfGroup(free.param, curves))
    return groups


# --------------------------------------------------------------------------------------------- costs


@dataclass(frozen=True)
class Median:
    """A median with its distribution-free 95% interval, over n trials."""

    n: int
    median: float
    low: float
    high: float


def median_of(values: Sequence[float]) -> Median | None:
    found = median_interval(values)
    return None if found is None else Median(len(values), *found)


@dataclass(frozen=True)
class CostRow:
    label: str
    n: int
    latency_ms: Median
    gflops_per_s: Median | None  # achieved G multiply-adds per second
    gflops: Median | None  # G multiply-adds at batch 1


@dataclass(frozen=True)
class CostGroup:
    param: str
    rows: list[CostRow]


def cost_groups(measured: Sequence[TrialRecord], space: SearchSpace) -> list[CostGroup]:
    groups = []
    for free in space.free_params:
        rows = []
        for level in levels(free):
            chosen = [r for r in measured if free.param in r.params and level.holds(r.params[free.param])]
            if not chosen:
                continue
            per_s = [_flops_per_s(r) / 1e9 for r in chosen if _flops_per_s(r)]
            flops = [r.flops / 1e9 for r in chosen if r.flops]
            rows.append(CostRow(level.label, len(chosen), median_of([r.latency_ms for r in chosen]),
                                median_of(per_s), median_of(flops)))
        groups.append(CostGroup(free.param, rows))
    return groups


# --------------------------------------------------------------------------------------------- the paper's choices


@dataclass(frozen=True)
class Choice:
    """One of the paper's design choices, answered from the study (or "not enough trials")."""

    key: str  # partial_ratio, activation, norm, stage3_depth
    question: str
    paper: str  # what the paper chose
    answered: bool
    answer: str  # one or two sentences, numbers with intervals; or why it cannot be answered
    numbers: dict[str, Any] = field(default_factory=dict)


def _values(records: Sequence[TrialRecord], param: str, value: Any, get: Callable[[TrialRecord], float | None]) -> list[float]:
    level = Level(_show(value), value=value)
    return [v for r in records if param in r.params and level.holds(r.params[param]) for v in [get(r)] if v is not None]


@dataclass(frozen=True)
class Mean:
    """A mean with its bootstrap 95% interval, over n trials."""

    n: int
    mean: float
    low: float
    high: float


def _fmt_mean(m: Mean) -> str:
    return f"{100 * m.mean:.1f} [{100 * m.low:.1f}, {100 * m.high:.1f}] (n={m.n})"


def _fmt_percent(m: Median | None) -> str:
    if m is None:
        return "n/a"
    return f"{100 * m.median:.0f}% [{100 * m.low:.0f}%, {100 * m.high:.0f}%] (n={m.n})"


def _free(space: SearchSpace, param: str) -> Free | None:
    return next((f for f in space.free_params if f.param == param), None)


def partial_ratio_choice(trained: Sequence[TrialRecord], space: SearchSpace, budget_ms: float | None) -> Choice:
    question = "Which partial ratio is best at the study's latency budget?"
    paper = "r = 1/4 for every model"
    frees = [f for f in space.free_params if f.param.startswith("partial_ratio") and f.choices is not None]
    if not frees:
        return Choice("partial_ratio", question, paper, False, "partial_ratio is not a free choice in this space")
    budget = f"the {budget_ms:g} ms budget" if budget_ms is not None else "the study's budget"
    parts, numbers, answered = [], {}, False
    for free in frees:
        accs = {_show(v): _values(trained, free.param, v, lambda r: r.accuracy) for v in free.choices}
        enough = {k: Mean(len(v), *mean_interval(v)) for k, v in accs.items() if len(v) >= MIN_GROUP}
        numbers[free.param] = {k: asdict(m) for k, m in enough.items()}
        if len(enough) < 2:
            parts.append(f"{free.param}: {NOT_ENOUGH} (fewer than {MIN_GROUP} trained trials per value for two values)")
            continue
        answered = True
        best = max(enough, key=lambda k: enough[k].mean)
        others = [k for k in enough if k != best]
        clear = all(enough[best].low > enough[k].high for k in others)
        listing = "; ".join(f"{k}: {_fmt_mean(m)}" for k, m in enough.items())
        verdict = ("its interval is above every other's" if clear else "but the intervals overlap: no clear winner")
        parts.append(f"{free.param} = {best} has the highest mean top-1 (%) within {budget}, {verdict} ({listing})")
    return Choice("partial_ratio", question, paper, answered, ". ".join(parts), numbers)


def activation_choice(trained: Sequence[TrialRecord], measured: Sequence[TrialRecord], space: SearchSpace) -> Choice:
    question = "ReLU or GELU: accuracy (small and large models) and latency?"
    paper = "ReLU for T0-T2 (speed), GELU for S-L (accuracy)"
    free = _free(space, "act")
    if free is None or not {"relu", "gelu"} <= set(free.choices or ()):
        return Choice("activation", question, paper, False, "act with relu and gelu is not a free choice in this space")
    numbers: dict[str, Any] = {}
    parts = []
    latency = _latency_ratio(measured, space, "act", "relu", "gelu", "GELU / ReLU", numbers)
    if latency is not None:
        parts.append(latency)
    # accuracy, split at the median FLOPs of the trained trials: the paper's small and large models
    flops = sorted(r.flops for r in trained if r.flops)
    cut = flops[len(flops) // 2] if flops else None
    for half, keep in (("smaller", lambda r: r.flops is not None and r.flops < cut),
                       ("larger", lambda r: r.flops is not None and r.flops >= cut)):
        acc = {a: [r.accuracy for r in trained if cut is not None and keep(r) and r.params.get("act") == a]
               for a in ("relu", "gelu")}
        if min(len(v) for v in acc.values()) < MIN_GROUP:
            parts.append(f"{half} half by FLOPs: {NOT_ENOUGH} for accuracy (relu {len(acc['relu'])}, "
                         f"gelu {len(acc['gelu'])}; {MIN_GROUP} each needed)")
            continue
        diff = bootstrap_two(acc["relu"], acc["gelu"], mean_difference)
        numbers[f"top1_gelu_minus_relu_{half}"] = {"value": diff[0], "low": diff[1], "high": diff[2],
                                                   "n_relu": len(acc["relu"]), "n_gelu": len(acc["gelu"])}
        verdict = "GELU better" if diff[1] > 0 else "ReLU better" if diff[2] < 0 else "no clear difference"
        parts.append(f"{half} half by FLOPs: mean top-1 GELU - ReLU {100 * diff[0]:+.1f} points "
                     f"[{100 * diff[1]:+.1f}, {100 * diff[2]:+.1f}] ({verdict}, n={len(acc['gelu'])} vs {len(acc['relu'])})")
    answered = bool(numbers)
    return Choice("activation", question, paper, answered, "; ".join(parts) if parts else NOT_ENOUGH, numbers)


def _latency_ratio(measured: Sequence[TrialRecord], space: SearchSpace, param: str, base: str, other: str,
                   label: str, numbers: dict[str, Any]) -> str | None:
    """Latency of `other` over `base` for `param`: raw (geometric means) and at equal FLOPs; the numbers go
    into `numbers` under latency_ratio_OTHER_over_BASE[_equal_flops]. None: fewer than MIN_GROUP of either."""
    lat = {v: [r.latency_ms for r in measured if r.params.get(param) == v] for v in (base, other)}
    if min(len(v) for v in lat.values()) < MIN_GROUP:
        return None
    ratio = bootstrap_two(lat[base], lat[other], geometric_mean_ratio)
    key = f"latency_ratio_{other}_over_{base}"
    numbers[key] = {"value": ratio[0], "low": ratio[1], "high": ratio[2],
                    f"n_{base}": len(lat[base]), f"n_{other}": len(lat[other])}
    adjusted = equal_flops_ratio(measured, space, param, base, other)
    numbers[f"{key}_equal_flops"] = adjusted
    return (f"latency {label} {ratio[0]:.2f}x [{ratio[1]:.2f}, {ratio[2]:.2f}] (geometric means, "
            f"n={len(lat[other])} vs {len(lat[base])}), {_equal_flops_text(adjusted, label)}")


def norm_choice(trained: Sequence[TrialRecord], measured: Sequence[TrialRecord], space: SearchSpace) -> Choice:
    question = "What does LayerNorm cost against BatchNorm (folded into the convolution at inference)?"
    paper = "BN everywhere: it folds into the adjacent convolution, LN does not"
    free = _free(space, "norm")
    if free is None or not {"bn", "ln"} <= set(free.choices or ()):
        return Choice("norm", question, paper, False, "norm with bn and ln is not a free choice in this space")
    numbers: dict[str, Any] = {}
    text = _latency_ratio(measured, space, "norm", "bn", "ln", "LN / BN", numbers)
    if text is None:
        n_bn, n_ln = (sum(r.params.get("norm") == n for r in measured) for n in ("bn", "ln"))
        return Choice("norm", question, paper, False, f"{NOT_ENOUGH}: {n_bn} measured with BN, {n_ln} with LN; "
                      f"{MIN_GROUP} each needed")
    acc = {n: [r.accuracy for r in trained if r.params.get("norm") == n] for n in ("bn", "ln")}
    if min(len(v) for v in acc.values()) >= MIN_GROUP:
        diff = bootstrap_two(acc["bn"], acc["ln"], mean_difference)
        numbers["top1_ln_minus_bn"] = {"value": diff[0], "low": diff[1], "high": diff[2]}
        text += (f"; mean top-1 LN - BN {100 * diff[0]:+.1f} points [{100 * diff[1]:+.1f}, {100 * diff[2]:+.1f}] "
                 f"(n={len(acc['ln'])} vs {len(acc['bn'])})")
    else:
        text += f"; accuracy: {NOT_ENOUGH}"
    return Choice("norm", question, paper, True, text, numbers)


def _stage3_share(record: TrialRecord) -> float | None:
    depths = (record.spec or {}).get("depths")
    if not isinstance(depths, list) or len(depths) < 3 or not sum(depths):
        return None
    return depths[2] / sum(depths)


def equal_flops_ratio(measured: Sequence[TrialRecord], space: SearchSpace, param: str, base: str,
                      other: str) -> dict[str, Any] | None:
    """The latency of `other` over `base` at equal FLOPs and equal other text choices (act, norm, ...): a
    log-linear fit of latency on log FLOPs, the choice and the other text-valued parameters (a random sample
    leaves each comparison confounded by width and depth; FLOPs carry those, and the choice barely changes
    them). None when it cannot be fitted."""
    rows = [r for r in measured if r.params.get(param) in (base, other) and r.flops and r.latency_ms]
    texts = [f for f in space.free_params if f.param != param and f.choices is not None
             and all(isinstance(c, str) for c in f.choices)]
    covariates = [[math.log(r.flops) for r in rows]]
    for free in texts:
        covariates += [[float(r.params.get(free.param) == c) for r in rows] for c in free.choices[1:]]
    fit = adjusted_ratio([r.latency_ms for r in rows], [r.params[param] == other for r in rows], covariates)
    if fit is None:
        return None
    return {"value": fit[0], "low": fit[1], "high": fit[2], "n": len(rows), "dof": fit[3],
            "covariates": ["log FLOPs", *(f.param for f in texts)]}


def _equal_flops_text(fit: dict[str, Any] | None, label: str) -> str:
    if fit is None:
        return f"at equal FLOPs: {NOT_ENOUGH} for the fit"
    return (f"at equal FLOPs and other choices {label} {fit['value']:.2f}x [{fit['low']:.2f}, {fit['high']:.2f}] "
            f"(log-linear fit, n={fit['n']})")


def stage3_choice(trained: Sequence[TrialRecord], front: Sequence[TrialRecord]) -> Choice:
    question = "What share of the depth do the front's networks put in stage 3?"
    paper_shares = sorted(s.depths[2] / sum(s.depths) for s in NAMED_SPECS.values() if len(s.depths) >= 3)
    paper = f"most depth in stage 3: {paper_shares[0]:.0%}-{paper_shares[-1]:.0%} of the blocks in T0..L"
    shares = [s for s in map(_stage3_share, front) if s is not None]
    if len(shares) < MIN_GROUP:
        return Choice("stage3_depth", question, paper, False, f"{NOT_ENOUGH}: {len(shares)} trained trials on the "
                      f"front; {MIN_GROUP} needed")
    on_front = median_of(shares)
    everyone = median_of([s for s in map(_stage3_share, trained) if s is not None])
    text = (f"median stage-3 share of the blocks on the front {_fmt_percent(on_front)}, against "
            f"{_fmt_percent(everyone)} among all feasible trained trials (what the sampler drew)")
    return Choice("stage3_depth", question, paper, True, text,
                  {"front": asdict(on_front), "all_trained": asdict(everyone) if everyone else None,
                   "paper_named": paper_shares})


# --------------------------------------------------------------------------------------------- the analysis


@dataclass(frozen=True)
class Analysis:
    study: str | None
    budget_ms: float | None
    samplers: list[str] | None  # every sampler that added trials (None: not recorded)
    counts: dict[str, int]  # trials per status
    params: list[str]  # the space's free parameters, as the space names them
    n_trained: int  # feasible trained trials with every free parameter
    n_edf: int  # of those, sampled (named configs left out): the EDFs' population
    n_measured: int  # candidates with a latency (measured, or predicted by a latency table)
    n_predicted: int  # of those, latencies a latency table predicted (--latency auto|predicted), never timed
    importances: list[Importance]
    edfs: list[EdfGroup]
    costs: list[CostGroup]
    choices: list[Choice]
    warnings: list[str]
    notes: list[str]

    def importance(self, target: str, evaluator: str) -> Importance:
        return next(i for i in self.importances if i.target == target and i.evaluator == evaluator)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["targets"] = dict(TARGETS)
        return data


def analyze(records: Sequence[TrialRecord], space: SearchSpace, study_name: str | None = None,
            budget_ms: float | None = None, samplers: list[str] | None = None, screened: bool = False,
            seed: int = 0) -> Analysis:
    """The analysis of a study's trial records over its space (see the module's docstring)."""
    frees = space.free_params
    trained = [r for r in records if r.status == TRAINED and r.accuracy is not None and _full(r, frees)]
    sampled = [r for r in trained if not r.named]
    measured = [r for r in records if r.latency_ms and _full(r, frees)]
    front = [r for r in trained if r.pareto]
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1

    warns, notes = [], []
    guided = [s for s in samplers or [] if s not in ("random", "grid")]
    if samplers is None:
        warns.append("the study does not record its sampler (made before samplers were stored): EDFs and "
                     "importances describe the space only when it was sampled at random")
    elif guided:
        warns.append(f"sampled with {', '.join(guided)}: a guided sampler concentrates its trials where it expects "
                     "good results, so EDFs and importances describe where it searched, not the space; for the "
                     "space, search with --sampler random (or a census, --proxy none)")
    if screened:
        warns.append("the trained trials were chosen by a zero-cost screen (--screen): the EDFs describe that "
                     "selection, not the space")
    if not trained:
        notes.append("accuracy parts (accuracy importances, EDFs, the accuracy side of the paper's choices) need "
                     "trained trials; this study has none" + (" (a census, --proxy none)" if counts.get("measured")
                                                            else ""))
    elif len(sampled) < STABLE_EDF:
        warns.append(f"EDFs rest on {len(sampled)} sampled trained trials: too few for a stable EDF (RegNet "
                     f"compares about {STABLE_EDF} or more per design space); curves of fewer than {MIN_CURVE} "
                     "trials are marked")
    predicted = sum(r.latency_source == "predicted" for r in measured)
    if predicted:
        notes.append(f"{predicted} of the {len(measured)} latencies are a latency table's predictions (--latency "
                     "auto or predicted), not measurements: the latency and FLOPS importances and costs rest on "
                     "both, and carry the table's error (see `cli.py profile`)")
    named_out = len(trained) - len(sampled)
    if named_out:
        notes.append(f"{named_out} named config(s) left out of the EDFs: enqueued, not sampled")
    result = []
    for target in TARGETS:
        result += importances(records, space, target, seed=seed)
    choices = [partial_ratio_choice(trained, space, budget_ms), activation_choice(trained, measured, space),
               norm_choice(trained, measured, space), stage3_choice(trained, front)]
    return Analysis(study=study_name, budget_ms=budget_ms, samplers=samplers, counts=counts,
                    params=[f.param for f in frees], n_trained=len(trained), n_edf=len(sampled),
                    n_measured=len(measured), n_predicted=predicted, importances=result, edfs=edf_groups(sampled, space),
                    costs=cost_groups(measured, space), choices=choices, warnings=warns, notes=notes)


def analyze_study(study: optuna.Study, seed: int = 0) -> Analysis:
    """The analysis of a stored study: its records over its space, budget and samplers."""
    from .figure_data import study_budget
    from .study import SAMPLERS_ATTR
    from .trial import read_trials

    samplers = study.user_attrs.get(SAMPLERS_ATTR)
    return analyze(read_trials(study), study_space(study), study.study_name, study_budget(study),
                   samplers=list(samplers) if isinstance(samplers, list) else None,
                   screened=bool(study.user_attrs.get("screened")), seed=seed)


def study_space(study: optuna.Study) -> SearchSpace:
    """The space a study searched: its space file where that is still the same file (its SHA-256 is in the
    setting), else the free parameters as its trials' distributions record them."""
    setting = study.user_attrs.get("setting")
    setting = setting if isinstance(setting, dict) else {}
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
