"""How well this machine repeats its own latency measurements: the floor under any latency predictor's error.

Samples --specs random networks of a space and times each one in --passes passes minutes apart (every other
pass in reverse order), batch 1, the inference form, one thread, --seconds per network and way:

- alone, read as the median, mean, minimum or 10th percentile of its calls, or as the median over a
  reference's median timed just before and after it (the older per-block ratio);
- in pairs with T0 (the search's measurement of record on CPU), one call of each per pair in random order,
  read as the median, the 25th percentile or the minimum of the per-pair ratios;
- the same pairs with each call timed in this thread's CPU time (`time.thread_time`: the time other
  processes held the core left out), read as the median ratio;
- in pairs with a rung of a ladder of references (the named config T0..L nearest the network in FLOPs),
  timed as the product does (`fasternet_space.ladder`: thread CPU time where the calls compute on this
  thread), read as the median per-pair ratio to that rung, and in T0's units: that ratio x the rung's links
  (T1/T0, T2/T1, ... each measured in pairs in the same pass, as a study measures them once);
- as a duet (Bulej et al., ICPE 2020): the network and T0 run at the same time in two processes pinned to
  two cores, in rounds started together; the median over rounds of the ratio of their mean call times.

Each pass also calibrates T0 (`fasternet_space.paired.calibrate`). Prints, per way, the share of networks
whose measurements agree within +-5% and +-10% over all passes (max / min) and the median spread, split by
size (under / over 3x T0); then the calibration of each pass and its spread. Asserts nothing.

    python benchmarks/timing_repeatability.py [--specs 30] [--passes 3] [--gap 120] [--seconds 2]
        [--ways alone,pairs,pairs-cpu,ladder,duet]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fasternet_space import NAMED_SPECS, build_model, count  # noqa: E402
from fasternet_space.inference import for_inference  # noqa: E402
from fasternet_space.ladder import LINK_PAIRS  # noqa: E402
from fasternet_space.measure import device_name  # noqa: E402
from fasternet_space.paired import PairPolicy, calibrate, time_ratio  # noqa: E402
from fasternet_space.paired import call_clock as product_clock  # noqa: E402
from search import SearchSpace  # noqa: E402

CPU = torch.device("cpu")
WAYS = ("alone", "pairs", "pairs-cpu", "ladder", "duet")
DEFAULT_WAYS = ("alone", "pairs", "pairs-cpu", "ladder")
ALONE_STATISTICS = {
    "median": statistics.median,
    "mean": statistics.fmean,
    "minimum": min,
    "10th percentile": lambda s: sorted(s)[len(s) // 10],
}
PAIR_STATISTICS = {
    "per-pair ratio, median (search)": statistics.median,
    "per-pair ratio, 25th percentile": lambda r: sorted(r)[len(r) // 4],
    "per-pair ratio, minimum": min,
}
LADDER = ("t0", "t1", "t2", "s", "m", "l")
DUET_ROUND_MS = 60.0  # the least length of a duet round: both sides run this long at the same time


def samples_ms(model: torch.nn.Module, x: torch.Tensor, seconds: float, min_repeats: int = 10) -> list[float]:
    for _ in range(3):
        model(x)
    out: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(out) < min_repeats:
        start = time.perf_counter()
        model(x)
        out.append((time.perf_counter() - start) * 1e3)
    return out


def agreement(values: list[list[float]]) -> dict[str, float]:
    """values[network][pass]: the share of networks whose passes agree within 5% and 10% (max / min)."""
    spreads = [max(v) / min(v) - 1 for v in values]
    return {"within_5pct": sum(s <= 0.05 for s in spreads) / len(spreads),
            "within_10pct": sum(s <= 0.10 for s in spreads) / len(spreads), "median_spread": statistics.median(spreads),
            "worst_spread": max(spreads), "n": len(spreads)}


def nearest_rung(flops: int, rung_flops: dict[str, int]) -> str:
    """The ladder's named config nearest `flops` on a log scale."""
    return min(rung_flops, key=lambda name: abs(math.log(flops / rung_flops[name])))


