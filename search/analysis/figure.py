"""Draws a design-space analysis (`search.analysis.analysis.Analysis`) with plotly: importance bars, EDFs, cost
panels."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from search.analysis.analysis import Analysis
from search.analysis.costs import CostGroup
from search.analysis.data import TARGETS
from search.analysis.edf import EdfGroup
from search.analysis.importance import RARE_VALUE, rare_text

EVALUATORS = {"fanova": ("fANOVA", "#1f77b4"), "ped-anova": ("PED-ANOVA", "#ff7f0e")}
TARGET_TITLES = {"accuracy": "accuracy (proxy error)", "latency": "latency", "flops_per_s": "achieved FLOPS"}
# Plotly's toolbar (modebar) sits in the top right corner of each figure, about this tall: titles go below it.
MODEBAR_PX = 32
TITLE_PX = 22  # one line of title (or of subplot titles) at FONT's size and above
LONG_BAR = 0.6  # an importance bar this long carries its warning inside (outside, it would cross the next panel)
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22"]
FONT = dict(family="Helvetica, Arial, sans-serif", size=12)


def target_title(analysis: Analysis, target: str) -> str:
    """A target's name as the report shows it: accuracy by the score its study ranks on."""
    if target == "accuracy" and analysis.accuracy_metric == "loss":
        return "accuracy (held-out loss)"
    return TARGET_TITLES[target]


def rare_mark(rare: dict[str, int] | None) -> str:
    """What a bar says of its parameter's rare values: '⚠ ln: 1 trial', or '⚠ 3 values in < 3 trials'."""
    if not rare:
        return ""
    if len(rare) == 1:
        return f"⚠ {rare_text(rare)}"
    return f"⚠ {len(rare)} values in < {RARE_VALUE} trials"


def top_margin(lines: int) -> int:
    """A top margin that holds `lines` lines of titles below the toolbar."""
    return MODEBAR_PX + TITLE_PX * lines


def importance_figure(analysis: Analysis) -> go.Figure:
    """One panel per target: each free parameter's importance by fANOVA and by PED-ANOVA (a value seen in
    fewer than RARE_VALUE trials written on its parameter's bars). A census (no trained trial) has no accuracy
    panel; a cost panel has no parameter that cannot change the deployed network."""
    targets = [t for t in TARGETS if t != "accuracy" or analysis.n_trained]
    titles = []
    for target in targets:
        n = max(analysis.importance(target, e).n_trials for e in EVALUATORS)
        titles.append(f"{target_title(analysis, target)} (n={n})")
    fig = make_subplots(rows=1, cols=len(targets), subplot_titles=titles, horizontal_spacing=0.1)
    shown = set()
    for col, target in enumerate(targets, start=1):
        reference = analysis.importance(target, "fanova").values or analysis.importance(target, "ped-anova").values
        # the most important on top
        order = sorted(analysis.params_for(target), key=lambda p: reference.get(p, 0.0))
        empty = []
        for evaluator, (label, color) in EVALUATORS.items():
            imp = analysis.importance(target, evaluator)
            if not imp.values:
                empty.append(f"{label}: {imp.note}")
                continue
            values = [imp.values.get(p, 0.0) for p in order]
            fig.add_trace(go.Bar(
                y=order, x=values, orientation="h", name=label, marker_color=color,
                legendgroup=evaluator, showlegend=evaluator not in shown,
                text=[rare_mark(imp.rare.get(p)) for p in order], textfont=dict(size=10, color="#b35900"),
                insidetextfont=dict(size=10, color="white"), cliponaxis=False,
                textposition=["inside" if v > LONG_BAR else "outside" for v in values],
                customdata=[f"⚠ rare: {rare_text(imp.rare[p])}" if p in imp.rare else "" for p in order],
                hovertemplate=f"{label}: %{{y}} %{{x:.3f}} (n={imp.n_trials}) %{{customdata}}<extra></extra>"),
                row=1, col=col)
            shown.add(evaluator)
        if len(empty) == len(EVALUATORS):
            domain = fig.layout[f"xaxis{col if col > 1 else ''}"].domain
            fig.add_annotation(text="<br>".join(empty), x=(domain[0] + domain[1]) / 2, y=0.5, xref="paper",
                               yref="paper", showarrow=False, font=dict(size=12, color="#777"))
            fig.update_yaxes(visible=False, row=1, col=col)
            fig.update_xaxes(visible=False, row=1, col=col)
            continue
        fig.update_xaxes(title_text="importance (sums to 1)", range=[0, 1], row=1, col=col)
    fig.update_layout(barmode="group", height=120 + 34 * max(len(analysis.params), 3), font=FONT,
                      margin=dict(l=10, r=10, t=top_margin(2), b=40), legend=dict(orientation="h", y=-0.25),
                      uniformtext=dict(minsize=10, mode="show"),  # a warning inside a bar stays readable
                      title=dict(text="parameter importances (Optuna evaluators)", x=0.01, y=1, yanchor="top",
                                 pad=dict(t=MODEBAR_PX)))
    return fig


