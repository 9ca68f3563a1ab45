"""What the Pareto figure shows, worked out from trial records as plain data (no plotly).

`figure_data(records, ...)` gives a `FigureData`: the points to draw (status, the ranking score: held-out
loss, or top-1 as a fraction; G multiply-adds, achieved GFLOPS, hover text), the Pareto front, the candidates
tied with the best and the pick, the axes (linear or log, with their ticks; the loss axis runs downwards,
lower loss up), the lines of equal achieved FLOPS, where the named configs' labels and the lines' labels go
(clear of every marker, worked out in pixels of the exported image), the measurement protocol and the title.
`search.report.figure` only draws it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from fasternet_space.measure import Protocol
from fasternet_space.report import human
from search.records import study_attrs
from search.records.front import pareto_front, pick
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

# The figure's geometry in pixels, which `search.report.figure` draws with: labels are placed clear of the
# markers in the image it exports (an HTML page of another width scales the axes, not the markers).
IMAGE_SIZE = (1500, 680)  # layout pixels (width, height) of the figure and of a static export
MARGIN = dict(l=70, r=120, t=110, b=150)  # room for the colour bar and the legend: plotly would push them
PANEL_GAP = 0.08  # between the two panels, a fraction of the plotting width
# marker sizes (px across)
TRAINED_PX, OVER_PX, PRUNED_PX, FRONT_PX, TIED_PX, PICKED_PX = 11, 11, 9, 19, 25, 29
ERROR_CAP_PX = 3  # the error bars' caps reach this far either side
LABEL_FONT, LEVEL_FONT, NOTE_FONT = 13, 11, 12  # named configs (bold), equal-FLOPS lines, budget notes
BUDGET_SHIFT_PX = 4  # the budget's label from its line (right panel: from the bottom too)
OVER_NOTE_Y = 0.45  # the note on the over-budget zone, a fraction up the left panel


# --------------------------------------------------------------------------------------------- points


@dataclass(frozen=True)
class Point:
    number: int
    status: str  # one of search.records.trial.STATUSES (those in DRAWN)
    pareto: bool
    named: str | None
    latency_ms: float
    # the ranking score as drawn: held-out loss, or top-1 as a fraction (seed mean where confirmed; a pruned
    # trial's at its last epoch); a training-free trial's score as it is
    score: float | None
    score_ci: tuple[float, float] | None  # its 95% interval (trained trials)
    gmacs: float | None  # G multiply-adds at batch 1
    gflops_per_s: float | None  # achieved G multiply-adds per second (the plots' GFLOPS)
    hover: str
    predicted: bool = False  # its latency is a latency table's prediction (never built nor timed)
    tied: bool = False  # tied with the best within the noise
    picked: bool = False  # the trial best.yaml holds


def point(record: TrialRecord, tied: frozenset[int] = frozenset(), picked: int | None = None) -> Point | None:
    """The trial as a point to draw, or None when it has no measured latency (or is still running)."""
    if record.status not in DRAWN or record.latency_ms is None or record.latency_ms <= 0:
        return None
    acc = record.accuracy if record.status == TRAINED else record.last_acc if record.status == PRUNED else None
    per_s = record.flops_per_s
    if per_s is None and record.flops is not None:
        per_s = record.flops / (record.latency_ms / 1e3)
    score, ci = _drawn_score(record)
    return Point(
        number=record.number, status=record.status, pareto=record.pareto, named=record.named,
        latency_ms=record.latency_ms, score=score, score_ci=ci,
        gmacs=record.flops / 1e9 if record.flops else None, gflops_per_s=None if per_s is None else per_s / 1e9,
        hover=hover_text(record, acc,
                         "picked for best.yaml" if record.number == picked else
                         "tied with the best within the noise" if record.number in tied else None),
        predicted=record.latency_source == "predicted", tied=record.number in tied, picked=record.number == picked,
    )


def _drawn_score(record: TrialRecord) -> tuple[float | None, tuple[float, float] | None]:
    """The ranking score as the left panel draws it, with its interval: the held-out loss, or top-1."""
    if record.status == SCORED:
        return record.score, None
    if record.rank_by == "loss":
        if record.status == TRAINED:
            return record.loss, record.loss_ci
        return (record.loss_curve[-1] if record.status == PRUNED and record.loss_curve else None), None
    acc = record.accuracy if record.status == TRAINED else record.last_acc if record.status == PRUNED else None
    return acc, (record.accuracy_ci if record.status == TRAINED else None)


def status_text(record: TrialRecord) -> str:
    """The status, with where a trained trial stands and by how much an over-budget one missed."""
    if record.status == TRAINED:
        return "trained, on the Pareto front" if record.pareto else "trained, not on the front"
    if record.status == OVER_BUDGET and record.over_budget_ms is not None:
        how = " (predicted by the latency table)" if record.latency_source == "predicted" else ""
        return f"over budget by {record.over_budget_ms:.2f} ms{how}"
    return record.status


def hover_text(record: TrialRecord, acc: float | None, mark: str | None = None) -> str:
    """The hover text; `acc`: the top-1 to show, a fraction as the CLI prints it."""
    title = f"<b>trial #{record.number}" + (f" · {record.named}" if record.named else "") + "</b>"
    lines = [f"{title} ({status_text(record)}" + (f"; {mark})" if mark else ")")]
    if record.status == SCORED:
        lines.append(f"zero-cost {record.score_name}: {record.score:.4g} (untrained)")
    if record.status == TRAINED and record.rank_by == "loss" and record.loss is not None:
        ci = record.loss_ci
        seeds = f", mean of {len(record.seed_losses)} seeds" if len(record.seed_losses) > 1 else ""
        lines.append(f"held-out loss (ranks the front): {record.loss:.3f}"
                     + (f", 95% CI {ci[0]:.3f}–{ci[1]:.3f}" if ci else "") + seeds)
    if record.status != SCORED and acc is not None:
        last = " (last epoch before pruning)" if record.status == PRUNED else ""
        ci = record.accuracy_ci if record.status == TRAINED else None
        interval = f", 95% CI {ci[0]:.3f}–{ci[1]:.3f}" if ci else ""
        seeds = f", mean of {len(record.seed_accs)} seeds" if record.confirmed else ""
        lines.append(f"proxy top-1: {acc:.3f}{last}{interval}{seeds}")
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
    downwards: bool = False  # drawn from hi at the bottom to lo at the top (a loss axis: lower loss up)
    tickformat: str | None = None  # a linear axis's tick labels (d3 format); None: plotly's

    @property
    def range(self) -> list[float]:
        """Plotly's axis range (log10 of the ends on a log axis), high end first on a downward axis."""
        ends = [math.log10(self.lo), math.log10(self.hi)] if self.log else [self.lo, self.hi]
        return ends[::-1] if self.downwards else ends

    def frac(self, value: float) -> float:
        """Where a value sits along the axis, 0..1."""
        if self.log:
            return (math.log10(value) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return (value - self.lo) / (self.hi - self.lo)

    def screen(self, value: float) -> float:
        """Where a value is drawn, 0..1 from the left or the bottom (a downward axis runs from its high end)."""
        return 1.0 - self.frac(value) if self.downwards else self.frac(value)

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
            return {} if self.tickformat is None else dict(tickformat=self.tickformat)
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


# --------------------------------------------------------------------------------------------- placing texts

Box = tuple[float, float, float, float]  # x0, y0, x1, y1: pixels in a panel, from its bottom left


def panel_size() -> tuple[float, float]:
    """A panel's plotting area in pixels of the exported image (width, height)."""
    width = (IMAGE_SIZE[0] - MARGIN["l"] - MARGIN["r"]) * (1 - PANEL_GAP) / 2
    return width, IMAGE_SIZE[1] - MARGIN["t"] - MARGIN["b"]


@dataclass(frozen=True)
class Panel:
    x: Axis
    y: Axis

    def px(self, x: float, y: float) -> tuple[float, float]:
        """Where (x, y) in data units is drawn, in pixels."""
        width, height = panel_size()
        return self.x.screen(x) * width, self.y.screen(y) * height


def text_size(text: str, font: int, bold: bool = False) -> tuple[float, float]:
    """A generous estimate of a one-line text's box in pixels (plotly pads an annotation by a pixel)."""
    return len(text) * font * (0.68 if bold else 0.6) + 4, font * 1.3 + 4


def mark(center: tuple[float, float], size: float) -> Box:
    """A marker's box; a pixel more each side for its outline."""
    half = size / 2 + 1
    return center[0] - half, center[1] - half, center[0] + half, center[1] + half


def overlap(a: Box, b: Box) -> float:
    """The area two boxes share."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def clash(box: Box, taken: Sequence[Box]) -> float:
    """How badly a text box sits: the area it shares with what is drawn, and twice what sticks out of the panel."""
    width, height = panel_size()
    area = (box[2] - box[0]) * (box[3] - box[1])
    return sum(overlap(box, t) for t in taken) + 2 * (area - overlap(box, (0.0, 0.0, width, height)))


@dataclass(frozen=True)
class Label:
    """A text next to a point (data units), as plotly anchors it: the side of its box at the point, shifted
    by pixels."""

    x: float
    y: float
    text: str
    xanchor: str  # left, center or right
    yanchor: str  # bottom, middle or top
    xshift: float = 0.0
    yshift: float = 0.0

    def box(self, panel: Panel, font: int, bold: bool = False) -> Box:
        width, height = text_size(self.text, font, bold)
        x, y = panel.px(self.x, self.y)
        x0 = x + self.xshift - {"left": 0.0, "center": width / 2, "right": width}[self.xanchor]
        y0 = y + self.yshift - {"bottom": 0.0, "middle": height / 2, "top": height}[self.yanchor]
        return x0, y0, x0 + width, y0 + height


# (xanchor, yanchor, x direction, y direction): above, below, right, left, then the corners
SIDES = (("center", "bottom", 0, 1), ("center", "top", 0, -1), ("left", "middle", 1, 0), ("right", "middle", -1, 0),
         ("left", "bottom", 1, 1), ("right", "bottom", -1, 1), ("left", "top", 1, -1), ("right", "top", -1, -1))


def place(x: float, y: float, text: str, gap: float, panel: Panel, taken: Sequence[Box],
          lines: Sequence[Box] = ()) -> Label:
    """A named config's label next to its point at (x, y), `gap` pixels out: the nearest reach at which some
    side meets nothing in `taken` (markers, texts) and, of those sides, the first that crosses the fewest
    `lines` (thin lines: worth avoiding, never worth a label far from its point). Where every side meets
    something, the one that meets least."""
    best, least = None, (math.inf, math.inf)
    for reach in (1.0, 1.8, 2.8):
        free = None
        for xanchor, yanchor, dx, dy in SIDES:
            label = Label(x, y, text, xanchor, yanchor, dx * gap * reach, dy * gap * reach)
            box = label.box(panel, LABEL_FONT, bold=True)
            bad = (clash(box, taken), sum(overlap(box, b) for b in lines))
            if bad < least:
                best, least = label, bad
            if bad[0] == 0 and (free is None or bad[1] < free[1]):
                free = (label, bad[1])
        if free is not None:
            return free[0]
    assert best is not None
    return best


def _along(fx: Sequence[float], fy: Sequence[float], step_px: float) -> list[tuple[float, float, float]]:
    """Points every `step_px` along a polyline given in axis fractions: (x fraction, y fraction, distance px)."""
    width, height = panel_size()
    out = [(fx[0], fy[0], 0.0)]
    travelled = 0.0
    for (x0, y0), (x1, y1) in zip(zip(fx, fy, strict=True), zip(fx[1:], fy[1:], strict=True), strict=False):
        length = math.hypot((x1 - x0) * width, (y1 - y0) * height)
        n = max(1, math.ceil(length / step_px))
        out += [(x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n, travelled + length * i / n) for i in range(1, n + 1)]
        travelled += length
    return out


# --------------------------------------------------------------------------------------------- lines of equal FLOPS


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
    """G multiply-adds = GFLOPS x latency (s), across the panel, and its label."""

    gflops: float
    xs: list[float]  # latency, ms
    ys: list[float]  # G multiply-adds
    label: Label

    @property
    def text(self) -> str:
        return self.label.text


def flops_path(gflops: float, xaxis: Axis, yaxis: Axis) -> tuple[list[float], list[float]] | None:
    """The line of `gflops` inside the panel, or None when it does not cross it."""
    x0 = max(xaxis.lo, yaxis.lo * 1e3 / gflops, 1e-9)
    x1 = min(xaxis.hi, yaxis.hi * 1e3 / gflops)
    if x1 <= x0:
        return None
    n = 2 if xaxis.log == yaxis.log else 40  # straight on log-log and linear axes, curved on mixed ones
    xs = [x0 * (x1 / x0) ** (i / (n - 1)) if xaxis.log else x0 + (x1 - x0) * i / (n - 1) for i in range(n)]
    return xs, [gflops * x / 1e3 for x in xs]


def traced(panel: Panel, xs: Sequence[float], ys: Sequence[float]) -> list[Box]:
    """A drawn line as small boxes every few pixels, for texts to keep off it."""
    width, height = panel_size()
    return [mark((fx * width, fy * height), 0)
            for fx, fy, _ in _along([panel.x.screen(x) for x in xs], [panel.y.screen(y) for y in ys], 6.0)]


def flops_lines(paths: Sequence[tuple[float, list[float], list[float]]], panel: Panel, taken: Sequence[Box],
                drawn: dict[float, list[Box]]) -> list[FlopsLine]:
    """The lines (gflops, xs, ys), each labelled at the point along it nearest a common x (where parallel
    lines are a factor 2 apart) whose label meets no marker, text or other line (`drawn`: each line traced)."""
    taken = list(taken)
    lines = []
    for g, xs, ys in paths:
        along = _along([panel.x.frac(x) for x in xs], [panel.y.frac(y) for y in ys], 8.0)
        wanted = min(panel.x.frac(xs[-1]), 0.8)
        start = min(along, key=lambda a: abs(a[0] - wanted))[2]
        others = taken + [b for h, boxes in drawn.items() if h != g for b in boxes]
        best, least = None, math.inf
        for fx, fy, _ in sorted(along, key=lambda a: abs(a[2] - start)):
            # above the line and left of the point, or below it and right: the rising line stays clear of it
            for xanchor, yanchor, shift in (("right", "bottom", -6.0), ("left", "top", 6.0)):
                label = Label(panel.x.at(fx), panel.y.at(fy), level_text(g), xanchor, yanchor, shift)
                bad = clash(label.box(panel, LEVEL_FONT), others)
                if bad < least:
                    best, least = label, bad
            if least == 0:
                break
        assert best is not None
        taken.append(best.box(panel, LEVEL_FONT))
        lines.append(FlopsLine(g, xs, ys, best))
    return lines


# --------------------------------------------------------------------------------------------- what labels avoid


def over_how(over: Sequence[Point]) -> str:
    """How the over-budget points' latencies were obtained: measured, predicted, or both."""
    kinds = {p.predicted for p in over}
    return "measured or predicted" if kinds == {True, False} else "predicted" if kinds == {True} else "measured"


def budget_text(budget_ms: float) -> str:
    return f"budget {budget_ms:g} ms"


def _notes(panel: Panel, budget_ms: float | None, note: str | None, top: bool) -> list[Box]:
    """The budget's line, its label (along the top of the left panel, the bottom of the right one) and the
    note on the over-budget zone (left), where `search.report.figure` draws them."""
    if budget_ms is None or budget_ms >= panel.x.hi:
        return []
    width, height = panel_size()
    line = panel.px(budget_ms, panel.y.lo)[0]
    x = line + BUDGET_SHIFT_PX
    w, h = text_size(budget_text(budget_ms), NOTE_FONT)
    boxes = [(line - 1, 0.0, line + 1, height),
             (x, height - h, x + w, height) if top else (x, BUDGET_SHIFT_PX, x + w, BUDGET_SHIFT_PX + h)]
    if note:
        lines = note.split("<br>")
        w, h = max(text_size(line, NOTE_FONT)[0] for line in lines), len(lines) * NOTE_FONT * 1.3 + 4
        x = panel.x.screen(panel.x.middle(budget_ms)) * width
        boxes.append((x - w / 2, OVER_NOTE_Y * height - h / 2, x + w / 2, OVER_NOTE_Y * height + h / 2))
    return boxes


def _left_marks(panel: Panel, trained: Sequence[Point], pruned: Sequence[Point], over: Sequence[Point],
                over_y: float, front: set[int]) -> list[Box]:
    """The left panel's markers (the largest ring where several mark a trial) and error bars."""
    boxes = [mark(panel.px(p.latency_ms, over_y), OVER_PX) for p in over]
    boxes += [mark(panel.px(p.latency_ms, p.score), PRUNED_PX) for p in pruned if p.score is not None]
    for p in trained:
        if p.score is None:
            continue
        x, y = panel.px(p.latency_ms, p.score)
        boxes.append(mark((x, y), _left_size(p, front)))
        if p.score_ci is not None:
            ends = sorted(panel.px(p.latency_ms, v)[1] for v in p.score_ci)
            boxes.append((x - ERROR_CAP_PX - 1, ends[0], x + ERROR_CAP_PX + 1, ends[1]))
    return boxes


def _left_size(p: Point, front: set[int]) -> float:
    return PICKED_PX if p.picked else TIED_PX if p.tied else FRONT_PX if p.number in front else TRAINED_PX


def _named_labels(placed: Sequence[tuple[Point, float]], panel: Panel, taken: list[Box],
                  size: Callable[[Point], float], lines: Sequence[Box]) -> list[Label]:
    """The named configs' labels, each clear of the markers and the labels placed before it (`taken` grows),
    and where it can be, of the `lines`."""
    labels = []
    for p, y in sorted(placed, key=lambda py: py[0].latency_ms):
        label = place(p.latency_ms, y, p.named or "", size(p) / 2 + 3, panel, taken, lines)
        taken.append(label.box(panel, LABEL_FONT, bold=True))
        labels.append(label)
    return labels


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
    trained: list[Point]  # trained within budget, with a score
    front: list[Point]  # the feasible Pareto front, fastest first
    pruned: list[Point]  # pruned, with a top-1 at their last epoch
    over: list[Point]  # over budget: measured, never trained
    front_line: tuple[list[float], list[float]]  # the front as a staircase, carried on to the budget
    x: Axis  # latency, left panel
    y_score: Axis  # the ranking score (held-out loss downwards, or top-1), a strip below for the over-budget
    y_title: str  # what the left panel's vertical axis shows
    score_name: str  # the left panel's score in words: "held-out loss", "proxy top-1", a zero-cost score
    over_y: float  # where the over-budget trials sit
    strip_y: float  # the line that separates that strip from the accuracy scale
    x_flops: Axis  # latency, right panel (room on the right for the FLOPS labels)
    y_flops: Axis  # G multiply-adds
    flops_lines: list[FlopsLine]
    color_range: tuple[float, float] | None  # achieved GFLOPS; None when no trial has one
    left_labels: list[Label]  # the named configs', clear of every marker
    right_labels: list[Label]
    over_note: str | None  # on the zone past the budget, where over-budget trials sit along the bottom

    @property
    def with_flops(self) -> list[Point]:
        return [p for p in self.points if p.gmacs]

    @property
    def budget_zone(self) -> bool:
        """Whether the budget falls inside the latency axis (the region past it is shaded)."""
        return self.budget_ms is not None and self.budget_ms < self.x.hi


def figure_data(records: Sequence[TrialRecord], study_name: str | None = None,
                budget_ms: float | None = None, rule: str | None = None) -> FigureData:
    """The figure of these trials; `budget_ms` draws the budget (None: none); `rule`: the pick rule that
    marks the tied set's picked trial (None: the default)."""
    chosen = pick(list(records), rule) if rule else pick(list(records))
    tied = frozenset(r.number for r in chosen.tied) if chosen else frozenset()
    points = [p for p in (point(r, tied, chosen.chosen.number if chosen else None) for r in records) if p is not None]
    by_number = {p.number: p for p in points}
    trained = [p for p in points if p.status in (TRAINED, SCORED) and p.score is not None]
    scored = sorted({r.score_name for r in records if r.status == SCORED and r.score_name})
    by_loss = any(r.status in (TRAINED, PRUNED) and r.rank_by == "loss" for r in records)
    score_name = "held-out loss" if by_loss else "proxy top-1"
    y_title = ("proxy held-out loss (nats; lower is better, so up)" if by_loss else "proxy top-1 accuracy (fraction)")
    zero_cost = bool(scored) and not any(r.status == TRAINED for r in records)
    if zero_cost:
        y_title = score_name = f"zero-cost score, untrained: {', '.join(scored)}"
    if not trained and any(r.status == MEASURED for r in records):
        y_title = "no accuracy: a census (--proxy none), latency and FLOPs only"
    front = [by_number[r.number] for r in pareto_front(list(records))
             if r.number in by_number and by_number[r.number].score is not None]
    pruned = [p for p in points if p.status == PRUNED and p.score is not None]
    over = [p for p in points if p.status == OVER_BUDGET]

    x = fit_axis([p.latency_ms for p in points] + ([budget_ms] if budget_ms else []))
    y_score, over_y, strip_y = score_axis(trained + pruned, downwards=by_loss, fraction=not zero_cost)
    x_flops = x.widened(right=0.12)
    y_flops = fit_axis([p.gmacs for p in points if p.gmacs], pad=0.1).widened(top=0.04)
    gflops = [p.gflops_per_s for p in points if p.gflops_per_s is not None]
    levels = flops_levels(gflops) if any(p.gmacs for p in points) else []
    paths = [(g, *path) for g in levels if (path := flops_path(g, x_flops, y_flops)) is not None]

    xs, ys = [p.latency_ms for p in front], [p.score or 0.0 for p in front]
    if front and budget_ms is not None and budget_ms > xs[-1]:
        xs, ys = xs + [budget_ms], ys + [ys[-1]]

    budget_zone = budget_ms is not None and budget_ms < x.hi
    over_note = (f"over budget: {over_how(over)}, not trained<br>(shown along the bottom)"
                 if budget_zone and over else None)
    left, right = Panel(x, y_score), Panel(x_flops, y_flops)
    on_front = {p.number for p in front}
    stairs = ([x for x in xs for _ in (0, 1)][1:], [y for y in ys for _ in (0, 1)][:-1])  # as drawn, shape hv
    taken = _left_marks(left, trained, pruned, over, over_y, on_front) + _notes(left, budget_ms, over_note, True)
    drawn_left = {p.number for p in trained + pruned + over}
    named_left = [(p, p.score if p.score is not None else over_y) for p in points
                  if p.named and p.number in drawn_left]
    left_labels = _named_labels(named_left, left, taken,
                                lambda p: _left_size(p, on_front) if p.score is not None else OVER_PX,
                                traced(left, *stairs) if front else [])
    taken = [mark(right.px(p.latency_ms, p.gmacs), FRONT_PX if p.number in on_front else TRAINED_PX)
             for p in points if p.gmacs] + _notes(right, budget_ms, None, False)
    drawn = {g: traced(right, xs, ys) for g, xs, ys in paths}
    named_right = [(p, p.gmacs) for p in points if p.named and p.gmacs]
    right_labels = _named_labels(named_right, right, list(taken),
                                 lambda p: FRONT_PX if p.number in on_front else TRAINED_PX,
                                 [b for boxes in drawn.values() for b in boxes])
    lines = flops_lines(paths, right, taken + [label.box(right, LABEL_FONT, bold=True) for label in right_labels],
                        drawn)
    device_name, protocol = protocol_line(records)
    return FigureData(
        title=_title(study_name, device_name, budget_ms), subtitle=f"{protocol} · {summary(records)}",
        budget_ms=budget_ms, points=points, trained=trained, front=front, pruned=pruned, over=over,
        front_line=(xs, ys), x=x, y_score=y_score, y_title=y_title, score_name=score_name, over_y=over_y,
        strip_y=strip_y, x_flops=x_flops, y_flops=y_flops, flops_lines=lines, color_range=_color_range(gflops),
        left_labels=left_labels, right_labels=right_labels, over_note=over_note,
    )


def score_axis(points: Sequence[Point], downwards: bool, fraction: bool = True) -> tuple[Axis, float, float]:
    """The left panel's vertical axis over the trained and pruned trials' scores and intervals (short proxies
    crowd near the good end, where the differences are), with a strip past the bad end for the over-budget
    trials, which have no score: (axis, where those sit, the line that separates the strip). `fraction`: the
    score is top-1, labelled as a fraction with 3 decimals as the CLI prints it."""
    values = [p.score for p in points if p.score is not None]
    values += [bound for p in points if p.score_ci is not None for bound in p.score_ci]  # room for the error bars
    if downwards:  # a loss: lower is better, drawn at the top
        lo, hi = (min(values), max(values)) if values else (0.0, 2.5)
        span = max(hi - lo, 0.05)
        best, worst = max(lo - 0.25 * span, 0.0), hi + 0.15 * span
        reach = worst - best
        return Axis(False, best, worst + 0.14 * reach, downwards=True), worst + 0.08 * reach, worst + 0.04 * reach
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    span = max(hi - lo, 0.02)
    floor, top = max(lo - 0.15 * span, 0.0), hi + 0.25 * span
    reach = top - floor
    return (Axis(False, floor - 0.14 * reach, top, tickformat=".3f" if fraction else None),
            floor - 0.08 * reach, floor - 0.04 * reach)


def study_figure_data(study: optuna.Study, budget_ms: float | None = None) -> FigureData:
    """The figure of a study's trials, with its own budget unless `budget_ms` is given, and its pick rule."""
    return figure_data(read_trials(study), study.study_name,
                       study_attrs.budget_ms(study) if budget_ms is None else budget_ms, study_attrs.pick(study))


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
