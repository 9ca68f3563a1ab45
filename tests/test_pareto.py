"""Pareto plot and study reports, on small studies built by hand (no training, no timing)."""

from __future__ import annotations

import csv
import json
import re
import warnings
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from fasternet_space import dump_spec, named_spec
from search import pareto
from search.objective import CONSTRAINT
from search.pareto import (
    ALLOWED_EXTENSIONS,
    CSV_COLUMNS,
    chromium_available,
    export_study,
    figure,
    load_study,
    pareto_command,
    write_figure,
)
from search.study import SearchError

BUDGET = 20.0
PROTOCOL = {"device": "cpu", "device_name": "Toy CPU", "threads": 1, "batch": 1, "throughput_batch": 1,
            "input_size": 224, "in_chans": 3, "dtype": "float32", "runtime": "pytorch-eager", "torch": "2.13.0+cpu"}

# (named, state, latency ms or None, proxy top-1 or None, embed_dim); over budget: latency > BUDGET, not trained.
TRIALS = [
    ("T0", "COMPLETE", 9.0, 0.60, 40),
    (None, "COMPLETE", 8.0, 0.50, 32),   # front: fastest
    (None, "COMPLETE", 11.0, 0.45, 48),  # behind the front
    ("T1", "COMPLETE", 21.0, None, 64),  # over budget by 1 ms
    (None, "COMPLETE", 40.0, None, 96),  # over budget
    (None, "PRUNED", 13.0, None, 56),    # pruned after two epochs
    (None, "FAIL", None, None, 72),      # failed before timing
    (None, "FAIL", 15.0, None, 80),      # failed while training
    (None, "COMPLETE", 15.0, 0.62, 88),  # front: most accurate
]


@pytest.fixture(autouse=True)
def _quiet():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def make_study(tmp_path: Path | None, trials=TRIALS, name: str = "toy") -> tuple[optuna.Study, str | None]:
    """A study as search.objective leaves it: attributes, the latency constraint, pruned and failed trials.

    In SQLite under tmp_path, or in memory when tmp_path is None.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = None if tmp_path is None else f"sqlite:///{tmp_path / 'studies.db'}"
    study = optuna.create_study(storage=storage, study_name=name, directions=["maximize", "minimize"])
    study.set_user_attr("setting", {"budget_ms": BUDGET, "device": "cpu", "space": "spaces/fasternet.yaml",
                                    "data": "digits"})
    for named, state, latency, acc, embed in trials:
        trial = study.ask()
        spec = named_spec("t0").replace(name=f"cand-{embed}", embed_dim=embed)
        flops = 10_000_000 * embed
        trial.set_user_attr("named", named)
        trial.set_user_attr("spec_yaml", dump_spec(spec))
        trial.set_user_attr("flops", flops)
        trial.set_user_attr("params", 100_000 * embed)
        if latency is None:
            trial.set_user_attr("fail_reason", "RuntimeError: could not build")
            study.tell(trial, state=TrialState.FAIL)
            continue
        trial.set_user_attr("latency_ms", latency)
        trial.set_user_attr("flops_per_s", flops / (latency / 1e3))
        trial.set_user_attr("protocol", PROTOCOL)
        trial.set_constraint(CONSTRAINT, latency - BUDGET)
        trial.set_user_attr("feasible", latency <= BUDGET)
        if state == "PRUNED":
            trial.set_user_attr("proxy_curve", [0.30, 0.33])
            trial.set_user_attr("fail_reason", "pruned after epoch 2: top-1 0.330 below the median")
            study.tell(trial, state=TrialState.PRUNED)
        elif state == "FAIL":
            trial.set_user_attr("fail_reason", "out of memory while training")
            study.tell(trial, state=TrialState.FAIL)
        elif latency > BUDGET:
            trial.set_user_attr("proxy_acc", None)
            study.tell(trial, [0.0, latency])
        else:
            trial.set_user_attr("proxy_curve", [acc / 2, acc])
            trial.set_user_attr("proxy_acc", acc)
            study.tell(trial, [acc, latency])
    return study, storage


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> tuple[optuna.Study, str]:
    """One SQLite study for the module (building it takes a few seconds); tests only read it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return make_study(tmp_path_factory.mktemp("stored"))


@pytest.fixture
def study(stored) -> optuna.Study:
    return stored[0]


