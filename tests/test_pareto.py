"""Study reports (Pareto figure, trials table, best spec), on small studies built by hand (no training, no timing).

The studies are written as search.run.objective writes them (search.records.trial.TrialWriter) and read back only
through TrialRecord.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
import warnings
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from fasternet_space import count, named_spec
from fasternet_space.measure import Measurement, Protocol
from search.errors import SearchError
from search.records.trial import FAILED, INVALID, OVER_BUDGET, PRUNED, TRAINED, Key, TrialWriter, read_trials
from search.report import images as browser
from search.report.export import ALLOWED_EXTENSIONS, export_study, save_best_spec, write_report
from search.report.figure import IMAGE_SIZE, figure
from search.report.figure_data import study_figure_data
from search.report.trials_csv import FIXED_COLUMNS
from search.run.storage import load_study
from search.space import SearchSpace

BUDGET = 20.0
PROTOCOL = {"device": "cpu", "device_name": "Toy CPU", "threads": 1, "batch": 1, "throughput_batch": 1,
            "input_size": 224, "in_chans": 3, "dtype": "float32", "runtime": "pytorch-eager", "torch": "2.13.0+cpu"}
_T0 = {k: v for k, v in named_spec("t0").to_dict().items() if k != "name"}
# T0's space with three free parameters: embed_dim, depths[2] and act.
SPACE = SearchSpace.from_dict({**_T0, "embed_dim": {"low": 32, "high": 96, "step": 8},
                               "depths": [1, 2, {"low": 2, "high": 8}, 2], "act": {"choices": ["relu", "gelu"]}})
PARAMS = ["act", "depths[2]", "embed_dim"]

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
    (None, "INVALID", None, None, 64),   # not a valid network
]


pytestmark = pytest.mark.usefixtures("quiet_optuna")


def make_study(tmp_path: Path | None, trials=TRIALS, name: str = "toy") -> tuple[optuna.Study, str | None]:
    """A study as search.run.objective leaves it, written through TrialWriter: the searched parameters, cost,
    measurement with the latency constraint, epochs, and pruned, failed and invalid trials.

    In SQLite under tmp_path, or in memory when tmp_path is None.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = None if tmp_path is None else f"sqlite:///{tmp_path / 'studies.db'}"
    study = optuna.create_study(storage=storage, study_name=name, directions=["maximize", "minimize"])
    study.set_user_attr("setting", {"budget_ms": BUDGET, "device": "cpu", "space": "spaces/fasternet.yaml",
                                    "data": "digits"})
    protocol = Protocol.from_dict(PROTOCOL)
    for named, state, latency, acc, embed in trials:
        depth = 8 if named else embed // 8 % 6 + 2  # the named configs have depths [1, 2, 8, 2], the rest not
        act = "gelu" if named or embed % 16 else "relu"
        study.enqueue_trial({"embed_dim": embed, "depths[2]": depth, "act": act},
                            user_attrs={Key.NAMED: named} if named else None)
        trial = study.ask()
        writer = TrialWriter(trial)
        spec = SPACE.suggest(trial, name=f"cand-{embed}")
        if state == "INVALID":
            writer.invalid("depths[2]: 2 is not allowed with embed_dim 64")
            study.tell(trial, state=TrialState.PRUNED)
            continue
        writer.cost(spec, count(spec))
        if latency is None:
            writer.failure("RuntimeError: could not build")
            study.tell(trial, state=TrialState.FAIL)
            continue
        flops = count(spec).flops
        within = writer.measurement(Measurement(
            latency_ms=latency, latency_ci_ms=(latency * 0.98, latency * 1.03), repeats=30, stable=True,
            throughput=1e3 / latency, flops_per_s=flops / (latency / 1e3), protocol=protocol), BUDGET)
        if not within:
            study.tell(trial, [0.0, latency])
        elif state == "PRUNED":
            writer.epoch([0.30], [2.0])
            writer.epoch([0.30, 0.33], [2.0, 1.9])
            writer.pruned(2, 0.33, 0.40, "bottom quarter", 3, "top1")
            study.tell(trial, state=TrialState.PRUNED)
        elif state == "FAIL":
            writer.epoch([0.20], [2.1])
            writer.failure("out of memory while training")
            study.tell(trial, state=TrialState.FAIL)
        else:
            writer.epoch([acc / 2], [2.5 - acc])
            writer.epoch([acc / 2, acc], [2.5 - acc, round(2.5 - 2 * acc, 4)])
            writer.proxy_result(acc, test_size=500, classes=10, seed=0, loss=round(2.5 - 2 * acc, 4))
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


