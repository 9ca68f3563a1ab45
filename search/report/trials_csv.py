"""The trials as a flat table (the CSV report): one row per trial, one line per row, units in the column names.

Columns: FIXED_COLUMNS, then `param_<name>` for every searched parameter of any trial (sorted by name,
per-stage entries in stage order: `param_depths[0]`, `param_depths[1]`, ...), then `reason` and `spec_json`
(the full spec as one-line JSON). Fractions and latencies have fixed decimals, G-values and millions 4
significant digits; an empty cell is a value the trial does not have.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from search.records.front import pick
from search.records.trial import TRAINED, TrialRecord

FIXED_COLUMNS = (
    "trial",  # the Optuna trial number
    "status",  # trained, over budget, pruned, invalid, failed, running, waiting
    "state",  # Optuna's: COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    "pareto",  # on the feasible Pareto front (decided on seed means where confirmed)
    "tied",  # picked: the trial best.yaml holds; tied: tied with the best within the noise; else empty
    "named",  # T0..L when the candidate is a named config
    "repeat_of",  # status repeat: the earlier trial with the same spec (its latency reused, a seed added to it)
    "rank_by",  # what the front ranks trained trials by: loss (the held-out loss) or top1
    "proxy_top1",  # held-out top-1 after the last epoch, a fraction; trained trials only
    "proxy_loss",  # held-out cross-entropy after the last epoch, nats per image (the same training, scored finer)
    "score",  # a training-free trial's objective (the zero-cost score named in score_name)
    "score_name",
    "loss",  # the held-out loss the front ranks by (rank_by loss): the seed mean where confirmed, else proxy_loss
    "loss_ci_low",  # its 95% interval: the per-image standard error, and the t-interval over seeds where confirmed
    "loss_ci_high",
    "loss_seed_std",  # standard deviation over seeds (confirmed trials only)
    "top1",  # the seed mean of the top-1 where confirmed, else proxy_top1 (what the front ranks by with rank_by top1)
    "top1_ci_low",  # its 95% interval: binomial on the test split, and over seeds where confirmed
    "top1_ci_high",
    "top1_seed_std",  # standard deviation over seeds (confirmed trials only)
    "seeds",  # how many seeds it was trained with
    "seed_top1",  # each seed's top-1, SEED:VALUE;SEED:VALUE, its own training first
    "seed_loss",  # each seed's held-out loss, the same way
    "test_images",  # held-out images the top-1 was measured on
    "learned_nothing",  # true when its top-1 cannot be told apart from chance
    "last_epoch_top1",  # top-1 after the last epoch it trained (a pruned trial's included)
    "epochs_trained",
    "latency_ms",
    "latency_ci_low_ms",
    "latency_ci_high_ms",
    "latency_settled",  # the latency's interval settled before the timing cap (false: a busy machine)
    "latency_source",  # measured, or predicted (by a latency table: never built nor timed)
    "latency_borderline",  # its first interval straddled the budget, so it was re-measured longer
    "over_budget_ms",  # measured latency minus the budget (negative: within it)
    "latency_reference",  # the rung it was timed in pairs with (empty: timed on its own)
    "latency_ratio",  # its median per-pair latency ratio to the reference: latency_ms = ratio x calibration_ms
    "latency_ratio_ci_low",  # the ratio's 95% interval
    "latency_ratio_ci_high",
    "latency_unit_ratio",  # its latency in T0's units: the ratio to its rung x the rung's links down to T0
    "calibration_ms",  # its rung's latency as calibrated for the study (T0's, or derived through the links)
    "latency_pairs",  # pairs timed
    "latency_early",  # over/under: timing stopped as soon as the interval lay wholly on that side of the budget
    "outside_cores",  # cores' worth of CPU other processes used while it was timed (a busy machine)
    "steal_share",  # share of the CPU time the hypervisor took away while it was timed
    "reference_min_ms",  # the reference's fastest call among its pairs: the machine's speed at the time
    "gmacs",  # G multiply-adds at batch 1
    # G multiply-adds per second: the plots' GFLOPS (the paper counts a multiply-add as one FLOP)
    "achieved_gflops",
    "params_m",  # millions of parameters
)
PARAM_PREFIX = "param_"
SCORE_PREFIX = "zc_"  # a zero-cost score of the untrained candidate
LAST_COLUMNS = ("reason", "spec_json")
LIST_SEPARATOR = ";"  # a list value in one cell: 1;2;8;2


def param_names(records: Sequence[TrialRecord]) -> list[str]:
    """Every searched parameter of any trial, sorted by name with numbers in numeric order."""
    names = {name for r in records for name in r.params}
    return sorted(names, key=lambda n: [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", n)])


def score_names(records: Sequence[TrialRecord]) -> list[str]:
    """Every zero-cost score stored for any trial, sorted."""
    return sorted({name for r in records for name in (r.zero_cost or {})})


def columns(records: Sequence[TrialRecord]) -> list[str]:
    return [*FIXED_COLUMNS, *(PARAM_PREFIX + n for n in param_names(records)),
            *(SCORE_PREFIX + n for n in score_names(records)), *LAST_COLUMNS]


def row(record: TrialRecord, params: Sequence[str], scores: Sequence[str] = (), tied: str = "") -> dict[str, str]:
    """One trial's cells, as text (`tied`: "picked", "tied" or "")."""
    ci = record.latency_ci_ms or (None, None)
    top1_ci = record.accuracy_ci or (None, None)
    loss_ci = record.loss_ci or (None, None)
    cells: dict[str, str] = {
        "trial": str(record.number),
        "status": record.status,
        "state": record.state,
        "pareto": "true" if record.pareto else "false",
        "tied": tied,
        "named": record.named or "",
        "repeat_of": "" if record.repeat_of is None else str(record.repeat_of),
        "rank_by": record.rank_by if record.status == TRAINED else "",
        "proxy_top1": _fixed(record.proxy_acc, 4),
        "proxy_loss": _fixed(record.proxy_loss, 4),
        "score": "" if record.score is None else f"{record.score:.6g}",
        "score_name": record.score_name or "",
        "loss": _fixed(record.loss, 4),
        "loss_ci_low": _fixed(loss_ci[0], 4),
        "loss_ci_high": _fixed(loss_ci[1], 4),
        "loss_seed_std": _fixed(record.loss_std, 4),
        "top1": _fixed(record.accuracy, 4),
        "top1_ci_low": _fixed(top1_ci[0], 4),
        "top1_ci_high": _fixed(top1_ci[1], 4),
        "top1_seed_std": _fixed(record.accuracy_std, 4),
        "seeds": str(len(record.seed_accs)) if record.seed_accs else "",
        "seed_top1": LIST_SEPARATOR.join(f"{seed}:{value:.4f}" for seed, value in record.seed_accs),
        "seed_loss": LIST_SEPARATOR.join(f"{seed}:{value:.4f}" for seed, value, _ in record.seed_losses),
        "test_images": "" if record.test_size is None else str(record.test_size),
        "learned_nothing": "true" if record.learned_nothing else ("false" if record.proxy_acc is not None else ""),
        "last_epoch_top1": _fixed(record.last_acc, 4),
        "epochs_trained": str(len(record.curve)),
        "latency_ms": _fixed(record.latency_ms, 3),
        "latency_ci_low_ms": _fixed(ci[0], 3),
        "latency_ci_high_ms": _fixed(ci[1], 3),
        "latency_settled": "" if record.latency_stable is None else str(record.latency_stable).lower(),
        "latency_source": record.latency_source or ("measured" if record.latency_ms is not None else ""),
        "latency_borderline": "" if record.latency_borderline is None else str(record.latency_borderline).lower(),
        "over_budget_ms": _fixed(record.over_budget_ms, 3),
        "latency_reference": record.latency_reference or "",
        "latency_ratio": _fixed(record.latency_ratio, 4),
        "latency_ratio_ci_low": _fixed((record.latency_ratio_ci or (None, None))[0], 4),
        "latency_ratio_ci_high": _fixed((record.latency_ratio_ci or (None, None))[1], 4),
        "latency_unit_ratio": _fixed(record.latency_unit_ratio, 4),
        "calibration_ms": _fixed(record.calibration_ms, 3),
        "latency_pairs": "" if record.latency_pairs is None else str(record.latency_pairs),
        "latency_early": record.latency_early or "",
        "outside_cores": _fixed(record.outside_cores, 2),
        "steal_share": _fixed(record.steal_share, 3),
        "reference_min_ms": _fixed(record.reference_min_ms, 3),
        "gmacs": _significant(None if record.flops is None else record.flops / 1e9),
        "achieved_gflops": _significant(None if record.flops_per_s is None else record.flops_per_s / 1e9),
        "params_m": _significant(None if record.param_count is None else record.param_count / 1e6),
    }
    for name in params:
        cells[PARAM_PREFIX + name] = _value(record.params.get(name))
    for name in scores:
        value = (record.zero_cost or {}).get(name)
        cells[SCORE_PREFIX + name] = "" if value is None else f"{value:.6g}"
    cells["reason"] = " ".join((record.reason or "").split())  # one line
    cells["spec_json"] = json.dumps(record.spec, separators=(",", ":")) if record.spec else ""
    return cells


