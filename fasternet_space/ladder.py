"""A ladder of references for paired timing: each network is timed in pairs with the named config nearest it
in FLOPs (T0, T1, T2, S, M, L at its input), and the rungs are linked to T0 by paired ratios of neighbours
(T1/T0, T2/T1, ...), so every latency is still in T0's units and ms: ratio to its rung x the rung's factor x
T0's calibration.

Why: a ratio repeats best between networks of similar cost. On a 2-core Xeon VM, 30 random networks timed in
3 passes a minute apart agreed within +-5% for 100% against their rung, 87% against T0 (81% of those over
3x T0's time; `benchmarks/timing_repeatability.py`)."""

from __future__ import annotations

import contextlib
import datetime
import functools
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .cost import count
from .measure import Measurement
from .paired import Calibration, PairPolicy, calibration_key, call_clock, time_ratio
from .relative import (
    DEFAULT_REFERENCE,
    PROTOCOL_PAIRS,
    calibrate_session,
    measure_relative,
    reference_session,
    reference_spec,
    relative_timing_applies,
)
from .runtimes import ModelSession, measure_spec_in, spec_session
from .spec import ArchSpec

RUNGS = ("t0", "t1", "t2", "s", "m", "l")  # the ladder, cheapest first; T0 is the unit
LINK_PAIRS = PairPolicy(warmup=3, min_pairs=15, max_time_s=6.0, rel_ci=0.01)  # one rung against the one below


@functools.lru_cache(maxsize=64)
def rung_flops(input_size: int, in_chans: int) -> dict[str, int]:
    return {name: count(reference_spec(name, input_size, in_chans)).flops for name in RUNGS}


def nearest_rung(flops: int, input_size: int, in_chans: int, lowest: str = RUNGS[0],
                 highest: str = RUNGS[-1]) -> str:
    """The rung nearest `flops` on a log scale, from `lowest` to `highest`."""
    every = rung_flops(input_size, in_chans)
    allowed = {name: every[name] for name in RUNGS[RUNGS.index(lowest):RUNGS.index(highest) + 1]}
    return min(allowed, key=lambda name: abs(math.log(flops / allowed[name])))


def rung_calibration(base: Calibration, rung: str, factor: float, pairs: int, seconds: float) -> Calibration:
    """The rung's calibration derived from the base's: its ms is the base's x the rung's factor (its chain of
    links down to the base)."""
    return replace(base, reference=rung.upper(), ms=base.ms * factor, samples=pairs, window_s=seconds,
                   factor=factor, unit=base.reference,
                   estimator=f"{base.reference}'s calibration x {rung.upper()}/{base.reference} {factor:.4f} "
                   "(paired ratios of neighbouring rungs)",
                   at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))


def link(upper: ModelSession, lower: ModelSession, policy: PairPolicy = LINK_PAIRS, seed: int = 0) -> tuple[float, int, float]:
    """One rung's median ratio to the rung below, with the pairs and seconds it took."""
    with upper.timing(), lower.timing():
        calls = upper.run_batch(1), lower.run_batch(1)
        timing = time_ratio(*calls, upper.timing_device, policy, seed=seed,
                            call_clock=call_clock(list(calls), upper.timing_device))
    return timing.ratio, timing.pairs, timing.seconds


