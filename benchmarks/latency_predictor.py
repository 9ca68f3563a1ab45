"""How well a latency table predicts whole networks it never saw, per runtime, against FLOPs as a predictor.

For each runtime: profile the space (`latency_table.profile`, as `cli.py profile` does; or load a table given
with --table RUNTIME=PATH), then sample --specs random specs of the space with another seed, drop any that
the profile measured (its fit and held-out networks), measure each whole network in that runtime and predict
it from the table. Prints, per runtime: the share of predictions within +-10% of the measured latency, the
median and largest relative error, Spearman of predicted vs measured and of FLOPs vs measured, the mean time
of one prediction, and the profiling time; with --remeasure, how well a second measurement of each spec
agrees with the first (the floor under any predictor's error on this machine). Writes every number (and
each spec's pair) to --out. Asserts nothing.

    python benchmarks/latency_predictor.py --specs 100 --runtimes torch,onnxruntime \\
        --out benchmarks/results/latency_predictor.json
    python benchmarks/latency_predictor.py --specs 20 --table torch=t.json   # reduced run on a saved table
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

from fasternet_space import count  # noqa: E402
from fasternet_space.latency_table import (  # noqa: E402
    NETWORKS,
    SAMPLED_PER_NETWORK,
    LatencyTable,
    distinct_specs,
    profile,
    spec_signature,
    split_networks,
)
from fasternet_space.measure import TimingPolicy, device_name  # noqa: E402
from fasternet_space.runtimes import spec_session  # noqa: E402
from fasternet_space.stats import spearman  # noqa: E402
from search import SearchSpace  # noqa: E402

MEASURE = TimingPolicy(warmup=3, min_repeats=10, max_time_s=3.0, rel_ci=0.02)
PROFILE_NETWORKS = NETWORKS  # fit and held-out networks each, sampled with seed 0 (`cli.py profile`'s defaults)


def evaluate(table: LatencyTable, space: SearchSpace, runtime: str, n_specs: int, seed: int,
             threads: int, remeasure: bool = False) -> dict:
    used = set(table.profile.get("fit_networks", [])) | set(table.profile.get("held_out_networks", []))
    specs = distinct_specs(space.sample_specs(8 * n_specs, seed=seed), n_specs, exclude=used)
    rows = []
    for i, spec in enumerate(specs):
        with spec_session(spec, runtime, threads=threads) as session:
            measured = session.measure(MEASURE).latency_ms
        start = time.perf_counter()
        repeats = 200
        for _ in range(repeats):
            predicted = table.predict(spec, space).latency_ms
        predict_s = (time.perf_counter() - start) / repeats
        rows.append({"spec": json.loads(spec_signature(spec)), "measured_ms": measured, "predicted_ms": predicted,
                     "flops": count(spec).flops, "predict_us": predict_s * 1e6})
        print(f"[{runtime}] {i + 1}/{len(specs)}: measured {measured:.2f} ms, predicted {predicted:.2f} ms",
              file=sys.stderr, flush=True)
    repeat = {}
    if remeasure:  # a second pass, in reverse order: how far one measurement is from the next, minutes later
        for i, (spec, row) in enumerate(reversed(list(zip(specs, rows, strict=True)))):
            with spec_session(spec, runtime, threads=threads) as session:
                row["remeasured_ms"] = session.measure(MEASURE).latency_ms
            print(f"[{runtime}] re-measure {i + 1}/{len(specs)}: {row['remeasured_ms']:.2f} ms (first "
                  f"{row['measured_ms']:.2f})", file=sys.stderr, flush=True)
        drift = [abs(r["remeasured_ms"] - r["measured_ms"]) / r["measured_ms"] for r in rows]
        to_mean = [abs(r["predicted_ms"] - (r["measured_ms"] + r["remeasured_ms"]) / 2)
                   / ((r["measured_ms"] + r["remeasured_ms"]) / 2) for r in rows]
        repeat = {"remeasure_within_10pct": sum(e <= 0.1 for e in drift) / len(drift),
                  "remeasure_median_rel": statistics.median(drift), "remeasure_max_rel": max(drift),
                  "within_10pct_of_mean": sum(e <= 0.1 for e in to_mean) / len(to_mean)}
    errors = [abs(r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"] for r in rows]
    measured = [r["measured_ms"] for r in rows]
    return {
        "runtime": runtime, "specs": len(rows), "within_10pct": sum(e <= 0.1 for e in errors) / len(errors),
        "median_rel_error": statistics.median(errors), "max_rel_error": max(errors),
        "spearman_predicted": spearman([r["predicted_ms"] for r in rows], measured),
        "spearman_flops": spearman([r["flops"] for r in rows], measured),
        "predict_us_mean": statistics.fmean(r["predict_us"] for r in rows),
        "profile_seconds": table.profile.get("seconds"), "table_error": table.error, "protocol": table.protocol,
        **repeat, "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default=str(Path(__file__).resolve().parents[1] / "spaces" / "fasternet.yaml"))
    parser.add_argument("--runtimes", default="torch,onnxruntime")
    parser.add_argument("--specs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1, help="Sampling seed of the evaluated specs (profile: 0).")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--table", action="append", default=[], help="RUNTIME=PATH: use this table, no profiling.")
    parser.add_argument("--save-tables", help="Folder to save the profiled tables in.")
    parser.add_argument("--out", default="latency_predictor.json")
    parser.add_argument("--remeasure", action="store_true",
                        help="Measure every spec a second time (reverse order): the measurement's own repeatability, "
                             "the floor under any predictor's error")
    args = parser.parse_args()
    given = dict(item.split("=", 1) for item in args.table)
    space = SearchSpace.from_yaml(args.space)
    results = []
    for runtime in args.runtimes.split(","):
        if runtime in given:
            table = LatencyTable.load(given[runtime])
        else:
            sampled = space.sample_specs(SAMPLED_PER_NETWORK * 2 * PROFILE_NETWORKS, seed=0)
            fit, held_out = split_networks(sampled, PROFILE_NETWORKS, PROFILE_NETWORKS)
            table = profile(space, runtime, threads=args.threads, fit_specs=fit, held_out_specs=held_out, seed=0)
            if args.save_tables:
                table.save(Path(args.save_tables) / f"table_{runtime}.json")
        results.append(evaluate(table, space, runtime, args.specs, args.seed, args.threads, args.remeasure))
    print(f"{device_name(torch.device('cpu'))}, {args.threads} thread(s), batch 1, space {space.name}, "
          f"{args.specs} specs (seed {args.seed}) not used in profiling")
    print(f"{'runtime':12} {'within 10%':>10} {'median err':>10} {'max err':>8} {'Spearman pred':>13} "
          f"{'Spearman FLOPs':>14} {'predict us':>10} {'profile min':>11}")
    for r in results:
        minutes = f"{r['profile_seconds'] / 60:.1f}" if r["profile_seconds"] else "n/a"
        print(f"{r['runtime']:12} {100 * r['within_10pct']:>9.0f}% {100 * r['median_rel_error']:>9.1f}% "
              f"{100 * r['max_rel_error']:>7.1f}% {r['spearman_predicted']:>13.3f} {r['spearman_flops']:>14.3f} "
              f"{r['predict_us_mean']:>10.0f} {minutes:>11}")
        if "remeasure_within_10pct" in r:
            print(f"{'':12} second measurement of the same specs: {100 * r['remeasure_within_10pct']:.0f}% within "
                  f"10% of the first (median {100 * r['remeasure_median_rel']:.1f}%, max "
                  f"{100 * r['remeasure_max_rel']:.1f}%); predictions within 10% of the two's mean: "
                  f"{100 * r['within_10pct_of_mean']:.0f}%")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"space": args.space, "seed": args.seed, "results": results}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