def hover_of(fig, number: int) -> str:
    return " ".join(h for tr in fig.data if tr.customdata is not None
                    for n, h in zip(tr.customdata, tr.hovertext, strict=True) if int(n) == number)


def test_records_of_the_toy_study(study):
    """The fixture is what the tests below assume (statuses, front, reasons)."""
    records = {r.number: r for r in read_trials(study)}
    assert [records[n].status for n in range(len(TRIALS))] == [
        TRAINED, TRAINED, TRAINED, OVER_BUDGET, OVER_BUDGET, PRUNED, FAILED, FAILED, TRAINED, INVALID]
    assert {n for n, r in records.items() if r.pareto} == {t.number for t in study.best_trials} == {0, 1, 8}
    assert all(records[n].reason for n in (3, 4, 5, 6, 7, 9))
    assert records[0].params == {"embed_dim": 40, "depths[2]": 8, "act": "gelu"} and records[0].named == "T0"


def test_figure_draws_every_measured_trial(study):
    fig = figure(study_figure_data(study))
    seen = plotted(fig)
    records = read_trials(study)
    for r in records:
        if r.latency_ms is not None:
            assert round(r.latency_ms, 6) in seen.get(r.number, set()), (r.number, r.status)
    assert 6 not in seen and 9 not in seen  # failed before it had a latency; invalid
    front = {r.number for r in records if r.pareto}
    front_trace = next(tr for tr in fig.data if tr.name == "Pareto front" and tr.customdata is not None)
    assert {int(n) for n in front_trace.customdata} == front == {0, 1, 8}
    over = next(tr for tr in fig.data if tr.name == "over budget (not trained)")
    assert {int(n) for n in over.customdata} == {3, 4} and len(set(over.y)) == 1
    trained_y = [y for tr in fig.data if tr.name and tr.name.startswith("trained") and tr.xaxis == "x" for y in tr.y]
    assert max(over.y) < min(trained_y)  # a strip below every trained trial
    hover = " ".join(" ".join(tr.hovertext) for tr in fig.data if tr.hovertext is not None)
    assert "trial #0 · T0" in hover and "embed_dim 40" in hover and "partial_ratio" in hover


def test_hover_names_status_and_reason(study):
    fig = figure(study_figure_data(study))
    assert "(trained, on the Pareto front; picked for best.yaml)" in hover_of(fig, 0)
    assert "(trained, not on the front" in hover_of(fig, 2)
    over = hover_of(fig, 3)
    assert "(over budget by 1.00 ms)" in over and "why: over budget: measured 21.00 ms" in over
    pruned = hover_of(fig, 5)
    assert "(pruned)" in pruned and "last epoch before pruning" in pruned and "stopped after epoch 2" in pruned
    assert "(failed)" in hover_of(fig, 7) and "out of memory while training" in hover_of(fig, 7)


