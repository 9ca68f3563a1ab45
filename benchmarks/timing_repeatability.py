"""How well this machine repeats its own latency measurements: the floor under any latency predictor's error.

Samples --specs random networks of a space and times each one twice, in two passes minutes apart (the
second in reverse order), the way the search times a candidate: batch 1, the inference form, one thread,
--seconds of repetitions after a warm-up. Each pass also times a reference network (T0 at the space's
input size) just before and just after each candidate, so that the candidate's latency can be read as a
ratio to the reference, which cancels slow drift of the machine's speed. Prints, per statistic of the
repetitions (median, mean, minimum, 10th percentile) and for the ratio to the reference, the share of
networks whose two measurements agree within +-5% and +-10%, and the median disagreement. A latency
predictor cannot be shown to reach 95% within +-10% on a machine where this share is lower. Asserts nothing.

    python benchmarks/timing_repeatability.py [--specs 16] [--seconds 3] [--space spaces/fasternet.yaml]
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
from search import SearchSpace  # noqa: E402

STATISTICS = {
    "median": statistics.median,
    "mean": statistics.fmean,
    "minimum": min,
    "10th percentile": lambda s: sorted(s)[len(s) // 10],
}


def samples_ms(model: torch.nn.Module, input_size: int, seconds: float, min_repeats: int = 10) -> list[float]:
    x = torch.randn(1, 3, input_size, input_size)
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        out: list[float] = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(out) < min_repeats:
            start = time.perf_counter()
            model(x)
            out.append((time.perf_counter() - start) * 1e3)
    return out


def agreement(first: list[float], second: list[float]) -> dict[str, float]:
    gaps = [abs(b - a) / a for a, b in zip(first, second, strict=True)]
    return {"within_5pct": sum(g <= 0.05 for g in gaps) / len(gaps),
            "within_10pct": sum(g <= 0.10 for g in gaps) / len(gaps), "median_gap": statistics.median(gaps)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default=str(Path(__file__).resolve().parents[1] / "spaces" / "fasternet.yaml"))
    parser.add_argument("--specs", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds of repetitions per timing")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", type=Path, help="write every timing to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    space = SearchSpace.from_yaml(args.space)
    specs = space.sample_specs(args.specs, seed=args.seed)
    size = specs[0].input_size
    reference = for_inference(build_model(NAMED_SPECS["t0"].replace(input_size=size)).eval())
    models = [for_inference(build_model(spec).eval()) for spec in specs]
    passes: list[dict[int, dict]] = [{}, {}]
    for p, order in enumerate((range(len(specs)), reversed(range(len(specs))))):
        for i in order:
            before = statistics.median(samples_ms(reference, size, args.seconds))
            timed = samples_ms(models[i], size, args.seconds)
            after = statistics.median(samples_ms(reference, size, args.seconds))
            passes[p][i] = {"samples": timed, "reference_ms": (before + after) / 2}
            print(f"pass {p + 1}, network {i + 1}/{len(specs)}: median {statistics.median(timed):.2f} ms, "
                  f"reference {before:.2f} / {after:.2f} ms", file=sys.stderr, flush=True)
    rows = {}
    for name, stat in STATISTICS.items():
        rows[name] = agreement([stat(passes[0][i]["samples"]) for i in range(len(specs))],
                               [stat(passes[1][i]["samples"]) for i in range(len(specs))])
    rows["median / reference"] = agreement(
        [statistics.median(passes[0][i]["samples"]) / passes[0][i]["reference_ms"] for i in range(len(specs))],
        [statistics.median(passes[1][i]["samples"]) / passes[1][i]["reference_ms"] for i in range(len(specs))])
    print(f"{device_name(torch.device('cpu'))}, {torch.backends.cpu.get_cpu_capability()}, 1 thread, batch 1, "
          f"{len(specs)} networks of space {space.name}, timed twice ({args.seconds:g} s each), passes minutes apart")
    print(f"{'statistic':<20} {'within 5%':>9} {'within 10%':>10} {'median gap':>10}")
    for name, row in rows.items():
        print(f"{name:<20} {100 * row['within_5pct']:>8.0f}% {100 * row['within_10pct']:>9.0f}% "
              f"{100 * row['median_gap']:>9.1f}%")
    if args.json:
        args.json.write_text(json.dumps({"agreement": rows, "passes": passes}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