def plotted(fig) -> dict[int, set[float]]:
    """Trial number -> the latencies at which the figure draws it (from the traces' customdata)."""
    seen: dict[int, set[float]] = {}
    for trace in fig.data:
        if trace.customdata is None:
            continue
        for number, x in zip(trace.customdata, trace.x, strict=True):
            seen.setdefault(int(number), set()).add(round(float(x), 6))
    return seen


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


def test_figure_draws_every_measured_trial(study):
    fig = figure(study)
    seen = plotted(fig)
    for t in study.trials:
        latency = t.user_attrs.get("latency_ms")
        if t.state == TrialState.COMPLETE or latency is not None:
            assert round(latency, 6) in seen.get(t.number, set()), (t.number, t.state)
    assert 6 not in seen  # failed before it had a latency
    front = {t.number for t in study.best_trials}
    assert front == {0, 1, 8}
    front_trace = next(tr for tr in fig.data if tr.name == "Pareto front" and tr.customdata is not None)
    assert {int(n) for n in front_trace.customdata} == front
    over = next(tr for tr in fig.data if tr.name == "over budget (not trained)")
    assert {int(n) for n in over.customdata} == {3, 4} and len(set(over.y)) == 1
    trained_y = [y for tr in fig.data if tr.name and tr.name.startswith("trained") and tr.xaxis == "x" for y in tr.y]
    assert max(over.y) < min(trained_y)  # a strip below every trained trial
    hover = " ".join(" ".join(tr.hovertext) for tr in fig.data if tr.hovertext is not None)
    assert "trial #0 · T0" in hover and "embed_dim 40" in hover and "partial_ratio" in hover


def test_figure_labels_budget_title_and_axes(study):
    fig = figure(study)
    texts = [a.text for a in fig.layout.annotations]
    assert "<b>T0</b>" in texts and "<b>T1</b>" in texts
    assert "budget 20 ms" in texts
    assert any("GFLOPS" in t for t in texts)  # the equal-FLOPS lines are labelled
    budget_lines = [s for s in fig.layout.shapes if s.type == "line" and s.x0 == s.x1]  # vertical
    assert budget_lines and all(s.x0 == BUDGET for s in budget_lines)
    assert "toy" in fig.layout.title.text and "Toy CPU" in fig.layout.title.text and "20 ms" in fig.layout.title.text
    assert "1 thread" in fig.layout.title.subtitle.text and "torch 2.13.0+cpu" in fig.layout.title.subtitle.text
    assert "(ms" in fig.layout.xaxis.title.text and "(ms" in fig.layout.xaxis2.title.text
    assert "(%)" in fig.layout.yaxis.title.text and "G multiply-adds" in fig.layout.yaxis2.title.text
    assert fig.layout.coloraxis.colorbar.title.text.replace("<br>", " ") == "achieved GFLOPS"
    wider = figure(study, budget_ms=30.0)
    assert {s.x0 for s in wider.layout.shapes if s.type == "line" and s.x0 == s.x1} == {30.0}


def test_html_is_self_contained_and_labelled(study, tmp_path):
    path = write_figure(study, tmp_path / "new" / "dir" / "pareto.html")
    html = path.read_text()
    assert "T0" in html and "T1" in html
    assert "plotly.js v" in html and len(html) > 1_000_000  # plotly.js embedded
    assert re.search(r"<script[^>]*\ssrc=", html) is None  # no CDN or other external script


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        return list(reader)


def test_csv_one_row_per_trial_and_front_agrees(study, tmp_path):
    rows = read_csv(write_figure(study, tmp_path / "trials.csv"))
    assert [int(r["number"]) for r in rows] == [t.number for t in study.trials]
    front = {t.number for t in study.best_trials}
    assert {int(r["number"]) for r in rows if r["pareto"] == "True"} == front
    by_number = {int(r["number"]): r for r in rows}
    assert by_number[3]["feasible"] == "False" and by_number[3]["proxy_acc"] == "" and by_number[3]["named"] == "T1"
    assert by_number[5]["state"] == "PRUNED" and "pruned after epoch 2" in by_number[5]["reason"]
    assert by_number[6]["state"] == "FAIL" and by_number[6]["latency_ms"] == ""
    assert float(by_number[0]["proxy_acc"]) == 0.60 and float(by_number[0]["latency_ms"]) == 9.0
    assert yaml.safe_load(by_number[8]["spec"])["embed_dim"] == 88


