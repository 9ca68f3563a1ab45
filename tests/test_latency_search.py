import contextlib

import optuna
import pytest

from fasternet_space.measure import Measurement, Protocol, TimingPolicy
from fasternet_space.proxy import ProxyConfig
from search import SearchConfig, SearchSpace, TrialRecord
from search import latency as latency_module
from search.latency import longer, measure_candidate
from search.trial import OVER_BUDGET
from tests.conftest import QUICK_TIMING, TINY_SPACE


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
    from search import objective as objective_module

    session = FakeSession([(10.1, 9.9, 10.3), (10.4, 10.3, 10.5)])
    _with_session(monkeypatch, session)
    config = SearchConfig(budget_ms=10.0, timing=QUICK_TIMING, proxy=ProxyConfig(epochs=1, resolution=32))
    dataset = load_dataset("digits", 32, max_train=64, max_test=32)
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.optimize(objective_module.Objective(SearchSpace.from_dict(TINY_SPACE), dataset, config), n_trials=1)
    record = TrialRecord.from_trial(study.trials[0])
    assert record.status == OVER_BUDGET and record.latency_borderline is True and record.latency_source == "measured"
    assert record.latency_ms == 10.4 and record.to_dict()["latency_borderline"] is True
