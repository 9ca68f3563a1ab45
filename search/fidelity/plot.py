"""The fidelity scatter: short-proxy top-1 against the longer training's top-1, one point per sampled trial.

`scatter_data(report)` works out what to draw (points in %, labels, hover text, title); `scatter_figure`
only draws it; `write_scatter` writes .html (self-contained, offline) or .png/.svg/.pdf (search.report.images).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go

from search.errors import SearchError
from search.fidelity.report import FidelityReport, interval_text
from search.report import images

FORMATS = (".html", ".png", ".svg", ".pdf")
IMAGE_SIZE = (900, 860)
FRONT_COLOR = "#d62728"
OTHER_COLOR = "#1f77b4"


@dataclass(frozen=True)
class ScatterPoint:
    number: int
    short: float  # top-1, %
    long: float  # top-1, %
    label: str | None  # the named config
    pareto: bool
    hover: str


@dataclass(frozen=True)
class ScatterData:
    points: list[ScatterPoint]
    title: str
    subtitle: str
    x_title: str
    y_title: str
    span: tuple[float, float]  # both axes, so that the diagonal is y = x


def scatter_data(report: FidelityReport) -> ScatterData:
    r = report.recipe
    points = []
    for p in report.pairs:
        if p.long_top1 is None:
            continue
        rerun = "diverged" if p.rerun_top1 is None else f"{100 * p.rerun_top1:.1f}%"
        hover = (f"<b>trial #{p.number}" + (f" · {p.named}" if p.named else "") + f"</b> ({p.why})<br>"
                 f"short top-1 {100 * p.short_top1:.1f}% (seed {r.seed}), rerun {rerun} (seed {report.seed})<br>"
                 f"{report.long_epochs}-epoch top-1 {100 * p.long_top1:.1f}%"
                 + (" (mean of " + ", ".join("diverged" if v is None else f"{100 * v:.1f}%" for v in p.long_seeds_top1)
                    + ")" if p.long_seeds_top1 else "")
                 + (f"<br>latency {p.latency_ms:.2f} ms" if p.latency_ms is not None else ""))
        points.append(ScatterPoint(p.number, 100 * p.short_top1, 100 * p.long_top1, p.named, p.pareto, hover))
    values = [v for pt in points for v in (pt.short, pt.long)] or [0.0, 100.0]
    pad = max(1.0, 0.06 * (max(values) - min(values)))
    title = (f"short proxy vs {report.multiplier}x epochs: Spearman {interval_text(report.spearman)}, "
             f"Kendall tau-b {interval_text(report.kendall)}")
    subtitle = (f"study {report.study} · {len(points)} trials · seed-to-seed Spearman of the short proxy (seed "
                f"{r.seed} vs {report.seed}): {interval_text(report.seed_spearman)}"
                + (f" · of the {report.long_epochs}-epoch run (two seeds): {interval_text(report.long_seed_spearman)}"
                   if report.long_seed_spearman is not None else "")
                + " · 95% bootstrap intervals "
                f"over the pairs · {r.data}, {r.resolution} px, {r.epochs} vs {report.long_epochs} epochs")
    seeds = f", mean of {len(report.long_seeds)} seeds" if report.long_seeds else ""
    return ScatterData(points, title, subtitle, f"short proxy top-1, {r.epochs} epoch{'s' * (r.epochs != 1)} (%)",
                       f"top-1 after {report.long_epochs} epochs{seeds} (%)", (min(values) - pad, max(values) + pad))


def scatter_figure(data: ScatterData) -> go.Figure:
    fig = go.Figure()
    lo, hi = data.span
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="equal top-1",
                             line=dict(color="#aaa", dash="dot", width=1), hoverinfo="skip"))
    for front in (False, True):
        points = [p for p in data.points if p.pareto == front]
        if points:
            fig.add_trace(go.Scatter(
                x=[p.short for p in points], y=[p.long for p in points], mode="markers+text",
                name="Pareto front" if front else "other sampled trials",
                marker=dict(size=11, color=FRONT_COLOR if front else OTHER_COLOR, line=dict(width=0.8, color="white")),
                text=[f"<b>{p.label}</b>" if p.label else "" for p in points], textposition="top center",
                customdata=[p.number for p in points], hovertext=[p.hover for p in points],
                hovertemplate="%{hovertext}<extra></extra>"))
    fig.update_xaxes(title_text=data.x_title, range=[lo, hi], constrain="domain")
    fig.update_yaxes(title_text=data.y_title, range=[lo, hi], scaleanchor="x", scaleratio=1)
    fig.update_layout(template="plotly_white", width=IMAGE_SIZE[0], height=IMAGE_SIZE[1], font=dict(size=13),
                      title=dict(text=f"<b>{data.title}</b>", subtitle=dict(text=data.subtitle, font=dict(size=11)),
                                 x=0.01, xanchor="left"),
                      margin=dict(l=70, r=30, t=110, b=120),
                      legend=dict(orientation="h", x=0.5, xanchor="center", y=-0.1, yanchor="top"),
                      hoverlabel=dict(align="left"))
    return fig


def check_out(out: str | Path) -> Path:
    """Refuses, before any training, a path whose format cannot be written here."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise SearchError("out", str(out), f"unknown figure format {out.suffix or '(no extension)'!r}; allowed: "
                          + ", ".join(FORMATS))
    if suffix != ".html" and not images.chromium_available():
        # this command writes no .csv/.json: only .html is the browser-free choice
        raise SearchError("out", str(out), images.no_browser_problem().replace(".html/.csv/.json", ".html"))
    return out


def write_scatter(report: FidelityReport, out: str | Path) -> Path:
    out = check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = scatter_figure(scatter_data(report))
    if out.suffix.lower() == ".html":
        fig.write_html(out, include_plotlyjs=True, full_html=True, config={"displaylogo": False})
        return out
    return images.write_image(fig, out, width=IMAGE_SIZE[0], height=IMAGE_SIZE[1])
