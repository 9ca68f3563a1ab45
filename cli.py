"""fasternet-space command line: parse, call the library, print. Bad input: one line, exit code 2."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

import click

import spaces
from fasternet_space.checkpoint import CheckpointError
from fasternet_space.errors import InputError
from fasternet_space.proxy import ProxyConfig
from fasternet_space.spec import SpecError
from search import DEFAULT_STORAGE, SAMPLERS, SearchConfig
from search.pruning import PRUNERS

#: Errors that mean "the user asked for something that is not allowed": one line, exit 2.
USER_ERRORS: tuple[type[Exception], ...] = (SpecError, CheckpointError, InputError)

#: Library parameter names whose flag is not simply --the-same-name.
FLAGS = {"budget": "--latency-budget", "budget_ms": "--latency-budget", "timeout_s": "--timeout", "accuracy": "--proxy",
         "heartbeat_s": "--heartbeat", "out": "--out"}


def flag_for(parameter: str | None) -> str | None:
    """The command-line flag that sets a library parameter (library errors name parameters)."""
    if parameter is None:
        return None
    return FLAGS.get(parameter, "--" + parameter.replace("_", "-"))


class UserError(click.ClickException):
    exit_code = 2


def fail(message: str) -> None:
    raise UserError(message)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Explore the FasterNet design space: exact counts, on-device speed, Optuna search."""


def positive(name: str):
    def check(ctx, param, value):
        if value is not None and value < 1:
            fail(f"{name} {value}: allowed: a positive integer")
        return value
    return check


def runtime_option():
    from fasternet_space.runtimes import RUNTIMES

    return click.option("--runtime", type=click.Choice(RUNTIMES), default="torch", show_default=True,
                        help="What runs the model while timing: torch (the inference form, eager), torch-compile "
                             "(the same compiled by TorchInductor: faster, 10-25 s of compilation per model), or the "
                             "ONNX export in onnxruntime (extra [onnx]) or openvino (extra [openvino]).")


