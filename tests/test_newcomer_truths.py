"""What a new user reads must be true (issue 24): the PNG export's error names what is missing, and the search's
time estimate, replayed on a recorded run's trial times, is within 30% of the truth from its first figure on and
counts the confirmation retrainings."""

import datetime
import re
import sys

import optuna
import plotly.graph_objects as go
import pytest
from optuna.distributions import CategoricalDistribution

from search.errors import SearchError
from search.records.trial import CONSTRAINT, Key
from search.report import images
from search.report.eta import TrialTime, seconds_left
from search.report.summary import SearchProgress

# --------------------------------------------------------------------------------------------- PNG export


def png_error(tmp_path) -> str:
    with pytest.raises(SearchError) as exc:
        images.write_image(go.Figure(), tmp_path / "pareto.png", 100, 100)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"out {tmp_path / 'pareto.png'}: ")
    return message


@pytest.fixture
def no_kaleido(monkeypatch):
    monkeypatch.setitem(sys.modules, "kaleido", None)  # as if not installed: its import fails


@pytest.fixture
def fake_chromium(tmp_path, monkeypatch):
    browser = tmp_path / "chromium"
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)
    monkeypatch.setenv("BROWSER_PATH", str(browser))
    return browser


@pytest.fixture
def no_chromium(tmp_path, monkeypatch):
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(images, "BROWSER_PATHS", ())


def test_without_kaleido_but_with_chromium_the_error_names_kaleido_alone(no_kaleido, fake_chromium, tmp_path):
    message = png_error(tmp_path)
    assert f"kaleido is not installed (Chromium found at {fake_chromium})" in message
    assert "pip install -e '.[image]'" in message and "apt-get" not in message and ".html/.csv/.json" in message


def test_without_kaleido_and_chromium_the_error_names_both(no_kaleido, no_chromium, tmp_path):
    message = png_error(tmp_path)
    assert "kaleido is not installed and no Chromium/Chrome found" in message
    assert "pip install -e '.[image]'" in message and "apt-get install chromium" in message


def test_with_kaleido_but_no_chromium_the_error_names_the_browser(monkeypatch, tmp_path):
    if images.kaleido_problem() is not None:
        pytest.skip("kaleido>=1 is not installed here (pip install -e '.[image]')")
    from choreographer.browsers.chromium import Chromium

    monkeypatch.setattr(Chromium, "find_browser", classmethod(lambda cls, **kwargs: None))
    message = png_error(tmp_path)
    assert "kaleido is installed but no Chromium/Chrome found" in message and "apt-get install chromium" in message
    assert "pip install" not in message


def test_a_browser_path_that_is_not_executable_is_named(no_kaleido, no_chromium, monkeypatch, tmp_path):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "nowhere"))
    assert f"BROWSER_PATH={tmp_path / 'nowhere'} is not an executable" in png_error(tmp_path)


# --------------------------------------------------------------------------------------------- the time estimate

# The README's main job (40 trials, 20 ms, --confirm 3) as trials of two costs: T0..L first (T0 and T1 within
# the budget), then the sampled ones in the order a recorded run had them trained or over the budget (26 trained
# of 40), with a quiet 2-core machine's times (the lead's runs: 8 min in all, 1.5-1.8 min of confirmations):
# T0 pays the first training's warm-up, a sampled training takes 10-17 s, an over-budget candidate 1-4 s (the
# big named ones up to 6 s). (seconds, trained, named, confirmed: a named config or on the final front).
ORDER = "TTQQQQQQQQTTTQTTQTTTTTQTTTTTTQTQTTQTTTTT"  # T: trained, Q: over the budget (recorded)
# the sampled trials on the front (first seeds), from the trial it changed at (recorded)
FRONTS = {10: {10}, 11: {10, 11}, 18: {18}, 20: {18, 20}, 25: {18, 25}, 26: {25, 26}, 27: {25, 26, 27},
          32: {26, 27, 32}, 33: {27, 32, 33}, 36: {27, 36}}
TRAINED_S = [18.0, 16.0] + [10.0 + (7 * i) % 8 for i in range(24)]
QUICK_S = [1.5, 2.5, 4.0, 6.0] + [1.0 + (3 * i) % 4 for i in range(10)]


