"""The ladder of references (fasternet_space.ladder): the rung a network pairs with, rungs linked to T0 by paired
ratios, their calibrations stored and reused, and a latency stated in T0's units whatever its rung."""

import pytest

from fasternet_space import NAMED_SPECS, count
from fasternet_space.ladder import RUNGS, ReferencePool, nearest_rung, rung_flops

SIZE = 32  # the named configs at 32 px: real networks, timed in milliseconds


def test_a_network_pairs_with_the_rung_nearest_it_in_flops_within_the_allowed_rungs():
    flops = rung_flops(SIZE, 3)
    assert list(flops) == list(RUNGS) and sorted(flops.values()) == list(flops.values())
    assert flops["t1"] == count(NAMED_SPECS["t1"].replace(input_size=SIZE)).flops
    assert nearest_rung(flops["t2"], SIZE, 3) == "t2"
    assert nearest_rung(int(flops["t1"] * 1.2), SIZE, 3) == "t1"
    assert nearest_rung(flops["l"] * 3, SIZE, 3) == "l"  # beyond the top: the top
    assert nearest_rung(flops["m"], SIZE, 3, highest="t2") == "t2"  # capped (a search: near twice the budget)
    assert nearest_rung(flops["t0"], SIZE, 3, lowest="t1") == "t1"  # a ladder based on T1 has no T0


def test_rungs_are_linked_to_the_base_and_their_calibrations_stored_then_reused(monkeypatch):
    from fasternet_space import ladder

    monkeypatch.setattr(ladder, "LINK_PAIRS", ladder.PairPolicy(warmup=1, min_pairs=9, max_time_s=1.0, rel_ci=0.02))
    kept: dict[str, dict] = {}
    pool = ReferencePool("torch", device="cpu", threads=1, window_s=0.3, stored=kept.get,
                         store=kept.__setitem__)
    try:
        _, t2 = pool.get("t2", SIZE, 3)
    finally:
        pool.close()
    # T2 needs T1, T1 needs T0: all three stored, T0 calibrated, the others derived through their links
    assert set(kept) == {f"calibration:{r}:3x{SIZE}" for r in ("T0", "T1", "T2")}
    t0, t1 = (kept[f"calibration:{r}:3x{SIZE}"] for r in ("T0", "T1"))
    assert t0["factor"] is None and t0["unit"] is None
    assert t1["unit"] == "T0" and t1["factor"] > 1.0 and t1["ms"] == pytest.approx(t0["ms"] * t1["factor"])
    assert t2.unit == "T0" and t2.factor > t1["factor"]  # T2 costs more than T1 at any speed
    assert t2.ms == pytest.approx(t0["ms"] * t2.factor)
    assert "paired ratios of neighbouring rungs" in t2.estimator

    calls = []
    again = ReferencePool("torch", device="cpu", threads=1, window_s=0.3, stored=kept.get,
                          store=lambda key, value: calls.append(key))
    try:
        assert again.calibration("t2", SIZE, 3).ms == pytest.approx(t2.ms)  # read, not timed
    finally:
        again.close()
    assert calls == []


def test_a_latency_measured_against_a_rung_is_stated_in_t0_units():
    from fasternet_space.paired import PairPolicy
    from fasternet_space.relative import measure_relative
    from fasternet_space.report import relative_text
    from fasternet_space.runtimes import spec_session

    pool = ReferencePool("torch", device="cpu", threads=1, window_s=0.3)
    try:
        with spec_session(NAMED_SPECS["t1"].replace(input_size=SIZE), "torch", device="cpu", threads=1) as t1:
            rung, calibration = pool.get(nearest_rung(t1.flops, SIZE, 3), SIZE, 3)
            assert calibration.reference == "T1"
            measured = measure_relative(t1, rung, calibration, PairPolicy(warmup=1, min_pairs=9, max_time_s=1.0))
    finally:
        pool.close()
    relative = measured.extra["relative"]
    assert relative["reference"] == "T1"
    assert relative["unit_ratio"] == pytest.approx(relative["ratio"] * calibration.factor)
    assert measured.latency_ms == pytest.approx(relative["ratio"] * calibration.ms)
    text = relative_text({"relative": relative})
    assert text.startswith(f" = {relative['unit_ratio']:.3f} x T0, timed in pairs with T1: ")
    assert text.endswith(f"(T0 calibrated at {calibration.ms / calibration.factor:.2f} ms)")