def measure_options(func):
    """The measurement protocol flags shared by build, bench and search."""
    options = [
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or mps."),
        click.option("--threads", type=int, callback=positive("--threads"),
                     help="CPU threads while timing [default: 1 on CPU, the paper's protocol]."),
        click.option("--batch-size", type=int, callback=positive("--batch-size"),
                     help="Throughput batch [default: 1 on CPU, 32 on GPU]."),
        click.option("--input-size", type=int, callback=positive("--input-size"),
                     help="Measure at this resolution instead of the spec's."),
        runtime_option(),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@cli.command()
@click.option("--spec", "spec_path", required=True,
              help="A spec YAML file (every field fixed), or a named config: t0, t1, t2, s, m, l or "
                   "fasternet_t0 .. fasternet_l (any case). A path that exists is read as a file.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--weights", type=click.Path(dir_okay=False), help="Load an official- or timm-format checkpoint (strict).")
@click.option("--out", type=click.Path(dir_okay=False), help="Save the built model (spec + state dict) to a .pt file.")
@click.option("--measure", is_flag=True, help="Time the inference form on --device: latency, throughput, FLOPS.")
@measure_options
@click.option("--export", "export_path", type=click.Path(dir_okay=False), help="Write the inference form to an .onnx file.")
def build(spec_path, fmt, weights, out, measure, device, threads, batch_size, input_size, runtime, export_path) -> None:
    """Build one network from a spec and print its exact cost per stage (and, with --measure, its speed)."""
    from fasternet_space import build_model, count, for_inference, load_spec
    from fasternet_space.checkpoint import check_model_path, load_checkpoint, save_model
    from fasternet_space.export import ExportError, check_onnx_path
    from fasternet_space.measure import measure_model, resolve_device
    from fasternet_space.report import format_summary, spec_summary

    spec = load_spec(spec_path)
    if out is not None:
        try:
            check_model_path(out)
        except CheckpointError:
            fail(f"--out {out}: allowed: a path ending in .pt")
    if export_path is not None:
        try:
            check_onnx_path(export_path)
        except ExportError as exc:
            fail(exc.message("--export"))
    target = resolve_device(device) if measure else None
    if measure:
        from fasternet_space.runtimes import check_available

        check_available(runtime, device)
    try:
        measured_spec = spec.replace(input_size=input_size) if input_size else spec
    except SpecError as exc:
        fail(f"--input-size {input_size}: {exc.problem}")
    summary = spec_summary(spec, count(spec))
    model = build_model(spec)
    if weights:
        summary["weights"] = {"path": weights, "format": load_checkpoint(model, weights)}
    if out:
        summary["saved"] = str(save_model(model, out))
    fast = for_inference(model.eval(), device=target) if (measure or export_path) else None
    if export_path:
        from fasternet_space.export import export_onnx

        export_onnx(fast, export_path, input_size=measured_spec.input_size, in_chans=spec.in_chans)
        summary["exported"] = {"path": export_path, "bytes": Path(export_path).stat().st_size}
    if measure:
        flops = count(measured_spec).flops
        kwargs = dict(device=device, threads=threads, throughput_batch=batch_size,
                      input_size=measured_spec.input_size, in_chans=spec.in_chans)
        if runtime == "torch":
            result = measure_model(fast, flops, **kwargs)
        else:  # the engines run the same graph as --export writes, from a temporary file
            from fasternet_space.runtimes import measure_in

            result = measure_in(fast, flops, runtime, **kwargs)
        summary.update(measured_input_size=measured_spec.input_size, measured_flops=flops,
                       latency_ms=result.latency_ms, latency_ci_ms=list(result.latency_ci_ms),
                       throughput=result.throughput, flops_per_s=result.flops_per_s,
                       protocol=result.protocol.to_dict())
    if fmt == "json":
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(format_summary(summary))
    if weights:
        click.echo(f"loaded {summary['weights']['format']}-format weights from {weights} (strict)")
    if out:
        click.echo(f"saved model to {out}")
    if export_path:
        click.echo(f"exported ONNX to {export_path} ({summary['exported']['bytes'] / 1e6:.1f} MB)")


@cli.group()
def bench() -> None:
    """Speed tables on this device: the paper's operator table, or whole models side by side."""


@bench.command("ops")
@click.option("--width", type=int, default=96, show_default=True, callback=positive("--width"),
              help="Channels of the first stage shape (doubles per stage).")
@click.option("--resolution", type=int, default=56, show_default=True, callback=positive("--resolution"),
              help="Side of the first stage's feature map (halves per stage).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", type=int, callback=positive("--threads"), help="[default: 1 on CPU]")
@click.option("--batch-size", type=int, callback=positive("--batch-size"), help="[default: 1 on CPU, 32 on GPU]")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def bench_ops(width, resolution, device, threads, batch_size, fmt) -> None:
    """Table 1 of the paper: Conv, GConv, DWConv, PConv (r=1/4), 10 stacked 3x3 layers per stage shape."""
    from fasternet_space.operators import bench_operators, flops_ratio
    from fasternet_space.report import format_table, human

    rows, protocol = bench_operators(width, resolution, device, threads, batch_size)
    ratios = {op: flops_ratio(rows, op) for op in ("pconv", "pconv_fast")}
    if fmt == "json":
        click.echo(json.dumps({
            "protocol": protocol.to_dict(),
            "rows": [r.to_dict() for r in rows],
            "pconv_vs_dwconv_flops": [{"channels": c, "size": s, "pconv": ratios["pconv"][(c, s)],
                                       "pconv_fast": ratios["pconv_fast"][(c, s)]} for (c, s) in ratios["pconv"]],
        }, indent=2))
        return
    table = [[r.label, f"{r.channels}x{r.size}x{r.size}", human(r.flops), f"{r.latency_ms:.3f}",
              human(r.flops_per_s, "FLOPS")] for r in rows]
    click.echo(format_table(["operator", "feature map", "FLOPs", "latency ms", "achieved"], table))
    click.echo("")
    shapes = [f"{c}x{s}x{s}" for (c, s) in ratios["pconv"]]
    click.echo(format_table(["FLOPS vs DWConv"] + shapes + ["mean"], [
        [label, *[f"{v:.1f}x" for v in ratios[op].values()],
         f"{sum(ratios[op].values()) / len(ratios[op]):.1f}x"]
        for op, label in (("pconv", "PConv (split+cat)"), ("pconv_fast", "PConv (fast)"))
    ]))
    click.echo(f"\nprotocol: {protocol.describe()}; 10 stacked 3x3 layers, "
               f"FLOPs = multiply-adds, FLOPS = FLOPs x batch / median latency")


@bench.command("models")
@click.argument("specs", nargs=-1)
@measure_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def bench_models(specs, device, threads, batch_size, input_size, runtime, fmt) -> None:
    """The named configs T0..L (or the given spec files) side by side: params, FLOPs, latency, FLOPS."""
    from fasternet_space import NAMED_SPECS, count, load_spec, named_label
    from fasternet_space.measure import Protocol, resolve_device
    from fasternet_space.report import format_table, human
    from fasternet_space.runtimes import check_available, measure_spec_in

    resolve_device(device)
    check_available(runtime, device)
    chosen = [load_spec(p) for p in specs] or list(NAMED_SPECS.values())
    results = []
    for spec in chosen:
        m = measure_spec_in(spec, runtime, device=device, threads=threads, throughput_batch=batch_size,
                            input_size=input_size or spec.input_size)
        cost = count(spec.replace(input_size=input_size or spec.input_size))
        results.append({"name": spec.name, "named": named_label(spec), "params": cost.params, "flops": cost.flops,
                        "latency_ms": m.latency_ms, "throughput": m.throughput, "flops_per_s": m.flops_per_s,
                        "protocol": m.protocol.to_dict()})
    if fmt == "json":
        click.echo(json.dumps(results, indent=2))
        return
    click.echo(format_table(["model", "params", "FLOPs", "latency ms", "throughput img/s", "achieved"], [
        [r["named"] or r["name"], human(r["params"]), human(r["flops"]), f"{r['latency_ms']:.2f}",
         f"{r['throughput']:.1f}", human(r["flops_per_s"], "FLOPS")] for r in results]))
    click.echo(f"\nprotocol: {Protocol.from_dict(results[0]['protocol']).describe()}")

@cli.command()
@click.option("--device", default="cpu", show_default=True, help="Where latency is measured: cpu, cuda, cuda:N, mps.")
@click.option("--latency-budget", "budget", default="20ms", show_default=True,
              help="Hard latency limit: 20ms, 0.02s or 20 (ms).")
@click.option("--n-trials", type=int, default=40, show_default=True, callback=positive("--n-trials"),
              help="Finished trials the study should hold (a resumed study runs only the rest).")
@click.option("--timeout", type=float, help="Stop starting new trials after this many seconds.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--space", "space_path", default=spaces.DEFAULT, show_default=True,
              help="A space YAML file, or the name of a shipped space.")
@click.option("--data", default=SearchConfig.data, show_default=True, help="fashion (shipped Fashion-MNIST subset), digits, fashion-mnist:DIR, mnist:DIR, cifar10:DIR or imagefolder:DIR.")
@click.option("--proxy-epochs", type=int, default=ProxyConfig.epochs, show_default=True, callback=positive("--proxy-epochs"))
@click.option("--proxy-resolution", type=int, default=ProxyConfig.resolution, show_default=True, callback=positive("--proxy-resolution"))
@click.option("--proxy-batch-size", type=click.IntRange(min=2), default=ProxyConfig.batch_size, show_default=True,
              help="At least 2 (BatchNorm needs more than one sample).")
@click.option("--proxy-lr", type=float, default=ProxyConfig.lr, show_default=True)
@click.option("--proxy-grad-clip", type=float, default=ProxyConfig.grad_clip, show_default=True,
              help="Largest gradient norm a training step applies; 0 turns clipping off.")
@click.option("--max-train-samples", type=int, default=SearchConfig.max_train_samples, show_default=True, callback=positive("--max-train-samples"),
              help="Subsample the training split to this many images (the proxy budget).")
@click.option("--sampler", type=click.Choice(SAMPLERS), default="tpe", show_default=True)
@click.option("--pruner", type=click.Choice(PRUNERS), default="percentile", show_default=True,
              help="percentile: stop a candidate below the 25th percentile of earlier ones at the same epoch (from the 2nd epoch on, so it needs --proxy-epochs 3 or more); median: below their median; none.")
@click.option("--storage", default=None, envvar="FASTERNET_STORAGE", help="Optuna storage URL, or from the "
              "environment variable FASTERNET_STORAGE (keeps a password out of shell history; the flag wins) "
              "[default: sqlite:///fasternet_studies.db].")
@click.option("--study-name", help="[default: SPACE-DEVICE[-RUNTIME]-BUDGET-DATA]")
@click.option("--named/--no-named", default=True, show_default=True, help="Enqueue T0..L first where they fit the space.")
@click.option("--proxy", "accuracy", default="train", show_default=True,
              help="train: the short proxy training; zero-cost:NAME: a training-free search on a zero-cost score "
                   "(synflow, naswot, grad_norm, snip, params, flops, or vote); none: a census, latency, FLOPs and "
                   "params only (use with --sampler random, then `analyze`).")
@click.option("--zero-cost/--no-zero-cost", "zero_cost_scores", default=True, show_default=True,
              help="Store every feasible candidate's zero-cost scores before training (CSV/JSON, fidelity).")
@click.option("--screen", type=int, default=0, show_default=True,
              help="Two-stage: first score this many candidates without training (a study STUDY-screen), then "
                   "train only the best --keep share of the feasible ones by the zero-cost vote (0: off).")
@click.option("--keep", type=float, default=0.1, show_default=True,
              help="With --screen: the share of the screened feasible candidates to train.")
@click.option("--confirm", type=int, default=3, show_default=True, callback=positive("--confirm"),
              help="Seeds per front candidate and named config, retrained at the end (1: none); the front is "
                   "decided on their means.")
@click.option("--threads", type=int, callback=positive("--threads"),
              help="CPU threads while timing [default: 1, the paper's protocol].")
@runtime_option()
@click.option("--latency", "latency_mode", type=click.Choice(["measured", "predicted", "auto"]), default="measured",
              show_default=True, help="measured: time every candidate; predicted: from --latency-table, nothing "
              "timed; auto: a candidate predicted over the budget by more than the table's error is recorded "
              "infeasible without being built, the others are timed.")
@click.option("--latency-table", type=click.Path(dir_okay=False), help="A table from `profile` (for predicted, auto).")
@click.option("--allow-other-device", is_flag=True,
              help="Use a latency table profiled on another device or runtime than --device/--runtime.")
@click.option("--workers", type=int, default=1, show_default=True, callback=positive("--workers"),
              help="Worker processes on this machine.")
@click.option("--heartbeat", type=int, default=10, show_default=True, callback=positive("--heartbeat"),
              help="Seconds between a worker's heartbeats; a trial silent for 3x this long is failed and retried.")
@click.option("--out-spec", type=click.Path(dir_okay=False), help="Where to write the best feasible spec "
              "[default: runs/STUDY/best.yaml].")
@click.option("--export", "export_dir", type=click.Path(file_okay=False), help="Write plots, CSV and the best spec here.")
@click.option("--quiet", is_flag=True, help="No per-trial progress lines.")
def search(device, budget, n_trials, timeout, seed, space_path, data, proxy_epochs, proxy_resolution, proxy_batch_size,
           proxy_lr, proxy_grad_clip, max_train_samples, sampler, pruner, storage, study_name, named, accuracy, zero_cost_scores,
           screen, keep, confirm, threads, runtime, latency_mode, latency_table, allow_other_device, workers, heartbeat,
           out_spec, export_dir, quiet) -> None:
    """Search the space under a latency budget: measured latency, short-proxy accuracy, Optuna samplers."""
    from fasternet_space.measure import resolve_device
    from fasternet_space.proxy import ProxyConfig
    from fasternet_space.runtimes import check_available
    from search import SearchConfig, parse_budget, run_search
    from search.latency import load_table
    from search.objective import default_lock_dir

    resolve_device(device)
    check_available(runtime, device)
    best_path = Path(out_spec) if out_spec else None
    for folder in (best_path.parent if best_path else None, Path(export_dir) if export_dir else None):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)  # fail now, not after the search (OSError: one line)
    config = SearchConfig(
        budget_ms=parse_budget(budget), device=device, space=resolve_space(space_path), threads=threads, data=data,
        proxy=ProxyConfig(epochs=proxy_epochs, resolution=proxy_resolution, batch_size=proxy_batch_size, lr=proxy_lr,
                          grad_clip=proxy_grad_clip or None),
        max_train_samples=max_train_samples, n_trials=n_trials, timeout_s=timeout, seed=seed, sampler=sampler,
        pruner=pruner, named=named, accuracy=accuracy, zero_cost_scores=zero_cost_scores, screen=screen, keep=keep,
        confirm=confirm, runtime=runtime, latency=latency_mode, latency_table=latency_table,
        allow_other_device=allow_other_device, storage=storage or DEFAULT_STORAGE, study_name=study_name,
        heartbeat_s=heartbeat, workers=workers, lock_dir=default_lock_dir(),
    ).validate()
    load_table(config)  # a table that cannot serve this search is refused now, not at the first trial
    progress = SearchProgress(config.n_trials, config.budget_ms, quiet)
    stop = threading.Event()

    def on_sigint(signum, frame) -> None:
        # First Ctrl-C: training stops at its next step and no new trial starts (raising here could land
        # in a finaliser, where Python swallows it). A second Ctrl-C interrupts at once.
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo("stopping: the running trial ends now, then the summary (Ctrl-C again to quit at once)", err=True)

    signal.signal(signal.SIGINT, on_sigint)
    outcome = run_search(config, on_trial=progress.on_trial, on_start=progress.on_start,
                         on_confirm=progress.on_confirm, stop=stop)
    if outcome.failed_workers:
        click.echo(f"warning: {outcome.failed_workers} extra worker(s) stopped with an error; their finished trials "
                   "are kept", err=True)
    print_search_summary(outcome, config.budget_ms, best_path, export_dir)
    if outcome.interrupted:
        raise SystemExit(130)


