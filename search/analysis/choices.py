"""The FasterNet paper's design choices, answered from a study with numbers and 95% intervals, or "not enough
trials": the best partial ratio at the study's budget, ReLU against GELU, BN against LN, stage 3's depth share."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from fasternet_space import NAMED_SPECS
from fasternet_space.space import Free
from fasternet_space.stats import (
    adjusted_ratio,
    bootstrap_two,
    geometric_mean_ratio,
    mean_difference,
    mean_interval,
)
from search.analysis.costs import Median, median_of
from search.analysis.data import NOT_ENOUGH, Level, level_records, show_value
from search.records.trial import TrialRecord
from search.space import SearchSpace

MIN_GROUP = 3  # fewer trials in a group: that comparison is "not enough trials"


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
    """`get` of each record whose `param` is `value` (2 and 2.0 alike), where it is not None."""
    level = Level(show_value(value), value=value)
    return [v for r in level_records(records, param, level) for v in [get(r)] if v is not None]


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
        accs = {show_value(v): _values(trained, free.param, v, lambda r: r.accuracy) for v in free.choices}
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
    """Latency of `other` over `base` for `param`: at equal FLOPs (the answer), then raw (geometric means,
    labelled confounded); the numbers go into `numbers` under latency_ratio_OTHER_over_BASE[_equal_flops].
    None: fewer than MIN_GROUP of either."""
    lat = {v: [r.latency_ms for r in measured if r.params.get(param) == v] for v in (base, other)}
    if min(len(v) for v in lat.values()) < MIN_GROUP:
        return None
    ratio = bootstrap_two(lat[base], lat[other], geometric_mean_ratio)
    key = f"latency_ratio_{other}_over_{base}"
    numbers[key] = {"value": ratio[0], "low": ratio[1], "high": ratio[2],
                    f"n_{base}": len(lat[base]), f"n_{other}": len(lat[other])}
    adjusted = equal_flops_ratio(measured, space, param, base, other)
    numbers[f"{key}_equal_flops"] = adjusted
    # The answer is the ratio at equal FLOPs: the raw one also compares sizes and other choices.
    return (f"{_equal_flops_text(adjusted, label)}; raw ratio {ratio[0]:.2f}x [{ratio[1]:.2f}, {ratio[2]:.2f}] "
            f"(geometric means, n={len(lat[other])} vs {len(lat[base])}: confounded by size and the other "
            f"choices, not the cost of {param})")


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
        return f"latency {label} at equal FLOPs: {NOT_ENOUGH} for the fit"
    return (f"latency {label} {fit['value']:.2f}x [{fit['low']:.2f}, {fit['high']:.2f}] at equal FLOPs and other "
            f"choices (log-linear fit, n={fit['n']})")


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


def paper_choices(trained: Sequence[TrialRecord], measured: Sequence[TrialRecord], front: Sequence[TrialRecord],
                  space: SearchSpace, budget_ms: float | None) -> list[Choice]:
    """Every choice above, in the report's order: partial ratio, activation, norm, stage 3's depth."""
    return [partial_ratio_choice(trained, space, budget_ms), activation_choice(trained, measured, space),
            norm_choice(trained, measured, space), stage3_choice(trained, front)]
