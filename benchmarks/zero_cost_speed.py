"""Zero-cost scores: wall time per score for T0 and T2 at the proxy shape, against one proxy training step.

    python benchmarks/zero_cost_speed.py [--models t0,t2] [--data fashion] [--resolution 32]
                                         [--batch-size 64] [--repeats 3] [--threads N]

Each score is timed as `zero_cost.score(name, spec, dataset)` is called in a search: the proxy-shaped
spec, the seeded training batch and a fresh model built for the call are all included. "vote's three"
is `scores(VOTE_SCORES, ...)`: synflow, naswot and snip on one initialisation, what a vote costs per
candidate. The reference is one training step of the proxy (`train_proxy`'s step: forward,
cross-entropy, backward, AdamW step on a batch, model already built), timed in the same run. Rounds are
interleaved (train step, then every score, then again) after a warm-up round, so that drift on a shared
machine hits them all alike; medians are reported, with the 1-minute load average (a busy machine
inflates every number, the ratios much less). On a machine that other jobs keep busy, `--threads 1`
avoids the threads waiting on each other (several times slower with 2 threads under a load of 3 on 2
cores). Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fasternet_space import NAMED_SPECS, build_model  # noqa: E402
from fasternet_space.data import load_dataset  # noqa: E402
from fasternet_space.measure import cpu_threads  # noqa: E402
from fasternet_space.proxy import ProxyConfig, proxy_spec  # noqa: E402
from fasternet_space.report import format_table  # noqa: E402
from fasternet_space.zero_cost import (  # noqa: E402
    SCORES,
    VOTE_SCORES,
    fresh_model,
    score,
    scores,
    training_batch,
)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="t0,t2")
    parser.add_argument("--data", default="fashion")
    parser.add_argument("--resolution", type=int, default=ProxyConfig.resolution)
    parser.add_argument("--batch-size", type=int, default=ProxyConfig.batch_size)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    args = parser.parse_args()
    dataset = load_dataset(args.data, args.resolution)
    config = ProxyConfig()
    rows = []
    with cpu_threads(args.threads) as threads:
        for key in args.models.split(","):
            spec = NAMED_SPECS[key]
            shaped = proxy_spec(spec, dataset)
            x, y = training_batch(dataset, args.batch_size, 0)
            torch.manual_seed(0)
            model = build_model(shaped).train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

            def step(model=model, optimizer=optimizer, x=x, y=y):
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            jobs = {"train step": step, "build (in every score)": lambda shaped=shaped: fresh_model(shaped)}
            for name in SCORES:
                jobs[name] = lambda name=name, spec=spec: score(name, spec, dataset, args.batch_size, 0, args.threads)
            jobs["vote's three (scores)"] = lambda spec=spec: scores(VOTE_SCORES, spec, dataset, args.batch_size, 0,
                                                                     args.threads)
            times: dict[str, list[float]] = {name: [] for name in jobs}
            for fn in jobs.values():  # warm-up round
                fn()
            for _ in range(args.repeats):
                for name, fn in jobs.items():
                    times[name].append(_timed(fn))
            reference = statistics.median(times["train step"])
            for name, values in times.items():
                median = statistics.median(values)
                rows.append([key.upper(), name, f"{1000 * median:.1f}", f"{median / reference:.2f}",
                             f"{1000 * min(values):.1f}", f"{1000 * max(values):.1f}"])
    print(f"{args.data} at {args.resolution} px, batch {args.batch_size}, {threads} torch thread(s), "
          f"{args.repeats} interleaved rounds, load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(format_table(["model", "score", "median ms", "x train step", "min ms", "max ms"], rows))


if __name__ == "__main__":
    main()
