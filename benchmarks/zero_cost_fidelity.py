"""Zero-cost scores against longer training, on the candidates of benchmarks/proxy_recipes.py.

Scores each candidate of a proxy_recipes.py results file (default: the one kept in benchmarks/results)
with every zero-cost proxy on the default data, and prints each score's Spearman (bootstrap 95%
interval) and Kendall against the recipe's long runs, beside the short proxies' own.

    python benchmarks/zero_cost_fidelity.py [--json benchmarks/results/proxy_recipes_....json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxy_recipes import candidates, describe  # noqa: E402

from fasternet_space import zero_cost  # noqa: E402
from fasternet_space.data import load_dataset  # noqa: E402
from fasternet_space.stats import bootstrap_interval, kendall_tau_b, spearman  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "proxy_recipes_amd_epyc_2026-11-29.json"
NAMES = ("synflow", "naswot", "grad_norm", "snip", "params", "flops")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=RESULTS, help="a proxy_recipes.py results file")
    parser.add_argument("--long", default="2:2000:0.002:64:32:2000", help="the recipe whose long runs are the reference")
    parser.add_argument("--random", type=int, default=9)
    parser.add_argument("--max-gmacs", type=float, default=1.2)
    parser.add_argument("--space-seed", type=int, default=0)
    args = parser.parse_args()
    data = json.loads(args.json.read_text())
    specs = dict(candidates(args.random, args.max_gmacs, args.space_seed))
    if any(describe(specs[k]) != data["candidates"][k]["spec"] for k in data["candidates"]):
        sys.exit("error: the candidates drawn here differ from the file's; allowed: the same --random/--space-seed")
    results = data["results"][args.long]
    keys = [k for k in data["candidates"] if "long0" in results.get(k, {})]
    long = [results[k]["long0"]["acc"] for k in keys]
    dataset = load_dataset("fashion", 32, seed=0, max_train=2000, max_test=2000)
    started = time.perf_counter()
    scores = {k: zero_cost.scores(NAMES, specs[k], dataset, seed=0, threads=1) for k in keys}
    seconds = time.perf_counter() - started
    signals = {name: [scores[k][name] for k in keys] for name in NAMES}
    votes = zero_cost.vote({k: scores[k] for k in keys})
    signals["vote"] = [votes[k] for k in keys]
    for recipe, runs in data["results"].items():
        if all("short0" in runs.get(k, {}) for k in keys):
            signals[f"short proxy {recipe}"] = [runs[k]["short0"]["acc"] for k in keys]
    print(f"{len(keys)} candidates, reference: the long runs of {args.long}; scoring took {seconds:.1f} s (1 thread)")
    print(f"{'signal':36s} {'Spearman':>8s}  {'95% bootstrap':>16s}  {'Kendall':>7s}")
    for name, values in signals.items():
        low, high = bootstrap_interval(spearman, values, long, seed=0)
        print(f"{name:36s} {spearman(values, long):8.2f}  [{low:6.2f}, {high:6.2f}]  {kendall_tau_b(values, long):7.2f}")


if __name__ == "__main__":
    main()