def resolve_space(text: str) -> str:
    """A space file, or the name of a shipped one (fasternet)."""
    if Path(text).is_file():
        return text
    try:
        return str(spaces.path(text))
    except FileNotFoundError:
        fail(f"--space {text}: file not found; allowed: a space YAML file or a shipped space "
             f"({', '.join(n for n in spaces.names() if not n.startswith('fasternet_'))})")


class SearchProgress:
    """One line per finished trial: n of N, the trial, the best feasible so far, time left."""

    def __init__(self, n_trials: int, budget_ms: float, quiet: bool):
        self.n_trials = n_trials
        self.budget_ms = budget_ms
        self.quiet = quiet
        self.started = None
        self.done_here = 0

    def on_start(self, outcome) -> None:
        import time

        from search.study import count_finished

        self.started = time.perf_counter()
        initial = count_finished(outcome.study)
        if self.quiet:
            return
        resumed = f", resuming with {initial} finished" if initial else ""
        click.echo(f"study {outcome.study.study_name!r}: {self.n_trials} trials, budget {self.budget_ms:g} ms{resumed}")
        if outcome.enqueued:
            click.echo(f"named configs enqueued first: {', '.join(outcome.enqueued)}")
        for note in outcome.notes:
            click.echo(f"note: {note}")

    def on_confirm(self, record, seed, accuracy) -> None:
        if not self.quiet:
            label = f"#{record.number}" + (f" {record.named}" if record.named else "")
            click.echo(f"[confirm] {label}: seed {seed} top-1 {accuracy:.3f} (first seed {record.proxy_acc:.3f})")

    def on_trial(self, study, trial) -> None:
        import time

        from fasternet_space.report import human
        from search import TrialRecord, best_feasible, read_trials
        from search.trial import MEASURED, SCORED, TRAINED

        self.done_here += 1
        if self.quiet:
            return
        records = read_trials(study)
        finished = sum(r.finished for r in records)
        record = TrialRecord.from_trial(trial)
        label = f"#{record.number}" + (f" {record.named}" if record.named else "")
        if record.status == TRAINED:
            what = f"top-1 {record.proxy_acc:.3f}, latency {record.latency_ms:.2f} ms"
        elif record.status == SCORED:
            what = f"{record.score_name} {record.score:.4g} (untrained), latency {record.latency_ms:.2f} ms"
        elif record.status == MEASURED:
            what = (f"latency {record.latency_ms:.2f} ms, {human(record.flops or 0)} FLOPs, "
                    f"{human(record.param_count or 0)} params (census)")
        else:
            reason = record.reason or "no reason stored (its worker stopped or was killed)"
            what = reason if reason.startswith(record.status) else f"{record.status}: {reason}"
        best = best_feasible(records)
        best_text = (f"best {best.merit:.4g} @ {best.latency_ms:.1f} ms (#{best.number})" if best
                     else "census, no accuracy" if record.status == MEASURED else "no feasible yet")
        elapsed = time.perf_counter() - self.started
        left = max(self.n_trials - finished, 0)
        eta = f", ~{elapsed / self.done_here * left / 60:.1f} min left" if self.done_here and left else ""
        click.echo(f"[{min(finished, self.n_trials)}/{self.n_trials}] {label}: {what} | {best_text} | "
                   f"{elapsed / 60:.1f} min{eta}")


