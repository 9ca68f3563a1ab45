"""Paired timing (fasternet_space.paired) on a simulated machine whose speed drifts, the early budget verdict,
the calibration, and the search storing and reusing its calibration."""

import math
import statistics
import time

import pytest
import torch

from fasternet_space import paired
from fasternet_space.errors import InputError
from fasternet_space.paired import OVER, UNDER, PairPolicy, calibrate, steal_share, time_ratio

CPU = torch.device("cpu")


class DriftingMachine:
    """A fake clock on a machine whose slowdown follows a sine wave: a call of cost c ms takes
    c * (1 + depth * sin(2 pi t / period)) at time t."""

    def __init__(self, depth: float = 0.5, period_s: float = 2.0):
        self.t, self.depth, self.period_s = 0.0, depth, period_s

    def clock(self) -> float:
        return self.t

    def call(self, cost_ms: float):
        def run() -> None:
            self.t += cost_ms / 1e3 * (1 + self.depth * math.sin(2 * math.pi * self.t / self.period_s))
        return run


def block_ratio(machine: DriftingMachine, candidate, reference, block_s: float) -> float:
    """The older way: the reference timed for a block, then the candidate for a block; ratio of medians."""
    def block(call) -> float:
        times, end = [], machine.t + block_s
        while machine.t < end:
            start = machine.t
            call()
            times.append(machine.t - start)
        return statistics.median(times)

    ref = block(reference)
    return block(candidate) / ref


def test_a_sine_wave_slowdown_cancels_in_the_pairs_and_not_in_blocks():
    machine = DriftingMachine()
    candidate, reference = machine.call(2.0), machine.call(1.0)
    timing = time_ratio(candidate, reference, CPU, PairPolicy(rel_ci=0.005, max_time_s=20.0), clock=machine.clock)
    assert timing.ratio == pytest.approx(2.0, rel=0.01)
    assert timing.ratio_ci[0] <= 2.0 * 1.01 and timing.ratio_ci[1] >= 2.0 * 0.99
    assert timing.stable and timing.verdict is None
    # the same machine read block by block: the drift between the blocks lands in the ratio
    machine = DriftingMachine()
    blocks = [block_ratio(machine, machine.call(2.0), machine.call(1.0), 1.0) for _ in range(4)]
    assert max(abs(b / 2.0 - 1) for b in blocks) > 0.10


def test_timing_stops_early_once_the_interval_is_wholly_over_or_under():
    machine = DriftingMachine(depth=0.05)
    over = time_ratio(machine.call(3.0), machine.call(1.0), CPU, PairPolicy(min_pairs=5, rel_ci=1e-6, max_time_s=60),
                      threshold=1.5, clock=machine.clock)
    assert over.verdict == OVER and over.pairs == 5
    under = time_ratio(machine.call(0.5), machine.call(1.0), CPU, PairPolicy(min_pairs=5, rel_ci=1e-6, max_time_s=60),
                       threshold=1.5, clock=machine.clock)
    assert under.verdict == UNDER and under.pairs == 5
    close = time_ratio(machine.call(1.5), machine.call(1.0), CPU, PairPolicy(min_pairs=5, rel_ci=1e-9, max_pairs=50),
                       threshold=1.5, clock=machine.clock)
    assert close.verdict is None and close.pairs > 5 and close.ratio_ci[0] <= 1.5 <= close.ratio_ci[1]


def test_calibration_reads_the_fastest_call_of_its_window():
    machine = DriftingMachine(depth=0.5, period_s=1.0)
    calibration = calibrate(machine.call(4.0), CPU, name="T0", device_name="fake", window_s=3.0, clock=machine.clock)
    assert calibration.ms == pytest.approx(4.0 * 0.5, rel=0.02)  # the bottom of the wave
    assert calibration.samples > 100 and calibration.window_s >= 3.0 and calibration.reference == "T0"
    assert paired.Calibration.from_dict(calibration.to_dict()) == calibration


def test_the_calibration_window_comes_from_the_environment_or_is_refused(monkeypatch):
    monkeypatch.setenv(paired.CALIBRATION_ENV, "1.5")
    assert paired.calibration_window_s() == 1.5
    monkeypatch.setenv(paired.CALIBRATION_ENV, "soon")
    with pytest.raises(InputError, match="a positive number of seconds"):
        paired.calibration_window_s()
    monkeypatch.delenv(paired.CALIBRATION_ENV)
    assert paired.calibration_window_s() == paired.CALIBRATION_WINDOW_S