class ReferencePool:
    """The references of paired timing in one runtime: the base (T0) calibrated once per input shape, the
    rungs above it linked to it when first needed. `stored(key)` / `store(key, dict)` read and keep
    calibrations (a study's attributes; by default nothing is kept beyond this pool)."""

    def __init__(self, runtime: str, *, device: str, threads: int | None, window_s: float | None = None,
                 base: str = DEFAULT_REFERENCE, stored: Callable[[str], dict[str, Any] | None] | None = None,
                 store: Callable[[str, dict[str, Any]], None] | None = None):
        self.runtime, self.device, self.threads, self.window_s = runtime, device, threads, window_s
        self.base = base
        self.stored = stored or (lambda key: None)
        self.store = store or (lambda key, value: None)
        self.stack = contextlib.ExitStack()
        self.sessions: dict[tuple[str, int, int], ModelSession] = {}
        self.calibrations: dict[tuple[str, int, int], Calibration] = {}

    def session(self, rung: str, input_size: int, in_chans: int) -> ModelSession:
        key = (rung, input_size, in_chans)
        if key not in self.sessions:
            self.sessions[key] = self.stack.enter_context(reference_session(
                rung, self.runtime, device=self.device, threads=self.threads, input_size=input_size,
                in_chans=in_chans))
        return self.sessions[key]

    def get(self, rung: str, input_size: int, in_chans: int) -> tuple[ModelSession, Calibration]:
        """The rung's session and calibration (the base's own, or derived from it through the links below)."""
        return self.session(rung, input_size, in_chans), self.calibration(rung, input_size, in_chans)

    def calibration(self, rung: str, input_size: int, in_chans: int) -> Calibration:
        key = (rung, input_size, in_chans)
        if key in self.calibrations:
            return self.calibrations[key]
        name = calibration_key(rung, in_chans, input_size)
        stored = self.stored(name)
        if stored is not None:
            calibration = Calibration.from_dict(stored)
        elif rung == self.base:
            calibration = calibrate_session(self.session(rung, input_size, in_chans), rung, window_s=self.window_s)
        else:
            below = RUNGS[RUNGS.index(rung) - 1]
            lower = self.calibration(below, input_size, in_chans)
            ratio, pairs, seconds = link(self.session(rung, input_size, in_chans),
                                         self.session(below, input_size, in_chans))
            base = self.calibration(self.base, input_size, in_chans)
            calibration = rung_calibration(base, rung, (lower.factor or 1.0) * ratio, pairs, seconds)
        if stored is None:
            self.store(name, calibration.to_dict())
        self.calibrations[key] = calibration
        return calibration

    def close(self) -> None:
        self.stack.close()
        self.sessions.clear()
        self.calibrations.clear()


def measure_side_by_side(specs: list[ArchSpec], runtime: str, *, device: str, threads: int | None,
                         throughput_batch: int | None, input_size: int | None,
                         policy: PairPolicy = PROTOCOL_PAIRS) -> list[Measurement]:
    """`bench models`: each spec's inference form at `input_size` (None: its own). On the CPU each model is
    timed in pairs with its rung of the ladder (T0 calibrated once per input shape); elsewhere each alone."""
    if not relative_timing_applies(device):
        return [measure_spec_in(spec, runtime, device=device, threads=threads, throughput_batch=throughput_batch,
                                input_size=input_size or spec.input_size) for spec in specs]
    results = []
    with contextlib.closing(ReferencePool(runtime, device=device, threads=threads)) as pool:
        for spec in specs:
            size = input_size or spec.input_size
            with spec_session(spec, runtime, device=device, threads=threads, input_size=size,
                              throughput_batch=throughput_batch) as candidate:
                rung = nearest_rung(candidate.flops, size, spec.in_chans)
                results.append(measure_relative(candidate, *pool.get(rung, size, spec.in_chans), policy))
    return results


def measure_against_reference(model_session_cm, *, runtime: str, device: str, threads: int | None,
                              input_size: int, in_chans: int, policy: PairPolicy) -> Measurement:
    """One model measured as `build --measure` does on the CPU: in pairs with its rung of the ladder, T0
    calibrated for this measurement. `model_session_cm`: the model's session (a context manager, e.g.
    `runtimes.model_session(...)`)."""
    with contextlib.closing(ReferencePool(runtime, device=device, threads=threads)) as pool, \
            model_session_cm as candidate:
        rung = nearest_rung(candidate.flops, input_size, in_chans)
        return measure_relative(candidate, *pool.get(rung, input_size, in_chans), policy)