def rows(records: Sequence[TrialRecord], rule: str | None = None) -> tuple[list[str], list[dict[str, str]]]:
    """The table's columns and its rows, one per trial in trial order (`rule`: the pick rule that marks the
    tied set and the picked trial; None: the default)."""
    params, scores = param_names(records), score_names(records)
    chosen = pick(list(records), rule) if rule else pick(list(records))
    marks = {r.number: "tied" for r in chosen.tied} if chosen else {}
    if chosen:
        marks[chosen.chosen.number] = "picked"
    return columns(records), [row(r, params, scores, marks.get(r.number, ""))
                              for r in sorted(records, key=lambda r: r.number)]


def _fixed(value: float | None, decimals: int) -> str:
    return "" if value is None else f"{value:.{decimals}f}"


def _significant(value: float | None, digits: int = 4) -> str:
    """`digits` significant digits, never in exponent notation: 0.3380, 12.35, 52340."""
    if value is None:
        return ""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    rounded = float(f"{value:.{digits - 1}e}")  # 9.99996 -> 10.00, not 10.000
    decimals = digits - 1 - math.floor(math.log10(abs(rounded)))
    return f"{rounded:.{decimals}f}" if decimals > 0 else str(int(rounded))


def _value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return LIST_SEPARATOR.join(_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
