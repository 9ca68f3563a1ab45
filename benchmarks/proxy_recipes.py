"""Proxy recipes compared by fidelity: does a short training rank candidates as a 4x longer one does?

    python benchmarks/proxy_recipes.py [--data fashion] [--recipes 1:8000:2e-3,1:8000:2e-3+clip=1] [--random 9]
                                       [--max-gmacs 1.2] [--json /tmp/proxy_recipes.json] [--threads 1]
                                       [--runs short0,long0,short1,long1] [--by-candidate] [--device cuda]

A recipe is EPOCHS:MAX_TRAIN:LR[:BATCH[:RESOLUTION[:MAX_TEST]]][+clip=NORM][+ls=SMOOTHING] (defaults: batch
64, resolution 32, 2000 held-out images, no clipping, no label smoothing); the schedule is `train_proxy`'s
(AdamW, one cycle). Candidates: T0, T1 and T2, then the first `--random` points of the default space
(`SearchSpace.sample_specs`, seed `--space-seed`) whose multiply-adds at 224x224 are at most `--max-gmacs`
(those far over a 20 ms CPU budget are never trained by a search, and are the most expensive to train
here). For each recipe and candidate, the runs `--runs` names: shortK is the recipe under seed K, longK the
same with `--multiplier` times the epochs (the one cycle spanning the longer run). Reported per recipe:
Spearman and Kendall tau-b of short0 against long0, the Spearman of short0 against short1, each with a
percentile bootstrap 95% interval; the named configs' short top-1; the wall seconds of a short training;
and, where two long seeds exist, every short seed against every long seed, the long seeds against each
other and the seed means; and, where the runs store them (since train_proxy returns them), three scores of
the same short trainings (top-1, held-out cross-entropy, training loss) each against the long runs' mean
top-1. `--long-from FILE` copies another JSON's long runs of the same recipes and networks (a GPU's, say:
each run records its device; the same --data and --multiplier are yours to keep) so that only short runs
are trained here. Every training is written to the JSON file as soon as it ends, and a rerun with the
same file resumes (what is stored is not trained again). `--device cuda` trains on a GPU (true fp32:
TF32 is turned off), which makes a sweep of many recipes take minutes. Prints tables; asserts nothing."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fasternet_space import NAMED_SPECS, count  # noqa: E402
from fasternet_space.data import load_dataset  # noqa: E402
from fasternet_space.proxy import ProxyConfig, ProxyDiverged, train_proxy  # noqa: E402
from fasternet_space.report import format_table  # noqa: E402
from fasternet_space.stats import bootstrap_interval, kendall_tau_b, spearman, t_quantile  # noqa: E402
from search.space import SearchSpace  # noqa: E402

SPACE = Path(__file__).resolve().parents[1] / "spaces" / "fasternet.yaml"
NAMED_KEYS = ("t0", "t1", "t2")


OPTIONS = {"clip": "grad_clip", "ls": "label_smoothing"}  # recipe suffixes: +clip=1.0 +ls=0.1


@dataclass(frozen=True)
class Recipe:
    epochs: int
    max_train: int
    lr: float
    batch_size: int = 64
    resolution: int = 32
    max_test: int = 2000
    grad_clip: float | None = None
    label_smoothing: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Recipe:
        head, *options = text.split("+")
        parts = head.split(":")
        if not 3 <= len(parts) <= 6:
            raise argparse.ArgumentTypeError(f"recipe {text!r}: expected EPOCHS:MAX_TRAIN:LR[:BATCH[:RES[:MAX_TEST]]]"
                                             "[+clip=NORM][+ls=SMOOTHING]")
        kinds = (int, int, float, int, int, int)
        extra = {}
        for option in options:
            name, _, value = option.partition("=")
            if name not in OPTIONS:
                raise argparse.ArgumentTypeError(f"recipe {text!r}: unknown option {name!r}; allowed: {list(OPTIONS)}")
            extra[OPTIONS[name]] = float(value)
        return cls(*(kind(p) for kind, p in zip(kinds, parts, strict=False)), **extra)

    @property
    def key(self) -> str:
        key = f"{self.epochs}:{self.max_train}:{self.lr:g}:{self.batch_size}:{self.resolution}:{self.max_test}"
        if self.grad_clip is not None:
            key += f"+clip={self.grad_clip:g}"
        if self.label_smoothing:
            key += f"+ls={self.label_smoothing:g}"
        return key

    def proxy(self, multiplier: int, threads: int | None) -> ProxyConfig:
        return ProxyConfig(epochs=self.epochs * multiplier, resolution=self.resolution, batch_size=self.batch_size,
                           lr=self.lr, grad_clip=self.grad_clip, label_smoothing=self.label_smoothing,
                           threads=threads)


def candidates(n_random: int, max_gmacs: float, space_seed: int) -> list[tuple[str, object]]:
    """T0, T1, T2, then the first `n_random` sampled points within `max_gmacs` (224x224, batch 1)."""
    out = [(key.upper(), NAMED_SPECS[key]) for key in NAMED_KEYS]
    space = SearchSpace.from_yaml(SPACE)
    pool = space.sample_specs(max(40, 6 * n_random), seed=space_seed)
    for i, spec in enumerate(pool):
        if len(out) == len(NAMED_KEYS) + n_random:
            break
        if count(spec).flops <= max_gmacs * 1e9:
            out.append((f"r{i}", spec))
    if len(out) < len(NAMED_KEYS) + n_random:
        raise SystemExit(f"only {len(out) - len(NAMED_KEYS)} sampled points within {max_gmacs} GMACs")
    return out


def describe(spec) -> str:
    pr = spec.partial_ratio if not isinstance(spec.partial_ratio, (list, tuple)) else "/".join(map(str, spec.partial_ratio))
    return (f"e{spec.embed_dim} d{'-'.join(map(str, spec.depths))} r{pr} m{spec.mlp_ratio:g} {spec.act} {spec.norm} "
            f"dp{spec.drop_path_rate:g}")


def load(path: Path) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    return {"results": {}}


def save(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)


def corr(statistic, x, y) -> tuple[float, tuple[float, float] | None]:
    if len(x) < 3:
        return math.nan, None
    value = statistic(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    return value, (bootstrap_interval(statistic, x, y) if math.isfinite(value) else None)


def fmt_corr(value: float, interval) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{value:.2f}" + (f" [{interval[0]:.2f},{interval[1]:.2f}]" if interval else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion")
    parser.add_argument("--recipes", default="1:8000:2e-3,2:4000:2e-3,4:2000:2e-3",
                        help="comma-separated EPOCHS:MAX_TRAIN:LR[:BATCH[:RES[:MAX_TEST]]]")
    parser.add_argument("--random", type=int, default=9, help="random points of the default space besides T0..T2")
    parser.add_argument("--max-gmacs", type=float, default=1.2, help="skip sampled points above this (224x224)")
    parser.add_argument("--space-seed", type=int, default=0)
    parser.add_argument("--multiplier", type=int, default=4, help="the long training's epochs / the short one's")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per training (default: torch's)")
    parser.add_argument("--json", type=Path, default=Path("/tmp/proxy_recipes.json"))
    parser.add_argument("--time-limit", type=float, default=None,
                        help="seconds; start no training after this (what is stored is still reported)")
    parser.add_argument("--runs", default="short0,long0,short1",
                        help="trainings to make, in this order: shortK (seed K) or longK; the rest are reported "
                             "where stored")
    parser.add_argument("--device", default="cpu", help="where to train (cpu, cuda, cuda:N)")
    parser.add_argument("--by-candidate", action="store_true",
                        help="train every run of a candidate before the next (a stop part-way keeps whole pairs)")
    parser.add_argument("--report-only", action="store_true", help="train nothing; report what the JSON holds")
    parser.add_argument("--long-from", type=Path, default=None,
                        help="another results JSON whose long runs of the same recipes and networks are copied "
                             "(run with the same --data and --multiplier)")
    args = parser.parse_args()
    recipes = [Recipe.parse(t) for t in args.recipes.split(",") if t]
    cands = candidates(args.random, args.max_gmacs, args.space_seed)
    data = load(args.json)
    data["candidates"] = {name: {"spec": describe(spec), "gmacs": count(spec).flops / 1e9} for name, spec in cands}
    if args.long_from is not None:
        if not args.long_from.is_file():
            parser.error(f"--long-from {args.long_from}: not a file; allowed: a results JSON this script wrote")
        copy_long_runs(load(args.long_from), data, recipes, cands)
    started = time.monotonic()

    print(f"data {args.data}; {len(cands)} candidates (T0, T1, T2 + {args.random} sampled points of {SPACE.name}, "
          f"space seed {args.space_seed}, <= {args.max_gmacs} GMACs at 224); threads {args.threads or 'default'}")
    print(format_table(["candidate", "GMACs@224", "spec"],
                       [[n, f"{count(s).flops / 1e9:.2f}", describe(s)] for n, s in cands]))

    stopped = False
    for recipe in recipes:
        store = data["results"].setdefault(recipe.key, {})
        if args.report_only or stopped:
            continue
        dataset = load_dataset(args.data, recipe.resolution, seed=0, max_train=recipe.max_train,
                               max_test=recipe.max_test)
        # in the order given (by default short seed 0, long seed 0, short seed 1): a stop part-way keeps the
        # most useful pairs
        runs = args.runs.split(",")
        jobs = ([(run, c) for c in cands for run in runs] if args.by_candidate
                else [(run, c) for run in runs for c in cands])
        for run, (name, spec) in jobs:
            kind, seed = run.rstrip("0123456789"), int(run[len(run.rstrip("0123456789")):] or 0)
            multiplier = {"short": 1, "long": args.multiplier}[kind]
            entry = store.setdefault(name, {})
            if run in entry:
                continue
            if args.time_limit is not None and time.monotonic() - started > args.time_limit:
                print(f"time limit reached: stopped before {recipe.key} {run} {name}")
                stopped = True
                break
            t = time.perf_counter()
            try:
                trained = train_proxy(spec, dataset, recipe.proxy(multiplier, args.threads), seed=seed,
                                      device=args.device)
                curve, acc, loss, train_loss = trained.top1, trained.top1[-1], trained.loss[-1], trained.train_loss
            except ProxyDiverged:
                curve, acc, loss, train_loss = [], None, None, []
            seconds = time.perf_counter() - t
            entry[run] = {"acc": acc, "curve": curve, "loss": loss, "train_loss": train_loss, "seconds": seconds,
                          "threads": args.threads, "device": args.device}
            save(args.json, data)
            print(f"  {recipe.key} {run:6s} {name:4s} top-1 {acc if acc is None else f'{acc:.3f}'} "
                  f"{seconds:6.1f} s", flush=True)
    save(args.json, data)
    report(recipes, cands, data, args.multiplier)
    seed_report(recipes, cands, data)
    signal_report(recipes, cands, data)
    tie_report(recipes, cands, data)


def copy_long_runs(source: dict, data: dict, recipes: list[Recipe], cands) -> None:
    """The long runs `source` holds for these recipes and candidates, unless `data` has its own. A candidate
    is copied only when `source` names the same network by the same name (names follow --random,
    --max-gmacs and --space-seed); the multiplier and the data are the caller's to keep the same."""
    same = [name for name, spec in cands
            if source.get("candidates", {}).get(name, {}).get("spec") == describe(spec)]
    for recipe in recipes:
        theirs = source.get("results", {}).get(recipe.key, {})
        ours = data["results"].setdefault(recipe.key, {})
        for name in same:
            for run, entry in theirs.get(name, {}).items():
                if run.startswith("long"):
                    ours.setdefault(name, {}).setdefault(run, entry)


