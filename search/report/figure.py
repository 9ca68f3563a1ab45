"""Draws a `FigureData` with plotly: two panels side by side.

Left: the ranking score (the proxy's held-out loss, lower up; or its top-1) against measured latency, with
the feasible Pareto front, the candidates tied with the best within the noise and the one picked for
best.yaml, pruned trials at their last epoch and the over-budget trials in a strip along the bottom. Right:
G multiply-adds against latency for every measured trial, with dashed lines of equal achieved FLOPS (the
FasterNet paper's Fig. 2 view). Both show the budget. Where texts go is figure_data's decision.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from search.records.trial import OVER_BUDGET, TRAINED, TrialRecord
from search.report.figure_data import (
    BUDGET_SHIFT_PX,
    ERROR_CAP_PX,
    FRONT_PX,
    IMAGE_SIZE,
    LABEL_FONT,
    LEVEL_FONT,
    MARGIN,
    NOTE_FONT,
    OVER_NOTE_Y,
    OVER_PX,
    PANEL_GAP,
    PICKED_PX,
    PRUNED_PX,
    TIED_PX,
    TRAINED_PX,
    Axis,
    FigureData,
    Label,
    Point,
    budget_text,
    figure_data,
    over_how,
)

__all__ = ["IMAGE_SIZE", "figure", "over_how"]

FRONT_COLOR = "#d62728"
GREY = "#8c8c8c"
CI_COLOR = "#9a9a9a"
COLORSCALE = "Viridis"
FRONT_RING = dict(symbol="circle-open", size=FRONT_PX, color=FRONT_COLOR, line=dict(width=2.5))
TRAINED_MARKER = dict(size=TRAINED_PX, line=dict(width=0.8, color="white"))
TIED_RING = dict(symbol="diamond-open", size=TIED_PX, color="#1f77b4", line=dict(width=2))
PICKED_MARK = dict(symbol="star-open", size=PICKED_PX, color="#111", line=dict(width=2))


def figure(data: FigureData | Sequence[TrialRecord], budget_ms: float | None = None,
           study_name: str | None = None) -> go.Figure:
    """Proxy top-1 and FLOPs against measured latency, with the Pareto front, the budget and equal-FLOPS lines.

    `data`: a FigureData, or trial records (then `budget_ms` and `study_name` are used to make one)."""
    if not isinstance(data, FigureData):
        data = figure_data(list(data), study_name=study_name, budget_ms=budget_ms)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=PANEL_GAP, subplot_titles=(
        f"{data.score_name} vs latency: Pareto front of the trials within budget",
        "FLOPs vs latency: dashed lines of equal achieved FLOPS"))
    _budget_zone(fig, data)
    _left_panel(fig, data)
    _right_panel(fig, data)
    _budget_line(fig, data)
    _axes(fig, data)
    _layout(fig, data)
    return fig


# --------------------------------------------------------------------------------------------- traces


def _scatter(fig: go.Figure, points: list[Point], y: list[float], name: str, col: int, group: str, legend: bool,
             marker: dict[str, Any]) -> None:
    """Markers for trials: the trial number in customdata, the hover text in hovertext."""
    fig.add_trace(go.Scatter(
        x=[p.latency_ms for p in points], y=y, mode="markers", name=name, legendgroup=group, showlegend=legend,
        marker=marker, customdata=[p.number for p in points], hovertext=[p.hover for p in points],
        hovertemplate="%{hovertext}<extra></extra>"), row=1, col=col)


def _error_bars(fig: go.Figure, points: list[Point], score_name: str) -> None:
    """The 95% interval of each trained trial's score as a vertical bar (drawn beneath the markers), and its
    legend entry: a trace with no points and a bar for a marker (the bars' own markers are invisible)."""
    shown = [p for p in points if p.score_ci is not None and p.score is not None]
    if not shown:
        return
    name = f"95% interval of the {score_name} (test split, and seeds where confirmed)"
    fig.add_trace(go.Scatter(
        x=[p.latency_ms for p in shown], y=[p.score for p in shown], mode="markers", marker=dict(size=0, opacity=0),
        error_y=dict(type="data", symmetric=False, array=[p.score_ci[1] - p.score for p in shown],
                     arrayminus=[p.score - p.score_ci[0] for p in shown], color=CI_COLOR, thickness=1.2,
                     width=ERROR_CAP_PX),
        name=name, legendgroup="ci", showlegend=False, hoverinfo="skip"),
        row=1, col=1)
    fig.add_trace(go.Scatter(
        x=[None], y=[None], mode="markers", name=name, legendgroup="ci", showlegend=True, hoverinfo="skip",
        marker=dict(symbol="line-ns-open", size=14, color=CI_COLOR, line=dict(width=1.5, color=CI_COLOR))),
        row=1, col=1)


def _colored(fig: go.Figure, points: list[Point], y: list[float], name: str, col: int, group: str, legend: bool,
             symbol: Callable[[Point], str] = lambda p: "circle", **marker: Any) -> None:
    """Coloured by achieved GFLOPS; points without a FLOPS value in grey."""
    pairs = list(zip(points, y, strict=True))
    for known in (True, False):
        part = [(p, v) for p, v in pairs if (p.gflops_per_s is not None) == known]
        if not part:
            continue
        color = dict(color=[p.gflops_per_s for p, _ in part], coloraxis="coloraxis") if known else dict(color=GREY)
        _scatter(fig, [p for p, _ in part], [v for _, v in part], name, col, group, legend,
                 dict(symbol=[symbol(p) for p, _ in part], **color, **marker))
        legend = False


def _left_panel(fig: go.Figure, d: FigureData) -> None:
    """Top-1 against latency: over budget along the bottom, pruned, trained (coloured) and the front."""
    if d.over:
        _scatter(fig, d.over, [d.over_y] * len(d.over), "over budget (not trained)", 1, "over", True,
                 dict(symbol="x-thin", size=OVER_PX, line=dict(width=2, color=GREY), color=GREY))
        # separates the strip of untrained trials from the accuracy scale
        fig.add_hline(y=d.strip_y, line=dict(color="#bbb", width=1), row=1, col=1)
    if d.pruned:
        _scatter(fig, d.pruned, [p.score for p in d.pruned], f"pruned ({d.score_name} at its last epoch)", 1,
                 "pruned", True, dict(symbol="circle-open", size=PRUNED_PX, color=GREY, line=dict(width=1.5)))
    if d.trained:
        _error_bars(fig, d.trained, d.score_name)
        _colored(fig, d.trained, [p.score for p in d.trained], "trained within budget (colour: achieved GFLOPS)", 1,
                 "trained", True, **TRAINED_MARKER)
    if d.front:
        xs, ys = d.front_line
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=FRONT_COLOR, width=2.5, shape="hv"),
                                 name="Pareto front (on seed means where confirmed)", legendgroup="front", hoverinfo="skip"),
                      row=1, col=1)
        _scatter(fig, d.front, [p.score for p in d.front], "Pareto front", 1, "front", False, FRONT_RING)
    tied = [p for p in d.trained if p.tied and not p.picked]
    if tied:
        _scatter(fig, tied, [p.score for p in tied], "tied with the best within the noise", 1, "tied", True, TIED_RING)
    picked = [p for p in d.trained if p.picked]
    if picked:
        _scatter(fig, picked, [p.score for p in picked], "picked for best.yaml", 1, "picked", True, PICKED_MARK)
    _labels(fig, d.left_labels, 1, d.x, d.y_score)