def test_figure_labels_budget_title_and_axes(study):
    fig = figure(study_figure_data(study))
    texts = [a.text for a in fig.layout.annotations]
    assert "<b>T0</b>" in texts and "<b>T1</b>" in texts
    assert "budget 20 ms" in texts
    assert any("GFLOPS" in t for t in texts)  # the equal-FLOPS lines are labelled
    budget_lines = [s for s in fig.layout.shapes if s.type == "line" and s.x0 == s.x1]  # vertical
    assert budget_lines and all(s.x0 == BUDGET for s in budget_lines)
    assert "toy" in fig.layout.title.text and "Toy CPU" in fig.layout.title.text and "20 ms" in fig.layout.title.text
    subtitle = fig.layout.title.subtitle.text
    assert "1 thread" in subtitle and "torch 2.13.0+cpu" in subtitle
    assert ("10 trials: 4 trained within budget (3 on the front), 2 over budget, 1 pruned, 2 failed, 1 invalid"
            in subtitle)
    assert "(ms" in fig.layout.xaxis.title.text and "(ms" in fig.layout.xaxis2.title.text
    assert "(fraction)" in fig.layout.yaxis.title.text and "G multiply-adds" in fig.layout.yaxis2.title.text
    assert fig.layout.coloraxis.colorbar.title.text.replace("<br>", " ") == "achieved GFLOPS"
    wider = figure(study_figure_data(study, budget_ms=30.0))
    assert {s.x0 for s in wider.layout.shapes if s.type == "line" and s.x0 == s.x1} == {30.0}


def test_over_budget_label_only_where_trials_are_over_budget(study):
    label = "over budget: measured, not trained<br>(shown along the bottom)"
    assert label in [a.text for a in figure(study_figure_data(study)).layout.annotations]
    within = [r for r in read_trials(study) if r.status != OVER_BUDGET]
    assert label not in [a.text for a in figure(within, budget_ms=BUDGET).layout.annotations]


def test_figure_from_records(study):
    """figure() takes records too; the budget and the name are then the caller's."""
    fig = figure(read_trials(study), budget_ms=BUDGET, study_name="toy")
    assert plotted(fig) == plotted(figure(study_figure_data(study)))
    assert "study toy" in fig.layout.title.text
    bare = figure(read_trials(study))
    assert not [s for s in bare.layout.shapes if s.type == "line" and s.x0 == s.x1]  # no budget line


def test_html_is_self_contained_and_labelled(study, tmp_path):
    path = write_report(study, tmp_path / "new" / "dir" / "pareto.html")
    html = path.read_text()
    assert "T0" in html and "T1" in html
    assert "plotly.js v" in html and len(html) > 1_000_000  # plotly.js embedded
    assert re.search(r"<script[^>]*\ssrc=", html) is None  # no CDN or other external script