def report(recipes: list[Recipe], cands, data: dict, multiplier: int) -> None:
    names = [n for n, _ in cands]
    summary = []
    for recipe in recipes:
        store = data["results"].get(recipe.key, {})

        def acc(name, run, store=store):
            return (store.get(name, {}).get(run) or {}).get("acc")

        rows = [[n, *(f"{a:.3f}" if (a := acc(n, r)) is not None else "-" for r in ("short0", "short1", "long0"))]
                for n in names]
        print(f"\nrecipe {recipe.key} (epochs:max_train:lr:batch:resolution:max_test); long = {multiplier}x epochs")
        print(format_table(["candidate", "short s0", "short s1", f"long({multiplier}x) s0"], rows))
        pairs = [(acc(n, "short0"), acc(n, "long0")) for n in names]
        pairs = [p for p in pairs if None not in p]
        seeds = [(acc(n, "short0"), acc(n, "short1")) for n in names]
        seeds = [p for p in seeds if None not in p]
        rho, rho_ci = corr(spearman, *zip(*pairs, strict=True)) if pairs else (math.nan, None)
        tau, tau_ci = corr(kendall_tau_b, *zip(*pairs, strict=True)) if pairs else (math.nan, None)
        srho, srho_ci = corr(spearman, *zip(*seeds, strict=True)) if seeds else (math.nan, None)
        named = [acc(k.upper(), "short0") for k in NAMED_KEYS]
        named_long = [acc(k.upper(), "long0") for k in NAMED_KEYS]
        short_s = [store[n]["short0"]["seconds"] for n in names if "short0" in store.get(n, {})]
        t0_s = [store["T0"][r]["seconds"] for r in ("short0", "short1") if r in store.get("T0", {})]
        total = sum(v["seconds"] for n in names for v in store.get(n, {}).values())
        spread = max(named) - min(named) if None not in named else math.nan
        summary.append([
            recipe.key, f"{len(pairs)}", fmt_corr(rho, rho_ci), fmt_corr(tau, tau_ci), fmt_corr(srho, srho_ci),
            " / ".join("-" if a is None else f"{a:.3f}" for a in named) + (f" (spread {spread:.3f})" if math.isfinite(spread) else ""),
            " / ".join("-" if a is None else f"{a:.3f}" for a in named_long),
            f"{np.mean(short_s):.1f}" if short_s else "-", f"{np.mean(t0_s):.1f}" if t0_s else "-", f"{total:.0f}"])
    cross = []  # a recipe's short run against another recipe's long run that is the same training, k x longer
    for a in recipes:
        for b in recipes:
            same = (a.max_train, a.lr, a.batch_size, a.resolution, a.max_test) == (
                b.max_train, b.lr, b.batch_size, b.resolution, b.max_test)
            long_epochs = b.epochs * multiplier
            if a is b or not same or long_epochs % a.epochs or long_epochs <= a.epochs:
                continue
            sa, sb = data["results"].get(a.key, {}), data["results"].get(b.key, {})
            pairs = [((sa.get(n, {}).get("short0") or {}).get("acc"), (sb.get(n, {}).get("long0") or {}).get("acc"))
                     for n in names]
            pairs = [p for p in pairs if None not in p]
            if len(pairs) >= 3:
                rho, rho_ci = corr(spearman, *zip(*pairs, strict=True))
                tau, tau_ci = corr(kendall_tau_b, *zip(*pairs, strict=True))
                cross.append([a.key, f"{long_epochs} epochs ({long_epochs // a.epochs}x, long run of {b.key})",
                              f"{len(pairs)}", fmt_corr(rho, rho_ci), fmt_corr(tau, tau_ci)])
    if cross:
        print("\nShort runs against another recipe's long run (the same training but for the epochs):")
        print(format_table(["short recipe", "against", "pairs", "Spearman", "Kendall tau-b"], cross))
    print("\nSummary (short = seed 0; Spearman/Kendall short vs long with bootstrap 95% intervals):")
    print(format_table(["recipe e:n:lr:b:res:test", "pairs", "Spearman", "Kendall tau-b", "seed Spearman",
                        "T0/T1/T2 short top-1", "T0/T1/T2 long top-1", "mean short s", "T0 short s",
                        "total s"], summary))


