"""Study reports: the Pareto plot (accuracy and FLOPs against latency), and the trials as CSV/JSON.

`figure` draws two panels: proxy top-1 against measured latency with the feasible Pareto front
(Optuna's `study.best_trials`, which respects the latency constraint) and the budget, and FLOPs
against latency for every measured trial with lines of equal achieved FLOPS (the FasterNet
paper's Fig. 2 view). `write_figure` writes it as .html (self-contained, offline) or, through
kaleido and a Chromium already on the machine, .png/.svg/.pdf; .csv/.json hold one row per trial.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
import yaml
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots

from fasternet_space import ArchSpec, save_spec
from fasternet_space.report import human

from .objective import CONSTRAINT
from .results import best_feasible, feasible, pareto_numbers, trial_rows
from .study import SearchError, make_storage, sqlite_path

FIGURE_FORMATS = (".html", ".png", ".svg", ".pdf")
TABLE_FORMATS = (".csv", ".json")
ALLOWED_EXTENSIONS = FIGURE_FORMATS + TABLE_FORMATS
IMAGE_FORMATS = (".png", ".svg", ".pdf")
CSV_COLUMNS = ("number", "state", "feasible", "pareto", "named", "proxy_acc", "latency_ms", "flops",
               "flops_per_s", "params", "reason", "spec")
IMAGE_SIZE = (1500, 680)  # layout pixels of a static export
IMAGE_SCALE = 2

FRONT_COLOR = "#d62728"
GREY = "#8c8c8c"
COLORSCALE = "Viridis"
SPEC_KEYS = ("embed_dim", "depths", "partial_ratio", "mlp_ratio", "act", "norm")


# --------------------------------------------------------------------------------------------- study


def study_budget(study: optuna.Study) -> float | None:
    """The latency budget the study was searched with (its `setting` attribute), if any."""
    setting = study.user_attrs.get("setting") or {}
    budget = setting.get("budget_ms") if isinstance(setting, dict) else None
    return float(budget) if isinstance(budget, int | float) else None


# --------------------------------------------------------------------------------------------- points


@dataclass
class _Point:
    number: int
    state: str
    kind: str  # "trained", "over", "pruned", "failed"
    pareto: bool
    named: str | None
    acc: float | None  # percent; for a pruned trial, its last epoch's top-1
    latency: float
    flops: float | None
    gflops_per_s: float | None
    params: float | None
    spec: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    over_ms: float | None = None

    @property
    def gmacs(self) -> float | None:
        return None if self.flops is None else self.flops / 1e9


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _points(study: optuna.Study) -> list[_Point]:
    """Every trial that has a measured latency, as a point to draw."""
    front = pareto_numbers(study)
    points = []
    for t in study.get_trials(deepcopy=False):
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            continue
        a = t.user_attrs
        latency = _number(a.get("latency_ms"))
        if latency is None and t.state == TrialState.COMPLETE and t.values and len(t.values) > 1:
            latency = _number(t.values[1])
        if latency is None or latency <= 0:
            continue
        is_feasible = feasible(t)
        over_ms = _over_budget_ms(t)
        acc = _number(a.get("proxy_acc"))
        if t.state == TrialState.COMPLETE:
            if is_feasible is False:
                kind, acc = "over", None
            else:
                kind = "trained"
                if acc is None and t.values:
                    acc = _number(t.values[0])
        elif t.state == TrialState.PRUNED:
            kind = "over" if is_feasible is False else "pruned"
            curve = a.get("proxy_curve") or []
            acc = _number(curve[-1]) if curve and kind == "pruned" else None
        else:
            kind = "failed"
            acc = None
        flops = _number(a.get("flops"))
        per_s = _number(a.get("flops_per_s"))
        if per_s is None and flops is not None:
            per_s = flops / (latency / 1e3)
        points.append(_Point(
            number=t.number, state=t.state.name, kind=kind, pareto=t.number in front, named=a.get("named"),
            acc=None if acc is None else 100.0 * acc, latency=latency, flops=flops,
            gflops_per_s=None if per_s is None else per_s / 1e9, params=_number(a.get("params")),
            spec=_spec_fields(a.get("spec_yaml")), reason=a.get("fail_reason"), over_ms=over_ms,
        ))
    return points


def _over_budget_ms(trial: FrozenTrial) -> float | None:
    return _number((trial.constraints or {}).get(CONSTRAINT))


def _spec_fields(spec_yaml: Any) -> dict[str, Any]:
    if not isinstance(spec_yaml, str):
        return {}
    try:
        data = yaml.safe_load(spec_yaml)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _fmt(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _hover(p: _Point) -> str:
    title = f"<b>trial #{p.number}" + (f" · {p.named}" if p.named else "") + "</b>"
    status = {"trained": "on the Pareto front" if p.pareto else "feasible, behind the front",
              "over": "over budget" + (f" by {p.over_ms:.2f} ms" if p.over_ms is not None else "") + ": not trained",
              "pruned": "pruned", "failed": "failed"}[p.kind]
    lines = [f"{title} ({status})"]
    if p.acc is not None:
        lines.append(f"proxy top-1: {p.acc:.1f} %" + (" (last epoch before pruning)" if p.kind == "pruned" else ""))
    lines.append(f"latency: {p.latency:.2f} ms")
    cost = []
    if p.flops is not None:
        cost.append(f"FLOPs: {human(p.flops)}")
    if p.params is not None:
        cost.append(f"params: {human(p.params)}")
    if cost:
        lines.append(" · ".join(cost))
    if p.gflops_per_s is not None:
        lines.append(f"achieved: {p.gflops_per_s:.1f} GFLOPS")
    spec = [f"{k} {_fmt(p.spec[k])}" for k in SPEC_KEYS if k in p.spec]
    for i in range(0, len(spec), 2):
        lines.append(" · ".join(spec[i:i + 2]))
    if p.reason and p.kind in ("pruned", "failed"):
        lines.append(_wrap(p.reason))
    return "<br>".join(lines)


def _wrap(text: str, width: int = 70) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "<br>".join(lines[:4])


# --------------------------------------------------------------------------------------------- axes


@dataclass
class _Axis:
    log: bool
    lo: float  # data units
    hi: float

    @property
    def range(self) -> list[float]:
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

    def widened(self, right: float = 0.0, top: float = 0.0) -> _Axis:
        """The same axis with room added at the high end (a fraction of its span)."""
        extra = right or top
        if self.log:
            return _Axis(True, self.lo, self.hi * (self.hi / self.lo) ** extra)
        return _Axis(False, self.lo, self.hi + (self.hi - self.lo) * extra)


def _axis(values: list[float], pad: float = 0.07, log_ratio: float = 8.0, zero: bool = False) -> _Axis:
    values = [v for v in values if v is not None and v > 0]
    if not values:
        return _Axis(False, 0.0, 1.0)
    lo, hi = min(values), max(values)
    if hi / lo >= log_ratio:
        span = max(math.log10(hi / lo), 0.3)
        return _Axis(True, lo / 10 ** (pad * span), hi * 10 ** (pad * span))
    span = max(hi - lo, 0.1 * hi)
    return _Axis(False, 0.0 if zero else max(lo - pad * span, 0.0), hi + pad * span)


def _flops_levels(gflops: list[float]) -> list[float]:
    """Lines of equal FLOPS: a doubling series through 10 GFLOPS, around the achieved values."""
    gflops = [g for g in gflops if g and g > 0]
    if not gflops:
        return [10.0, 20.0, 40.0, 80.0]
    lo, hi = min(gflops) / 4, max(gflops) * 2
    levels = [10.0 * 2.0 ** k for k in range(-12, 16)]
    chosen = [g for g in levels if lo <= g <= hi]
    middle = math.log(sorted(gflops)[len(gflops) // 2])
    return sorted(sorted(chosen, key=lambda g: abs(math.log(g) - middle))[:5])


def _level_text(gflops: float) -> str:
    if gflops >= 1000:
        return f"{gflops / 1000:g} TFLOPS"
    return f"{gflops:g} GFLOPS"


def _label_positions(points: list[tuple[float, float]], xaxis: _Axis, yaxis: _Axis) -> list[str]:
    """Text positions for labels at (x, y): neighbours that are close alternate above and below."""
    order = sorted(range(len(points)), key=lambda i: points[i])
    positions = ["top center"] * len(points)
    previous: int | None = None
    for i in order:
        if previous is not None:
            (x0, y0), (x1, y1) = points[previous], points[i]
            close = abs(xaxis.frac(x1) - xaxis.frac(x0)) < 0.06 and abs(yaxis.frac(y1) - yaxis.frac(y0)) < 0.12
            if close and positions[previous] == "top center":
                positions[i] = "bottom center"
        previous = i
    return positions


# --------------------------------------------------------------------------------------------- figure


def _protocol_line(study: optuna.Study) -> tuple[str | None, str]:
    """The device name and one line on how latency was measured (the most common protocol)."""
    protocols = [t.user_attrs.get("protocol") for t in study.get_trials(deepcopy=False)]
    protocols = [p for p in protocols if isinstance(p, dict)]
    if not protocols:
        return None, "measurement protocol not recorded"
    keys = ("device", "device_name", "threads", "batch", "input_size", "in_chans", "dtype", "runtime", "torch")
    counts = Counter(json.dumps({k: p.get(k) for k in keys}, sort_keys=True, default=str) for p in protocols)
    common, n = counts.most_common(1)[0]
    p = json.loads(common)
    parts = [f"{p['device_name'] or p['device']}" + (f" ({p['device']})" if p["device_name"] and p["device"] else "")]
    if p["threads"] is not None:
        parts.append(f"{p['threads']} thread" + ("s" if p["threads"] != 1 else ""))
    if p["batch"] is not None:
        parts.append(f"batch {p['batch']}")
    if p["input_size"] is not None:
        size = f"{p['input_size']}×{p['input_size']}"
        parts.append(f"input {p['in_chans']}×{size}" if p["in_chans"] else f"input {size}")
    parts += [str(p[k]) for k in ("dtype", "runtime") if p[k]]
    if p["torch"]:
        parts.append(f"torch {p['torch']}")
    line = "latency: " + ", ".join(parts)
    if n < len(protocols):
        line += f" ({len(protocols) - n} trials measured otherwise)"
    return p["device_name"] or p["device"], line


def figure(study: optuna.Study, budget_ms: float | None = None) -> go.Figure:
    """Proxy top-1 and FLOPs against measured latency, with the Pareto front, the budget and equal-FLOPS lines."""
    if budget_ms is None:
        budget_ms = study_budget(study)
    points = _points(study)
    trained = [p for p in points if p.kind == "trained"]
    front = sorted((p for p in trained if p.pareto), key=lambda p: (p.latency, -(p.acc or 0)))
    pruned = [p for p in points if p.kind == "pruned" and p.acc is not None]
    over = [p for p in points if p.kind == "over"]
    device_name, protocol = _protocol_line(study)

    xaxis = _axis([p.latency for p in points] + ([budget_ms] if budget_ms else []))
    # The accuracy axis spans the trained and pruned trials (short proxies crowd near the top, where the
    # differences are); the over-budget trials, which have no accuracy, sit in a strip along the bottom.
    accs = [p.acc for p in trained + pruned if p.acc is not None]
    lo, hi = (min(accs), max(accs)) if accs else (0.0, 100.0)
    span = max(hi - lo, 2.0)
    floor, top = max(lo - 0.15 * span, 0.0), hi + 0.25 * span
    over_y = floor - 0.08 * (top - floor)
    yacc = _Axis(False, floor - 0.14 * (top - floor), top)
    xflops = xaxis.widened(right=0.12)  # room for the equal-FLOPS labels
    yflops = _axis([p.gmacs for p in points if p.gmacs], pad=0.1).widened(top=0.04)
    gflops = [p.gflops_per_s for p in points if p.gflops_per_s is not None]

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08, subplot_titles=(
        "proxy top-1 vs latency: Pareto front of the trials within budget",
        "FLOPs vs latency: dashed lines of equal achieved FLOPS"))

    def scatter(pts: list[_Point], y: list[float], name: str, col: int, group: str, legend: bool,
                marker: dict[str, Any]) -> None:
        fig.add_trace(go.Scatter(
            x=[p.latency for p in pts], y=y, mode="markers", name=name, legendgroup=group, showlegend=legend,
            marker=marker, customdata=[p.number for p in pts], hovertext=[_hover(p) for p in pts],
            hovertemplate="%{hovertext}<extra></extra>"), row=1, col=col)

    def colored(pts: list[_Point], y: list[float], name: str, col: int, group: str, legend: bool,
                symbol: Any = lambda p: "circle", **extra: Any) -> None:
        """Coloured by achieved GFLOPS; points without a FLOPS value in grey."""
        pairs = list(zip(pts, y, strict=True))
        for known in (True, False):
            part = [(p, v) for p, v in pairs if (p.gflops_per_s is not None) == known]
            if not part:
                continue
            color = dict(color=[p.gflops_per_s for p, _ in part], coloraxis="coloraxis") if known else dict(color=GREY)
            scatter([p for p, _ in part], [v for _, v in part], name, col, group, legend,
                    dict(symbol=[symbol(p) for p, _ in part], **color, **extra))
            legend = False

    # Left: accuracy against latency.
    budget_zone = budget_ms is not None and budget_ms < xaxis.hi
    if budget_zone:
        for col, axis in ((1, xaxis), (2, xaxis.widened(right=0.12))):
            fig.add_vrect(x0=budget_ms, x1=axis.hi, fillcolor=GREY, opacity=0.07, line_width=0, layer="below",
                          row=1, col=col, exclude_empty_subplots=False)
        middle = math.sqrt(budget_ms * xaxis.hi) if xaxis.log else (budget_ms + xaxis.hi) / 2
        fig.add_annotation(x=xaxis.coord(middle), y=0.45, xref="x", yref="y domain", showarrow=False,
                           text="over budget: measured, not trained<br>(shown along the bottom)",
                           font=dict(size=12, color="#777"))
    if over:
        scatter(over, [over_y] * len(over), "over budget (not trained)", 1, "over", True,
                dict(symbol="x-thin", size=11, line=dict(width=2, color=GREY), color=GREY))
    if pruned:
        scatter(pruned, [p.acc for p in pruned], "pruned (top-1 at its last epoch)", 1, "pruned", True,
                dict(symbol="circle-open", size=9, color=GREY, line=dict(width=1.5)))
    if trained:
        colored(trained, [p.acc for p in trained], "trained within budget (colour: achieved GFLOPS)", 1, "trained",
                True, size=11, line=dict(width=0.8, color="white"))
    if front:
        xs = [p.latency for p in front]
        ys = [p.acc for p in front]
        if budget_ms is not None and budget_ms > xs[-1]:
            xs_line, ys_line = xs + [budget_ms], ys + [ys[-1]]
        else:
            xs_line, ys_line = xs, ys
        fig.add_trace(go.Scatter(x=xs_line, y=ys_line, mode="lines", line=dict(color=FRONT_COLOR, width=2.5,
                                                                               shape="hv"),
                                 name="Pareto front (study.best_trials)", legendgroup="front", hoverinfo="skip"),
                      row=1, col=1)
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="markers", name="Pareto front", legendgroup="front", showlegend=False,
            marker=dict(symbol="circle-open", size=19, color=FRONT_COLOR, line=dict(width=2.5)),
            customdata=[p.number for p in front], hovertext=[_hover(p) for p in front],
            hovertemplate="%{hovertext}<extra></extra>"), row=1, col=1)
    named_left = [(p, p.acc if p.acc is not None else over_y) for p in points
                  if p.named and p.kind in ("trained", "over", "pruned")]
    _add_labels(fig, named_left, 1, xaxis, yacc)

    # Right: FLOPs against latency, all measured trials.
    with_flops = [p for p in points if p.gmacs]
    fit = [p for p in with_flops if p.kind != "over"]
    unfit = [p for p in with_flops if p.kind == "over"]
    levels = _flops_levels(gflops)
    if with_flops:
        legend = True
        for level in levels:
            legend = not _add_flops_line(fig, level, xflops, yflops, legend=legend) and legend
    if fit:
        colored(fit, [p.gmacs for p in fit], "trained within budget", 2, "trained", False,
                symbol=lambda p: "circle" if p.kind == "trained" else "circle-open", size=11,
                line=dict(width=0.8, color="white"))
    if unfit:
        colored(unfit, [p.gmacs for p in unfit], "over budget (not trained)", 2, "over", False,
                symbol=lambda p: "x", size=11, line=dict(width=0.8, color="white"))
    front_flops = [p for p in front if p.gmacs]
    if front_flops:
        scatter(front_flops, [p.gmacs for p in front_flops], "Pareto front", 2, "front", False,
                dict(symbol="circle-open", size=19, color=FRONT_COLOR, line=dict(width=2.5)))
    _add_labels(fig, [(p, p.gmacs) for p in with_flops if p.named], 2, xflops, yflops)
    if not with_flops:
        fig.add_annotation(x=0.5, y=0.5, xref="x2 domain", yref="y2 domain", showarrow=False,
                           text="no trial has a measured latency and FLOPs yet", font=dict(size=13, color="#777"))

    if budget_ms is not None:
        for col in (1, 2):
            fig.add_vline(x=budget_ms, line=dict(color="#444", dash="dash", width=1.5), row=1, col=col,
                          exclude_empty_subplots=False)
            # Left: at the top; right: at the bottom, clear of the equal-FLOPS labels along the top edge.
            fig.add_annotation(x=xaxis.coord(budget_ms), y=1 if col == 1 else 0,
                               yref="y domain" if col == 1 else "y2 domain", xref="x" if col == 1 else "x2",
                               text=f"budget {budget_ms:g} ms", showarrow=False, xanchor="left",
                               yanchor="top" if col == 1 else "bottom", xshift=4, yshift=0 if col == 1 else 2,
                               font=dict(size=12, color="#333"), bgcolor="rgba(255,255,255,0.7)")

    lat_title = "measured latency (ms" + (", log scale)" if xaxis.log else ")")
    for col, axis in ((1, xaxis), (2, xflops)):
        fig.update_xaxes(title_text=lat_title, type="log" if axis.log else "linear", range=axis.range,
                         **axis.ticks(), row=1, col=col)
    fig.update_yaxes(title_text="proxy top-1 accuracy (%)", range=yacc.range, zeroline=False, row=1, col=1)
    if over:  # separates the strip of untrained trials from the accuracy scale
        fig.add_hline(y=floor - 0.04 * (top - floor), line=dict(color="#bbb", width=1), row=1, col=1)
    fig.update_yaxes(title_text="FLOPs (G multiply-adds" + (", log scale)" if yflops.log else ")"),
                     type="log" if yflops.log else "linear", range=yflops.range, **yflops.ticks(), row=1, col=2)
    cmin, cmax = (min(gflops), max(gflops)) if gflops else (0.0, 1.0)
    if cmax - cmin < 1e-9:
        cmin, cmax = cmin * 0.9, cmax * 1.1 + 1e-9
    counts = Counter(p.kind for p in points)
    summary = (f"{len(study.trials)} trials: {counts['trained']} trained within budget "
               f"({len(front)} on the front), {counts['over']} over budget, {counts['pruned']} pruned, "
               f"{sum(t.state == TrialState.FAIL for t in study.trials)} failed")
    title = f"study {study.study_name}" + (f" on {device_name}" if device_name else "")
    if budget_ms is not None:
        title += f": latency budget {budget_ms:g} ms"
    fig.update_layout(
        template="plotly_white", height=IMAGE_SIZE[1], font=dict(size=13),
        title=dict(text=f"<b>{title}</b>", subtitle=dict(text=f"{protocol} · {summary}", font=dict(size=12)),
                   x=0.01, xanchor="left"),
        margin=dict(l=70, r=40, t=110, b=120),
        coloraxis=dict(colorscale=COLORSCALE, cmin=cmin, cmax=cmax, showscale=bool(gflops), colorbar=dict(
            title=dict(text="achieved<br>GFLOPS", side="top"), thickness=14, len=0.7, x=1.015, y=0.45)),
        legend=dict(orientation="h", x=0.5, xanchor="center", y=-0.17, yanchor="top"),
        hoverlabel=dict(align="left"),
    )
    for annotation in fig.layout.annotations[:2]:  # the subplot titles
        annotation.font = dict(size=13)
    return fig


def _add_labels(fig: go.Figure, labelled: list[tuple[_Point, float]], col: int, xaxis: _Axis,
                yaxis: _Axis) -> None:
    """Named configs as text next to their points; close neighbours alternate above and below."""
    if not labelled:
        return
    positions = _label_positions([(p.latency, y) for p, y in labelled], xaxis, yaxis)
    suffix = "" if col == 1 else str(col)
    for (p, y), position in zip(labelled, positions, strict=True):
        shift = 17 if p.pareto else 12
        fig.add_annotation(x=xaxis.coord(p.latency), y=yaxis.coord(y), xref=f"x{suffix}", yref=f"y{suffix}",
                           text=f"<b>{p.named}</b>", showarrow=False, font=dict(size=13, color="#222"),
                           yshift=shift if position == "top center" else -shift,
                           xshift=-10 if p.pareto else 0,
                           yanchor="bottom" if position == "top center" else "top")


def _add_flops_line(fig: go.Figure, gflops: float, xaxis: _Axis, yaxis: _Axis, legend: bool) -> bool:
    """FLOPs (G) = GFLOPS x latency (s), across the panel and labelled where it leaves; False when not in view."""
    x0 = max(xaxis.lo, yaxis.lo * 1e3 / gflops, 1e-9)
    x1 = min(xaxis.hi, yaxis.hi * 1e3 / gflops)
    if x1 <= x0:
        return False
    n = 2 if xaxis.log == yaxis.log else 40  # straight on log-log and linear axes, curved on mixed ones
    xs = [x0 * (x1 / x0) ** (i / (n - 1)) if xaxis.log else x0 + (x1 - x0) * i / (n - 1) for i in range(n)]
    visible = [(x, gflops * x / 1e3) for x in xs]
    fig.add_trace(go.Scatter(
        x=[x for x, _ in visible], y=[y for _, y in visible], mode="lines", line=dict(color="#9a9a9a", dash="dash",
                                                                                     width=1),
        name="equal achieved FLOPS (FLOPs = FLOPS × latency)", legendgroup="iso", showlegend=legend,
        hoverinfo="skip"), row=1, col=2)
    # Labelled at a common x inside the panel, where parallel lines are a factor 2 apart (no overlaps),
    # or where the line leaves through the top if that comes first.
    x_label = min(visible[-1][0], xaxis.at(0.8))
    y_label = gflops * x_label / 1e3
    exits_top = yaxis.frac(y_label) > 0.97
    fig.add_annotation(x=xaxis.coord(x_label), y=yaxis.coord(y_label), xref="x2", yref="y2",
                       text=_level_text(gflops), showarrow=False, font=dict(size=11, color="#666"), xanchor="right",
                       yanchor="top" if exits_top else "bottom", xshift=-6)
    return True


# --------------------------------------------------------------------------------------------- writing


def _browser_path() -> str | None:
    """The Chromium/Chrome that kaleido would use; found, never downloaded.

    choreographer (kaleido's browser driver) looks, in order, at a browser it downloaded itself
    (`kaleido_get_chrome`), the BROWSER_PATH environment variable, chrome/chromium/... on PATH,
    and the usual install paths (/usr/bin/chromium, /usr/bin/google-chrome, ...).
    """
    try:
        import kaleido
        from choreographer.browsers.chromium import Chromium
    except ImportError:
        return None
    if not hasattr(kaleido, "calc_fig_sync"):  # kaleido 0.x
        return None
    try:
        path = Chromium.find_browser(skip_local=False)
    except Exception:  # a best-effort search in a third-party package
        return None
    if path and Path(path).is_file() and os.access(path, os.X_OK):
        return str(path)
    return None


def chromium_available() -> bool:
    """Whether PNG/SVG/PDF export can run: kaleido >= 1 and a Chromium/Chrome on this machine."""
    return _browser_path() is not None


def _no_browser_message(path: Path) -> str:
    try:
        import kaleido
    except ImportError:
        kaleido = None
    if kaleido is None or not hasattr(kaleido, "calc_fig_sync"):
        need = "kaleido>=1 (pip install -e '.[image]') and a Chromium"
    else:
        need = "a Chromium/Chrome for kaleido"
    where = os.environ.get("BROWSER_PATH")
    found = f"BROWSER_PATH={where} is not an executable" if where else "none found"
    return (f"{path}: PNG/SVG/PDF export needs {need}, {found}; allowed: apt-get install chromium (Debian) "
            "or set BROWSER_PATH=/path/to/chrome, or write .html/.csv/.json, which need no browser")


def _write_image(fig: go.Figure, path: Path) -> None:
    browser = _browser_path()
    if browser is None:
        raise SearchError(_no_browser_message(path))
    import kaleido

    width, height = IMAGE_SIZE
    try:
        data = kaleido.calc_fig_sync(
            fig.to_dict(), opts=dict(format=path.suffix.lstrip("."), width=width, height=height, scale=IMAGE_SCALE),
            # MathJax would come from a CDN; plotly.js comes from the plotly package, so this runs offline.
            kopts=dict(path=browser, mathjax=False, timeout=120))
    except Exception as exc:  # kaleido/choreographer raise many kinds when the browser cannot start
        first = (str(exc).splitlines() or [""])[0][:200]
        raise SearchError(f"{path}: Chromium at {browser} could not render the figure "
                          f"({exc.__class__.__name__}: {first}); allowed: .html/.csv/.json, which need no browser") from None
    path.write_bytes(data)


def _row_dicts(study: optuna.Study) -> list[dict[str, Any]]:
    rows = []
    for r in trial_rows(study):
        d = r.to_dict()
        d["spec"] = d.pop("spec_yaml")
        rows.append({k: d[k] for k in CSV_COLUMNS})
    return rows


def write_figure(study: optuna.Study, path: str | Path, budget_ms: float | None = None) -> Path:
    """Writes the Pareto figure (.html/.png/.svg/.pdf) or the trials (.csv/.json); the format follows the suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ALLOWED_EXTENSIONS:
        raise SearchError(f"{path}: unknown report format {path.suffix or '(no extension)'!r}; allowed: "
                          + ", ".join(ALLOWED_EXTENSIONS))
    if suffix in IMAGE_FORMATS and not chromium_available():
        raise SearchError(_no_browser_message(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(_row_dicts(study))
    elif suffix == ".json":
        path.write_text(json.dumps(_row_dicts(study), indent=1) + "\n")
    elif suffix == ".html":
        figure(study, budget_ms).write_html(path, include_plotlyjs=True, full_html=True,
                                            config={"displaylogo": False, "responsive": True})
    else:
        _write_image(figure(study, budget_ms), path)
    return path


def export_study(study: optuna.Study, out_dir: Path, budget_ms: float | None = None) -> list[Path]:
    """pareto.html, pareto.png (when a Chromium is usable), trials.csv and best.yaml (when a trial is feasible)."""
    out_dir = Path(out_dir)
    written = [write_figure(study, out_dir / "pareto.html", budget_ms)]
    if chromium_available():
        try:
            written.append(write_figure(study, out_dir / "pareto.png", budget_ms))
        except SearchError:
            pass  # the HTML holds the same figure
    written.append(write_figure(study, out_dir / "trials.csv", budget_ms))
    best = best_feasible(trial_rows(study))
    spec = best.spec() if best is not None else None
    if isinstance(spec, ArchSpec):
        written.append(save_spec(spec.replace(name=f"{study.study_name}-best"), out_dir / "best.yaml"))
    return written


def pareto_command(study_name: str, storage: str, out: str | Path, budget_ms: float | None = None) -> Path:
    """`cli.py pareto`: loads the study and writes the figure or table that `out`'s suffix names."""
    return write_figure(load_study(study_name, storage), out, budget_ms)
