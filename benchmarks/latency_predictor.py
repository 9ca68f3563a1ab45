"""How well a latency table predicts whole networks it never saw, per runtime, against a FLOPs-only fit.

Every figure is a ratio to T0 (its inference form at the space's input, same runtime and threads): the
table's parts and networks are profiled that way, and each evaluated network is re-measured in pairs with
T0 in this run (`paired.time_ratio`), so the score does not depend on how fast the machine was at any moment.

For each runtime: profile the space (`latency_table.profile`, as `cli.py profile` does; or load a table given
with --table RUNTIME=PATH), then sample --specs random specs of the space with another seed, drop any that
the profile measured (its fit and held-out networks), measure each whole network's ratio to T0 and predict
it from the table, and from a FLOPs-only line (ratio = alpha * FLOPs + beta, fitted on the table's own fit
networks: the baseline a table must beat). Prints, per runtime and predictor: the share of predictions within
+-10% of the measured ratio, the median and largest relative error, Spearman; with --remeasure, how well a
second paired measurement of each spec (reverse order, minutes later) agrees with the first (the floor under
any predictor's error on this machine). Writes every number (and each spec's row) to --out. Asserts nothing.

    python benchmarks/latency_predictor.py --specs 100 --runtimes torch --remeasure \\
        --out benchmarks/results/latency_predictor_relative.json --save-tables /tmp/tables
    python benchmarks/latency_predictor.py --specs 20 --table torch=t.json   # reduced run on a saved table
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fasternet_space import count  # noqa: E402
from fasternet_space.latency_table import (  # noqa: E402
    NETWORKS,
    SAMPLED_PER_NETWORK,
    LatencyTable,
    distinct_specs,
    network_ratio,
    profile,
    refit,
    spec_signature,
    split_networks,
)
from fasternet_space.measure import device_name  # noqa: E402
from fasternet_space.paired import PairPolicy  # noqa: E402
from fasternet_space.relative import DEFAULT_REFERENCE, reference_session  # noqa: E402
from fasternet_space.stats import spearman  # noqa: E402
from search import SearchSpace  # noqa: E402

# Each held-out network in pairs with T0: the median ratio within +-2%, or 4 s
MEASURE = PairPolicy(warmup=3, min_pairs=10, max_pairs=2000, max_time_s=4.0, rel_ci=0.02)
PROFILE_NETWORKS = NETWORKS  # fit and held-out networks each, sampled with seed 0 (`cli.py profile`'s defaults)
TOLERANCE = 0.1


def flops_fit(table: LatencyTable) -> tuple[float, float]:
    """ratio = alpha * FLOPs + beta, least squares on the relative error over the table's own fit networks
    (the ones its correction was fitted on): the baseline a latency table must beat."""
    fit = table.profile["fit"]
    n = len(table.profile["fit_networks"])
    flops, measured = np.array(fit["flops"][:n], dtype=float), np.array(fit["measured_ratio"][:n])
    x = np.stack([flops, np.ones_like(flops)], axis=1) / measured[:, None]
    (alpha, beta), *_ = np.linalg.lstsq(x, np.ones_like(measured), rcond=None)
    return float(alpha), float(beta)


def scores(predicted: list[float], measured: list[float]) -> dict:
    errors = [abs(p - m) / m for p, m in zip(predicted, measured, strict=True)]
    return {"within_10pct": sum(e <= TOLERANCE for e in errors) / len(errors),
            "median_rel_error": statistics.median(errors), "max_rel_error": max(errors),
            "spearman": spearman(predicted, measured)}


def measure_all(specs: list, t0, runtime: str, threads: int, label: str) -> list:
    timings = []
    for i, spec in enumerate(specs):
        timing = network_ratio(spec, t0, runtime, device="cpu", threads=threads, policy=MEASURE, seed=i)
        timings.append(timing)
        print(f"[{runtime}] {label} {i + 1}/{len(specs)}: {timing.ratio:.3f} x T0 [{timing.ratio_ci[0]:.3f}, "
              f"{timing.ratio_ci[1]:.3f}], {timing.pairs} pairs", file=sys.stderr, flush=True)
    return timings


def measure_specs(specs: list, runtime: str, threads: int, remeasure: int) -> list[dict]:
    """Each spec's ratio to T0 in pairs; the first `remeasure` again, in reverse order, after all of them."""
    with reference_session(DEFAULT_REFERENCE, runtime, device="cpu", threads=threads, input_size=specs[0].input_size,
                           in_chans=specs[0].in_chans) as t0:
        first = measure_all(specs, t0, runtime, threads, "measure")
        again = specs[:remeasure]
        second = list(reversed(measure_all(again[::-1], t0, runtime, threads, "re-measure"))) if again else []
    return [{"measured_ratio": t.ratio, "measured_ci": list(t.ratio_ci), "pairs": t.pairs, "stable": t.stable,
             "reference_ms_this_run": t.reference_ms,
             **({"remeasured_ratio": second[i].ratio, "remeasured_ci": list(second[i].ratio_ci)}
                if i < len(second) else {})} for i, t in enumerate(first)]