MIN_CANDIDATES = 8  # a rank correlation over fewer says little


def complete_runs(store: dict, cands, short_ok) -> tuple[list[str], list[str], list[str]]:
    """A recipe's stored short and long run names, and the candidates holding every one of them (each
    short run passing `short_ok`, each long run with a top-1)."""
    runs = sorted({run for entry in store.values() for run in entry})
    shorts, longs = [r for r in runs if r.startswith("short")], [r for r in runs if r.startswith("long")]
    names = [n for n, _ in cands
             if all(short_ok(store.get(n, {}).get(r) or {}) for r in shorts)
             and all((store.get(n, {}).get(r) or {}).get("acc") is not None for r in longs)]
    return shorts, longs, names


def seed_report(recipes: list[Recipe], cands, data: dict) -> None:
    """Where a recipe has two or more seeds of the long run: every short seed against every long seed, the
    long run against itself (how much a single long run can be trusted as the reference), and seed means.
    Over the candidates that hold every run."""
    rows = []
    for recipe in recipes:
        store = data["results"].get(recipe.key, {})
        shorts, longs, names = complete_runs(store, cands, lambda run: run.get("acc") is not None)
        if len(longs) < 2 or not shorts or len(names) < MIN_CANDIDATES:
            continue
        acc = {r: [store[n][r]["acc"] for n in names] for r in shorts + longs}
        long_mean = np.mean([acc[r] for r in longs], axis=0)
        cells = [(f"{a} vs {b}", acc[a], acc[b]) for a in shorts for b in longs]
        cells += [(f"{longs[0]} vs {longs[1]}", acc[longs[0]], acc[longs[1]])]
        cells += [(f"{a} vs long mean", acc[a], long_mean) for a in shorts]
        if len(shorts) > 1:
            cells.append(("short mean vs long mean", np.mean([acc[r] for r in shorts], axis=0), long_mean))
        rows += [[recipe.key, what, f"{len(names)}", fmt_corr(*corr(spearman, x, y))] for what, x, y in cells]
    if rows:
        print("\nSeeds of the long run (Spearman, bootstrap 95% interval):")
        print(format_table(["recipe", "compared", "candidates", "Spearman"], rows))


