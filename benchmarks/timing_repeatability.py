"""How well this machine repeats its own latency measurements: the floor under any latency predictor's error.

Samples --specs random networks of a space and times each one in --passes passes minutes apart (every other
pass in reverse order), batch 1, the inference form, one thread, --seconds per network and pass, two ways:
alone (then read as the median, mean, minimum or 10th percentile of its calls, or as the median over a
reference's median timed just before and after it: the older per-block ratio), and in pairs with the
reference (T0 at the space's input), one call of each per pair in random order (the search's measurement
of record on CPU: the median per-pair ratio). Each pass also calibrates the reference
(`fasternet_space.paired.calibrate`). Prints, per statistic, the share of networks whose measurements agree
within +-5% and +-10% over all passes (max / min), and the median spread; then the calibration of each pass
and its spread. A latency predictor cannot be shown to reach 95% within +-10% on a machine where this
share is lower. Asserts nothing.

    python benchmarks/timing_repeatability.py [--specs 30] [--passes 3] [--gap 120] [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fasternet_space import NAMED_SPECS, build_model  # noqa: E402
from fasternet_space.inference import for_inference  # noqa: E402
from fasternet_space.measure import device_name  # noqa: E402
from fasternet_space.paired import PairPolicy, calibrate, time_ratio  # noqa: E402
from search import SearchSpace  # noqa: E402

CPU = torch.device("cpu")
STATISTICS = {
    "median": statistics.median,
    "mean": statistics.fmean,
    "minimum": min,
    "10th percentile": lambda s: sorted(s)[len(s) // 10],
}


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
            "within_10pct": sum(s <= 0.10 for s in spreads) / len(spreads), "median_spread": statistics.median(spreads)}


def time_pass(models, reference, x, seconds: float, order) -> dict[int, dict]:
    out = {}
    for i in order:
        before = statistics.median(samples_ms(reference, x, seconds / 4))
        alone = samples_ms(models[i], x, seconds)
        after = statistics.median(samples_ms(reference, x, seconds / 4))
        pairs = time_ratio(lambda m=models[i]: m(x), lambda: reference(x), CPU,
                           PairPolicy(warmup=3, min_pairs=5, max_pairs=100_000, max_time_s=seconds, rel_ci=0.0),
                           seed=i)
        out[i] = {"samples": alone, "reference_block_ms": (before + after) / 2, "pair_ratio": pairs.ratio,
                  "pair_ratio_ci": list(pairs.ratio_ci), "pairs": pairs.pairs}
        print(f"network {i + 1}: median {statistics.median(alone):.2f} ms, pair ratio {pairs.ratio:.3f} "
              f"({pairs.pairs} pairs)", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default=str(Path(__file__).resolve().parents[1] / "spaces" / "fasternet.yaml"))
    parser.add_argument("--specs", type=int, default=30)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--gap", type=float, default=120.0, help="seconds between passes")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds of timing per network and way")
    parser.add_argument("--calibration-seconds", type=float, default=None, help="[default: the library's]")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", type=Path, help="write every timing to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    space = SearchSpace.from_yaml(args.space)
    specs = space.sample_specs(args.specs, seed=args.seed)
    size = specs[0].input_size
    x = torch.randn(1, 3, size, size)
    reference = for_inference(build_model(NAMED_SPECS["t0"].replace(input_size=size)).eval())
    models = [for_inference(build_model(spec).eval()) for spec in specs]
    passes, calibrations = [], []
    with torch.inference_mode():
        for p in range(args.passes):
            if p:
                time.sleep(args.gap)
            calibration = calibrate(lambda: reference(x), CPU, name="T0", device_name=device_name(CPU),
                                    window_s=args.calibration_seconds)
            calibrations.append(calibration.to_dict())
            print(f"pass {p + 1}: T0 calibrated at {calibration.ms:.2f} ms", file=sys.stderr, flush=True)
            order = range(len(specs)) if p % 2 == 0 else reversed(range(len(specs)))
            passes.append(time_pass(models, reference, x, args.seconds, order))
    n = range(len(specs))
    rows = {name: agreement([[stat(ps[i]["samples"]) for ps in passes] for i in n])
            for name, stat in STATISTICS.items()}
    rows["median / reference blocks"] = agreement(
        [[statistics.median(ps[i]["samples"]) / ps[i]["reference_block_ms"] for ps in passes] for i in n])
    rows["per-pair ratio (search)"] = agreement([[ps[i]["pair_ratio"] for ps in passes] for i in n])
    cal = [c["ms"] for c in calibrations]
    print(f"{device_name(CPU)}, {torch.backends.cpu.get_cpu_capability()}, 1 thread, batch 1, {len(specs)} networks "
          f"of space {space.name}, {args.passes} passes {args.gap:g} s apart, {args.seconds:g} s per network and way")
    print(f"{'statistic':<26} {'within 5%':>9} {'within 10%':>10} {'median spread':>13}")
    for name, row in rows.items():
        print(f"{name:<26} {100 * row['within_5pct']:>8.0f}% {100 * row['within_10pct']:>9.0f}% "
              f"{100 * row['median_spread']:>12.1f}%")
    print(f"calibration of T0 per pass ({calibrations[0]['estimator']}): "
          + ", ".join(f"{c:.2f} ms" for c in cal) + f"; spread {100 * (max(cal) / min(cal) - 1):.1f}%")
    if args.json:
        args.json.write_text(json.dumps({"agreement": rows, "calibrations": calibrations, "passes": passes},
                                        indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