def test_json_rows_agree_with_best_trials(study, tmp_path):
    rows = json.loads(write_figure(study, tmp_path / "trials.json").read_text())
    assert len(rows) == len(study.trials) and all(tuple(r) == CSV_COLUMNS for r in rows)
    assert {r["number"] for r in rows if r["pareto"]} == {t.number for t in study.best_trials}
    assert [r["feasible"] for r in rows if r["number"] in (3, 4)] == [False, False]


@pytest.mark.skipif(not chromium_available(), reason="no Chromium/Chrome for kaleido (apt-get install chromium)")
def test_png_export(study, tmp_path):
    path = write_figure(study, tmp_path / "pareto.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_image_without_chromium_is_one_line(study, tmp_path, monkeypatch):
    monkeypatch.setattr(pareto, "_browser_path", lambda: None)
    for suffix in (".png", ".svg", ".pdf"):
        with pytest.raises(SearchError) as exc:
            write_figure(study, tmp_path / f"pareto{suffix}")
        message = one_line(exc)
        assert "Chromium" in message and "apt-get install chromium" in message and ".html" in message
    written = export_study(study, tmp_path / "out")
    assert [p.name for p in written] == ["pareto.html", "trials.csv", "best.yaml"]


def test_export_study(study, tmp_path):
    written = export_study(study, tmp_path / "export")
    names = [p.name for p in written]
    expected = ["pareto.html"] + (["pareto.png"] if chromium_available() else []) + ["trials.csv", "best.yaml"]
    assert names == expected and all(p.is_file() for p in written)
    best = yaml.safe_load((tmp_path / "export" / "best.yaml").read_text())
    assert best["name"] == "toy-best" and best["embed_dim"] == 88  # the most accurate feasible trial


def test_export_without_feasible_trial_skips_best(tmp_path, monkeypatch):
    monkeypatch.setattr(pareto, "_browser_path", lambda: None)
    study, _ = make_study(None, trials=[("T1", "COMPLETE", 21.0, None, 64), (None, "COMPLETE", 30.0, None, 96)])
    written = export_study(study, tmp_path / "export")
    assert [p.name for p in written] == ["pareto.html", "trials.csv"]
    assert not (tmp_path / "export" / "best.yaml").exists()
    assert plotted(figure(study)).keys() == {0, 1}


def test_empty_study_still_reports(tmp_path, monkeypatch):
    monkeypatch.setattr(pareto, "_browser_path", lambda: None)
    study, _ = make_study(None, trials=[], name="empty")
    assert plotted(figure(study)) == {}
    assert [p.name for p in export_study(study, tmp_path)] == ["pareto.html", "trials.csv"]
    assert read_csv(tmp_path / "trials.csv") == []


def test_unknown_extension_is_one_line(study, tmp_path):
    with pytest.raises(SearchError) as exc:
        write_figure(study, tmp_path / "pareto.jpg")
    message = one_line(exc)
    assert "'.jpg'" in message and all(ext in message for ext in ALLOWED_EXTENSIONS)
    assert not (tmp_path / "pareto.jpg").exists()


def test_missing_study_lists_the_studies_there(stored):
    _, storage = stored
    with pytest.raises(SearchError) as exc:
        load_study("nope", storage)
    message = one_line(exc)
    assert "'nope'" in message and "'toy'" in message
    assert load_study("toy", storage).study_name == "toy"


def test_missing_storage_file_is_one_line_and_not_created(tmp_path):
    with pytest.raises(SearchError) as exc:
        load_study("toy", f"sqlite:///{tmp_path / 'absent.db'}")
    assert "does not exist" in one_line(exc)
    assert not (tmp_path / "absent.db").exists()


def test_pareto_command_writes_what_the_suffix_names(stored, tmp_path):
    _, storage = stored
    out = pareto_command("toy", storage, tmp_path / "report" / "trials.csv")
    assert len(read_csv(out)) == len(TRIALS)


def test_close_labels_alternate():
    axis = pareto._Axis(False, 0.0, 100.0)
    positions = pareto._label_positions([(10.0, 0.0), (11.0, 0.0), (12.0, 0.0), (60.0, 0.0)], axis, axis)
    assert positions == ["top center", "bottom center", "top center", "top center"]