def test_steal_share_is_the_eighth_counter_over_the_total():
    assert steal_share([10, 0, 10, 70, 0, 0, 0, 10], [20, 0, 20, 140, 0, 0, 0, 20]) == pytest.approx(0.1)
    assert steal_share(None, [1] * 8) is None


@pytest.fixture
def paired_config(tmp_path, quiet_optuna):
    import yaml

    from fasternet_space.proxy import ProxyConfig
    from search import SearchConfig
    from tests.conftest import TINY_SPACE

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SPACE))
    return SearchConfig(space=str(path), budget_ms=1e6, n_trials=2, max_train_samples=64, max_test_samples=64,
                        proxy=ProxyConfig(epochs=1, resolution=32), confirm=1, seed=3, accuracy="none",
                        sampler="random", storage=f"sqlite:///{tmp_path / 's.db'}", study_name="p", named=False,
                        pairing=PairPolicy(warmup=1, min_pairs=5, max_time_s=0.5, rel_ci=0.05))


def test_a_search_times_in_pairs_stores_its_calibration_and_reuses_it_on_resume(paired_config):
    from dataclasses import replace

    from search import read_trials, run_search
    from search.records import study_attrs

    first = run_search(paired_config)
    stored = study_attrs.calibrations(first.study)
    assert list(stored) == ["calibration:T0:3x64"] and stored["calibration:T0:3x64"]["ms"] > 0
    records = [r for r in read_trials(first.study) if r.latency_ms is not None]
    assert records and all(r.latency_reference == "T0" and r.calibration_ms == stored["calibration:T0:3x64"]["ms"]
                           for r in records)
    assert all(r.latency_ms == pytest.approx(r.latency_ratio * r.calibration_ms) for r in records)
    assert all(r.latency_early == UNDER for r in records)  # a budget of 1000 s is decided after the first pairs
    resumed = run_search(replace(paired_config, n_trials=3))
    assert study_attrs.calibrations(resumed.study) == stored  # reused, not timed again
    renewed = run_search(replace(paired_config, n_trials=4, recalibrate=True))
    assert study_attrs.calibrations(renewed.study)["calibration:T0:3x64"]["at"] >= stored["calibration:T0:3x64"]["at"]
    assert study_attrs.calibrations(renewed.study) != stored


def test_an_early_over_verdict_says_by_how_much_at_least(paired_config):
    from dataclasses import replace

    from search import read_trials, run_search

    outcome = run_search(replace(paired_config, budget_ms=1e-3))
    over = [r for r in read_trials(outcome.study) if r.status == "over budget"]
    assert over and all(r.latency_early == OVER and r.latency_pairs == 5 for r in over)
    assert all(r.reason.startswith("over budget: measured ") and "x T0, at least " in r.reason for r in over)


def test_a_study_timed_alone_resumes_only_without_a_reference(paired_config):
    from dataclasses import replace

    from search import SearchError, run_search

    run_search(replace(paired_config, latency_reference=None))
    with pytest.raises(SearchError, match="latency_reference None"):
        run_search(replace(paired_config, n_trials=3))


@pytest.mark.parametrize("text, expected", [("1.2xT0", (1.2, "t0")), ("0.5 x t1", (0.5, "t1")),
                                            ("2xfasternet_s", (2.0, "s")), ("20ms", None), ("20", None)])
def test_budgets_in_reference_units_are_read(text, expected):
    from search.config import reference_budget

    assert reference_budget(text) == expected


@pytest.mark.parametrize("text", ["1.2xT9", "0xT0", "1.2xbanana"])
def test_malformed_reference_budgets_are_refused(text):
    from search import SearchError
    from search.config import reference_budget

    with pytest.raises(SearchError, match="allowed: a positive ratio and a named config"):
        reference_budget(text)


def test_a_budget_in_reference_units_decides_on_the_ratio_and_needs_pairs(paired_config):
    from dataclasses import replace

    from search import SearchError, read_trials, run_search
    from search.records import study_attrs

    with pytest.raises(SearchError, match="needs paired timing"):
        replace(paired_config, budget_ms=None, budget_ratio=1.2, latency_reference=None).validate()
    outcome = run_search(replace(paired_config, budget_ms=None, budget_ratio=0.2, study_name=None))
    calibration = next(iter(study_attrs.calibrations(outcome.study).values()))
    assert outcome.study.study_name.endswith("-0.2xT0-fashion") and study_attrs.setting(outcome.study)["budget"] == "0.2xT0"
    assert outcome.budget_ms == pytest.approx(0.2 * calibration["ms"]) == study_attrs.budget_ms(outcome.study)
    for record in read_trials(outcome.study):
        assert record.feasible == (record.latency_ratio <= 0.2)  # the verdict is the ratio's, whatever the ms