def paired_ratios(model, reference, x, seconds: float, seed: int, min_pairs: int,
                  call_clock=None) -> tuple[list[float], int]:
    if call_clock == "product":
        call_clock = product_clock([lambda: model(x), lambda: reference(x)], CPU)
    timing = time_ratio(lambda: model(x), lambda: reference(x), CPU,
                        PairPolicy(warmup=3, min_pairs=min_pairs, max_pairs=100_000, max_time_s=seconds, rel_ci=0.0),
                        seed=seed, call_clock=call_clock)
    return list(timing.ratios), timing.pairs


# --- duet: two processes pinned to two cores, timing at the same moments


def _duet_worker(space_path: str, n_specs: int, seed: int, core: int, barrier, conn) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)
    specs = SearchSpace.from_yaml(space_path).sample_specs(n_specs, seed=seed)
    size = specs[0].input_size
    x = torch.randn(1, 3, size, size)
    models: dict[str, torch.nn.Module] = {}

    def model(name: str) -> torch.nn.Module:
        if name not in models:
            spec = NAMED_SPECS[name].replace(input_size=size) if name in NAMED_SPECS else specs[int(name)]
            models[name] = for_inference(build_model(spec).eval())
        return models[name]

    with torch.inference_mode():
        while (job := conn.recv()) is not None:
            name, calls, rounds = job
            net = model(name)
            for _ in range(3):
                net(x)
            out = []
            for _ in range(rounds):
                barrier.wait()
                start = time.perf_counter()
                for _ in range(calls):
                    net(x)
                out.append((time.perf_counter() - start) * 1e3 / calls)
            conn.send(out)


class Duet:
    """Two worker processes, each pinned to its own core, that time two networks in rounds started together."""

    def __init__(self, space_path: str, n_specs: int, seed: int):
        ctx = mp.get_context("spawn")
        self.barrier = ctx.Barrier(2)
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0, 1]
        self.conns, self.procs = [], []
        for core in (cores[0], cores[-1]):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_duet_worker, args=(space_path, n_specs, seed, core, self.barrier, child),
                               daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def ratios(self, candidate: str, candidate_ms: float, reference_ms: float, seconds: float) -> list[float]:
        """Per round, the candidate's mean call time over the reference's (T0), both running at once."""
        round_ms = max(DUET_ROUND_MS, 1.5 * max(candidate_ms, reference_ms))
        calls = [max(1, round(round_ms / candidate_ms)), max(1, round(round_ms / reference_ms))]
        rounds = max(5, int(seconds * 1e3 / round_ms))
        for conn, name, n in zip(self.conns, (candidate, "t0"), calls, strict=True):
            conn.send((name, n, rounds))
        mine, theirs = (conn.recv() for conn in self.conns)
        return [a / b for a, b in zip(mine, theirs, strict=True)]

    def close(self) -> None:
        for conn in self.conns:
            conn.send(None)
        for proc in self.procs:
            proc.join(timeout=10)


def chain(references: dict, x: torch.Tensor) -> dict[str, float]:
    """Each rung in T0's units: the product of paired ratios of neighbouring rungs, as a study links them."""
    names = [name for name in LADDER if name in references]
    out, factor = {names[0]: 1.0}, 1.0
    for lower, upper in itertools.pairwise(names):
        calls = [lambda m=references[upper]: m(x), lambda m=references[lower]: m(x)]
        factor *= time_ratio(*calls, CPU, LINK_PAIRS, call_clock=product_clock(calls, CPU)).ratio
        out[upper] = factor
    return out


