"""Design-space analysis: on studies of known structure (latency set by `norm`; accuracy by `act`, or by
`partial_ratio`), written through TrialWriter exactly as a search writes it, the importances, EDFs, costs and
the paper's choices come out right; the census runs end to end through the CLI and `analyze` reads it."""

import html
import json
import math
import random
from dataclasses import replace

import optuna
import pytest
import torch
import yaml

from fasternet_space import count
from fasternet_space.measure import Measurement, Protocol
from fasternet_space.stats import adjusted_ratio, edf, median_interval
from search import read_trials
from search.analysis.analysis import analyze, analyze_study
from search.analysis.data import NOT_ENOUGH, levels, study_space
from search.analysis.figure import MODEBAR_PX, TITLE_PX, cost_figure, edf_figure, importance_figure
from search.analysis.html import format_text, html_report, to_json, write_analysis
from search.analysis.importance import MIN_IMPORTANCE_TRIALS
from search.records.study_attrs import SAMPLERS as SAMPLERS_ATTR
from search.records.trial import MEASURED, TRAINED, TrialWriter
from search.run.study import DIRECTIONS
from search.space import Free, SearchSpace
from tests.cli_helpers import run_cli
from tests.conftest import TINY_SPACE

BUDGET_MS = 100.0
N_TRIALS = 60


def known_latency(params: dict) -> float:
    """LayerNorm triples the latency; nothing else matters."""
    return 3.0 if params["norm"] == "ln" else 1.0


def accuracy_by_act(params: dict) -> float:
    """GELU is worth 10 points; nothing else matters."""
    return 0.70 + (0.10 if params["act"] == "gelu" else 0.0)


def accuracy_by_ratio(params: dict) -> float:
    """r = 1/4 is worth 5 points; nothing else matters."""
    return 0.70 + (0.05 if params["partial_ratio"] == 0.25 else 0.0)


def known_study(n_trials: int = N_TRIALS, sampler: str = "random", accuracy=accuracy_by_act,
                seed: int = 0, space_dict: dict = TINY_SPACE) -> tuple[optuna.Study, SearchSpace]:
    """A study a random search could have written: every attribute through TrialWriter, no training."""
    space = SearchSpace.from_dict(space_dict)
    study = optuna.create_study(directions=DIRECTIONS, sampler=optuna.samplers.RandomSampler(seed=seed),
                                study_name="known")
    study.set_user_attr(SAMPLERS_ATTR, [sampler])
    study.set_user_attr("setting", {"budget_ms": BUDGET_MS})
    protocol = Protocol.for_device(torch.device("cpu"), input_size=64, in_chans=3, runtime="pytorch")
    noise = random.Random(seed)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        writer = TrialWriter(trial)
        spec = space.suggest(trial)
        cost = count(spec)
        writer.cost(spec, cost)
        latency = known_latency(trial.params) * (1 + 0.05 * noise.random())
        writer.measurement(Measurement(latency, (0.99 * latency, 1.01 * latency), 7, True, 1e3 / latency,
                                       cost.flops / (latency / 1e3), protocol), BUDGET_MS)
        acc = accuracy(trial.params) + 0.01 * noise.random()
        writer.epoch([acc], [1.0 - acc])
        writer.proxy_result(acc, 2000, 10, 0)
        return acc, latency

    study.optimize(objective, n_trials=n_trials)
    return study, space


@pytest.fixture(scope="module")
def known():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, space = known_study()
    records = read_trials(study)
    return study, space, records, analyze(records, space, "known", BUDGET_MS, samplers=["random"])


def test_importances_rank_the_parameter_that_drives_each_objective_first(known):
    _, _, records, a = known
    assert all(r.status == TRAINED for r in records)
    for evaluator in ("fanova", "ped-anova"):
        accuracy = a.importance("accuracy", evaluator)
        latency = a.importance("latency", evaluator)
        assert accuracy.n_trials == latency.n_trials == N_TRIALS
        assert accuracy.ranking[0] == "act", accuracy.values
        assert latency.ranking[0] == "norm", latency.values
        assert set(accuracy.values) == set(latency.values) == set(a.params)
        assert sum(accuracy.values.values()) == pytest.approx(1.0)
    assert a.importance("accuracy", "fanova").values["act"] > 0.5
    assert a.importance("latency", "fanova").values["norm"] > 0.5


