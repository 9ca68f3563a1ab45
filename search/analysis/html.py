"""Writes a design-space analysis: one self-contained HTML page (plotly.js inlined once: works offline),
JSON (`Analysis.to_dict`, every section), or plain text for the terminal."""

from __future__ import annotations

import html
import json
from pathlib import Path

import plotly.graph_objects as go

from search.analysis.analysis import Analysis
from search.analysis.figure import cost_figure, edf_figure, importance_figure, target_title
from search.analysis.importance import MISSING, rare_text
from search.errors import SearchError

FORMATS = (".html", ".json")
PLOT_CONFIG = {"displaylogo": False, "responsive": True}

STYLE = """
body { font-family: Helvetica, Arial, sans-serif; margin: 24px; color: #222; max-width: 1400px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ddd; }
.warn { background: #fff4e5; border-left: 4px solid #f0a030; padding: 6px 10px; margin: 6px 0; }
.note { background: #eef5fb; border-left: 4px solid #5b9bd5; padding: 6px 10px; margin: 6px 0; }
table { border-collapse: collapse; margin: 8px 0; } td, th { border: 1px solid #ddd; padding: 5px 8px;
vertical-align: top; text-align: left; font-size: 13px; } th { background: #f4f4f4; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(640px, 1fr)); gap: 10px; }
.no { color: #999; }
"""


def write_analysis(analysis: Analysis, out: str | Path) -> Path:
    """Writes the analysis to `out`: .html (the report) or .json."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise SearchError("out", str(out), f"unknown analysis format {out.suffix or '(no extension)'!r}; allowed: "
                          + ", ".join(FORMATS))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_json(analysis) + "\n" if suffix == ".json" else html_report(analysis))
    return out


def to_json(analysis: Analysis) -> str:
    return json.dumps(analysis.to_dict(), indent=1)


def _plot(fig: go.Figure, first: bool) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=True if first else False, config=PLOT_CONFIG)


def html_report(analysis: Analysis) -> str:
    """The whole report as one HTML page."""
    e = html.escape
    a = analysis
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>design-space analysis: {e(a.study or '')}"
             f"</title><style>{STYLE}</style></head><body>",
             f"<h1>Design-space analysis of study {e(a.study or '')}</h1>", f"<p>{e(_counts_line(a))}</p>"]
    parts += [f"<div class='warn'>warning: {e(w)}</div>" for w in a.warnings]
    parts += [f"<div class='note'>{e(n)}</div>" for n in a.notes]
    parts.append("<h2>The paper's choices, answered from this study</h2><table><tr><th>question</th>"
                 "<th>the paper</th><th>this study (means, medians or ratios with 95% intervals)</th></tr>")
    for c in a.choices:
        answer = e(c.answer) if c.answered else f"<span class='no'>{e(c.answer)}</span>"
        parts.append(f"<tr><td>{e(c.question)}</td><td>{e(c.paper)}</td><td>{answer}</td></tr>")
    parts.append("</table>")
    parts.append("<h2>What matters: parameter importances</h2><p>"
                 + "; ".join(f"{e(target_title(a, t))}: {e(d)}" for t, d in a.targets.items())
                 + ". Evaluated by Optuna's fANOVA and PED-ANOVA over the space's free parameters.</p>")
    parts.append(_plot(importance_figure(a), first=True))
    what = "held-out loss" if a.edfs and a.edfs[0].metric == "loss" else "proxy error"
    parts.append(f"<h2>EDFs of {what} ({a.n_edf} sampled trained trials)</h2><p>pycls style: for each value "
                 "(or bin) of a parameter, the share of its trained trials with at most a given error; a curve "
                 "further left is a better choice. Dotted: fewer than 10 trials.</p><div class='grid'>")
    if a.n_edf:
        parts += [f"<div>{_plot(edf_figure(g), first=False)}</div>" for g in a.edfs]
    else:
        parts.append("<p class='no'>No sampled trained trials, so no EDFs: they need proxy accuracies.</p>")
    how = (f"{a.n_measured} candidates: {a.n_measured - a.n_predicted} measured, {a.n_predicted} predicted by the "
           "latency table" if a.n_predicted else f"{a.n_measured} measured candidates")
    parts.append(f"</div><h2>What it costs on this device ({how})</h2>"
                 "<p>Median latency and achieved FLOPS per value or bin, with distribution-free 95% intervals of the "
                 "median; each over every candidate with a latency.</p><div class='grid'>")
    parts += [f"<div>{_plot(cost_figure(g), first=False)}</div>" for g in a.costs]
    parts.append("</div></body></html>")
    return "\n".join(parts)


def _counts_line(a: Analysis) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(a.counts.items(), key=lambda kv: -kv[1]))
    budget = f"; latency budget {a.budget_ms:g} ms" if a.budget_ms is not None else ""
    samplers = ", ".join(a.samplers) if a.samplers else "not recorded"
    return (f"{sum(a.counts.values())} trials ({counts}){budget}; sampler: {samplers}; free parameters: "
            f"{', '.join(a.params)}")


def format_text(analysis: Analysis) -> str:
    """The analysis for the terminal: counts, warnings, importances, the paper's choices."""
    a = analysis
    lines = [f"study {a.study!r}: {_counts_line(a)}"]
    lines += [f"warning: {w}" for w in a.warnings] + [f"note: {n}" for n in a.notes]
    lines.append("\nimportances (fANOVA / PED-ANOVA, sum to 1):")
    for target in a.targets:
        fanova, ped = a.importance(target, "fanova"), a.importance(target, "ped-anova")
        title = target_title(a, target)
        if not fanova.values and not ped.values:
            lines.append(f"  {title}: {fanova.note}")
            continue
        lines.append(f"  {title} (n={fanova.n_trials}):")
        order = fanova.ranking or ped.ranking
        rare = fanova.rare or ped.rare
        for p in order:
            f = f"{fanova.values[p]:.3f}" if p in fanova.values else "n/a"
            q = f"{ped.values[p]:.3f}" if p in ped.values else "n/a"
            warn = f"  ⚠ rare: {rare_text(rare[p])}" if p in rare else ""
            lines.append(f"    {p:<16} {f} / {q}{warn}")
        # a missing package is one note above, not one line per target
        lines += [f"    ({imp.note})" for imp in (fanova, ped)
                  if imp.note and not imp.values and not imp.note.startswith(MISSING)]
    lines.append("\nthe paper's choices:")
    for c in a.choices:
        lines.append(f"  {c.question}\n    paper: {c.paper}\n    study: {c.answer}")
    return "\n".join(lines)