def earlier_measurements(path: str, runtime: str, specs: list) -> list[dict]:
    """The measurements of these specs in an earlier output of this script (--measured), to score another
    table or correction against the same re-measurements."""
    keys = ("measured_ratio", "measured_ci", "pairs", "stable", "reference_ms_this_run", "remeasured_ratio",
            "remeasured_ci")
    results = [r for r in json.loads(Path(path).read_text())["results"] if r["runtime"] == runtime]
    found = {json.dumps(r["spec"], sort_keys=True): r for result in results for r in result["rows"]}
    rows = []
    for spec in specs:
        row = found.get(json.dumps(json.loads(spec_signature(spec)), sort_keys=True))
        if row is None:
            sys.exit(f"{path}: no measurement of {spec_signature(spec)} in {runtime}; measure it (drop --measured)")
        rows.append({k: row[k] for k in keys if k in row})
    return rows


def evaluate(table: LatencyTable, space: SearchSpace, runtime: str, n_specs: int, seed: int,
             threads: int, remeasure: int = 0, measured_path: str | None = None) -> dict:
    if table.calibration is None:
        sys.exit(f"{table.source}: a version-1 table (ms); this benchmark scores ratios: re-profile")
    used = set(table.profile.get("fit_networks", [])) | set(table.profile.get("held_out_networks", []))
    specs = distinct_specs(space.sample_specs(8 * n_specs, seed=seed), n_specs, exclude=used)
    alpha, beta = flops_fit(table)
    timed = (earlier_measurements(measured_path, runtime, specs) if measured_path
             else measure_specs(specs, runtime, threads, remeasure))
    rows = []
    for spec, row in zip(specs, timed, strict=True):
        start = time.perf_counter()
        repeats = 200
        for _ in range(repeats):
            prediction = table.predict(spec, space)
        flops = count(spec).flops
        rows.append({"spec": json.loads(spec_signature(spec)), **row, "predicted_ratio": prediction.ratio,
                     "predicted_ms": prediction.latency_ms, "parts_sum": prediction.parts_sum,
                     "parts": prediction.parts, "flops": flops, "flops_ratio": alpha * flops + beta,
                     "predict_us": (time.perf_counter() - start) / repeats * 1e6})
    second = [r for r in rows if "remeasured_ratio" in r]
    measured = [r["measured_ratio"] for r in rows]
    result = {"runtime": runtime, "specs": len(rows), "reference": table.reference_name,
              "calibration": table.calibration, "table": scores([r["predicted_ratio"] for r in rows], measured),
              "flops_only": {"alpha_per_flop": alpha, "beta": beta,
                             **scores([r["flops_ratio"] for r in rows], measured)},
              "predict_us_mean": statistics.fmean(r["predict_us"] for r in rows),
              "profile_seconds": table.profile.get("seconds"), "table_error": table.error,
              "protocol": table.protocol, "measure_policy": vars(MEASURE)}
    if second:  # how far one paired measurement is from the next, minutes later: the floor under any predictor
        twice = second
        result["remeasured_specs"] = len(twice)
        result["remeasure"] = scores([r["remeasured_ratio"] for r in twice], [r["measured_ratio"] for r in twice])
        mean = [(r["measured_ratio"] + r["remeasured_ratio"]) / 2 for r in twice]
        result["table_vs_mean"] = scores([r["predicted_ratio"] for r in twice], mean)
        result["flops_only_vs_mean"] = scores([r["flops_ratio"] for r in twice], mean)
    result["rows"] = rows
    return result