def _right_panel(fig: go.Figure, d: FigureData) -> None:
    """G multiply-adds against latency: the equal-FLOPS lines, every measured trial, the front."""
    with_flops = d.with_flops
    if not with_flops:
        fig.add_annotation(x=0.5, y=0.5, xref="x2 domain", yref="y2 domain", showarrow=False,
                           text="no trial has a measured latency and FLOPs yet", font=dict(size=13, color="#777"))
        return
    for i, line in enumerate(d.flops_lines):
        fig.add_trace(go.Scatter(
            x=line.xs, y=line.ys, mode="lines", line=dict(color="#9a9a9a", dash="dash", width=1),
            name="equal achieved FLOPS (FLOPs = FLOPS × latency)", legendgroup="iso", showlegend=i == 0,
            hoverinfo="skip"), row=1, col=2)
        _text(fig, line.label, 2, d.x_flops, d.y_flops, text=line.text, font=dict(size=LEVEL_FONT, color="#666"))
    fit = [p for p in with_flops if p.status != OVER_BUDGET]
    unfit = [p for p in with_flops if p.status == OVER_BUDGET]
    if fit:
        _colored(fig, fit, [p.gmacs for p in fit], "trained within budget", 2, "trained", False,
                 symbol=lambda p: "circle" if p.status == TRAINED else "circle-open", **TRAINED_MARKER)
    if unfit:
        _colored(fig, unfit, [p.gmacs for p in unfit], "over budget (not trained)", 2, "over", False,
                 symbol=lambda p: "x", **TRAINED_MARKER)
    front = [p for p in d.front if p.gmacs]
    if front:
        _scatter(fig, front, [p.gmacs for p in front], "Pareto front", 2, "front", False, FRONT_RING)
    _labels(fig, d.right_labels, 2, d.x_flops, d.y_flops)