def edf_figure(group: EdfGroup) -> go.Figure:
    """The EDF of the error (held-out loss, or top-1 error in %) per value or bin of one parameter (pycls
    style), n on each curve."""
    fig = go.Figure()
    by_loss = group.metric == "loss"
    scale, unit, what = (1.0, "", "held-out loss") if by_loss else (100.0, "%", "proxy error")
    digits = 3 if by_loss else 1
    for i, curve in enumerate(group.curves):
        xs = [scale * curve.errors[0]] + [scale * e for e in curve.errors]
        ys = [0.0] + curve.cdf
        name = (f"{curve.label}  n={curve.n} | min {scale * curve.min_error:.{digits}f} | "
                f"mean {scale * curve.mean_error:.{digits}f}")
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines", line=dict(shape="hv", width=2, color=PALETTE[i % len(PALETTE)],
                                                dash="solid" if curve.stable else "dot"),
            name=name + ("" if curve.stable else " (few)"), showlegend=True,  # plotly hides a lone trace's
            hovertemplate=f"{group.param}={curve.label}: %{{y:.0%}} of {curve.n} at {what} ≤ "
                          f"%{{x:.{digits}f}}{unit}<extra></extra>"))
    if not group.curves:
        fig.add_annotation(text="no trained trials", x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                           font=dict(color="#777"))
    fig.update_layout(title=dict(text=f"EDF of {what} by {group.param}", x=0.01, y=1, yanchor="top",
                                 pad=dict(t=MODEBAR_PX)), font=FONT, height=340 + MODEBAR_PX,
                      margin=dict(l=10, r=10, t=top_margin(1), b=40),
                      legend=dict(title=dict(text=f"{group.param}  n | min | mean {what} {unit}".rstrip()), x=0.99,
                                  xanchor="right",
                                  y=0.02, yanchor="bottom", bgcolor="rgba(255,255,255,0.75)"),
                      xaxis=dict(title=f"{what} ({unit or 'nats'})"), yaxis=dict(title="cumulative share",
                                                                                  range=[0, 1.02]))
    return fig


def cost_figure(group: CostGroup) -> go.Figure:
    """Median latency and median achieved FLOPS per value or bin of one parameter, with 95% intervals."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.16, subplot_titles=(
        f"latency by {group.param}", f"achieved FLOPS by {group.param}"))
    labels = [f"{r.label}<br>n={r.n}" for r in group.rows]
    for col, (get, unit) in enumerate(((lambda r: r.latency_ms, "ms"), (lambda r: r.gflops_per_s, "GFLOPS")),
                                      start=1):
        rows = [(lab, get(r)) for lab, r in zip(labels, group.rows, strict=True) if get(r) is not None]
        if not rows:
            continue
        fig.add_trace(go.Scatter(
            x=[lab for lab, _ in rows], y=[m.median for _, m in rows], mode="markers",
            marker=dict(size=10, color=PALETTE[col - 1]), showlegend=False,
            error_y=dict(type="data", symmetric=False, array=[m.high - m.median for _, m in rows],
                         arrayminus=[m.median - m.low for _, m in rows], thickness=1.5, width=6),
            customdata=[[m.low, m.high, m.n] for _, m in rows],
            hovertemplate=f"median %{{y:.3g}} {unit} [%{{customdata[0]:.3g}}, %{{customdata[1]:.3g}}], "
                          "n=%{customdata[2]}<extra></extra>"), row=1, col=col)
        fig.update_yaxes(title_text=f"median {unit} (95% interval)", row=1, col=col)
        # many values in a narrow panel: small upright labels (plotly would turn them and overlap the n=)
        fig.update_xaxes(type="category", tickangle=0, tickfont=dict(size=9 if len(rows) > 6 else 12),
                         row=1, col=col)
    fig.update_layout(font=FONT, height=330 + MODEBAR_PX, margin=dict(l=10, r=10, t=top_margin(1), b=40))
    return fig