def print_results(results: list, args) -> None:
    print(f"{device_name(torch.device('cpu'))}, {args.threads} thread(s), batch 1, space {args.space}, "
          f"{args.specs} specs (seed {args.seed}) not used in profiling; every figure a ratio to T0 timed in pairs")
    print(f"{'runtime':12} {'predictor':28} {'within 10%':>10} {'median err':>10} {'max err':>8} {'Spearman':>8}")
    for r in results:
        lines = [("latency table", r["table"]), ("FLOPs-only fit", r["flops_only"])]
        if "remeasure" in r:
            k = r["remeasured_specs"]
            lines += [(f"floor: 2nd meas. ({k} specs)", r["remeasure"]), ("table vs mean of the two", r["table_vs_mean"]),
                      ("FLOPs vs mean of the two", r["flops_only_vs_mean"])]
        for name, s in lines:
            print(f"{r['runtime']:12} {name:28} {100 * s['within_10pct']:>9.0f}% {100 * s['median_rel_error']:>9.1f}% "
                  f"{100 * s['max_rel_error']:>7.1f}% {s['spearman']:>8.3f}")
        minutes = f"{r['profile_seconds'] / 60:.1f} min" if r["profile_seconds"] else "n/a"
        e = r["table_error"]
        print(f"{'':12} T0 calibrated at {r['calibration']['ms']:.2f} ms; profile {minutes}; the table's own "
              f"held-out error: {100 * e['within_10pct']:.0f}% within 10% of {e['n']}, median "
              f"{100 * e['median_rel']:.1f}%; one prediction {r['predict_us_mean']:.0f} us")


def progress(stage: str, done: int, total: int) -> None:
    if done == total or done % (50 if stage == "parts" else 8) == 0:
        print(f"[profile {stage}] {done}/{total}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default=str(Path(__file__).resolve().parents[1] / "spaces" / "fasternet.yaml"))
    parser.add_argument("--runtimes", default="torch,onnxruntime")
    parser.add_argument("--specs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1, help="Sampling seed of the evaluated specs (profile: 0).")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--table", action="append", default=[], help="RUNTIME=PATH: use this table, no profiling.")
    parser.add_argument("--save-tables", help="Folder to save the profiled tables in.")
    parser.add_argument("--refit", action="store_true",
                        help="Fit a --table's correction again with this version's fit, on the networks and ratios "
                             "its profile measured (nothing is timed).")
    parser.add_argument("--measured", help="An earlier --out of this script: score against its measurements of the "
                                           "same specs instead of measuring again (another table or correction).")
    parser.add_argument("--out", default="latency_predictor.json")
    parser.add_argument("--remeasure", nargs="?", type=int, const=-1, default=0, metavar="N",
                        help="Measure the first N specs (all without N) a second time, in reverse order after the "
                             "first pass: the measurement's own repeatability, the floor under any predictor's error")
    args = parser.parse_args()
    given = dict(item.split("=", 1) for item in args.table)
    space = SearchSpace.from_yaml(args.space)
    results = []
    for runtime in args.runtimes.split(","):
        if runtime in given:
            table = LatencyTable.load(given[runtime])
            if args.refit:
                table = refit(table)
        else:
            sampled = space.sample_specs(SAMPLED_PER_NETWORK * 2 * PROFILE_NETWORKS, seed=0)
            fit, held_out = split_networks(sampled, PROFILE_NETWORKS, PROFILE_NETWORKS)
            table = profile(space, runtime, threads=args.threads, fit_specs=fit, held_out_specs=held_out, seed=0,
                            on_progress=progress)
            if args.save_tables:
                table.save(Path(args.save_tables) / f"table_{runtime}.json")
        again = args.specs if args.remeasure < 0 else args.remeasure
        results.append(evaluate(table, space, runtime, args.specs, args.seed, args.threads, again, args.measured))
    print_results(results, args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"space": args.space, "seed": args.seed, "results": results}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
