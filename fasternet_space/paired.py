"""Relative timing: a candidate timed in pairs with a reference network, the order random within each pair,
so that the machine's drift (clock, load, neighbours) falls on both alike. The figure of record is the
median of the per-pair ratios candidate / reference with its distribution-free 95% interval; a latency in
ms is that ratio times the reference's calibrated latency (`calibration`).

Why pairs and not blocks: on a shared machine the speed moves within seconds (a reference timed before and
after a block of candidate repetitions does not see the same machine the candidate saw); one call of each,
back to back, does."""

from __future__ import annotations

import contextlib
import datetime
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from .errors import InputError
from .measure import median_ci, synchronize

OVER = "over"
UNDER = "under"
# The reference's latency as calibrated: the minimum of back-to-back calls over a long window. On a shared
# machine whose speed moves by a third within minutes, the median of a window does not repeat (it is the
# load's), while the fastest call of a long enough window is the machine without contention, which does:
# see benchmarks/calibration_repeatability.py for the estimators measured side by side.
CALIBRATION_WINDOW_S = 8.0  # seconds of back-to-back reference calls per calibration
CALIBRATION_ENV = "FASTERNET_CALIBRATION_SECONDS"  # overrides it (e.g. short, for tests)
CALIBRATION_QUANTILE = 0.0  # which order statistic of the window's calls: 0 is the minimum
WALL = "wall"
THREAD_CPU = "thread CPU"
# A call whose fastest thread-CPU time is below this share of its fastest wall time computes off the calling
# thread (a runtime's own worker threads leave the caller only waiting): it is timed in wall time. Far below
# what preemption on a loaded machine leaves (a third to a half).
ON_THREAD_SHARE = 0.1


@dataclass(frozen=True)
class PairPolicy:
    warmup: int = 3  # calls of each before timing
    min_pairs: int = 5  # the least pairs for any verdict (5: the interval is min..max of the ratios)
    max_pairs: int = 2000
    max_time_s: float = 4.0  # the cap on timing (both networks' calls together)
    rel_ci: float = 0.03  # stop when the 95% interval of the median ratio is within +-3% of it


@dataclass(frozen=True)
class RatioTiming:
    ratio: float  # median of candidate / reference over the pairs
    ratio_ci: tuple[float, float]  # its distribution-free 95% interval
    pairs: int
    stable: bool  # the interval reached the policy's width before the cap
    verdict: str | None  # OVER / UNDER when the interval lay wholly on one side of the threshold; else None
    candidate_ms: float  # the candidate's own median in this run (absolute: moves with the machine)
    reference_ms: float  # the reference's own median in this run
    reference_min_ms: float  # its fastest call in this run: the machine's speed at the time, read as calibrations are
    seconds: float  # time spent timing (warm-up included)
    ratios: tuple[float, ...] = ()  # every pair's ratio, in the order timed


def time_ratio(candidate: Callable[[], Any], reference: Callable[[], Any], device: torch.device,
               policy: PairPolicy = PairPolicy(), *, threshold: float | None = None, seed: int = 0,
               clock: Callable[[], float] = time.perf_counter,
               call_clock: Callable[[], float] | None = None) -> RatioTiming:
    """Times `candidate` and `reference` one call each per pair, in random order, until the median ratio's
    interval is within `policy.rel_ci`, or (with `threshold`, a ratio) lies wholly above or below it, or the
    cap. The caller prepares both calls (inputs made, threads set, inference mode). `clock` (seconds) is for
    tests; `call_clock` times each call (default `clock`; `time.thread_time` leaves out the time other
    processes held the core, for a runtime that computes on the calling thread)."""
    call_clock = call_clock or clock
    started = clock()
    for _ in range(policy.warmup):
        candidate()
        reference()
    synchronize(device)
    order = random.Random(seed)
    ratios: list[float] = []
    own: dict[str, list[float]] = {"candidate": [], "reference": []}
    calls = {"candidate": candidate, "reference": reference}
    while True:
        names = ["candidate", "reference"]
        order.shuffle(names)
        for name in names:
            own[name].append(_time_once(calls[name], device, call_clock))
        ratios.append(own["candidate"][-1] / own["reference"][-1])
        n = len(ratios)
        if n < policy.min_pairs:
            continue
        median, low, high = median_ci(ratios)
        verdict = _verdict(low, high, threshold)
        stable = (high - low) / 2 <= policy.rel_ci * median
        out_of_time = clock() - started >= policy.max_time_s
        if verdict or stable or out_of_time or n >= policy.max_pairs:
            return RatioTiming(ratio=median, ratio_ci=(low, high), pairs=n, stable=stable, verdict=verdict,
                               candidate_ms=median_ci(own["candidate"])[0],
                               reference_ms=median_ci(own["reference"])[0],
                               reference_min_ms=min(own["reference"]),
                               seconds=clock() - started, ratios=tuple(ratios))


def _verdict(low: float, high: float, threshold: float | None) -> str | None:
    if threshold is None:
        return None
    if low > threshold:
        return OVER
    if high < threshold:
        return UNDER
    return None


def _time_once(call: Callable[[], Any], device: torch.device, clock: Callable[[], float]) -> float:
    """One call's wall time in ms, finished on the device (CUDA is synchronised before the clock stops)."""
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        begin = clock()
        call()
        synchronize(device)
        return (clock() - begin) * 1e3


# --- calibration: the reference's own latency, read so that it repeats on a machine whose speed moves

CALIBRATION_PREFIX = "calibration:"  # a study keeps each calibration under calibration_key(...)


def calibration_key(reference: str, in_chans: int, input_size: int) -> str:
    """Where a study keeps the calibration of `reference` ("T0") at one input: calibration:T0:3x224."""
    return f"{CALIBRATION_PREFIX}{reference.upper()}:{in_chans}x{input_size}"