SIGNALS = {  # what one short training can be ranked by; each a higher-is-better value of a stored run
    "top-1": lambda run: run.get("acc"),
    "held-out loss": lambda run: None if run.get("loss") is None else -run["loss"],
    "training loss (sum over epochs)": lambda run: -sum(run["train_loss"]) if run.get("train_loss") else None,
}


def signal_report(recipes: list[Recipe], cands, data: dict) -> None:
    """Which score of the same short trainings ranks the candidates as the long run's top-1 does (the mean
    over the stored long seeds): each short seed alone, their mean, and each score's seed-to-seed Spearman.
    Over the candidates that hold every short and long run with every score."""
    rows = []
    for recipe in recipes:
        store = data["results"].get(recipe.key, {})
        shorts, longs, names = complete_runs(
            store, cands, lambda run: all(signal(run) is not None for signal in SIGNALS.values()))
        if not longs or not shorts or len(names) < MIN_CANDIDATES:
            continue
        long_mean = np.mean([[store[n][r]["acc"] for n in names] for r in longs], axis=0)
        for what, signal in SIGNALS.items():
            values = {r: [signal(store[n][r]) for n in names] for r in shorts}
            each = [spearman(np.asarray(values[r], float), long_mean) for r in shorts]
            between = [spearman(np.asarray(values[a], float), np.asarray(values[b], float))
                       for i, a in enumerate(shorts) for b in shorts[i + 1:]]
            mean_of_seeds = np.mean([values[r] for r in shorts], axis=0)
            rows.append([recipe.key, what, f"{len(names)}", f"{len(shorts)} / {len(longs)}",
                         " ".join(f"{v:.2f}" for v in each), f"{np.mean(each):.2f}",
                         fmt_corr(*corr(spearman, mean_of_seeds, long_mean)),
                         f"{np.mean(between):.2f}" if between else "-"])
    if rows:
        print("\nScores of the same short trainings against the long run's top-1 (mean over its seeds), Spearman:")
        print(format_table(["recipe", "short score", "candidates", "short / long seeds", "each short seed",
                            "mean of those", "mean of the seeds' scores [95%]", "seed-to-seed (mean)"], rows))



