import contextlib

import optuna
import pytest
import yaml

from fasternet_space.measure import Measurement, Protocol, TimingPolicy
from fasternet_space.proxy import ProxyConfig, ProxyRun
from search import SearchConfig, SearchSpace, TrialRecord
from search.records.trial import OVER_BUDGET
from search.run import latency as latency_module
from search.run.latency import longer, measure_candidate
from tests.conftest import QUICK_TIMING, TINY_SPACE, distinct_draws_study


def _measurement(median, low, high, policy):
    protocol = Protocol.from_dict({"device": "cpu", "runtime": "onnxruntime", "rel_ci": policy.rel_ci})
    return Measurement(latency_ms=median, latency_ci_ms=(low, high), repeats=policy.min_repeats, stable=True,
                       throughput=1e3 / median, flops_per_s=1.0, protocol=protocol)


class FakeSession:
    """Answers with the given (median, low, high) in turn, and keeps the policies it was asked with."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.policies = []

    def measure(self, policy):
        self.policies.append(policy)
        return _measurement(*self.answers.pop(0), policy)


def _with_session(monkeypatch, session):
    opened = []

    @contextlib.contextmanager
    def fake_spec_session(spec, runtime, **kwargs):
        opened.append(runtime)
        yield session

    monkeypatch.setattr(latency_module, "spec_session", fake_spec_session)
    return opened


@pytest.mark.parametrize("first, borderline", [((9.0, 8.8, 9.2), False), ((10.1, 9.9, 10.3), True),
                                               ((11.0, 10.5, 11.5), False), ((10.0, 9.0, 10.0), True)])
def test_a_candidate_straddling_the_budget_is_remeasured_longer_on_the_same_model(monkeypatch, first, borderline):
    session = FakeSession([first, (10.4, 10.3, 10.5)])
    opened = _with_session(monkeypatch, session)
    config = SearchConfig(budget_ms=10.0, runtime="onnxruntime")
    measurement, was_borderline = measure_candidate(object(), config)
    assert was_borderline is borderline and opened == ["onnxruntime"]  # built and exported once
    assert session.policies == ([config.timing, longer(config.timing)] if borderline else [config.timing])
    assert measurement.latency_ms == (10.4 if borderline else first[0])


def test_the_longer_policy_is_longer_and_tighter():
    base = TimingPolicy(warmup=3, min_repeats=7, max_time_s=4.0, rel_ci=0.03)
    long = longer(base)
    assert long.min_repeats >= 3 * base.min_repeats and long.max_time_s == 12.0 and long.rel_ci == 0.015


def test_the_record_says_borderline(monkeypatch, quiet_optuna):
    from fasternet_space.data import load_dataset
    from search.run import objective as objective_module

    session = FakeSession([(10.1, 9.9, 10.3), (10.4, 10.3, 10.5)])
    _with_session(monkeypatch, session)
    config = SearchConfig(budget_ms=10.0, timing=QUICK_TIMING, proxy=ProxyConfig(epochs=1, resolution=32),
                          latency_reference=None)  # each candidate timed on its own: the fake answers for it
    dataset = load_dataset("digits", 32, max_train=64, max_test=32)
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.optimize(objective_module.Objective(SearchSpace.from_dict(TINY_SPACE), dataset, config), n_trials=1)
    record = TrialRecord.from_trial(study.trials[0])
    assert record.status == OVER_BUDGET and record.latency_borderline is True and record.latency_source == "measured"
    assert record.latency_ms == 10.4 and record.to_dict()["latency_borderline"] is True


def _table_file(tmp_path, part_ms, device_name="here"):
    """A table for LAT_SPACE whose every part takes `part_ms` (the decision logic is under test, not timing)."""
    import torch

    from fasternet_space.latency_table import LatencyTable, enumerate_shapes, fit_deltas, key, plan_parts
    from fasternet_space.measure import Protocol
    from fasternet_space.measure import device_name as this_device
    from tests.test_latency_table import LAT_SPACE

    space_path = tmp_path / "lat.yaml"
    space_path.write_text(yaml.safe_dump(LAT_SPACE))
    todo, reference = plan_parts(enumerate_shapes(SearchSpace.from_dict(LAT_SPACE)))
    protocol = Protocol.for_device(torch.device("cpu"), input_size=64, in_chans=3, runtime="pytorch-eager").to_dict()
    protocol.update(runtime_name="torch", device_name=this_device(torch.device("cpu")) if device_name == "here"
                    else device_name)
    parts = {key(s): part_ms for s in todo}
    reference["deltas"] = fit_deltas(parts, reference)
    table = LatencyTable(protocol=protocol, space=LAT_SPACE, space_source=str(space_path),
                         parts=parts, reference=reference, correction=[1.0, 0.0, 0.0],
                         error={"n": 2, "median_rel": 0.05, "p95_rel": 0.1, "max_rel": 0.1, "within_10pct": 1.0,
                                "bound_rel": 0.1})
    return space_path, table.save(tmp_path / "table.json")


def _objective_with(monkeypatch, tmp_path, budget_ms, mode, part_ms):
    from fasternet_space.data import load_dataset
    from search.run import objective as objective_module

    space_path, table_path = _table_file(tmp_path, part_ms)
    config = SearchConfig(budget_ms=budget_ms, space=str(space_path), latency=mode, latency_table=str(table_path),
                          timing=QUICK_TIMING, proxy=ProxyConfig(epochs=1, resolution=32), zero_cost_scores=False,
                          latency_reference=None)  # no reference is built: the table's decisions are under test
    dataset = load_dataset("digits", 32, max_train=64, max_test=32)
    built = []
    monkeypatch.setattr("fasternet_space.model.build_model", lambda *a, **k: built.append(a) or pytest.fail("built"))
    monkeypatch.setattr(objective_module, "measure_candidate", lambda *a: pytest.fail("measured"))
    monkeypatch.setattr(objective_module, "train_proxy", lambda *a, **k: ProxyRun([0.5], [1.0]))
    return objective_module.Objective(SearchSpace.from_yaml(space_path), dataset, config.validate()), built


def test_auto_records_a_far_over_budget_candidate_without_building_it(monkeypatch, tmp_path, quiet_optuna):
    objective, built = _objective_with(monkeypatch, tmp_path, budget_ms=1.0, mode="auto", part_ms=100.0)
    study = distinct_draws_study()
    study.optimize(objective, n_trials=2)
    for trial in study.trials:
        record = TrialRecord.from_trial(trial)
        assert record.status == OVER_BUDGET and record.latency_source == "predicted" and record.feasible is False
        assert record.latency_ms >= 900 and "predicted" in record.reason and "not built" in record.reason
        assert record.protocol["runtime_name"] == "torch" and record.latency_borderline is None
    assert built == []
    # the CSV, the hover text and the plot's label say the latency was predicted
    from search.report.figure import over_how
    from search.report.figure_data import point, status_text
    from search.report.trials_csv import rows as table_rows

    records = [TrialRecord.from_trial(t) for t in study.trials]
    _, rows = table_rows(records)
    assert [(r["latency_source"], r["latency_borderline"]) for r in rows] == [("predicted", "")] * 2
    assert "(predicted by the latency table)" in status_text(records[0])
    assert over_how([point(r) for r in records]) == "predicted"


def test_auto_measures_a_candidate_the_table_cannot_rule_out(monkeypatch, tmp_path, quiet_optuna):
    # predicted 9 parts x 1 ms = 9 to 11 ms against a 10 ms budget: within the table's 10% error, so measured
    objective, _ = _objective_with(monkeypatch, tmp_path, budget_ms=10.0, mode="auto", part_ms=1.0)
    from search.run import objective as objective_module

    session = FakeSession([(5.0, 4.9, 5.1)])
    monkeypatch.setattr(objective_module, "measure_candidate",
                        lambda spec, config, reference=None: (session.measure(QUICK_TIMING), False))
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.optimize(objective, n_trials=1)
    record = TrialRecord.from_trial(study.trials[0])
    assert record.latency_source == "measured" and record.latency_ms == 5.0 and record.status != OVER_BUDGET


def test_predicted_mode_measures_nothing(monkeypatch, tmp_path, quiet_optuna):
    objective, built = _objective_with(monkeypatch, tmp_path, budget_ms=1e6, mode="predicted", part_ms=1.0)
    study = distinct_draws_study()
    study.optimize(objective, n_trials=2)
    for trial in study.trials:
        record = TrialRecord.from_trial(trial)
        assert record.latency_source == "predicted" and record.feasible is True and record.proxy_acc == 0.5
        assert trial.values[1] == record.latency_ms


def test_a_table_for_another_space_or_device_is_refused(tmp_path):
    from fasternet_space.latency_table import TableError
    from search.errors import SearchError
    from search.run.latency import load_table

    space_path, table_path = _table_file(tmp_path, 1.0)
    config = SearchConfig(space=str(space_path), latency="auto", latency_table=str(table_path))
    assert load_table(config) is not None
    other_space = tmp_path / "other.yaml"
    other_space.write_text(yaml.safe_dump(dict(TINY_SPACE)))
    with pytest.raises(SearchError, match="was profiled for space 'lat'"):
        load_table(SearchConfig(space=str(other_space), latency="auto", latency_table=str(table_path)))
    with pytest.raises(TableError, match="with torch, not on .* with onnxruntime"):
        load_table(SearchConfig(space=str(space_path), latency="auto", latency_table=str(table_path),
                                runtime="onnxruntime"))
    assert load_table(SearchConfig(space=str(space_path), latency="predicted", latency_table=str(table_path),
                                   runtime="onnxruntime", allow_other_device=True)) is not None
    with pytest.raises(SearchError, match="needs a latency table"):
        SearchConfig(space=str(space_path), latency="auto").validate()


def test_cli_search_latency_flags_bad_input(tmp_path):
    from tests.cli_helpers import assert_one_line_error, run_cli

    space_path, table_path = _table_file(tmp_path, 1.0, device_name="Some Other CPU")
    common = ["search", "--space", str(space_path), "--storage", f"sqlite:///{tmp_path / 's.db'}"]
    assert_one_line_error(run_cli(*common, "--latency", "auto", "--latency-table", str(table_path)),
                          "--latency-table", "was profiled on Some Other CPU")