def test_edfs_are_monotone_distributions_with_n_per_curve(known):
    _, space, records, a = known
    assert [g.param for g in a.edfs] == a.params == [f.param for f in space.free_params]
    for group in a.edfs:
        assert sum(c.n for c in group.curves) == a.n_edf == N_TRIALS
        for curve in group.curves:
            assert curve.n == len(curve.errors) == len(curve.cdf)
            assert curve.errors == sorted(curve.errors) and all(0 <= e <= 1 for e in curve.errors)
            assert all(0 < y <= 1 for y in curve.cdf) and curve.cdf == sorted(curve.cdf) and curve.cdf[-1] == 1.0
            assert curve.min_error == curve.errors[0]
    act = {c.label: c for c in next(g for g in a.edfs if g.param == "act").curves}
    # every GELU trial beats every ReLU trial: the GELU curve lies wholly to the left
    assert act["gelu"].errors[-1] < act["relu"].errors[0]
    assert act["gelu"].n == sum(r.params["act"] == "gelu" for r in records)


def test_costs_and_the_papers_choices_come_out_of_the_constructed_study(known):
    _, _, records, a = known
    norm = {row.label: row for row in next(g for g in a.costs if g.param == "norm").rows}
    assert norm["ln"].latency_ms.low > norm["bn"].latency_ms.high  # 3x slower, beyond the intervals
    assert norm["ln"].n + norm["bn"].n == N_TRIALS
    choices = {c.key: c for c in a.choices}
    ratio = choices["norm"].numbers["latency_ratio_ln_over_bn"]
    assert 2.9 < ratio["value"] < 3.1 and 2.7 < ratio["low"] < ratio["high"] < 3.3  # 3x by construction
    fitted = choices["norm"].numbers["latency_ratio_ln_over_bn_equal_flops"]
    assert fitted["n"] == N_TRIALS and 2.9 < fitted["value"] < 3.1 and 2.8 < fitted["low"] < fitted["high"] < 3.2
    fitted = choices["activation"].numbers["latency_ratio_gelu_over_relu_equal_flops"]
    assert fitted["low"] < 1.0 < fitted["high"]
    assert choices["partial_ratio"].answered  # accuracy does not depend on it here: see the next test
    act = choices["activation"]
    gap = act.numbers["top1_gelu_minus_relu_smaller"]
    assert gap["low"] > 0.05 and "GELU better" in act.answer  # 10 points by construction
    speed = act.numbers["latency_ratio_gelu_over_relu"]
    assert speed["low"] < 1.0 < speed["high"]  # the activation costs nothing here
    stage3 = choices["stage3_depth"]
    front = [r for r in records if r.pareto]
    if len(front) >= 3:
        shares = sorted(r.spec["depths"][2] / sum(r.spec["depths"]) for r in front)
        assert stage3.answered and shares[0] <= stage3.numbers["front"]["median"] <= shares[-1]
    else:
        assert not stage3.answered and NOT_ENOUGH in stage3.answer


def test_the_best_partial_ratio_is_found_where_it_matters(quiet_optuna):
    study, space = known_study(accuracy=accuracy_by_ratio, seed=1)
    a = analyze(read_trials(study), space, samplers=["random"], budget_ms=BUDGET_MS)
    for evaluator in ("fanova", "ped-anova"):
        assert a.importance("accuracy", evaluator).ranking[0] == "partial_ratio"
    choice = next(c for c in a.choices if c.key == "partial_ratio")
    assert "partial_ratio = 0.25 has the highest mean top-1 (%) within the 100 ms budget, its interval is above" \
        in choice.answer
    means = choice.numbers["partial_ratio"]
    assert means["0.25"]["low"] > means["0.5"]["high"] and 0.74 < means["0.25"]["mean"] < 0.76


