"""Does the main job's answer repeat? Runs it R times with different seeds, then judges the picks side by side.

    python benchmarks/pick_repeatability.py [--runs 3] [--first-seed 0] [--budget 20ms] [--retrain-seeds 3]
                                            [--dir runs/pick_repeatability] [--json FILE] [--extra "--n-trials 20"]

Each run is the README's main job (`python cli.py search --device cpu --latency-budget BUDGET --seed S`), its
own study in DIR/pick.db (a rerun resumes what is stored: a finished run is not searched again). Then every
run's pick (its best.yaml) is trained again under the same `--retrain-seeds` fresh seeds (seeds 100, 101, ...;
none of them used by any search) on the search's own data and recipe, and timed side by side in pairs with T0
(one calibration for all). For each pair of picks: whether they are tied on the ranking score (held-out loss:
the 95% intervals of the seed means overlap), which one is faster, and whether each fits the budget as timed
here. A pick beaten beyond the noise by another run's pick is the failure this benchmark looks for; different
picks that are tied are the same answer. Also the tied sets' sizes. Prints tables, writes JSON; asserts nothing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from fasternet_space import count, load_spec  # noqa: E402
from fasternet_space.data import load_dataset  # noqa: E402
from fasternet_space.ladder import measure_side_by_side  # noqa: E402
from fasternet_space.measure import device_name  # noqa: E402
from fasternet_space.proxy import ProxyConfig, train_proxy  # noqa: E402
from fasternet_space.report import format_table  # noqa: E402
from fasternet_space.stats import loss_seed_interval  # noqa: E402
from search import SearchConfig, read_trials  # noqa: E402
from search.config import parse_budget  # noqa: E402
from search.records.front import pick  # noqa: E402
from search.run.storage import make_storage  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RETRAIN_FIRST_SEED = 100  # far from the seeds a search and its confirmations use (0.., a few per run)


def run_main_job(seed: int, budget: str, folder: Path, extra: list[str]) -> dict:
    """One run of the main job as a user types it, in its own study; its wall time and where best.yaml is."""
    best = folder / f"best-seed{seed}.yaml"
    command = [sys.executable, "cli.py", "search", "--device", "cpu", "--latency-budget", budget, "--seed", str(seed),
               "--storage", f"sqlite:///{folder / 'pick.db'}", "--study-name", f"pick-seed{seed}",
               "--out-spec", str(best), *extra]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    (folder / f"search-seed{seed}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"the main job with --seed {seed} failed ({done.returncode}); see "
                         f"{folder / f'search-seed{seed}.log'}")
    return {"seed": seed, "command": shlex.join(command[1:]), "seconds": seconds, "best_yaml": str(best)}


def study_pick(seed: int, folder: Path) -> dict:
    """What the run's study says: its pick, the best, the tied set and its rule."""
    import optuna

    study = optuna.load_study(study_name=f"pick-seed{seed}", storage=make_storage(f"sqlite:///{folder / 'pick.db'}"))
    chosen = pick(read_trials(study), study.user_attrs.get("pick") or "fastest")
    if chosen is None:
        raise SystemExit(f"the run with --seed {seed} found nothing within budget: no pick to compare")
    return {"trial": chosen.chosen.number, "best": chosen.best.number, "tied": [r.number for r in chosen.tied],
            "rule": chosen.rule, "search_latency_ms": chosen.chosen.latency_ms, "search_loss": chosen.chosen.loss,
            "search_top1": chosen.chosen.accuracy, "named": chosen.chosen.named}