def loss_interval(losses: list[float]) -> tuple[float, float]:
    """The 95% t-interval of the seed mean of held-out losses."""
    mean, k = float(np.mean(losses)), len(losses)
    half = t_quantile(k - 1) * float(np.std(losses, ddof=1)) / math.sqrt(k) if k > 1 else 0.0
    return mean - half, mean + half


def tie_report(recipes: list[Recipe], cands, data: dict) -> None:
    """Which member of a short-proxy tie does the longer training favour? Pairs of candidates whose short
    held-out loss intervals (t-interval of the short seeds' mean) overlap are ties; for each, whether the one
    with more multiply-adds reached the higher long top-1 (mean over the long seeds). A share near 1 says a
    tie should be broken towards the larger network, near 0.5 that size does not matter (pick the fastest)."""
    rows = []
    gmacs = {name: count(spec).flops for name, spec in cands}
    for recipe in recipes:
        store = data["results"].get(recipe.key, {})
        shorts, longs, names = complete_runs(store, cands, lambda run: run.get("loss") is not None)
        if not longs or len(shorts) < 2 or len(names) < MIN_CANDIDATES:
            continue
        interval = {n: loss_interval([store[n][r]["loss"] for r in shorts]) for n in names}
        long_top1 = {n: float(np.mean([store[n][r]["acc"] for r in longs])) for n in names}
        ties = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]
                if interval[a][0] <= interval[b][1] and interval[b][0] <= interval[a][1]]
        larger_wins = [long_top1[max(pair, key=gmacs.get)] > long_top1[min(pair, key=gmacs.get)] for pair in ties]
        gaps = [long_top1[max(pair, key=gmacs.get)] - long_top1[min(pair, key=gmacs.get)] for pair in ties]
        pairs = len(names) * (len(names) - 1) // 2
        rows.append([recipe.key, f"{len(names)}", f"{len(ties)} of {pairs}",
                     f"{sum(larger_wins)} of {len(ties)}" if ties else "-",
                     f"{np.mean(gaps):+.4f}" if ties else "-",
                     f"{np.median(np.abs(gaps)):.4f}" if ties else "-"])
    if rows:
        print("\nShort-proxy ties (held-out loss intervals of the short seeds overlap) in the long training:")
        print(format_table(["recipe", "candidates", "tied pairs", "larger one better long", "mean long gap "
                            "(larger - smaller)", "median |long gap|"], rows))


if __name__ == "__main__":
    main()