def _fixed(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _accuracy(record) -> str:
    """'0.861 [0.846, 0.876] (3 seeds)': the top-1 the front is decided on, with its 95% interval."""
    if record.score is not None:
        return f"{record.score_name} {record.score:.4g} (untrained)"
    if record.accuracy is None:
        return "n/a"
    ci = record.accuracy_ci
    interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    seeds = f" ({len(record.seed_accs)} seeds)" if record.confirmed else ""
    return f"{record.accuracy:.3f}{interval}{seeds}"


def print_search_summary(outcome, budget_ms, best_path, export_dir) -> None:
    from fasternet_space.report import format_table, human
    from search import best_feasible, pareto_front, read_trials
    from search.export import export_study, save_best_spec
    from search.results import standing
    from search.trial import FAILED, MEASURED, OVER_BUDGET, PRUNED, SCORED, TRAINED

    study = outcome.study
    records = read_trials(study)
    click.echo("")
    if outcome.interrupted:
        click.echo("interrupted: the study keeps every finished trial; run the same command to resume")
    if outcome.stale_failed:
        click.echo(f"failed {len(outcome.stale_failed)} trial(s) left running by a stopped worker: "
                   + ", ".join(f"#{n}" for n in outcome.stale_failed))
    counts = {s: sum(r.status == s for r in records) for s in (TRAINED, SCORED, MEASURED, OVER_BUDGET, PRUNED, FAILED)}
    scored = f"{counts[SCORED]} scored without training, " if counts[SCORED] else ""
    scored += f"{counts[MEASURED]} measured only (census), " if counts[MEASURED] else ""
    predicted_over = sum(r.status == OVER_BUDGET and r.latency_source == "predicted" for r in records)
    how = (f"{counts[OVER_BUDGET] - predicted_over} measured, {predicted_over} predicted by the latency table; "
           if predicted_over else "measured; ") + "not trained"
    click.echo(f"study {study.study_name!r}: {counts[TRAINED]} trained within budget, {scored}{counts[OVER_BUDGET]} over "
               f"the {budget_ms:g} ms budget ({how}), {counts[PRUNED]} pruned, {counts[FAILED]} "
               f"failed; {outcome.elapsed_s / 60:.1f} min this run")
    front = pareto_front(records)
    table = [[r.number, r.named or "", _accuracy(r), _fixed(r.latency_ms, 2), human(r.flops or 0),
              human(r.flops_per_s or 0, "FLOPS"), human(r.param_count or 0)] for r in front]
    if table:
        click.echo("\nPareto front (feasible trials; proxy top-1 with its 95% interval vs latency):")
        click.echo(format_table(["trial", "named", "proxy top-1 [95% CI]", "latency ms", "FLOPs", "achieved",
                                 "params"], table))
    named = sorted((r for r in records if r.named and r.status in (TRAINED, SCORED, MEASURED, OVER_BUDGET, PRUNED)),
                   key=lambda r: r.latency_ms or 0.0)
    if named:
        click.echo("\nnamed configs in this study:")
        for r in named:
            if r.status == TRAINED:
                where = f"top-1 {_accuracy(r)}, {standing(r, front)}"
            elif r.status == SCORED:
                where = f"{_accuracy(r)}, " + ("on the front" if r.pareto else "behind the front")
            elif r.status == PRUNED:
                where = f"pruned ({r.reason})"
            elif r.status == MEASURED:
                where = "within budget, measured only (census)"
            else:
                where = "over budget, not trained"
            click.echo(f"  {r.named}: latency {r.latency_ms:.2f} ms, {where}")
    for warning in search_warnings(records):
        click.echo(f"\nwarning: {warning}")
    for note in outcome.notes:
        click.echo(f"\nnote: {note}")
    best = best_feasible(records)
    measured = sum(r.status == MEASURED for r in records)
    if best is None and measured:
        click.echo(f"\ncensus: {measured} candidates measured within budget, no accuracy (--proxy none: nothing "
                   f"trained or scored, so no front); python cli.py analyze --study {study.study_name} --out FILE.html")
    elif best is None:
        click.echo(f"\nno trial met the {budget_ms:g} ms budget yet; raise --latency-budget or --n-trials")
    else:
        path = save_best_spec(records, study.study_name, best_path or Path("runs") / study.study_name / "best.yaml")
        what = _accuracy(best) if best.score is not None else f"top-1 {_accuracy(best)}"
        click.echo(f"\nbest feasible: trial #{best.number}, {what}, latency "
                   f"{best.latency_ms:.2f} ms -> {path}  (python cli.py build --spec {path})")
    if export_dir:
        for written in export_study(study, Path(export_dir), budget_ms=budget_ms):
            click.echo(f"wrote {written}")


def search_warnings(records) -> list[str]:
    """What makes this study's numbers less trustworthy, with what to change."""
    from search.trial import TRAINED

    warnings = []
    blind = [r for r in records if r.status == TRAINED and r.learned_nothing]
    if blind:
        chance = blind[0].chance
        warnings.append(
            f"{len(blind)} trained trial(s) did not beat chance ({chance:.3f}): the proxy learned nothing for them "
            f"(#{', #'.join(str(r.number) for r in blind[:8])}); raise --proxy-epochs, lower --proxy-batch-size, "
            "or give the proxy more images (--max-train-samples, more data)")
    unsettled = [r for r in records if r.latency_stable is False]
    if unsettled:
        load = max((r.load_per_core or 0.0) for r in unsettled)
        why = "the machine was busy" if load >= 0.75 else "the timings were noisy"
        warnings.append(
            f"{len(unsettled)} latency measurement(s) did not settle within the timing cap (machine load up to "
            f"{load:.1f} per core): {why}, so those latencies are less certain than their intervals' target; "
            "rerun on an idle machine for a clean front")
    return warnings


@cli.command()
@click.option("--study", "study_name", required=True, help="The study's name (as `search` printed it).")
@click.option("--storage", default=None, envvar="FASTERNET_STORAGE", help="Optuna storage URL, or from the "
              "environment variable FASTERNET_STORAGE (keeps a password out of shell history; the flag wins) "
              "[default: sqlite:///fasternet_studies.db].")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="FILE.html (offline), .png/.svg/.pdf (need Chromium), .csv or .json (one row per trial).")