@dataclass(frozen=True)
class Calibration:
    reference: str  # the reference network ("T0")
    ms: float  # its calibrated latency: a ratio times this is a latency in ms
    estimator: str  # how `ms` was read off the window
    samples: int  # calls timed
    window_s: float  # seconds they took
    at: str  # when (UTC, ISO 8601)
    load_per_core: float | None  # 1-minute load average per core when it started
    steal_share: float | None  # share of the CPU time the hypervisor took away during the window (/proc/stat)
    device_name: str
    clock: str | None = None  # WALL or THREAD_CPU (None: stored before the clock was chosen, wall)
    factor: float | None = None  # a rung of the ladder: its latency in its base's units (None: the base itself)
    unit: str | None = None  # that base ("T0"), whose calibration this one is derived from

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


def calibrate(reference: Callable[[], Any], device: torch.device, *, name: str, device_name: str,
              window_s: float | None = None, warmup: int = 5,
              clock: Callable[[], float] = time.perf_counter,
              call_clock: Callable[[], float] | None = None) -> Calibration:
    """Times `reference` back to back for `window_s` (None: CALIBRATION_WINDOW_S) and reads its latency
    with `calibration_estimate`."""
    window_s = calibration_window_s() if window_s is None else window_s
    for _ in range(warmup):
        reference()
    synchronize(device)
    load = load_per_core()
    before = cpu_times()
    started = clock()
    samples: list[float] = []
    while not samples or clock() - started < window_s:
        samples.append(_time_once(reference, device, call_clock or clock))
    in_cpu = clock_name(call_clock or clock) == THREAD_CPU
    return Calibration(reference=name, ms=calibration_estimate(samples),
                       estimator=f"minimum of back-to-back calls over {window_s:g} s"
                       + (", in thread CPU time" if in_cpu else ""), samples=len(samples),
                       window_s=clock() - started, at=_now(), load_per_core=load,
                       steal_share=steal_share(before, cpu_times()), device_name=device_name,
                       clock=THREAD_CPU if in_cpu else WALL)


def call_clock(calls: list[Callable[[], Any]], device: torch.device, tries: int = 3) -> Callable[[], float]:
    """What to time these calls with: this thread's CPU time (`time.thread_time`) on the CPU when every call
    computes on the calling thread, so that the time other processes held the core is left out (the
    machine's own slowdowns still fall on both calls of a pair alike); else wall time. A call computes off
    the thread when its fastest CPU time is under ON_THREAD_SHARE of its fastest wall time."""
    if device.type != "cpu":
        return time.perf_counter
    for call in calls:
        wall, cpu = [], []
        for _ in range(tries):
            w, c = time.perf_counter(), time.thread_time()
            call()
            cpu.append(time.thread_time() - c)
            wall.append(time.perf_counter() - w)
        if min(cpu) < ON_THREAD_SHARE * min(wall):
            return time.perf_counter
    return time.thread_time


def clock_name(clock: Callable[[], float]) -> str:
    return THREAD_CPU if clock is time.thread_time else WALL


def calibration_window_s() -> float:
    """CALIBRATION_WINDOW_S, or the seconds that the environment variable CALIBRATION_ENV gives."""
    text = os.environ.get(CALIBRATION_ENV)
    if text is None:
        return CALIBRATION_WINDOW_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise InputError(CALIBRATION_ENV, repr(text), "allowed: a positive number of seconds")
    return value


def calibration_estimate(samples: list[float]) -> float:
    """The calibrated latency of the window's calls (ms): their CALIBRATION_QUANTILE order statistic."""
    ordered = sorted(samples)
    return ordered[int(CALIBRATION_QUANTILE * (len(ordered) - 1))]


def cpu_times() -> list[int] | None:
    """The machine's CPU time counters (the first line of /proc/stat, in ticks); None without /proc."""
    try:
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None


def steal_share(before: list[int] | None, after: list[int] | None) -> float | None:
    """The share of CPU time stolen by the hypervisor between two `cpu_times()` (the 8th counter)."""
    if not before or not after or len(before) < 8 or len(after) < 8:
        return None
    total = sum(after[:8]) - sum(before[:8])
    return (after[7] - before[7]) / total if total > 0 else 0.0


def load_per_core() -> float | None:
    """The machine's 1-minute load average per core (None where the platform has none)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        return None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# --- who else used the machine while it was timed


@dataclass(frozen=True)
class MachineShare:
    outside_cores: float | None  # cores' worth of CPU time used by other processes than this one
    steal_share: float | None  # share of the machine's CPU time the hypervisor took away


class MachineWatch:
    """Measures, over a block of code, the CPU time other processes used (the machine's busy time from
    /proc/stat less this process's own) and the hypervisor's steal. The search's own workers never train
    while a worker times (the device lock), so what it counts is load the search does not control."""

    def __enter__(self) -> MachineWatch:
        self.before, self.own_before, self.started = cpu_times(), _own_cpu_s(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.after, self.own_after, self.ended = cpu_times(), _own_cpu_s(), time.perf_counter()

    def share(self) -> MachineShare:
        if not self.before or not self.after:
            return MachineShare(None, None)
        ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        busy = _busy_ticks(self.after) - _busy_ticks(self.before)
        outside_s = busy / ticks - (self.own_after - self.own_before)
        elapsed = max(self.ended - self.started, 1e-9)
        return MachineShare(max(outside_s, 0.0) / elapsed, steal_share(self.before, self.after))


def _busy_ticks(counters: list[int]) -> int:
    """user + nice + system + irq + softirq (idle, iowait and steal left out)."""
    return counters[0] + counters[1] + counters[2] + counters[5] + counters[6]


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system
