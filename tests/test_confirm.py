"""Accuracy with its noise: intervals on every trained trial, confirmation with more seeds, honest verdicts."""

import threading

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution

from fasternet_space.proxy import ProxyConfig
from fasternet_space.stats import seed_interval, wilson_interval
from search import SearchConfig, read_trials, run_search
from search.records.front import pareto_front, standing
from search.records.study_attrs import SeedResult, store_confirmation
from search.records.trial import CONSTRAINT, TRAINED, Key
from tests.conftest import QUICK_TIMING, TINY_SPACE


def _trained(study, number, acc, latency, test_size=1000, named=None):
    attrs = {Key.PROXY_ACC: acc, Key.LATENCY: latency, Key.FEASIBLE: True, Key.TEST_SIZE: test_size,
             Key.CHANCE: 0.1, Key.SEED: 0, Key.CURVE: [acc]}
    if named:
        attrs[Key.NAMED] = named
    study.add_trial(optuna.trial.create_trial(
        values=[acc, latency], user_attrs=attrs, constraints={CONSTRAINT: latency - 100.0},
        params={"x": number}, distributions={"x": CategoricalDistribution(list(range(20)))}))


def _study():
    return optuna.create_study(directions=["maximize", "minimize"])


def test_every_trained_trial_carries_a_binomial_interval():
    study = _study()
    _trained(study, 0, 0.80, 5.0, test_size=500)
    record = read_trials(study)[0]
    assert record.accuracy == 0.80 and record.accuracy_ci == pytest.approx(wilson_interval(0.80, 500))
    assert not record.confirmed and record.seed_accs == ((0, 0.80),)
    assert record.to_dict()["accuracy_ci"] == pytest.approx(list(wilson_interval(0.80, 500)))


def test_confirmations_move_the_front_to_seed_means():
    study = _study()
    _trained(study, 0, 0.90, 5.0)  # lucky first seed
    _trained(study, 1, 0.85, 6.0)
    assert [r.number for r in pareto_front(read_trials(study))] == [0]
    study.set_user_attr("confirm:0:1", 0.80)  # a confirmation as studies stored it before the loss: top-1 alone
    store_confirmation(study, 0, 2, SeedResult(0.81))
    records = read_trials(study)
    first = records[0]
    assert first.confirmed and first.seed_accs == ((0, 0.90), (1, 0.80), (2, 0.81))
    assert first.accuracy == pytest.approx((0.90 + 0.80 + 0.81) / 3)
    assert first.accuracy_ci == pytest.approx(seed_interval([0.90, 0.80, 0.81], 1000)[2:])
    assert [r.number for r in pareto_front(records)] == [0, 1]  # 0 is faster, 1 now more accurate


def test_behind_only_beyond_the_noise_otherwise_tied():
    study = _study()
    _trained(study, 0, 0.86, 5.0)
    _trained(study, 1, 0.85, 6.0, named="T0")  # 1 point behind on 1000 images: within the noise
    _trained(study, 2, 0.70, 7.0, named="T1")  # 16 points behind: beyond it
    records = read_trials(study)
    front = pareto_front(records)
    assert standing(records[0], front) == "on the front"
    assert standing(records[1], front).startswith("tied with the front")
    assert standing(records[2], front).startswith("behind the front (#0")


def test_a_proxy_that_learned_nothing_is_flagged():
    study = _study()
    _trained(study, 0, 0.11, 5.0, test_size=100)  # chance is 0.1
    _trained(study, 1, 0.60, 5.0, test_size=100)
    records = read_trials(study)
    assert records[0].learned_nothing and not records[1].learned_nothing
    from search.report.summary import search_warnings

    warnings = search_warnings(records)
    assert len(warnings) == 1 and "did not beat chance (0.100)" in warnings[0] and "--proxy-epochs" in warnings[0]


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SPACE))
    return SearchConfig(space=str(path), budget_ms=1e6, n_trials=3, max_train_samples=64, max_test_samples=64,
                        proxy=ProxyConfig(epochs=1, resolution=32), timing=QUICK_TIMING, confirm=3, seed=5,
                        storage=f"sqlite:///{tmp_path / 's.db'}", study_name="c", named=False)


def test_confirm_stores_seeds_and_a_resumed_study_resumes_its_confirmations(tiny_config):
    stop = threading.Event()
    first_run = []

    def stop_after_one(record, seed, acc):
        first_run.append((record.number, seed))
        stop.set()  # as a Ctrl-C would, after the first retraining

    outcome = run_search(tiny_config, on_confirm=stop_after_one, stop=stop)
    # seeds 5 (own), 6, 7; a repeat of the spec during the search may have trained 6 already
    assert outcome.interrupted and outcome.confirmations == 1 and first_run[0][1] in (6, 7)
    second_run = []
    outcome = run_search(tiny_config, on_confirm=lambda r, s, a: second_run.append((r.number, s)))
    assert not outcome.interrupted and first_run[0] not in second_run  # nothing trained twice
    records = read_trials(outcome.study)
    front = [r for r in records if r.pareto]
    assert front and all(r.confirmed and [s for s, _ in r.seed_accs] == [5, 6, 7] for r in front)
    assert all(r.status == TRAINED for r in front)
    again = run_search(tiny_config, on_confirm=lambda r, s, a: pytest.fail("confirmed twice"))
    assert again.confirmations == 0


def test_a_busy_machine_makes_timing_say_so():
    study = _study()
    study.add_trial(optuna.trial.create_trial(
        values=[0.5, 5.0], constraints={CONSTRAINT: -95.0},
        user_attrs={Key.PROXY_ACC: 0.5, Key.LATENCY: 5.0, Key.LATENCY_STABLE: False, Key.LOAD: 1.8,
                    Key.TEST_SIZE: 100, Key.CHANCE: 0.1}))
    from search.report.summary import search_warnings

    (warning,) = search_warnings(read_trials(study))
    assert "1 latency measurement(s) did not settle" in warning and "load up to 1.8 per core): the machine was busy" in warning


def test_user_data_with_other_classes_than_the_space_is_pointed_out(tmp_path):
    from fasternet_space.data import load_dataset
    from search.run.study import deployment_note
    from search.space import SearchSpace

    space = SearchSpace.from_dict(TINY_SPACE)  # num_classes 10, input 64
    digits = load_dataset("digits", 32, max_train=64, max_test=32)
    assert deployment_note(space, digits, "digits") is None  # the built-in proxy data: classes are the proxy's
    three = digits.__class__(**{**digits.__dict__, "classes": 3})
    note = deployment_note(space, three, "imagefolder:/x")
    assert "10 classes at 64x64" in note and "3 classes at 32x32" in note and "num_classes: 3" in note
