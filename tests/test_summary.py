"""The search's progress and summary as text (search.report.summary): the lines are returned, never printed."""

import optuna
from optuna.distributions import CategoricalDistribution

from search import read_trials
from search.records.trial import CONSTRAINT, Key
from search.report.summary import SearchProgress, closing_line, summary_lines
from search.run.study import SearchOutcome


def _study(*trials):
    study = optuna.create_study(directions=["maximize", "minimize"])
    for number, (acc, latency, extra) in enumerate(trials):
        study.add_trial(optuna.trial.create_trial(
            values=[acc, latency], constraints={CONSTRAINT: latency - 10.0}, params={"x": number},
            distributions={"x": CategoricalDistribution(list(range(10)))},
            user_attrs={Key.PROXY_ACC: acc, Key.LATENCY: latency, Key.FEASIBLE: latency <= 10.0, Key.TEST_SIZE: 1000,
                        Key.CHANCE: 0.1, Key.CURVE: [acc], **extra}))
    return study


def test_the_summary_names_the_front_the_named_configs_and_the_best_spec():
    study = _study((0.8, 4.0, {Key.NAMED: "T0"}), (0.6, 12.0, {}))
    records = read_trials(study)
    lines = summary_lines(SearchOutcome(study, notes=["a note"]), records, 10.0)
    assert lines[0] == "" and "1 trained within budget, 1 over the 10 ms budget" in lines[1]
    assert "\nPareto front" in lines[2] and "\nnamed configs in this study:" in lines
    assert lines[-1] == "\nnote: a note"
    assert closing_line(records, study.study_name, 10.0, "b.yaml").startswith(
        "\nbest feasible: trial #0 (the best, no other within the noise), top-1 0.800 [")
    assert closing_line(records, study.study_name, 10.0, "b.yaml").endswith("(python cli.py build --spec b.yaml)")


def test_nothing_feasible_and_a_census_say_why_there_is_no_best():
    over = _study((0.6, 12.0, {}))
    assert closing_line(read_trials(over), "s", 10.0, None) == (
        "\nno trial met the 10 ms budget yet; raise --latency-budget or --n-trials")
    census = _study((0.0, 4.0, {Key.MEASURED_ONLY: True}))
    assert closing_line(read_trials(census), "s", 10.0, None).startswith("\ncensus: 1 candidates measured")


def test_quiet_progress_has_no_lines():
    study = _study((0.8, 4.0, {}))
    progress = SearchProgress(3, "10ms", quiet=True)
    assert progress.start_lines(SearchOutcome(study)) == []
    assert progress.trial_line(study, study.trials[0]) is None
    loud = SearchProgress(3, "10ms", quiet=False)
    assert loud.start_lines(SearchOutcome(study)) == [f"study {study.study_name!r}: 3 trials, budget 10 ms, "
                                                      "resuming with 1 finished"]
    assert loud.trial_line(study, study.trials[0]).startswith(
        "[1/3] #0: top-1 0.800, latency 4.00 ms | best top-1 0.800 @ 4.0 ms")


def test_a_trial_before_the_start_lines_gets_its_line():
    # A two-stage search (--screen) finishes its screening trials before the main study starts.
    study = _study((0.8, 4.0, {}))
    assert SearchProgress(3, "10ms", quiet=False).trial_line(study, study.trials[0]).startswith("[1/3] #0: top-1 0.800")