def test_the_cli_refuses_a_budget_in_another_reference(tmp_path):
    from tests.cli_helpers import assert_one_line_error, run_cli

    result = run_cli("search", "--latency-budget", "1.2xT1", "--storage", f"sqlite:///{tmp_path / 's.db'}")
    assert_one_line_error(result, "--latency-budget 1.2xT1", "--latency-reference t0")
    assert_one_line_error(run_cli("search", "--latency-budget", "1.2xT7"), "--latency-budget '1.2xT7'", "named config")


def test_the_machine_watch_counts_other_processes_and_not_this_one():
    import subprocess
    import sys
    import time

    from fasternet_space.paired import MachineWatch

    with MachineWatch() as own:  # this process busy: nothing outside
        end = time.perf_counter() + 0.6
        while time.perf_counter() < end:
            pass
    burner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.3)
        with MachineWatch() as other:
            time.sleep(1.0)
    finally:
        burner.kill()
    # this process's own second of CPU is not counted; the burner's core is (whatever else the machine runs)
    assert other.share().outside_cores - own.share().outside_cores > 0.5


def test_the_summary_warns_of_a_busy_machine_only_when_it_was_busy(paired_config):
    from dataclasses import replace

    from search import read_trials
    from search.report.summary import search_warnings

    def warnings_of(records, **fields):
        return [w for w in search_warnings([replace(r, **fields) for r in records]) if "core(s)" in w]

    records = [r for r in read_trials(__import__("search").run_search(paired_config).study) if r.latency_ms]
    assert warnings_of(records, outside_cores=0.1, steal_share=0.0) == []
    (busy,) = warnings_of(records, outside_cores=1.0, steal_share=0.0)
    assert f"{len(records)} latency measurement(s) ran while other processes used up to 1.0 core(s)" in busy
    assert warnings_of(records, outside_cores=0.0, steal_share=0.2)


def spin_cpu(ms: float):
    """A call that computes for `ms` of this thread's CPU time, whatever else holds the core meanwhile."""
    def run() -> None:
        end = time.thread_time() + ms / 1e3
        while time.thread_time() < end:
            pass
    return run


def test_calls_computing_on_this_thread_are_timed_in_its_cpu_time_so_preemption_drops_out():
    import time

    from fasternet_space.paired import THREAD_CPU, WALL, call_clock, clock_name

    def preempted() -> None:  # 2 ms of computing, then 6 ms off the core (what another process's turn looks like)
        spin_cpu(2.0)()
        time.sleep(0.006)

    assert call_clock([preempted, spin_cpu(1.0)], CPU) is time.thread_time
    policy = PairPolicy(warmup=1, min_pairs=15, max_pairs=15, max_time_s=30, rel_ci=0.0)
    in_cpu = time_ratio(preempted, spin_cpu(1.0), CPU, policy, call_clock=time.thread_time)
    in_wall = time_ratio(preempted, spin_cpu(1.0), CPU, policy)
    assert in_cpu.ratio == pytest.approx(2.0, rel=0.15)
    assert in_wall.ratio > 4.0  # the 6 ms off the core counted
    # work done elsewhere (here: nowhere, a sleep) has no CPU time on this thread: timed in wall time
    assert call_clock([lambda: time.sleep(0.003), spin_cpu(1.0)], CPU) is time.perf_counter
    assert call_clock([spin_cpu(1.0)], torch.device("cuda")) is time.perf_counter
    assert (clock_name(time.thread_time), clock_name(time.perf_counter)) == (THREAD_CPU, WALL)


def test_a_calibration_says_which_clock_it_was_read_with():
    import time

    cpu = calibrate(spin_cpu(1.0), CPU, name="T0", device_name="cpu", window_s=0.05, warmup=1,
                    call_clock=time.thread_time)
    assert cpu.clock == "thread CPU" and cpu.estimator.endswith("in thread CPU time")
    assert cpu.ms == pytest.approx(1.0, rel=0.3)
    wall = calibrate(spin_cpu(1.0), CPU, name="T0", device_name="cpu", window_s=0.05, warmup=1)
    assert wall.clock == "wall"
    assert paired.Calibration.from_dict({k: v for k, v in wall.to_dict().items() if k != "clock"}).clock is None