EXPECTED_COLUMNS = [*FIXED_COLUMNS, *(f"param_{p}" for p in PARAMS), "reason", "spec_json"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == EXPECTED_COLUMNS
        return list(reader)


def test_csv_one_line_per_trial_and_front_agrees(study, tmp_path):
    path = write_report(study, tmp_path / "trials.csv")
    assert len(path.read_text().splitlines()) == len(TRIALS) + 1  # header, then one line per trial
    rows = read_csv(path)
    records = {r.number: r for r in read_trials(study)}
    assert [int(r["trial"]) for r in rows] == sorted(records)
    assert {int(r["trial"]) for r in rows if r["pareto"] == "true"} == {n for n, r in records.items() if r.pareto}
    by_number = {int(r["trial"]): r for r in rows}
    over = by_number[3]
    assert over["status"] == "over budget" and over["state"] == "COMPLETE" and over["named"] == "T1"
    assert over["reason"].startswith("over budget: measured 21.00 ms") and over["proxy_top1"] == ""
    assert over["over_budget_ms"] == "1.000" and over["epochs_trained"] == "0"
    pruned = by_number[5]
    assert pruned["status"] == "pruned" and pruned["state"] == "PRUNED" and "stopped after epoch 2" in pruned["reason"]
    assert pruned["proxy_top1"] == "" and pruned["last_epoch_top1"] == "0.3300" and pruned["epochs_trained"] == "2"
    assert by_number[6]["status"] == "failed" and by_number[6]["latency_ms"] == ""
    assert by_number[6]["reason"] == "RuntimeError: could not build"
    assert by_number[9]["status"] == "invalid" and by_number[9]["reason"].startswith("invalid spec: ")
    assert by_number[9]["spec_json"] == "" and by_number[9]["param_embed_dim"] == "64"
    assert all(r["reason"] for r in rows if r["status"] != "trained")
    assert not any(r["reason"] for r in rows if r["status"] == "trained")
    t0 = by_number[0]
    assert t0["proxy_top1"] == "0.6000" and t0["last_epoch_top1"] == "0.6000" and t0["latency_ms"] == "9.000"
    assert t0["proxy_loss"] == "1.3000" and over["proxy_loss"] == "" and pruned["proxy_loss"] == ""
    assert t0["latency_ci_low_ms"] == "8.820" and t0["latency_ci_high_ms"] == "9.270"
    assert float(t0["over_budget_ms"]) == -11.0
    assert json.loads(by_number[8]["spec_json"])["embed_dim"] == 88


def test_csv_has_a_column_per_searched_parameter(study, tmp_path):
    rows = read_csv(write_report(study, tmp_path / "trials.csv"))
    records = {r.number: r for r in read_trials(study)}
    for row in rows:
        params = records[int(row["trial"])].params
        assert {p: row[f"param_{p}"] for p in PARAMS} == {p: str(v) for p, v in params.items()}
    assert rows[0]["param_depths[2]"] == "8" and rows[1]["param_depths[2]"] == "6"


def test_csv_numbers_are_rounded_with_units_in_the_names(study, tmp_path):
    rows = read_csv(write_report(study, tmp_path / "trials.csv"))
    for name in ("latency_ms", "latency_ci_low_ms", "latency_ci_high_ms", "over_budget_ms", "gmacs",
                 "achieved_gflops", "params_m"):
        assert name in rows[0]
    # the plots' GFLOPS under the same name; multiply-adds themselves are gmacs, never FLOPs
    assert [c for c in rows[0] if "flops" in c] == ["achieved_gflops"]
    records = {r.number: r for r in read_trials(study)}
    for row in rows:
        r = records[int(row["trial"])]
        if r.flops is None:
            assert row["gmacs"] == "" and row["params_m"] == ""
            continue
        assert len(row["gmacs"].replace(".", "").lstrip("0")) == 4  # 4 significant digits
        assert float(row["gmacs"]) == pytest.approx(r.flops / 1e9, rel=1e-3)
        assert float(row["params_m"]) == pytest.approx(r.param_count / 1e6, rel=1e-3)
        if r.flops_per_s is not None:
            assert float(row["achieved_gflops"]) == pytest.approx(r.flops_per_s / 1e9, rel=1e-3)
        if row["latency_ms"]:
            assert re.fullmatch(r"\d+\.\d{3}", row["latency_ms"])
        for acc in ("proxy_top1", "last_epoch_top1"):
            assert row[acc] == "" or re.fullmatch(r"0\.\d{4}", row[acc])
        assert "\n" not in row["spec_json"] and "\n" not in row["reason"]


def test_json_round_trip_holds_full_records(study, tmp_path):
    rows = json.loads(write_report(study, tmp_path / "trials.json").read_text())
    records = read_trials(study)
    assert rows == [json.loads(json.dumps(r.to_dict())) for r in records]
    assert {r["number"] for r in rows if r["pareto"]} == {r.number for r in records if r.pareto}
    assert [r["status"] for r in rows if r["number"] in (3, 4)] == ["over budget", "over budget"]
    assert [r["feasible"] for r in rows if r["number"] in (3, 4)] == [False, False]
    assert isinstance(rows[8]["spec"], dict) and rows[8]["spec"]["embed_dim"] == 88
    assert rows[0]["params"] == {"embed_dim": 40, "depths[2]": 8, "act": "gelu"}
    assert rows[0]["latency_ci_ms"] == [9.0 * 0.98, 9.0 * 1.03]  # exact, not rounded


@pytest.mark.skipif(not browser.chromium_available(), reason="no Chromium/Chrome for kaleido (apt-get install chromium)")
def test_png_export(study, tmp_path):
    path = write_report(study, tmp_path / "pareto.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_image_without_chromium_is_one_line(study, tmp_path, monkeypatch):
    monkeypatch.setattr(browser, "browser_path", lambda: None)
    for suffix in (".png", ".svg", ".pdf"):
        with pytest.raises(SearchError) as exc:
            write_report(study, tmp_path / f"pareto{suffix}")
        message = one_line(exc)
        assert exc.value.parameter == "out" and message.startswith(f"out {tmp_path / f'pareto{suffix}'}: ")
        assert "Chromium" in message and "apt-get install chromium" in message and ".html" in message
        assert "--" not in message  # names the parameter, never a CLI flag
    written = export_study(study, tmp_path / "out")
    assert [p.name for p in written] == ["pareto.html", "trials.csv", "best.yaml"]


def test_export_study(study, tmp_path):
    written = export_study(study, tmp_path / "export")
    names = [p.name for p in written]
    expected = ["pareto.html"] + (["pareto.png"] if browser.chromium_available() else []) + ["trials.csv", "best.yaml"]
    assert names == expected and all(p.is_file() for p in written)
    text = (tmp_path / "export" / "best.yaml").read_text()
    best = yaml.safe_load(text)
    # the most accurate feasible trial is embed_dim 88; T0 is tied with it on 500 held-out images, and faster
    assert best["name"] == "toy-best" and best["embed_dim"] == 40 and "# picked by --pick fastest" in text


def test_save_best_spec(study, tmp_path):
    path = save_best_spec(read_trials(study), "mine", tmp_path / "runs" / "best.yaml", "best-score")
    assert path == tmp_path / "runs" / "best.yaml"
    best = yaml.safe_load(path.read_text())
    assert best["name"] == "mine-best" and best["embed_dim"] == 88 and best["depths"] == [1, 2, 7, 2]


def test_export_without_feasible_trial_skips_best(tmp_path, monkeypatch):
    monkeypatch.setattr(browser, "browser_path", lambda: None)
    study, _ = make_study(None, trials=[("T1", "COMPLETE", 21.0, None, 64), (None, "COMPLETE", 30.0, None, 96)])
    written = export_study(study, tmp_path / "export")
    assert [p.name for p in written] == ["pareto.html", "trials.csv"]
    assert not (tmp_path / "export" / "best.yaml").exists()
    assert save_best_spec(read_trials(study), "toy", tmp_path / "best.yaml") is None
    assert not (tmp_path / "best.yaml").exists()
    assert plotted(figure(study_figure_data(study))).keys() == {0, 1}


def test_empty_study_still_reports(tmp_path, monkeypatch):
    monkeypatch.setattr(browser, "browser_path", lambda: None)
    study, _ = make_study(None, trials=[], name="empty")
    assert plotted(figure(study_figure_data(study))) == {}
    assert [p.name for p in export_study(study, tmp_path)] == ["pareto.html", "trials.csv"]
    with (tmp_path / "trials.csv").open(newline="") as f:
        assert list(csv.reader(f)) == [[*FIXED_COLUMNS, "reason", "spec_json"]]  # the header alone
    assert json.loads(write_report(study, tmp_path / "trials.json").read_text()) == []


def test_unknown_extension_is_one_line(study, tmp_path):
    with pytest.raises(SearchError) as exc:
        write_report(study, tmp_path / "pareto.jpg")
    message = one_line(exc)
    assert exc.value.parameter == "out" and message.startswith("out ")
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


def test_stored_study_writes_what_the_suffix_names(stored, tmp_path):
    """What `cli.py pareto` does: load the study by name, write the report `--out` names."""
    _, storage = stored
    out = write_report(load_study("toy", storage), tmp_path / "report" / "trials.csv")
    assert len(read_csv(out)) == len(TRIALS)


# --------------------------------------------------------------------------------------------- what the image shows

# T0 boxed in: trials just above, below and right of it; more trials spread over both panels.
CROWDED = [
    ("T0", "COMPLETE", 9.0, 0.60, 40),
    (None, "COMPLETE", 9.0, 0.66, 48),
    (None, "COMPLETE", 9.0, 0.54, 56),
    (None, "COMPLETE", 9.7, 0.60, 32),
    ("T1", "COMPLETE", 12.0, 0.64, 64),
    *((None, "COMPLETE", 6.0 + 1.1 * i, 0.40 + 0.023 * i, 32 + 8 * (i % 9)) for i in range(12)),
    (None, "COMPLETE", 35.0, None, 96),
]


def beside(gflops: float) -> list[tuple]:
    """Trials whose achieved GFLOPS is `gflops`: in the right panel, along that line of equal FLOPS."""
    rows = []
    for i, embed in enumerate(range(32, 97, 8)):
        spec = dataclasses.replace(named_spec("t0"), embed_dim=embed, depths=[1, 2, embed // 8 % 6 + 2, 2])
        ms = count(spec).flops / gflops / 1e6
        rows.append((None, "COMPLETE", ms, 0.45 + 0.02 * i if ms <= BUDGET else None, embed))
    return rows


# Just above the lines of 10, 20 and 40 GFLOPS, where their labels went.
ALONG_THE_LINES = [*beside(11.5), *beside(23.0), *beside(46.0)]


def _px(axis, value: float, pixels: float, annotation: bool = False) -> float:
    """Pixels along a drawn axis (`range` reversed on a downward axis); annotations give log10 on a log axis."""
    u = value if annotation or axis.type != "log" else math.log10(value)
    lo, hi = axis.range
    return (u - lo) / (hi - lo) * pixels


def _panel(fig, col: int):
    suffix = "" if col == 1 else str(col)
    xaxis, yaxis = fig.layout[f"xaxis{suffix}"], fig.layout[f"yaxis{suffix}"]
    m = fig.layout.margin
    width = (IMAGE_SIZE[0] - m.l - m.r) * (xaxis.domain[1] - xaxis.domain[0])
    height = (fig.layout.height - m.t - m.b) * (yaxis.domain[1] - yaxis.domain[0])
    return xaxis, yaxis, width, height


def marker_boxes(fig, col: int) -> list[tuple[float, float, float, float]]:
    """Every marker and error bar the panel draws, as pixel boxes (x0, y0, x1, y1) of the exported image."""
    xaxis, yaxis, width, height = _panel(fig, col)
    boxes = []
    for trace in fig.data:
        if trace.xaxis != ("x" if col == 1 else f"x{col}") or trace.mode != "markers" or trace.x[0] is None:
            continue
        sizes = trace.marker.size if isinstance(trace.marker.size, tuple | list) else [trace.marker.size] * len(trace.x)
        for i, (x, y, size) in enumerate(zip(trace.x, trace.y, sizes, strict=True)):
            px, py = _px(xaxis, x, width), _px(yaxis, y, height)
            boxes.append((px - size / 2, py - size / 2, px + size / 2, py + size / 2))
            if trace.error_y.array is not None:
                ends = sorted((_px(yaxis, y + trace.error_y.array[i], height),
                               _px(yaxis, y - trace.error_y.arrayminus[i], height)))
                boxes.append((px - trace.error_y.width, ends[0], px + trace.error_y.width, ends[1]))
    return boxes


def text_boxes(fig, col: int, wanted) -> dict[str, tuple[float, float, float, float]]:
    """The annotations in a panel whose text `wanted` accepts, as pixel boxes (text width estimated from the
    font size, a little inside the real box)."""
    xaxis, yaxis, width, height = _panel(fig, col)
    out = {}
    for a in fig.layout.annotations:
        if a.xref != ("x" if col == 1 else f"x{col}") or a.yref != ("y" if col == 1 else f"y{col}"):
            continue
        text = re.sub(r"<[^>]+>", "", a.text)
        if not wanted(text):
            continue
        w, h = len(text) * a.font.size * 0.55, a.font.size * 1.1
        x = _px(xaxis, a.x, width, annotation=True) + (a.xshift or 0)
        y = _px(yaxis, a.y, height, annotation=True) + (a.yshift or 0)
        x0 = x - {"left": 0, "center": w / 2, "right": w}[a.xanchor]
        y0 = y - {"bottom": 0, "middle": h / 2, "top": h}[a.yanchor]
        out[text] = (x0, y0, x0 + w, y0 + h)
    return out


def _meets(a, b) -> bool:
    return min(a[2], b[2]) - max(a[0], b[0]) > 0 and min(a[3], b[3]) - max(a[1], b[1]) > 0


def _named(text: str) -> bool:
    return text in ("T0", "T1", "T2", "S", "M", "L")


@pytest.mark.parametrize("trials", [TRIALS, CROWDED], ids=["toy", "crowded"])
def test_named_labels_sit_on_no_marker(trials):
    fig = figure(study_figure_data(make_study(None, trials=trials)[0]))
    for col in (1, 2):
        labels = text_boxes(fig, col, _named)
        assert set(labels) == {"T0", "T1"}
        markers = marker_boxes(fig, col)
        for text, box in labels.items():
            assert not [m for m in markers if _meets(box, m)], (col, text, box)


@pytest.mark.parametrize("trials", [TRIALS, CROWDED, ALONG_THE_LINES], ids=["toy", "crowded", "along-the-lines"])
def test_equal_flops_labels_sit_on_no_marker_nor_label(trials):
    fig = figure(study_figure_data(make_study(None, trials=trials)[0]))
    levels = text_boxes(fig, 2, lambda t: t.endswith("FLOPS"))
    assert len(levels) >= 3
    markers = marker_boxes(fig, 2)
    texts = list(levels.values()) + list(text_boxes(fig, 2, _named).values())
    for text, box in levels.items():
        assert not [m for m in markers if _meets(box, m)], (text, box)
        assert [t for t in texts if _meets(box, t)] == [box], text  # only itself
        assert 0 <= box[0] and box[2] <= _panel(fig, 2)[2] and 0 <= box[1] and box[3] <= _panel(fig, 2)[3]


def test_interval_legend_entry_shows_a_bar(study):
    fig = figure(study_figure_data(study))
    entries = [tr for tr in fig.data if tr.name and tr.name.startswith("95% interval") and tr.showlegend is not False]
    assert len(entries) == 1
    marker = entries[0].marker
    assert marker.symbol == "line-ns-open" and marker.size >= 8 and marker.opacity in (None, 1)
    bars = [tr for tr in fig.data if tr.error_y.array is not None]
    assert len(bars) == 1 and bars[0].showlegend is False and bars[0].legendgroup == entries[0].legendgroup


def test_top1_is_shown_as_a_fraction_as_the_cli_prints_it(study):
    fig = figure(study_figure_data(study))
    assert fig.layout.yaxis.title.text == "proxy top-1 accuracy (fraction)" and fig.layout.yaxis.tickformat == ".3f"
    assert 0 < fig.layout.yaxis.range[0] < fig.layout.yaxis.range[1] < 1
    assert all(0 <= y <= 1 for tr in fig.data if tr.xaxis == "x" and tr.mode == "markers" for y in tr.y if y is not None)
    assert "proxy top-1: 0.600, 95% CI 0.556–0.642" in hover_of(fig, 0)
    assert "proxy top-1: 0.330 (last epoch before pruning)" in hover_of(fig, 5)
    hover = " ".join(" ".join(tr.hovertext) for tr in fig.data if tr.hovertext is not None)
    assert re.search(r"\d ?%", hover.replace("95% CI", "")) is None  # no percentage left