@click.option("--latency-budget", "budget", help="Budget line to draw [default: the study's own].")
def pareto(study_name, storage, out, budget) -> None:
    """Export a study: accuracy vs measured latency with the Pareto front, and FLOPs vs latency (FLOPS lines)."""
    from search import load_study, parse_budget
    from search.export import write_report

    budget_ms = parse_budget(budget) if budget else None
    click.echo(f"wrote {write_report(load_study(study_name, storage or DEFAULT_STORAGE), out, budget_ms)}")


@cli.command()
@click.option("--study", "study_name", required=True, help="The study's name (as `search` printed it).")
@click.option("--storage", default=None, envvar="FASTERNET_STORAGE", help="Optuna storage URL, or from the "
              "environment variable FASTERNET_STORAGE (keeps a password out of shell history; the flag wins) "
              "[default: sqlite:///fasternet_studies.db].")
@click.option("--sample", type=int, default=12, show_default=True,
              help="Trained trials to retrain: the Pareto front, the named configs, then others (at least 3; "
                   "fewer only when the study has fewer).")
@click.option("--budget-multiplier", type=int, default=4, show_default=True,
              help="Longer means M times the study's proxy epochs, with the same data, resolution, batch size and "
                   "peak learning rate (an integer >= 2).")
@click.option("--seed", type=int, help="Training seed of the longer run and of the short rerun (not the study's "
              "own) [default: the study's seed + 1]. The sample does not depend on it.")
