"""The reference's speed over a study (search.records.speed) and the summary's verdicts that depend on it."""

from dataclasses import replace

import pytest

from search.records.speed import BORDERLINE, IN, OUT, budget_verdict, reference_speed


@pytest.fixture(scope="module")
def timed_records(tmp_path_factory):
    """The records of a real two-trial search timed in pairs with T0 (ratios and calibration stored)."""
    import optuna
    import yaml

    from fasternet_space.paired import PairPolicy
    from fasternet_space.proxy import ProxyConfig
    from search import SearchConfig, read_trials, run_search
    from tests.conftest import TINY_SPACE

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tmp = tmp_path_factory.mktemp("speed")
    (tmp / "tiny.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    config = SearchConfig(space=str(tmp / "tiny.yaml"), budget_ms=1e6, n_trials=2, max_train_samples=64,
                          max_test_samples=64, proxy=ProxyConfig(epochs=1, resolution=32), confirm=1, seed=3,
                          accuracy="none", sampler="random", storage=f"sqlite:///{tmp / 's.db'}", study_name="speed",
                          named=False, calibration_s=0.3,
                          pairing=PairPolicy(warmup=1, min_pairs=5, max_time_s=0.3, rel_ci=0.05))
    outcome = run_search(config)
    records = [r for r in read_trials(outcome.study) if r.latency_ratio is not None]
    assert records and all(r.reference_min_ms is not None and r.reference_min_ms > 0 for r in records)
    return outcome, records


def with_speeds(records, calibration_ms, speeds, ratio=1.0):
    """Copies of one record, one per reference speed, all with `ratio` and the study's calibration."""
    return [replace(records[0], number=i, latency_ratio=ratio, latency_unit_ratio=ratio, latency_unit="T0",
                    latency_reference="T0", calibration_ms=calibration_ms, latency_ms=ratio * calibration_ms,
                    reference_min_ms=s, repeat_of=None) for i, s in enumerate(speeds)]


def test_the_band_runs_from_the_fastest_reference_to_the_slow_quantile_not_one_burst(timed_records):
    _, records = timed_records
    # nine trials saw the reference between 10 and 14 ms, one burst at 40 ms
    speeds = [10.5, 11, 11.5, 12, 12.5, 13, 13.5, 14, 40, 10.2]
    speed = reference_speed(with_speeds(records, 10.0, speeds))
    assert speed.fastest_ms == 10.0  # the calibration was the fastest
    assert speed.slowest_ms == pytest.approx(14.0)  # the 90% quantile of ten: the burst is left out
    assert speed.trials == 10
    assert speed.spread == pytest.approx(0.4)
    # a trial faster than the calibration lowers the fast end
    assert reference_speed(with_speeds(records, 10.0, [9.0, 10.0, 11.0])).fastest_ms == pytest.approx(9.0)
    # a rung of the ladder (T1 at 2x T0, calibrated at 20 ms through its link) is read on the same scale
    rung = [replace(r, latency_reference="T1", latency_ratio=0.9, latency_unit_ratio=1.8, calibration_ms=20.0,
                    reference_min_ms=26.0) for r in with_speeds(records, 10.0, [10.0] * 9)]
    mixed = reference_speed(with_speeds(records, 10.0, [10.0] * 9) + rung)
    assert mixed.calibration_ms == pytest.approx(10.0) and mixed.slowest == pytest.approx(1.3)


def test_a_candidate_is_borderline_only_where_the_speed_puts_it_on_either_side(timed_records):
    _, records = timed_records
    speed = reference_speed(with_speeds(records, 10.0, [10.0] * 5 + [13.0] * 5))  # 10 to 13 ms
    assert speed.slowest_ms == pytest.approx(13.0)
    verdict = {ratio: budget_verdict(replace(records[0], latency_ratio=ratio, latency_ms=10 * ratio), speed, 20.0)
               for ratio in (1.5, 1.8, 2.1)}
    # 1.5 x: 15 to 19.5 ms, in; 1.8 x: 18 to 23.4 ms, either side of 20; 2.1 x: 21 ms at the fastest, out
    assert verdict == {1.5: IN, 1.8: BORDERLINE, 2.1: OUT}
    # a steady machine: only a candidate within a hair of the budget is borderline
    steady = reference_speed(with_speeds(records, 10.0, [10.0] * 10))
    assert budget_verdict(replace(records[0], latency_ratio=1.8, latency_ms=18.0), steady, 20.0) == IN


def test_no_band_without_paired_timings(timed_records):
    _, records = timed_records
    assert reference_speed([replace(r, reference_min_ms=None) for r in records]) is None  # older records
    assert reference_speed([replace(r, latency_ratio=None) for r in records]) is None  # timed alone / on a GPU


def test_the_summary_names_the_borderline_candidates_and_the_budget_in_reference_units(timed_records):
    from search.report.summary import summary_lines

    outcome, records = timed_records
    moving = with_speeds(records, 10.0, [10.0] * 5 + [13.0] * 5, ratio=1.8)
    text = "\n".join(summary_lines(outcome, moving, 20.0))
    assert "T0's speed during this study: calibrated at 10.00 ms; the references' fastest call per timing put it " \
           "at 10.00 to 13.00 ms (30% apart, over 10 timings" in text
    assert "10 candidate(s) are within the 20 ms budget at T0's fastest and over it at its slowest" in text
    assert "(1.800 x T0: 18.0 to 23.4 ms)" in text
    assert "--latency-budget 2xT0 is 20 ms at this calibration" in text
    # all within the budget at any speed seen: the band is said, no candidate called borderline
    steady = "\n".join(summary_lines(outcome, with_speeds(records, 10.0, [10.0] * 10, ratio=1.5), 20.0))
    assert "T0's speed during this study" in steady and "another run" not in steady
    # a budget in T0's units does not move with the machine: no band
    in_units = "\n".join(summary_lines(replace(outcome, budget_in_reference=True), moving, 20.0))
    assert "speed during this study" not in in_units


def test_a_named_config_says_its_ratio_and_whether_the_speed_could_move_its_verdict(timed_records):
    from search.report.summary import summary_lines

    outcome, records = timed_records
    named = [replace(r, named="T1") for r in with_speeds(records, 10.0, [10.0] * 5 + [13.0] * 5, ratio=1.8)][:1]
    others = with_speeds(records, 10.0, [10.0] * 5 + [13.0] * 5, ratio=1.0)[1:]
    text = "\n".join(summary_lines(outcome, named + others, 20.0))
    assert "T1: latency" in text and "= 1.800 x T0" in text
    assert "borderline on this machine's speed (18.0 to 23.4 ms)" in text
