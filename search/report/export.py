"""Writing a study's reports: the Pareto figure (.html/.png/.svg/.pdf), the trials (.csv/.json) and the
best feasible spec (a spec YAML that `python cli.py build --spec` accepts).

.html is self-contained (plotly.js embedded) and needs no network; .png/.svg/.pdf need kaleido and a
Chromium (search.report.images); .csv is the flat table of search.report.trials_csv; .json is every TrialRecord in full.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import optuna
import plotly.graph_objects as go

from fasternet_space import ArchSpec, save_spec
from search.errors import SearchError
from search.records import study_attrs
from search.records.front import Pick, pick, score_name
from search.records.trial import TRAINED, TrialRecord, read_trials
from search.report import images
from search.report.figure import IMAGE_SIZE, figure
from search.report.figure_data import figure_data
from search.report.trials_csv import rows

FIGURE_FORMATS = (".html", ".png", ".svg", ".pdf")
TABLE_FORMATS = (".csv", ".json")
ALLOWED_EXTENSIONS = FIGURE_FORMATS + TABLE_FORMATS
IMAGE_FORMATS = (".png", ".svg", ".pdf")

__all__ = ["ALLOWED_EXTENSIONS", "export_study", "save_best_spec", "write_csv", "write_json",
           "write_report"]


def write_report(study: optuna.Study, out: str | Path, budget_ms: float | None = None) -> Path:
    """Writes the Pareto figure (.html/.png/.svg/.pdf) or the trials (.csv/.json) to `out`; the format follows
    its suffix. `budget_ms`: the budget to draw (None: the study's own)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in ALLOWED_EXTENSIONS:
        raise SearchError("out", str(out), f"unknown report format {out.suffix or '(no extension)'!r}; allowed: "
                          + ", ".join(ALLOWED_EXTENSIONS))
    if suffix in IMAGE_FORMATS and not images.chromium_available():
        raise SearchError("out", str(out), images.no_browser_problem())
    records = read_trials(study)
    if suffix == ".csv":
        return write_csv(records, out, study_attrs.pick(study))
    if suffix == ".json":
        return write_json(records, out)
    fig = _figure(study, records, budget_ms)
    return _write_html(fig, out) if suffix == ".html" else _write_image(fig, out)


def export_study(study: optuna.Study, out_dir: str | Path, budget_ms: float | None = None) -> list[Path]:
    """pareto.html, pareto.png (when a Chromium is usable), trials.csv and best.yaml (when a trial is feasible)."""
    out_dir = Path(out_dir)
    records = read_trials(study)
    fig = _figure(study, records, budget_ms)
    written = [_write_html(fig, out_dir / "pareto.html")]
    if images.chromium_available():
        try:
            written.append(_write_image(fig, out_dir / "pareto.png"))
        except SearchError:
            pass  # the HTML holds the same figure
    written.append(write_csv(records, out_dir / "trials.csv", study_attrs.pick(study)))
    best = save_best_spec(records, study.study_name, out_dir / "best.yaml", study_attrs.pick(study),
                          study_attrs.setting(study))
    if best is not None:
        written.append(best)
    return written


def save_best_spec(records: Sequence[TrialRecord], study_name: str, path: str | Path, rule: str | None = None,
                   setting: dict | None = None) -> Path | None:
    """Writes the spec of the trial `rule` picks among those tied with the best (search.records.front.pick),
    named `STUDY-best`, to `path`, after comments that say the rule, the tied set and (with the study's
    `setting`) what the proxy trained on; None, and nothing written, when no trial was feasible."""
    chosen = pick(list(records), rule) if rule else pick(list(records))
    spec = chosen.chosen.arch_spec() if chosen is not None else None
    if spec is None:
        return None
    return save_spec(spec.replace(name=f"{study_name}-best"), path, best_comments(chosen, spec, study_name, setting))


def best_comments(chosen: Pick, spec: ArchSpec, study_name: str, setting: dict | None) -> list[str]:
    """What best.yaml says above the spec: which trial, why it, which others were as good, and for which task."""
    trial = chosen.chosen
    lines = [f"trial #{trial.number} of study {study_name}, latency {trial.latency_ms:.2f} ms"]
    if trial.status == TRAINED:
        what = score_name(trial.rank_by)
        lines += [f"picked by --pick {chosen.rule}: {chosen.reason}",
                  f"tied with the best (#{chosen.best.number}) on {what} within the noise (95% intervals overlap): "
                  + ", ".join(f"#{r.number}" for r in chosen.tied)]
    if setting and trial.status == TRAINED:
        classes = f", {round(1 / trial.chance)} classes" if trial.chance else ""
        lines += [f"its accuracy is a short proxy's: trained on {setting.get('data')} at "
                  f"{setting.get('proxy_resolution')}x{setting.get('proxy_resolution')} px{classes}; the latency was "
                  f"measured for this spec's own input and head ({spec.in_chans} channels, {spec.input_size}x"
                  f"{spec.input_size}, {spec.num_classes} classes): set in_chans, num_classes and input_size to "
                  "your deployment's before you train it"]
    return lines


def write_csv(records: Sequence[TrialRecord], path: str | Path, rule: str | None = None) -> Path:
    """The trials as search.report.trials_csv's flat table: a header, then one line per trial (`rule`: the
    pick rule that marks the tied set)."""
    path = _prepared(path)
    fieldnames, table = rows(records, rule)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(table)
    return path


def write_json(records: Sequence[TrialRecord], path: str | Path) -> Path:
    """The trials as a list of full records (TrialRecord.to_dict): exact numbers, the spec as a mapping."""
    path = _prepared(path)
    data = [r.to_dict() for r in sorted(records, key=lambda r: r.number)]
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def _figure(study: optuna.Study, records: list[TrialRecord], budget_ms: float | None) -> go.Figure:
    budget = study_attrs.budget_ms(study) if budget_ms is None else budget_ms
    return figure(figure_data(records, study_name=study.study_name, budget_ms=budget, rule=study_attrs.pick(study)))


def _write_html(fig: go.Figure, path: Path) -> Path:
    path = _prepared(path)
    fig.write_html(path, include_plotlyjs=True, full_html=True, config={"displaylogo": False, "responsive": True})
    return path


def _write_image(fig: go.Figure, path: Path) -> Path:
    return images.write_image(fig, _prepared(path), width=IMAGE_SIZE[0], height=IMAGE_SIZE[1])


def _prepared(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