def test_json_holds_every_section_and_html_is_offline(known, tmp_path):
    *_, a = known
    path = write_analysis(a, tmp_path / "a.json")
    data = json.loads(path.read_text())
    for key in ("study", "budget_ms", "samplers", "counts", "params", "n_trained", "n_edf", "n_measured", "n_predicted",
                "importances", "edfs", "costs", "choices", "warnings", "notes", "targets"):
        assert key in data
    assert len(data["importances"]) == 6 and {c["key"] for c in data["choices"]} == {
        "partial_ratio", "activation", "norm", "stage3_depth"}
    page = html_report(a)
    assert page.count("<script>/**") == 1 and len(page) > 3_000_000  # plotly.js inlined, once
    assert "<script src=" not in page and "EDF of proxy error by act" in page
    assert "GELU" in format_text(a)
    # every EDF names its curves, also a parameter whose trials fell in a single bin
    lone = next(g for g in a.edfs if g.curves)
    lone = replace(lone, curves=lone.curves[:1])
    assert [t.showlegend for t in edf_figure(lone).data] == [True]


def test_predicted_latencies_are_counted_and_said(known):
    study, space, *_ = known
    records = read_trials(study)
    records = [replace(r, latency_source="predicted") if i % 3 == 0 else r for i, r in enumerate(records)]
    a = analyze(records, space, "known", BUDGET_MS, ["random"])
    predicted = sum(i % 3 == 0 for i in range(len(records)))
    assert a.n_predicted == predicted and a.n_measured == len(records)
    assert any(f"{predicted} of the {len(records)} latencies are a latency table's predictions" in n for n in a.notes)
    assert f"{len(records) - predicted} measured, {predicted} predicted by the latency table" in html_report(a)


def test_few_trials_and_a_guided_sampler_are_warned_about(quiet_optuna):
    study, space = known_study(n_trials=MIN_IMPORTANCE_TRIALS - 1, sampler="tpe")
    a = analyze(read_trials(study), space, samplers=["tpe"])
    assert any("sampled with tpe" in w for w in a.warnings)
    assert any("too few for a stable EDF" in w for w in a.warnings)
    assert all(not i.values and NOT_ENOUGH in i.note for i in a.importances)
    b = analyze(read_trials(study), space, samplers=None)
    assert any("does not record its sampler" in w for w in b.warnings)


def test_study_space_falls_back_to_the_trials_distributions(quiet_optuna):
    study, space = known_study(n_trials=3)
    rebuilt = study_space(study)  # the setting names no space file
    assert sorted(f.param for f in rebuilt.free_params) == sorted(f.param for f in space.free_params)
    assert analyze_study(study).n_trained == 3


def test_levels_bin_wide_ranges_and_keep_few_values():
    assert [lv.label for lv in levels(Free("d", low=0, high=2, integer=True))] == ["0", "1", "2"]
    wide = levels(Free("depths[2]", low=2, high=18, integer=True))
    assert len(wide) == 4 and sum(lv.holds(v) for lv in wide for v in range(2, 19)) == 17
    cont = levels(Free("x", low=0.0, high=1.0))
    assert sum(lv.holds(0.5) for lv in cont) == 1 and cont[-1].holds(1.0)


def test_adjusted_ratio_removes_a_confounder():
    rng = random.Random(0)
    size = [rng.uniform(1, 10) for _ in range(40)]
    # the flag doubles the value, and flagged rows are mostly the large ones (a confounded comparison)
    flag = [s > 4 if i % 5 else s <= 4 for i, s in enumerate(size)]
    values = [s * (2.0 if f else 1.0) * (1 + 0.01 * rng.random()) for s, f in zip(size, flag, strict=True)]
    ratio, low, high, dof = adjusted_ratio(values, flag, [[math.log(s) for s in size]])
    assert low < 2.0 < high and high - low < 0.1 and dof == 37
    assert adjusted_ratio(values[:3], flag[:3], [size[:3]]) is None  # no degrees of freedom left


def test_edf_and_median_interval():
    xs, ys = edf([0.3, 0.1, 0.2, 0.2])
    assert xs == [0.1, 0.2, 0.2, 0.3] and ys == [0.25, 0.5, 0.75, 1.0]
    median, low, high = median_interval(list(range(1, 21)))
    assert median == 10.5 and (low, high) == (6, 15)  # the 6th and 15th order statistics for n = 20