@click.option("--long-seeds", type=int, default=1, show_default=True,
              help="Seeds of the longer run: with 2 or more, their mean is the reference and the report says how "
                   "well one longer run agrees with another (the reference's own noise).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False),
              help="Scatter plot, short vs long top-1: FILE.html (offline) or .png/.svg/.pdf (need Chromium).")
def fidelity(study_name, storage, sample, budget_multiplier, seed, long_seeds, fmt, out) -> None:
    """How far to trust the short proxy: retrain a sample of trained trials for M times the epochs, and the short
    recipe with another seed; Spearman and Kendall tau-b with bootstrap 95% intervals. Every result is stored in
    the study, so a rerun trains only what is missing."""
    import search.fidelity as fidelity_lib
    from search import load_study
    from search.fidelity_plot import check_out, write_scatter

    fidelity_lib.check_arguments(sample, budget_multiplier, long_seeds)
    if out:
        check_out(out)
    study = load_study(study_name, storage or DEFAULT_STORAGE)
    plan = fidelity_lib.plan(study, sample, budget_multiplier, seed, long_seeds=long_seeds)
    click.echo(f"{len(plan.sample)} sampled trials: {len(plan.jobs)} trainings to run, {plan.reused} results "
               "stored in the study reused", err=True)

    def on_progress(p) -> None:
        what = f"top-1 {p.top1:.3f}" if p.top1 is not None else "diverged"
        epochs = plan.recipe.epochs * p.job.multiplier
        click.echo(f"[{p.index}/{p.total}] trial #{p.job.number}: {epochs} epoch{'s' * (epochs != 1)}, "
                   f"seed {p.job.seed}: {what} ({p.seconds:.0f} s)", err=True)

    report = fidelity_lib.run(study, plan, on_progress)
    written = write_scatter(report, out) if out else None
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(_fidelity_text(report))
    if written:
        click.echo(f"wrote {written}", err=fmt == "json")