def time_pass(models, references, rungs, x, seconds: float, order, ways, duet: Duet | None,
              min_pairs: int) -> dict[int, dict]:
    out = {}
    t0 = references["t0"]
    t0_call_ms = statistics.median(samples_ms(t0, x, 0.3))  # sizes the duet's rounds
    for i in order:
        row: dict = {"rung": rungs[i]}
        alone = samples_ms(models[i], x, seconds)
        row["samples"] = alone
        if "alone" in ways:
            before = statistics.median(samples_ms(t0, x, seconds / 4))
            after = statistics.median(samples_ms(t0, x, seconds / 4))
            row["reference_block_ms"] = (before + after) / 2
        if "pairs" in ways:
            row["pair_ratios"], row["pairs"] = paired_ratios(models[i], t0, x, seconds, i, min_pairs)
        if "pairs-cpu" in ways:
            row["cpu_pair_ratios"], row["cpu_pairs"] = paired_ratios(models[i], t0, x, seconds, i, min_pairs,
                                                                     call_clock=time.thread_time)
        if "ladder" in ways:
            row["ladder_ratios"], row["ladder_pairs"] = paired_ratios(models[i], references[rungs[i]], x, seconds,
                                                                      i, min_pairs, call_clock="product")
        if "duet" in ways and duet is not None:
            row["duet_ratios"] = duet.ratios(str(i), statistics.median(alone), t0_call_ms, seconds)
        out[i] = row
        print(f"network {i + 1}: median {statistics.median(alone):.2f} ms"
              + (f", pair ratio {statistics.median(row['pair_ratios']):.3f} ({row['pairs']} pairs)"
                 if "pairs" in ways else "")
              + (f", {rungs[i].upper()} ratio {statistics.median(row['ladder_ratios']):.3f}" if "ladder" in ways else "")
              + (f", duet {statistics.median(row['duet_ratios']):.3f}" if "duet_ratios" in row else ""),
              file=sys.stderr, flush=True)
    return out


