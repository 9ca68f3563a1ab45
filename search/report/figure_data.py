"""What the Pareto figure shows, worked out from trial records as plain data (no plotly).

`figure_data(records, ...)` gives a `FigureData`: the points to draw (status, top-1 in %, G multiply-adds,
achieved GFLOPS, hover text), the Pareto front, the axes (linear or log, with their ticks), the lines of
equal achieved FLOPS, where the named configs' labels go, the measurement protocol and the title.
`search.report.figure` only draws it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from fasternet_space.measure import Protocol
from fasternet_space.report import human
from search.records import study_attrs
from search.records.front import pareto_front
from search.records.trial import (
    FAILED,
    INVALID,
    MEASURED,
    OVER_BUDGET,
    PRUNED,
    RUNNING,
    SCORED,
    TRAINED,
    WAITING,
    TrialRecord,
    read_trials,
)

SPEC_KEYS = ("embed_dim", "depths", "partial_ratio", "mlp_ratio", "act", "norm")  # shown in the hover text
DRAWN = (TRAINED, SCORED, MEASURED, OVER_BUDGET, PRUNED, FAILED)  # statuses drawn when the trial has a measured latency
TOP, BOTTOM = "top center", "bottom center"  # label positions


# --------------------------------------------------------------------------------------------- points


@dataclass(frozen=True)
class Point:
    number: int
    status: str  # one of search.records.trial.STATUSES (those in DRAWN)
    pareto: bool
    named: str | None
    latency_ms: float
    acc: float | None  # top-1 in percent (seed mean where confirmed); a pruned trial's at its last epoch
    acc_ci: tuple[float, float] | None  # its 95% interval in percent (trained trials)
    gmacs: float | None  # G multiply-adds at batch 1
    gflops_per_s: float | None  # achieved G multiply-adds per second
    hover: str
    predicted: bool = False  # its latency is a latency table's prediction (never built nor timed)


def point(record: TrialRecord) -> Point | None:
    """The trial as a point to draw, or None when it has no measured latency (or is still running)."""
    if record.status not in DRAWN or record.latency_ms is None or record.latency_ms <= 0:
        return None
    acc = record.accuracy if record.status == TRAINED else record.last_acc if record.status == PRUNED else None
    ci = record.accuracy_ci if record.status == TRAINED else None
    scale = 100.0  # top-1 in percent; a training-free trial's score as it is
    if record.status == SCORED:
        acc, scale = record.score, 1.0
    per_s = record.flops_per_s
    if per_s is None and record.flops is not None:
        per_s = record.flops / (record.latency_ms / 1e3)
    return Point(
        number=record.number, status=record.status, pareto=record.pareto, named=record.named,
        latency_ms=record.latency_ms, acc=None if acc is None else scale * acc,
        acc_ci=None if ci is None else (100.0 * ci[0], 100.0 * ci[1]),
        gmacs=record.flops / 1e9 if record.flops else None, gflops_per_s=None if per_s is None else per_s / 1e9,
        hover=hover_text(record, None if acc is None else 100.0 * acc),
        predicted=record.latency_source == "predicted",
    )


def status_text(record: TrialRecord) -> str:
    """The status, with where a trained trial stands and by how much an over-budget one missed."""
    if record.status == TRAINED:
        return "trained, on the Pareto front" if record.pareto else "trained, behind the front"
    if record.status == OVER_BUDGET and record.over_budget_ms is not None:
        how = " (predicted by the latency table)" if record.latency_source == "predicted" else ""
        return f"over budget by {record.over_budget_ms:.2f} ms{how}"
    return record.status


def hover_text(record: TrialRecord, acc_percent: float | None) -> str:
    title = f"<b>trial #{record.number}" + (f" · {record.named}" if record.named else "") + "</b>"
    lines = [f"{title} ({status_text(record)})"]
    if record.status == SCORED:
        lines.append(f"zero-cost {record.score_name}: {record.score:.4g} (untrained)")
    elif acc_percent is not None:
        last = " (last epoch before pruning)" if record.status == PRUNED else ""
        ci = record.accuracy_ci if record.status == TRAINED else None
        interval = f", 95% CI {100 * ci[0]:.1f}–{100 * ci[1]:.1f} %" if ci else ""
        seeds = f", mean of {len(record.seed_accs)} seeds" if record.confirmed else ""
        lines.append(f"proxy top-1: {acc_percent:.1f} %{last}{interval}{seeds}")
    if record.latency_ms is not None:
        ci = record.latency_ci_ms
        lines.append(f"latency: {record.latency_ms:.2f} ms" + (f" (CI {ci[0]:.2f}–{ci[1]:.2f} ms)" if ci else ""))
    cost = []
    if record.flops is not None:
        cost.append(f"FLOPs: {human(record.flops)} multiply-adds")
    if record.param_count is not None:
        cost.append(f"params: {human(record.param_count)}")
    if cost:
        lines.append(" · ".join(cost))
    if record.flops_per_s is not None:
        lines.append(f"achieved: {record.flops_per_s / 1e9:.1f} GFLOPS")
    spec = record.spec or {}
    fields = [f"{k} {_fmt(spec[k])}" for k in SPEC_KEYS if k in spec]
    lines += [" · ".join(fields[i:i + 2]) for i in range(0, len(fields), 2)]
    if record.reason:
        lines.append(_wrap(f"why: {record.reason}"))
    return "<br>".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _wrap(text: str, width: int = 70, max_lines: int = 4) -> str:
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "<br>".join(lines[:max_lines])


# --------------------------------------------------------------------------------------------- axes


@dataclass(frozen=True)
class Axis:
    log: bool
    lo: float  # data units
    hi: float

    @property
    def range(self) -> list[float]:
        """Plotly's axis range (log10 of the ends on a log axis)."""
        return [math.log10(self.lo), math.log10(self.hi)] if self.log else [self.lo, self.hi]

    def frac(self, value: float) -> float:
        """Where a value sits along the axis, 0..1."""
        if self.log:
            return (math.log10(value) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return (value - self.lo) / (self.hi - self.lo)

    def at(self, frac: float) -> float:
        """The value at a fraction along the axis (the inverse of `frac`)."""
        if self.log:
            return 10 ** (math.log10(self.lo) + frac * (math.log10(self.hi) - math.log10(self.lo)))
        return self.lo + frac * (self.hi - self.lo)

    def coord(self, value: float) -> float:
        """An annotation's coordinate: log axes take log10 of the value."""
        return math.log10(value) if self.log else value

    def ticks(self) -> dict[str, Any]:
        """Log axes: ticks at 1, 2, 5 x 10^k with plain numbers (plotly's default labels 2..9 in every decade)."""
        if not self.log:
            return {}
        values = [m * 10.0 ** k for k in range(math.floor(math.log10(self.lo)) - 1, math.ceil(math.log10(self.hi)) + 1)
                  for m in (1, 2, 5)]
        values = [v for v in values if self.lo <= v <= self.hi]
        return dict(tickvals=values, ticktext=[f"{v:g}" for v in values])

    def widened(self, right: float = 0.0, top: float = 0.0) -> Axis:
        """The same axis with room added at the high end (a fraction of its span)."""
        extra = right or top
        if self.log:
            return Axis(True, self.lo, self.hi * (self.hi / self.lo) ** extra)
        return Axis(False, self.lo, self.hi + (self.hi - self.lo) * extra)

    def middle(self, lo: float) -> float:
        """Halfway between `lo` and the high end, as the axis shows it."""
        return math.sqrt(lo * self.hi) if self.log else (lo + self.hi) / 2


def fit_axis(values: Sequence[float | None], pad: float = 0.07, log_ratio: float = 8.0, zero: bool = False) -> Axis:
    """An axis around the positive values: log when they span `log_ratio` or more, padded at both ends."""
    positive = [v for v in values if v is not None and v > 0]
    if not positive:
        return Axis(False, 0.0, 1.0)
    lo, hi = min(positive), max(positive)
    if hi / lo >= log_ratio:
        span = max(math.log10(hi / lo), 0.3)
        return Axis(True, lo / 10 ** (pad * span), hi * 10 ** (pad * span))
    span = max(hi - lo, 0.1 * hi)
    return Axis(False, 0.0 if zero else max(lo - pad * span, 0.0), hi + pad * span)


# --------------------------------------------------------------------------------------------- lines and labels


def flops_levels(gflops: Sequence[float]) -> list[float]:
    """Lines of equal FLOPS: a doubling series through 10 GFLOPS, at most 5, around the achieved values."""
    gflops = [g for g in gflops if g and g > 0]
    if not gflops:
        return [10.0, 20.0, 40.0, 80.0]
    lo, hi = min(gflops) / 4, max(gflops) * 2
    levels = [10.0 * 2.0 ** k for k in range(-12, 16)]
    chosen = [g for g in levels if lo <= g <= hi]
    middle = math.log(sorted(gflops)[len(gflops) // 2])
    return sorted(sorted(chosen, key=lambda g: abs(math.log(g) - middle))[:5])


def level_text(gflops: float) -> str:
    return f"{gflops / 1000:g} TFLOPS" if gflops >= 1000 else f"{gflops:g} GFLOPS"


@dataclass(frozen=True)
class FlopsLine:
    """G multiply-adds = GFLOPS x latency (s), across the panel, and where its label goes."""

    gflops: float
    xs: list[float]  # latency, ms
    ys: list[float]  # G multiply-adds
    label_x: float
    label_y: float
    label_below: bool  # the line leaves through the top: the label hangs below it
    text: str


def flops_line(gflops: float, xaxis: Axis, yaxis: Axis) -> FlopsLine | None:
    """The line of `gflops` inside the panel, or None when it does not cross it."""
    x0 = max(xaxis.lo, yaxis.lo * 1e3 / gflops, 1e-9)
    x1 = min(xaxis.hi, yaxis.hi * 1e3 / gflops)
    if x1 <= x0:
        return None
    n = 2 if xaxis.log == yaxis.log else 40  # straight on log-log and linear axes, curved on mixed ones
    xs = [x0 * (x1 / x0) ** (i / (n - 1)) if xaxis.log else x0 + (x1 - x0) * i / (n - 1) for i in range(n)]
    # Labelled at a common x inside the panel, where parallel lines are a factor 2 apart (no overlaps),
    # or where the line leaves through the top if that comes first.
    label_x = min(xs[-1], xaxis.at(0.8))
    label_y = gflops * label_x / 1e3
    return FlopsLine(gflops, xs, [gflops * x / 1e3 for x in xs], label_x, label_y,
                     label_below=yaxis.frac(label_y) > 0.97, text=level_text(gflops))


def label_positions(points: Sequence[tuple[float, float]], xaxis: Axis, yaxis: Axis) -> list[str]:
    """Text positions for labels at (x, y): neighbours that are close alternate above and below."""
    order = sorted(range(len(points)), key=lambda i: points[i])
    positions = [TOP] * len(points)
    previous: int | None = None
    for i in order:
        if previous is not None:
            (x0, y0), (x1, y1) = points[previous], points[i]
            close = abs(xaxis.frac(x1) - xaxis.frac(x0)) < 0.06 and abs(yaxis.frac(y1) - yaxis.frac(y0)) < 0.12
            if close and positions[previous] == TOP:
                positions[i] = BOTTOM
        previous = i
    return positions


@dataclass(frozen=True)
class Label:
    """A named config's name next to its point."""

    x: float  # latency, ms
    y: float
    text: str
    position: str  # TOP or BOTTOM
    pareto: bool  # on the front: clear of the front's larger ring


def labels(placed: Sequence[tuple[Point, float]], xaxis: Axis, yaxis: Axis) -> list[Label]:
    positions = label_positions([(p.latency_ms, y) for p, y in placed], xaxis, yaxis)
    return [Label(p.latency_ms, y, p.named or "", pos, p.pareto) for (p, y), pos in zip(placed, positions, strict=True)]


# --------------------------------------------------------------------------------------------- protocol


def protocol_line(records: Sequence[TrialRecord]) -> tuple[str | None, str]:
    """The device name and one line on how latency was measured (the most common protocol among the records)."""
    protocols = [Protocol.from_dict(r.protocol) for r in records if r.protocol]
    if not protocols:
        return None, "measurement protocol not recorded"
    counts = Counter(p.describe() for p in protocols)
    line, n = counts.most_common(1)[0]
    common = next(p for p in protocols if p.describe() == line)
    text = f"latency: {line}"
    if n < len(protocols):
        text += f" ({len(protocols) - n} trials measured otherwise)"
    return common.device_name or common.device or None, text


# --------------------------------------------------------------------------------------------- the figure's data


@dataclass(frozen=True)
class FigureData:
    """Everything `search.report.figure.figure` draws."""

    title: str
    subtitle: str  # the protocol line and the counts
    budget_ms: float | None
    points: list[Point]  # every trial with a measured latency
    trained: list[Point]  # trained within budget, with a top-1
    front: list[Point]  # Optuna's feasible Pareto front, fastest first
    pruned: list[Point]  # pruned, with a top-1 at their last epoch
    over: list[Point]  # over budget: measured, never trained
    front_line: tuple[list[float], list[float]]  # the front as a staircase, carried on to the budget
    x: Axis  # latency, left panel
    y_acc: Axis  # top-1 %, with a strip below for the over-budget trials
    y_title: str  # what the left panel's vertical axis shows
    over_y: float  # where the over-budget trials sit
    strip_y: float  # the line that separates that strip from the accuracy scale
    x_flops: Axis  # latency, right panel (room on the right for the FLOPS labels)
    y_flops: Axis  # G multiply-adds
    flops_lines: list[FlopsLine]
    color_range: tuple[float, float] | None  # achieved GFLOPS; None when no trial has one
    left_labels: list[Label]
    right_labels: list[Label]

    @property
    def with_flops(self) -> list[Point]:
        return [p for p in self.points if p.gmacs]

    @property
    def budget_zone(self) -> bool:
        """Whether the budget falls inside the latency axis (the region past it is shaded)."""
        return self.budget_ms is not None and self.budget_ms < self.x.hi


def figure_data(records: Sequence[TrialRecord], study_name: str | None = None,
                budget_ms: float | None = None) -> FigureData:
    """The figure of these trials; `budget_ms` draws the budget (None: none)."""
    points = [p for p in map(point, records) if p is not None]
    by_number = {p.number: p for p in points}
    trained = [p for p in points if p.status in (TRAINED, SCORED) and p.acc is not None]
    scored = sorted({r.score_name for r in records if r.status == SCORED and r.score_name})
    y_title = (f"zero-cost score, untrained: {', '.join(scored)}" if scored and not any(
        r.status == TRAINED for r in records) else "proxy top-1 accuracy (%)")
    if not trained and any(r.status == MEASURED for r in records):
        y_title = "no accuracy: a census (--proxy none), latency and FLOPs only"
    front = [by_number[r.number] for r in pareto_front(list(records))
             if r.number in by_number and by_number[r.number].acc is not None]
    pruned = [p for p in points if p.status == PRUNED and p.acc is not None]
    over = [p for p in points if p.status == OVER_BUDGET]

    x = fit_axis([p.latency_ms for p in points] + ([budget_ms] if budget_ms else []))
    # The accuracy axis spans the trained and pruned trials (short proxies crowd near the top, where the
    # differences are); the over-budget trials, which have no accuracy, sit in a strip along the bottom.
    accs = [p.acc for p in trained + pruned if p.acc is not None]
    accs += [bound for p in trained if p.acc_ci is not None for bound in p.acc_ci]  # room for the error bars
    lo, hi = (min(accs), max(accs)) if accs else (0.0, 100.0)
    span = max(hi - lo, 2.0)
    floor, top = max(lo - 0.15 * span, 0.0), hi + 0.25 * span
    y_acc = Axis(False, floor - 0.14 * (top - floor), top)
    over_y = floor - 0.08 * (top - floor)
    x_flops = x.widened(right=0.12)
    y_flops = fit_axis([p.gmacs for p in points if p.gmacs], pad=0.1).widened(top=0.04)
    gflops = [p.gflops_per_s for p in points if p.gflops_per_s is not None]
    levels = flops_levels(gflops) if any(p.gmacs for p in points) else []
    lines = [line for line in (flops_line(g, x_flops, y_flops) for g in levels) if line is not None]

    xs, ys = [p.latency_ms for p in front], [p.acc or 0.0 for p in front]
    if front and budget_ms is not None and budget_ms > xs[-1]:
        xs, ys = xs + [budget_ms], ys + [ys[-1]]

    named_left = [(p, p.acc if p.acc is not None else over_y) for p in points
                  if p.named and p.status in (TRAINED, OVER_BUDGET, PRUNED)]
    named_right = [(p, p.gmacs) for p in points if p.named and p.gmacs]
    device_name, protocol = protocol_line(records)
    return FigureData(
        title=_title(study_name, device_name, budget_ms), subtitle=f"{protocol} · {summary(records)}",
        budget_ms=budget_ms, points=points, trained=trained, front=front, pruned=pruned, over=over,
        front_line=(xs, ys), x=x, y_acc=y_acc, y_title=y_title, over_y=over_y, strip_y=floor - 0.04 * (top - floor),
        x_flops=x_flops, y_flops=y_flops, flops_lines=lines, color_range=_color_range(gflops),
        left_labels=labels(named_left, x, y_acc), right_labels=labels(named_right, x_flops, y_flops),
    )


def study_figure_data(study: optuna.Study, budget_ms: float | None = None) -> FigureData:
    """The figure of a study's trials, with its own budget unless `budget_ms` is given."""
    return figure_data(read_trials(study), study.study_name, study_attrs.budget_ms(study) if budget_ms is None else budget_ms)


def summary(records: Sequence[TrialRecord]) -> str:
    """How many trials came to what: '9 trials: 3 trained within budget (2 on the front), 2 over budget, ...'."""
    counts = Counter(r.status for r in records)
    front = sum(r.pareto for r in records)
    parts = [f"{counts[TRAINED]} trained within budget ({front} on the front)", f"{counts[OVER_BUDGET]} over budget",
             f"{counts[PRUNED]} pruned", f"{counts[FAILED]} failed"]
    parts += [f"{counts[s]} {s}" for s in (MEASURED, INVALID, RUNNING, WAITING) if counts[s]]
    return f"{len(records)} trials: " + ", ".join(parts)


def _title(study_name: str | None, device_name: str | None, budget_ms: float | None) -> str:
    title = f"study {study_name}" if study_name else "trials"
    if device_name:
        title += f" on {device_name}"
    if budget_ms is not None:
        title += f": latency budget {budget_ms:g} ms"
    return title


def _color_range(gflops: Sequence[float]) -> tuple[float, float] | None:
    if not gflops:
        return None
    cmin, cmax = min(gflops), max(gflops)
    if cmax - cmin < 1e-9:
        cmin, cmax = cmin * 0.9, cmax * 1.1 + 1e-9
    return cmin, cmax
