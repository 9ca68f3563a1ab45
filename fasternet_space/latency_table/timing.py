"""A part timed against the reference network, interleaved: rounds of [the reference once, the part m times],
in random order within each round, m chosen so that the part's block costs about one reference call. A
round's ratio is (block time / m) / reference time; the part's value is the median over rounds. A part is
sub-millisecond beside a reference of ~10 ms: timed alone, its figure is the machine's speed at that moment;
as a ratio to a reference timed a few ms away, that speed cancels (see `paired` for whole networks)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..measure import median_ci, synchronize

MAX_CALLS_PER_BLOCK = 2000  # an empty part beside a 10 ms reference would want ~3000


@dataclass(frozen=True)
class BlockPolicy:
    warmup: int = 3  # calls of each before timing (the last ones also size the block)
    min_rounds: int = 7
    max_rounds: int = 400
    max_time_s: float = 0.6  # the cap on timing (both calls together)
    rel_ci: float = 0.02  # stop when the median ratio's 95% interval is within +-2% of it


@dataclass(frozen=True)
class BlockRatio:
    ratio: float  # median over rounds of (part block / calls) / reference
    ratio_ci: tuple[float, float]  # its distribution-free 95% interval
    rounds: int
    calls_per_block: int
    stable: bool  # the interval reached the policy's width before the cap
    seconds: float


def time_block_ratio(part: Callable[[], Any], reference: Callable[[], Any], device: torch.device,
                     policy: BlockPolicy = BlockPolicy(), *, seed: int = 0,
                     clock: Callable[[], float] = time.perf_counter) -> BlockRatio:
    """Times `part` in blocks interleaved with `reference` (see the module's docstring) until the median
    ratio's interval is within `policy.rel_ci` or the cap. The caller prepares both calls (inputs made,
    threads set, inference mode). `clock` (seconds) is for tests."""
    started = clock()
    part_s, reference_s = [], []
    for _ in range(max(policy.warmup, 1)):
        part_s.append(_block_s(part, 1, device, clock))
        reference_s.append(_block_s(reference, 1, device, clock))
    calls = calls_per_block(min(reference_s), min(part_s))
    order = random.Random(seed)
    ratios: list[float] = []
    while True:
        first_part = order.random() < 0.5
        if first_part:
            block = _block_s(part, calls, device, clock)
        one = _block_s(reference, 1, device, clock)
        if not first_part:
            block = _block_s(part, calls, device, clock)
        ratios.append(block / calls / one)
        if len(ratios) < policy.min_rounds:
            continue
        median, low, high = median_ci(ratios)
        stable = (high - low) / 2 <= policy.rel_ci * median
        if stable or clock() - started >= policy.max_time_s or len(ratios) >= policy.max_rounds:
            return BlockRatio(ratio=median, ratio_ci=(low, high), rounds=len(ratios), calls_per_block=calls,
                              stable=stable, seconds=clock() - started)


def calls_per_block(reference_s: float, part_s: float) -> int:
    """How many part calls make about one reference call (at least 1, at most MAX_CALLS_PER_BLOCK)."""
    if part_s <= 0:
        return MAX_CALLS_PER_BLOCK
    return max(1, min(MAX_CALLS_PER_BLOCK, round(reference_s / part_s)))


def _block_s(call: Callable[[], Any], calls: int, device: torch.device, clock: Callable[[], float]) -> float:
    """Seconds that `calls` back-to-back calls take, finished on the device."""
    begin = clock()
    for _ in range(calls):
        call()
    synchronize(device)
    return clock() - begin