def summarise(passes: list[dict], n: int, ways: list[str], small: set[int]) -> dict[str, dict]:
    """Each way's agreement over the passes, for all networks and for the small (< 3x T0) and large ones."""
    series: dict[str, list[list[float]]] = {}
    for name, stat in ALONE_STATISTICS.items():
        series[f"alone, {name}"] = [[stat(ps[i]["samples"]) for ps in passes] for i in range(n)]
    if "alone" in ways:
        series["median / reference blocks"] = [
            [statistics.median(ps[i]["samples"]) / ps[i]["reference_block_ms"] for ps in passes] for i in range(n)]
    if "pairs" in ways:
        for name, stat in PAIR_STATISTICS.items():
            series[name] = [[stat(ps[i]["pair_ratios"]) for ps in passes] for i in range(n)]
    if "pairs-cpu" in ways:
        series["per-pair ratio, thread CPU time"] = [[statistics.median(ps[i]["cpu_pair_ratios"]) for ps in passes]
                                                     for i in range(n)]
    if "ladder" in ways:
        series["ladder ratio, median"] = [[statistics.median(ps[i]["ladder_ratios"]) for ps in passes]
                                          for i in range(n)]
        series["ladder ratio in T0 units"] = [
            [statistics.median(ps[i]["ladder_ratios"]) * ps["chain"][ps[i]["rung"]] for ps in passes]
            for i in range(n)]
    if "duet" in ways:
        series["duet ratio, median"] = [[statistics.median(ps[i]["duet_ratios"]) for ps in passes] for i in range(n)]
    rows = {}
    for name, values in series.items():
        rows[name] = {"all": agreement(values),
                      "under 3x T0": agreement([values[i] for i in range(n) if i in small]) if small else None,
                      "over 3x T0": agreement([values[i] for i in range(n) if i not in small])
                      if len(small) < n else None}
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default=str(Path(__file__).resolve().parents[1] / "spaces" / "fasternet.yaml"))
    parser.add_argument("--specs", type=int, default=30)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--gap", type=float, default=120.0, help="seconds between passes")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds of timing per network and way")
    parser.add_argument("--min-pairs", type=int, default=15, help="the least pairs per network and way")
    parser.add_argument("--ways", default=",".join(DEFAULT_WAYS), help=f"which of {','.join(WAYS)}")
    parser.add_argument("--calibration-seconds", type=float, default=None, help="[default: the library's]")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", type=Path, help="write every timing to this file")
    args = parser.parse_args(argv)
    ways = [w for w in args.ways.split(",") if w]
    if unknown := set(ways) - set(WAYS):
        parser.error(f"--ways: unknown {sorted(unknown)}; allowed: {', '.join(WAYS)}")
    torch.set_num_threads(1)
    space = SearchSpace.from_yaml(args.space)
    specs = space.sample_specs(args.specs, seed=args.seed)
    size = specs[0].input_size
    x = torch.randn(1, 3, size, size)
    rung_specs = {name: NAMED_SPECS[name].replace(input_size=size) for name in LADDER}
    rung_flops = {name: count(spec).flops for name, spec in rung_specs.items()}
    rungs = [nearest_rung(count(spec).flops, rung_flops) for spec in specs]
    top = max(LADDER.index(rung) for rung in rungs)  # every rung up to the highest used: the links need them
    references = {name: for_inference(build_model(spec).eval()) for name, spec in rung_specs.items()
                  if LADDER.index(name) <= top}
    models = [for_inference(build_model(spec).eval()) for spec in specs]
    duet = Duet(args.space, args.specs, args.seed) if "duet" in ways else None
    passes, calibrations, cpu_calibrations = [], [], []
    try:
        with torch.inference_mode():
            for p in range(args.passes):
                if p:
                    time.sleep(args.gap)
                calibration = calibrate(lambda: references["t0"](x), CPU, name="T0", device_name=device_name(CPU),
                                        window_s=args.calibration_seconds)
                calibrations.append(calibration.to_dict())
                in_cpu = calibrate(lambda: references["t0"](x), CPU, name="T0", device_name=device_name(CPU),
                                   window_s=args.calibration_seconds, call_clock=time.thread_time)
                cpu_calibrations.append(in_cpu.ms)
                print(f"pass {p + 1}: T0 calibrated at {calibration.ms:.2f} ms ({in_cpu.ms:.2f} ms in thread CPU "
                      "time)", file=sys.stderr, flush=True)
                order = range(len(specs)) if p % 2 == 0 else reversed(range(len(specs)))
                one = time_pass(models, references, rungs, x, args.seconds, order, ways, duet, args.min_pairs)
                if "ladder" in ways:
                    one["chain"] = chain(references, x)
                    print("links: " + ", ".join(f"{k.upper()} {v:.3f} x T0" for k, v in one["chain"].items()),
                          file=sys.stderr, flush=True)
                passes.append(one)
    finally:
        if duet:
            duet.close()
    small = {i for i in range(len(specs))  # by the first pass's median against its calibration of T0
             if statistics.median(passes[0][i]["samples"]) < 3 * calibrations[0]["ms"]}
    rows = summarise(passes, len(specs), ways, small)
    cal = [c["ms"] for c in calibrations]
    print(f"{device_name(CPU)}, {torch.backends.cpu.get_cpu_capability()}, 1 thread, batch 1, {len(specs)} networks "
          f"of space {space.name} ({len(small)} under 3x T0), {args.passes} passes {args.gap:g} s apart, "
          f"{args.seconds:g} s per network and way")
    print(f"{'way':<34} {'within 5%':>9} {'within 10%':>10} {'median spread':>13} {'worst':>7} "
          f"{'small: 5% / 10%':>16} {'large: 5% / 10%':>16}")
    for name, row in rows.items():
        a = row["all"]
        parts = []
        for group in ("under 3x T0", "over 3x T0"):
            g = row[group]
            parts.append(f"{100 * g['within_5pct']:.0f}% / {100 * g['within_10pct']:.0f}%" if g else "-")
        print(f"{name:<34} {100 * a['within_5pct']:>8.0f}% {100 * a['within_10pct']:>9.0f}% "
              f"{100 * a['median_spread']:>12.1f}% {100 * a['worst_spread']:>6.1f}% {parts[0]:>16} {parts[1]:>16}")
    print(f"calibration of T0 per pass ({calibrations[0]['estimator']}): "
          + ", ".join(f"{c:.2f} ms" for c in cal) + f"; spread {100 * (max(cal) / min(cal) - 1):.1f}%")
    print("the same in thread CPU time: " + ", ".join(f"{c:.2f} ms" for c in cpu_calibrations)
          + f"; spread {100 * (max(cpu_calibrations) / min(cpu_calibrations) - 1):.1f}%")
    if args.json:
        args.json.write_text(json.dumps({"argv": sys.argv[1:], "cpu": device_name(CPU), "agreement": rows,
                                         "calibrations": calibrations,
                                         "cpu_calibrations_ms": cpu_calibrations, "rungs": rungs, "passes": passes}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