def test_census_runs_through_the_cli_and_analyze_reads_it(tmp_path, capsys):
    from cli import main
    from search import load_study
    from search.report.export import write_report

    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    storage = f"sqlite:///{tmp_path / 's.db'}"
    result = run_cli("search", "--proxy", "none", "--sampler", "random", "--n-trials", "3", "--space", str(space),
                     "--storage", storage, "--study-name", "census", "--latency-budget", "1s", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "3 measured only (census)" in result.stdout and "census: 3 candidates measured" in result.stdout
    out = tmp_path / "census.html"
    capsys.readouterr()
    assert main(["analyze", "--study", "census", "--storage", storage, "--out", str(out), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)  # one complete JSON object
    assert data["counts"] == {MEASURED: 3} and data["n_measured"] == 3 and data["n_trained"] == 0
    assert data["samplers"] == ["random"] and any("need trained trials" in n for n in data["notes"])
    assert all(g["rows"] for g in data["costs"]) and out.stat().st_size > 1_000_000
    assert write_report(load_study("census", storage), tmp_path / "p.html").stat().st_size > 0  # pareto copes
    census = analyze_study(load_study("census", storage))
    titles = [a.text for a in importance_figure(census).layout.annotations]
    assert not any(t.startswith("accuracy") for t in titles) and any(t.startswith("latency (n=3)") for t in titles)
    assert main(["analyze", "--study", "nope", "--storage", storage]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: --study 'nope'") and "'census'" in error


# --------------------------------------------------------------------------------------------- issue 24: what a
# user reads in `analyze` is true


def test_a_training_only_field_gets_no_latency_flops_or_cost_entries(quiet_optuna, tmp_path):
    study, space = known_study(space_dict={**TINY_SPACE, "drop_path_rate": {"choices": [0.0, 0.1, 0.2]},
                                           "layer_scale_init_value": {"choices": [0.0, 1e-6]}})
    a = analyze(read_trials(study), space, "known", BUDGET_MS, samplers=["random"])
    neutral = {"drop_path_rate", "layer_scale_init_value"}
    data = json.loads((write_analysis(a, tmp_path / "a.json")).read_text())
    for imp in data["importances"]:
        assert (neutral <= set(imp["values"])) == (imp["target"] == "accuracy"), imp  # accuracy keeps them
    assert not neutral & {g["param"] for g in data["costs"]} and {g["param"] for g in data["costs"]} >= {"norm", "act"}
    assert any("drop_path_rate, layer_scale_init_value cannot change the deployed network" in n for n in data["notes"])
    text = format_text(a).split("\n")
    latency_at = next(i for i, line in enumerate(text) if line.startswith("  latency (n="))
    cost_lines = text[latency_at:text.index("the paper's choices:")]
    assert not any(p in line for line in cost_lines for p in neutral)
    assert any("drop_path_rate" in line for line in text[:latency_at])  # accuracy importance
    page = html_report(a)
    assert "latency by drop_path_rate" not in page and "latency by norm" in page
    bars = {t.xaxis: set(t.y) for t in importance_figure(a).data}  # x, x2, x3: accuracy, latency, FLOPS
    assert neutral <= bars["x"] and not neutral & (bars["x2"] | bars["x3"])


def test_the_latency_ratio_answer_is_the_adjusted_one_and_the_raw_one_is_labelled_confounded(known):
    *_, a = known
    answer = next(c for c in a.choices if c.key == "activation").answer
    fit = next(c for c in a.choices if c.key == "activation").numbers["latency_ratio_gelu_over_relu_equal_flops"]
    assert answer.startswith(f"latency GELU / ReLU {fit['value']:.2f}x [")  # the answer comes first
    adjusted, raw = answer.index("at equal FLOPs and other choices"), answer.index("raw ratio")
    assert adjusted < raw and "confounded by size and the other choices, not the cost of act" in answer[raw:]
    study_line = next(line for line in format_text(a).split("\n") if "latency GELU / ReLU" in line)
    assert study_line.strip().startswith("study: latency GELU / ReLU") and "confounded" in study_line
    assert html.escape(answer) in html_report(a)


def test_a_value_seen_in_fewer_than_3_trials_is_warned_on_its_bar(known):
    study, space, records, _ = known
    one_ln = next(r.number for r in records if r.params["norm"] == "ln")
    records = [r if r.number == one_ln else replace(r, params={**r.params, "norm": "bn"}) for r in records]
    a = analyze(records, space, "known", BUDGET_MS, samplers=["random"])
    norm_lines = [line for line in format_text(a).split("\n") if line.startswith("    norm ")]
    assert len(norm_lines) == 3 and all(line.endswith("⚠ rare: ln: 1 trial") for line in norm_lines)  # 3 targets
    assert not any("⚠" in line for line in format_text(a).split("\n") if line.startswith("    act "))
    fig = importance_figure(a)
    for trace in fig.data:
        marked = dict(zip(trace.y, trace.text, strict=True))
        assert marked["norm"] == "⚠ ln: 1 trial" and marked["act"] == ""
        assert dict(zip(trace.y, trace.customdata, strict=True))["norm"] == "⚠ rare: ln: 1 trial"  # on hover
    assert any(w.startswith("norm: a value seen in fewer than 3 trials") for w in a.warnings)
    assert json.loads(to_json(a))["importances"][0]["rare"] == {"norm": {"ln": 1}}


def test_a_missing_scikit_learn_is_one_note(known, monkeypatch):
    _, space, records, _ = known
    def no_sklearn(**kwargs):  # what Optuna raises without scikit-learn
        raise ImportError("Tried to import 'sklearn.ensemble' but failed. Please make sure that the package is "
                          "installed correctly to use this feature. Actual error: No module named 'sklearn'.")

    monkeypatch.setattr(optuna.importance, "FanovaImportanceEvaluator", no_sklearn)
    a = analyze(records, space, "known", BUDGET_MS, samplers=["random"])
    text = format_text(a)
    assert text.count("scikit-learn") == 1 and "note: fANOVA needs scikit-learn: pip install -e '.[analysis]'" in text
    assert html_report(a).count("scikit-learn") == 1
    assert a.importance("latency", "ped-anova").values and not a.importance("latency", "fanova").values


def test_no_title_sits_under_the_plotly_toolbar(known):
    *_, a = known
    figures = [importance_figure(a)] + [edf_figure(g) for g in a.edfs] + [cost_figure(g) for g in a.costs]
    for fig in figures:
        layout = fig.layout
        subplot_titles = [t for t in layout.annotations if t.yref == "paper" and t.y == 1.0]
        # subplot titles stand on the plot area's top edge, one line high; the figure's title below the toolbar
        title_lines = int(bool(layout.title.text)) + int(bool(subplot_titles))
        assert layout.margin.t >= MODEBAR_PX + TITLE_PX * title_lines, layout.title.text
        if layout.title.text:
            assert layout.title.yanchor == "top" and layout.title.pad.t >= MODEBAR_PX


def test_a_study_ranked_by_held_out_loss_has_loss_importances(known, tmp_path):
    _, space, records, _ = known
    # the loss is set by norm alone (the top-1 by act): the accuracy importances must follow the loss
    records = [replace(r, rank_by="loss", proxy_loss=1.0 + (0.5 if r.params["norm"] == "ln" else 0.0)
                       + 0.01 * (r.number % 7)) for r in records]
    a = analyze(records, space, "known", BUDGET_MS, samplers=["random"])
    for evaluator in ("fanova", "ped-anova"):
        assert a.importance("accuracy", evaluator).ranking[0] == "norm"
    data = json.loads(write_analysis(a, tmp_path / "a.json").read_text())
    assert data["accuracy_metric"] == "loss" and data["targets"]["accuracy"].startswith("held-out loss")
    assert "accuracy (held-out loss) (n=60):" in format_text(a)
    assert importance_figure(a).layout.annotations[0].text.startswith("accuracy (held-out loss)")