def quiet_run() -> tuple[list[tuple[float, bool, bool]], float]:
    """(seconds, trained, named) per trial, and the confirmations' seconds: 2 more seeds for T0, T1 and the
    final front, each as long as its own trial."""
    trained, quick = iter(TRAINED_S), iter(QUICK_S)
    run = [(next(trained) if kind == "T" else next(quick), kind == "T", i < 6) for i, kind in enumerate(ORDER)]
    confirm_s = 2 * sum(s for i, (s, t, named) in enumerate(run) if t and (named or i in FRONTS[36]))
    return run, confirm_s


def replay(run, confirm_s: float, confirm: int = 3) -> list[tuple[float | None, float]]:
    """(estimate, truth) in seconds after each trial: the estimate from the trials so far (those on the front
    then, and the trained named configs, to be confirmed), the truth from the rest of the recorded times."""
    total = sum(s for s, *_ in run) + confirm_s
    out, spent, front = [], 0.0, set()
    for i, (seconds, *_) in enumerate(run):
        spent += seconds
        front = FRONTS.get(i, front)
        done = [TrialTime(s, t, named, confirmed=t and (named or j in front))
                for j, (s, t, named) in enumerate(run[:i + 1])]
        out.append((seconds_left(done, len(run) - i - 1, confirm), total - spent))
    return out


def test_the_first_estimate_is_within_30_percent_and_counts_the_confirmations():
    run, confirm_s = quiet_run()
    assert len(run) == 40 and sum(t for _, t, _ in run) == 26 and 60 <= confirm_s <= 150
    assert 6 <= (sum(s for s, *_ in run) + confirm_s) / 60 <= 9  # a quiet machine's 8 minutes
    replayed = replay(run, confirm_s)
    first, truth = replayed[0]  # after T0: the first line with an estimate
    assert abs(first - truth) <= 0.3 * truth, (first, truth)
    assert all(abs(e - t) <= 0.3 * t for e, t in replayed[:-1]), replayed  # and every later one
    last, truth = replayed[-1]  # only the confirmations are left, and the estimate counts them
    assert truth == confirm_s and abs(last - truth) <= 0.3 * truth, (last, truth)


def _timed_study(recorded) -> optuna.Study:
    """A study whose trials took the recorded seconds: trained ones within a 10 ms budget, others over it."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    start = datetime.datetime(2025, 1, 1)
    for number, (seconds, trained, named) in enumerate(recorded):
        latency = 5.0 + number % 3 if trained else 50.0
        attrs = {Key.PROXY_ACC: 0.7 + 0.01 * number, Key.LATENCY: latency, Key.FEASIBLE: trained,
                 Key.TEST_SIZE: 1000, Key.CHANCE: 0.1, Key.CURVE: [0.7]}
        if named:
            attrs[Key.NAMED] = f"N{number}"
        trial = optuna.trial.create_trial(
            values=[0.7, latency], constraints={CONSTRAINT: latency - 10.0}, params={"x": number},
            distributions={"x": CategoricalDistribution(list(range(100)))}, user_attrs=attrs)
        end = start + datetime.timedelta(seconds=seconds)
        trial.datetime_start, trial.datetime_complete = start, end
        study.add_trial(trial)
        start = end
    return study


def _minutes_left(line: str) -> float:
    return float(re.search(r", ~([\d.]+) min left", line).group(1))


def test_the_progress_line_shows_the_estimate_with_the_confirmations(quiet_optuna):
    recorded = [(20.0, True, True), (2.0, False, True)] + [(20.0, True, False), (2.0, False, False)] * 4
    study = _timed_study(recorded)
    done = [TrialTime(s, t, n) for s, t, n in recorded]

    def line(n_trials: int, confirm: int) -> str:
        return SearchProgress(n_trials, "10ms", quiet=False, confirm=confirm).trial_line(study, study.trials[-1])

    without = line(len(recorded) + 10, confirm=1)
    assert _minutes_left(without) == round(seconds_left(done, 10) / 60, 1)  # 10 trials, no confirmation
    # with 3 seeds: 2 more trainings (18 s each) at least for the trained named config, and for the front
    assert _minutes_left(line(len(recorded) + 10, confirm=3)) >= _minutes_left(without) + 2 * 18.0 / 60 - 0.1
    last = line(len(recorded), confirm=3)
    assert last.endswith("min left (confirmations)") and _minutes_left(last) >= 2 * 18.0 / 60 - 0.05


def test_no_estimate_before_a_training_and_a_census_counts_its_quick_trials():
    assert seconds_left([], 10) is None
    assert seconds_left([TrialTime(2.0, False, True)], 10) is None  # a training's time is not known yet
    assert seconds_left([TrialTime(2.0, False)], 10, trains=False) == pytest.approx(20.0)