def _labels(fig: go.Figure, labels: list[Label], col: int, xaxis: Axis, yaxis: Axis) -> None:
    """Named configs as text next to their points, where figure_data placed them."""
    for label in labels:
        _text(fig, label, col, xaxis, yaxis, text=f"<b>{label.text}</b>", font=dict(size=LABEL_FONT, color="#222"))


def _text(fig: go.Figure, label: Label, col: int, xaxis: Axis, yaxis: Axis, **style: Any) -> None:
    suffix = "" if col == 1 else str(col)
    fig.add_annotation(x=xaxis.coord(label.x), y=yaxis.coord(label.y), xref=f"x{suffix}", yref=f"y{suffix}",
                       showarrow=False, xanchor=label.xanchor, yanchor=label.yanchor, xshift=label.xshift,
                       yshift=label.yshift, **style)


# --------------------------------------------------------------------------------------------- budget


def _budget_zone(fig: go.Figure, d: FigureData) -> None:
    """The latencies past the budget, shaded in both panels."""
    if not d.budget_zone or d.budget_ms is None:
        return
    for col, axis in ((1, d.x), (2, d.x_flops)):
        fig.add_vrect(x0=d.budget_ms, x1=axis.hi, fillcolor=GREY, opacity=0.07, line_width=0, layer="below",
                      row=1, col=col, exclude_empty_subplots=False)
    if d.over_note:  # it explains the markers along the bottom; with none there, it would explain nothing
        fig.add_annotation(x=d.x.coord(d.x.middle(d.budget_ms)), y=OVER_NOTE_Y, xref="x", yref="y domain",
                           showarrow=False, text=d.over_note, font=dict(size=NOTE_FONT, color="#777"))


def _budget_line(fig: go.Figure, d: FigureData) -> None:
    if d.budget_ms is None:
        return
    for col in (1, 2):
        fig.add_vline(x=d.budget_ms, line=dict(color="#444", dash="dash", width=1.5), row=1, col=col,
                      exclude_empty_subplots=False)
        # Left: at the top; right: at the bottom, clear of the equal-FLOPS labels along the top edge.
        fig.add_annotation(x=d.x.coord(d.budget_ms), y=1 if col == 1 else 0,
                           yref="y domain" if col == 1 else "y2 domain", xref="x" if col == 1 else "x2",
                           text=budget_text(d.budget_ms), showarrow=False, xanchor="left",
                           yanchor="top" if col == 1 else "bottom", xshift=BUDGET_SHIFT_PX,
                           yshift=0 if col == 1 else BUDGET_SHIFT_PX,
                           font=dict(size=NOTE_FONT, color="#333"), bgcolor="rgba(255,255,255,0.7)")


# --------------------------------------------------------------------------------------------- layout


def _axes(fig: go.Figure, d: FigureData) -> None:
    latency = "measured latency (ms" + (", log scale)" if d.x.log else ")")
    for col, axis in ((1, d.x), (2, d.x_flops)):
        fig.update_xaxes(title_text=latency, type="log" if axis.log else "linear", range=axis.range, **axis.ticks(),
                         row=1, col=col)
    fig.update_yaxes(title_text=d.y_title, range=d.y_score.range, zeroline=False, **d.y_score.ticks(), row=1, col=1)
    fig.update_yaxes(title_text="FLOPs (G multiply-adds" + (", log scale)" if d.y_flops.log else ")"),
                     type="log" if d.y_flops.log else "linear", range=d.y_flops.range, **d.y_flops.ticks(),
                     row=1, col=2)


def _layout(fig: go.Figure, d: FigureData) -> None:
    cmin, cmax = d.color_range or (0.0, 1.0)
    fig.update_layout(
        template="plotly_white", height=IMAGE_SIZE[1], font=dict(size=13),
        title=dict(text=f"<b>{d.title}</b>", subtitle=dict(text=d.subtitle, font=dict(size=12)), x=0.01,
                   xanchor="left"),
        margin=MARGIN,
        coloraxis=dict(colorscale=COLORSCALE, cmin=cmin, cmax=cmax, showscale=d.color_range is not None,
                       colorbar=dict(title=dict(text="achieved<br>GFLOPS", side="top"), thickness=14, len=0.7,
                                     x=1.015, y=0.45)),
        legend=dict(orientation="h", x=0.5, xanchor="center", y=-0.17, yanchor="top"),
        hoverlabel=dict(align="left"),
    )
    for annotation in fig.layout.annotations[:2]:  # the subplot titles
        annotation.font = dict(size=13)