@cli.command()
@click.option("--study", "study_name", required=True, help="The study's name (as `search` printed it).")
@click.option("--storage", default=None, envvar="FASTERNET_STORAGE", help="Optuna storage URL, or from the "
              "environment variable FASTERNET_STORAGE (keeps a password out of shell history; the flag wins) "
              "[default: sqlite:///fasternet_studies.db].")
@click.option("--out", type=click.Path(dir_okay=False),
              help="FILE.html (a self-contained report, works offline) or FILE.json.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="What to print: a summary, or the whole analysis as one JSON object.")
def analyze(study_name, storage, out, fmt) -> None:
    """What the study says about its space (RegNet-style): importances for accuracy, latency and achieved FLOPS
    (fANOVA, PED-ANOVA), EDFs of proxy error per parameter value, costs per value, the paper's choices answered."""
    from search import load_study
    from search.analysis import analyze_study
    from search.analysis_report import FORMATS, format_text, to_json, write_analysis

    if out and Path(out).suffix.lower() not in FORMATS:
        fail(f"--out {out}: unknown format; allowed: " + ", ".join(FORMATS))
    analysis = analyze_study(load_study(study_name, storage or DEFAULT_STORAGE))
    written = write_analysis(analysis, out) if out else None
    click.echo(to_json(analysis) if fmt == "json" else format_text(analysis))
    if written:
        click.echo(f"wrote {written}", err=fmt == "json")


def _fidelity_text(report) -> str:
    from fasternet_space.report import format_table
    from search.fidelity_plot import interval_text

    r, long = report.recipe, report.long_epochs
    seeds = report.reference_seeds
    long_header = (f"{long}-epoch top-1 (seed {seeds[0]})" if len(seeds) == 1
                   else f"{long}-epoch top-1 (mean of seeds {', '.join(map(str, seeds))})")
    table = [[f"#{p.number}", p.named or "", p.why, _fixed(p.latency_ms, 2), f"{p.short_top1:.3f}",
              _fixed(p.long_top1, 3), _fixed(p.rerun_top1, 3)] for p in report.pairs]
    lines = [f"study {report.study!r}: {len(report.pairs)} trials, short proxy {r.epochs} epoch(s) vs {long} "
             f"({report.multiplier}x), {r.data} at {r.resolution} px, batch {r.batch_size}, lr {r.lr:g}",
             "", format_table(["trial", "named", "sampled as", "latency ms", f"short top-1 (seed {r.seed})",
                               long_header,
                               f"short rerun top-1 (seed {report.seed})"], table), ""]
    for name, c in ((f"Spearman, short vs {long} epochs", report.spearman),
                    (f"Kendall tau-b, short vs {long} epochs", report.kendall),
                    (f"seed-to-seed Spearman, short seed {r.seed} vs {report.seed}", report.seed_spearman)):
        lines.append(f"{name}: {interval_text(c)}  (n={c.n})")
    if report.long_seed_spearman is not None:
        c = report.long_seed_spearman
        lines.append(f"seed-to-seed Spearman, {long} epochs seed {seeds[0]} vs {seeds[1]}: {interval_text(c)}  "
                     f"(n={c.n}; the reference's own noise)")
    if report.loss_spearman is not None:
        c = report.loss_spearman
        lines.append(f"Spearman, short held-out loss (lower first) vs {long}-epoch top-1: {interval_text(c)}  "
                     f"(n={c.n}; the same trainings scored by cross-entropy)")
    for name, c in report.zero_cost.items():
        lines.append(f"Spearman, zero-cost {name} (untrained) vs {long} epochs: {interval_text(c)}  (n={c.n})")
    lines.append(f"95% intervals: percentile bootstrap over the pairs, {report.resamples} resamples; trained "
                 f"{report.trained} this run, {report.reused} read from the study")
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


@cli.command("profile")
@click.option("--device", default="cpu", show_default=True, help="Where the parts are timed: cpu, cuda, cuda:N, mps.")
@runtime_option()
@click.option("--threads", type=int, callback=positive("--threads"), help="[default: 1 on CPU, the paper's protocol]")
@click.option("--space", "space_path", default=spaces.DEFAULT, show_default=True,
              help="A space YAML file, or the name of a shipped space: the table covers its points.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The table, a .json file.")
@click.option("--fit-specs", type=int, default=16, show_default=True, callback=positive("--fit-specs"),
              help="Whole networks sampled from the space and measured, to fit the correction on.")
@click.option("--held-out-specs", type=int, default=16, show_default=True, callback=positive("--held-out-specs"),
              help="Other whole networks measured for the table's own error (what `search --latency auto` trusts).")
@click.option("--seed", type=int, default=0, show_default=True, help="Which networks are sampled.")
@click.option("--part-time", type=click.FloatRange(min=0, min_open=True), default=0.15, show_default=True,
              help="Seconds of timing per part at most (after warm-up).")
@click.option("--network-time", type=click.FloatRange(min=0, min_open=True), default=1.5, show_default=True,
              help="Seconds of timing per whole network at most.")
def profile_command(device, runtime, threads, space_path, out, fit_specs, held_out_specs, seed, part_time,
                    network_time) -> None:
    """Latency table for this device and runtime: every part the space can produce, timed alone, and a
    correction fitted on whole networks (`predict`, `search --latency predicted|auto` read it)."""
    from dataclasses import replace

    from fasternet_space.latency_table import MODEL_TIMING, PART_TIMING, profile
    from search import SearchSpace

    if not out.endswith(".json"):
        fail(f"--out {out}: allowed: a path ending in .json")
    space = SearchSpace.from_yaml(resolve_space(space_path))

    def on_progress(stage: str, done: int, total: int) -> None:
        if done == total or done % (50 if stage == "parts" else 8) == 0:
            click.echo(f"[{stage}] {done}/{total}", err=True)

    table = profile(space, runtime, device=device, threads=threads, fit_specs=fit_specs,
                    held_out_specs=held_out_specs, seed=seed, on_progress=on_progress,
                    part_timing=replace(PART_TIMING, max_time_s=part_time),
                    model_timing=replace(MODEL_TIMING, max_time_s=network_time))
    path = table.save(out)
    click.echo(f"{table.profile['parts_timed']} parts and {len(table.profile['fit_networks'])} + "
               f"{len(table.profile['held_out_networks'])} networks timed in {table.profile['seconds'] / 60:.1f} min")
    click.echo(f"table: {table.describe()}")
    click.echo(f"wrote {path}")


@cli.command()
@click.option("--table", "--latency-table", "table_path", required=True, type=click.Path(dir_okay=False),
              help="A table written by `profile`.")
@click.argument("specs", nargs=-1, required=True)
@click.option("--device", default="cpu", show_default=True, help="The device the predictions are for.")
@click.option("--runtime", type=click.Choice(["torch", "onnxruntime", "openvino"]),
              help="The runtime the predictions are for [default: the table's].")
@click.option("--allow-other-device", is_flag=True,
              help="Use a table profiled on another device or runtime (its numbers are that device's).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def predict(table_path, specs, device, runtime, allow_other_device, fmt) -> None:
    """Predicted latency of spec files (or named configs) from a latency table, without building them."""
    import time

    from fasternet_space import load_spec
    from fasternet_space.latency_table import LatencyTable, TableError
    from fasternet_space.report import format_table

    try:
        table = LatencyTable.load(table_path)
    except TableError as exc:
        fail(exc.message("--table"))
    try:
        table.check_target(device, runtime or table.protocol.get("runtime_name"), allow_other_device)
    except TableError as exc:
        fail(exc.message("--table") + " (--allow-other-device)")
    space = table.space_object()
    rows = []
    for text in specs:
        spec = load_spec(text)
        start = time.perf_counter()
        try:
            prediction = table.predict(spec, space)
        except TableError as exc:
            fail(f"{text}: {exc.message('spec')}")
        rows.append({"spec": text, "name": spec.name, "latency_ms": prediction.latency_ms,
                     "parts_ms": prediction.parts_ms, "parts": prediction.parts, "source": "predicted",
                     "predict_us": (time.perf_counter() - start) * 1e6})
    if fmt == "json":
        click.echo(json.dumps({"table": str(table_path), "protocol": table.protocol, "error": table.error,
                               "predictions": rows}, indent=2))
        return
    click.echo(format_table(["spec", "predicted ms", "sum of parts ms", "parts", "took us"], [
        [r["spec"], f"{r['latency_ms']:.2f}", f"{r['parts_ms']:.2f}", r["parts"], f"{r['predict_us']:.0f}"]
        for r in rows]))
    click.echo(f"\ntable: {table.describe()}")


def main(argv: list[str] | None = None) -> int:
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the CLI prints its own progress and failures
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    try:
        cli.main(args=argv, prog_name=Path(sys.argv[0]).name if argv is None else "cli.py", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return 130
    except click.ClickException as exc:
        message = exc.format_message()
        if isinstance(exc, click.NoSuchOption) and exc.ctx is not None:
            allowed = [opt for param in exc.ctx.command.params for opt in param.opts if opt.startswith("--")]
            message += " Allowed: " + ", ".join(allowed + ["--help"])
        click.echo(f"error: {_one_line(message)}", err=True)
        return exc.exit_code if isinstance(exc, UserError) else 2
    except USER_ERRORS as exc:
        message = exc.message(flag_for(exc.parameter)) if isinstance(exc, InputError) else str(exc)
        click.echo(f"error: {_one_line(message)}", err=True)
        return 2
    except OSError as exc:  # an unwritable or vanished path given by the user
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"error: {where}{exc.strerror or exc}; allowed: a path this user can write", err=True)
        return 2
    return 0


def _one_line(message: str) -> str:
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())
