"""Latency measured against a reference network, in any runtime: the reference (a named config's inference
form at the candidate's input, in the same runtime), its calibration, and a candidate's measurement as
median per-pair ratio x the calibrated reference latency (`paired` does the timing)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from .measure import Measurement, TimingPolicy
from .named import find_named
from .paired import (
    Calibration,
    MachineShare,
    MachineWatch,
    PairPolicy,
    RatioTiming,
    calibrate,
    call_clock,
    clock_name,
    time_ratio,
)
from .runtimes import ModelSession, spec_session
from .spec import ArchSpec

DEFAULT_REFERENCE = "t0"  # the smallest named config: cheap to interleave with every candidate
# `build --measure` and `bench models`: the median ratio within +-2%, or a 10 s cap (as the absolute protocol)
PROTOCOL_PAIRS = PairPolicy(warmup=5, min_pairs=10, max_time_s=10.0, rel_ci=0.02)


def reference_spec(name: str, input_size: int, in_chans: int) -> ArchSpec:
    """The named config `name` at the candidate's input (resolution and channels)."""
    named = find_named(name)
    if named is None:
        raise ValueError(f"unknown reference network {name!r}")
    return named.replace(input_size=input_size, in_chans=in_chans)


def relative_timing_applies(device: str) -> bool:
    """Paired timing is the measurement of record on the CPU; a GPU is timed with CUDA events as before."""
    return str(device).split(":")[0] == "cpu"


@contextlib.contextmanager
def reference_session(name: str, runtime: str, *, device: str, threads: int | None, input_size: int,
                      in_chans: int) -> Iterator[ModelSession]:
    """The reference network built once and made ready in `runtime`, like a candidate (`spec_session`)."""
    with spec_session(reference_spec(name, input_size, in_chans), runtime, device=device, threads=threads) as session:
        yield session


def calibrate_session(reference: ModelSession, name: str, **kwargs: Any) -> Calibration:
    """The calibrated latency of a prepared reference (see `paired.calibrate`)."""
    protocol = reference.protocol_for(TimingPolicy())
    with reference.timing():
        call = reference.run_batch(1)
        return calibrate(call, reference.timing_device, name=name.upper(), device_name=protocol.device_name,
                         call_clock=call_clock([call], reference.timing_device), **kwargs)


def measure_relative(candidate: ModelSession, reference: ModelSession, calibration: Calibration,
                     policy: PairPolicy = PairPolicy(), *, threshold_ms: float | None = None,
                     seed: int = 0) -> Measurement:
    """The candidate's latency as its median ratio to the reference x the calibration; with `threshold_ms`,
    timing stops as soon as the ratio's interval lies wholly above or below threshold_ms / calibration.
    The ratio, its interval and the calibration are kept in `extra["relative"]`."""
    threshold = None if threshold_ms is None else threshold_ms / calibration.ms
    with candidate.timing(), reference.timing(), MachineWatch() as watch:
        calls = candidate.run_batch(1), reference.run_batch(1)
        clock = call_clock(list(calls), candidate.timing_device)
        timing = time_ratio(*calls, candidate.timing_device, policy, threshold=threshold, seed=seed, call_clock=clock)
    return relative_measurement(candidate, timing, calibration, policy, watch.share(), clock_name(clock))


def relative_measurement(candidate: ModelSession, timing: RatioTiming, calibration: Calibration,
                         policy: PairPolicy, machine: MachineShare | None = None, clock: str | None = None) -> Measurement:
    machine = machine or MachineShare(None, None)
    timing_policy = TimingPolicy(rel_ci=policy.rel_ci, max_time_s=policy.max_time_s)
    protocol = candidate.protocol_for(timing_policy)
    latency_ms = timing.ratio * calibration.ms
    unit_ratio = timing.ratio * (calibration.factor or 1.0)  # in the base's units (T0), whatever rung it was paired with
    if protocol.throughput_batch == 1:
        throughput = 1e3 / latency_ms
    else:  # a batch's throughput is not what the pairs time: measured on its own, as before
        throughput = candidate.measure(replace(timing_policy, rel_ci=0.05)).throughput
    relative = {"reference": calibration.reference, "ratio": timing.ratio, "ratio_ci": list(timing.ratio_ci),
                "unit_ratio": unit_ratio,
                "pairs": timing.pairs, "verdict": timing.verdict, "seconds": timing.seconds,
                "candidate_ms_this_run": timing.candidate_ms, "reference_ms_this_run": timing.reference_ms,
                "reference_min_ms_this_run": timing.reference_min_ms, "clock": clock,
                "calibration": calibration.to_dict(), "outside_cores": machine.outside_cores,
                "steal_share": machine.steal_share}
    return Measurement(latency_ms=latency_ms,
                       latency_ci_ms=(timing.ratio_ci[0] * calibration.ms, timing.ratio_ci[1] * calibration.ms),
                       repeats=timing.pairs, stable=timing.stable, throughput=throughput,
                       flops_per_s=candidate.flops / (latency_ms / 1e3), protocol=protocol,
                       extra={"relative": relative})