def retrain(specs: dict[int, object], seeds: list[int]) -> dict[int, dict]:
    """Each pick trained under the same seeds on the main job's data and recipe (SearchConfig's defaults)."""
    config = SearchConfig()
    dataset = load_dataset(config.data, config.proxy.resolution, seed=config.seed,
                           max_train=config.max_train_samples, max_test=config.max_test_samples)
    results = {}
    for run_seed, spec in specs.items():
        runs = [train_proxy(spec, dataset, ProxyConfig(), seed=s).final for s in seeds]
        losses = [r.loss for r in runs]
        mean, std, low, high = loss_seed_interval(losses, [r.loss_sd for r in runs], len(dataset.test_y))
        results[run_seed] = {"losses": losses, "top1": [r.top1 for r in runs], "loss": mean, "loss_seed_std": std,
                             "loss_ci": [low, high], "top1_mean": sum(r.top1 for r in runs) / len(runs)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="the runs use seeds first, first + 1, ...")
    parser.add_argument("--budget", default="20ms")
    parser.add_argument("--retrain-seeds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=ROOT / "runs" / "pick_repeatability")
    parser.add_argument("--json", type=Path, default=None, help="[default: DIR/pick_repeatability.json]")
    parser.add_argument("--extra", default="", help="more flags for every search, e.g. '--n-trials 20'")
    args = parser.parse_args()
    if args.runs < 2:
        parser.error(f"--runs {args.runs}: nothing to compare; allowed: 2 or more")
    budget_ms = parse_budget(args.budget)
    args.dir.mkdir(parents=True, exist_ok=True)
    seeds = [args.first_seed + i for i in range(args.runs)]

    runs = []
    for seed in seeds:
        run = run_main_job(seed, args.budget, args.dir, shlex.split(args.extra))
        run.update(study_pick(seed, args.dir))
        runs.append(run)
        print(f"run --seed {seed}: {run['seconds'] / 60:.1f} min, picked #{run['trial']} of {len(run['tied'])} tied "
              f"(best #{run['best']}), {run['search_latency_ms']:.2f} ms in its search", flush=True)

    specs = {run["seed"]: load_spec(run["best_yaml"]) for run in runs}
    retrain_seeds = [RETRAIN_FIRST_SEED + i for i in range(args.retrain_seeds)]
    started = time.perf_counter()
    scores = retrain(specs, retrain_seeds)
    retrain_s = time.perf_counter() - started
    timed = measure_side_by_side(list(specs.values()), "torch", device="cpu", threads=1, throughput_batch=None,
                                 input_size=None)
    for run, measurement in zip(runs, timed, strict=True):
        relative = measurement.extra.get("relative") or {}
        run.update(scores[run["seed"]], latency_ms=measurement.latency_ms, latency_ci_ms=list(measurement.latency_ci_ms),
                   ratio=relative.get("ratio"), ratio_ci=relative.get("ratio_ci"),
                   calibration_ms=(relative.get("calibration") or {}).get("ms"),
                   gmacs=count(specs[run["seed"]]).flops / 1e9, fits=measurement.latency_ms <= budget_ms)

    cpu = device_name(torch.device("cpu"))
    print(f"\n{cpu}; budget {args.budget}; picks retrained under seeds {retrain_seeds} ({retrain_s / 60:.1f} min), "
          "timed side by side in pairs with T0")
    print(format_table(
        ["run seed", "pick", "tied set", "GMACs", "latency ms [95%] (ratio to T0)", "fits", "held-out loss [95%]",
         "top-1 (mean)", "search: loss / top-1 / ms"],
        [[r["seed"], f"#{r['trial']}" + (f" {r['named']}" if r["named"] else ""), len(r["tied"]), f"{r['gmacs']:.3f}",
          f"{r['latency_ms']:.2f} [{r['latency_ci_ms'][0]:.2f}, {r['latency_ci_ms'][1]:.2f}] ({r['ratio']:.3f})",
          "yes" if r["fits"] else "NO", f"{r['loss']:.4f} [{r['loss_ci'][0]:.4f}, {r['loss_ci'][1]:.4f}]",
          f"{r['top1_mean']:.4f}",
          f"{r['search_loss']:.4f} / {r['search_top1']:.4f} / {r['search_latency_ms']:.2f}"] for r in runs]))

    pairs = []
    for a, b in itertools.combinations(runs, 2):
        same = specs[a["seed"]].replace(name="x") == specs[b["seed"]].replace(name="x")
        tied = a["loss_ci"][0] <= b["loss_ci"][1] and b["loss_ci"][0] <= a["loss_ci"][1]
        better = None if tied else (a["seed"] if a["loss"] < b["loss"] else b["seed"])
        faster = a["seed"] if a["latency_ms"] < b["latency_ms"] else b["seed"]
        pairs.append({"runs": [a["seed"], b["seed"]], "same_spec": same, "tied": tied, "better_beyond_noise": better,
                      "faster": faster, "latency_ratio": a["latency_ms"] / b["latency_ms"]})
    print(format_table(["runs", "same spec", "tied on held-out loss", "beaten beyond the noise", "faster",
                        "latency a / b"],
                       [[f"{p['runs'][0]} vs {p['runs'][1]}", "yes" if p["same_spec"] else "no",
                         "yes" if p["tied"] else "NO", "-" if p["better_beyond_noise"] is None
                         else f"run {p['runs'][0] if p['better_beyond_noise'] != p['runs'][0] else p['runs'][1]} "
                              f"by run {p['better_beyond_noise']}", f"run {p['faster']}", f"{p['latency_ratio']:.2f}"]
                        for p in pairs]))
    tied_pairs = sum(p["tied"] for p in pairs)
    print(f"{tied_pairs} of {len(pairs)} pairs of picks tied; {sum(r['fits'] for r in runs)} of {len(runs)} picks fit "
          f"the {args.budget} budget timed side by side; tied set sizes {[len(r['tied']) for r in runs]}; "
          f"main job wall time {', '.join(format(r['seconds'] / 60, '.1f') for r in runs)} min")
    out = args.json or args.dir / "pick_repeatability.json"
    out.write_text(json.dumps({"cpu": cpu, "budget": args.budget, "retrain_seeds": retrain_seeds,
                               "runs": runs, "pairs": pairs}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
