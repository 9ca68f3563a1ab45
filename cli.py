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
from fasternet_space.latency_table import MODEL_TIMING, NETWORKS, PART_TIMING
from fasternet_space.named import NAMED_SPECS
from fasternet_space.paired import CALIBRATION_ENV, CALIBRATION_WINDOW_S
from fasternet_space.proxy import ProxyConfig
from fasternet_space.spec import SpecError
from search import DEFAULT_STORAGE, SAMPLERS, SearchConfig
from search.config import LATENCY_MODES
from search.fidelity.plan import DEFAULT_MULTIPLIER, DEFAULT_SAMPLE
from search.records.study_attrs import PICK_RULES, RANK_SCORES
from search.run.pruning import PRUNERS

#: Errors that mean "the user asked for something that is not allowed": one line, exit 2.
USER_ERRORS: tuple[type[Exception], ...] = (SpecError, CheckpointError, InputError)

#: Library parameter names whose flag is not simply --the-same-name.
FLAGS = {"budget": "--latency-budget", "budget_ms": "--latency-budget", "timeout_s": "--timeout", "accuracy": "--proxy",
         "heartbeat_s": "--heartbeat", "out": "--out", "calibration_s": "--calibration-seconds",
         CALIBRATION_ENV: f"${CALIBRATION_ENV}"}


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


def storage_option(func):
    """--storage: the flag, else FASTERNET_STORAGE, else the default storage (the value the command gets)."""
    return click.option("--storage", default=None, envvar="FASTERNET_STORAGE",
                        callback=lambda ctx, param, value: value or DEFAULT_STORAGE,
                        help="Optuna storage URL, or from the environment variable FASTERNET_STORAGE (keeps a "
                             f"password out of shell history; the flag wins) [default: {DEFAULT_STORAGE}].")(func)


def study_options(func):
    """--study and --storage: which stored study a command reads."""
    func = storage_option(func)
    return click.option("--study", "study_name", required=True, help="The study's name (as `search` printed it).")(func)


def check_suffix(flag: str, path: str | None, allowed: tuple[str, ...], any_case: bool = False) -> None:
    """Refuses (one line, exit 2) an output path whose suffix is not one of `allowed`."""
    if path is None or (Path(path).suffix.lower() if any_case else Path(path).suffix) in allowed:
        return
    if len(allowed) == 1:
        fail(f"{flag} {path}: allowed: a path ending in {allowed[0]}")
    fail(f"{flag} {path}: unknown format; allowed: " + ", ".join(allowed))


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
    from fasternet_space import load_spec
    from fasternet_space.build import build_summary
    from fasternet_space.export import ExportError, check_onnx_path
    from fasternet_space.measure import resolve_device
    from fasternet_space.report import format_build
    from fasternet_space.runtimes import check_available

    spec = load_spec(spec_path)
    check_suffix("--out", out, (".pt",))
    if export_path is not None:
        try:
            check_onnx_path(export_path)
        except ExportError as exc:
            fail(exc.message("--export"))
    if measure:
        resolve_device(device)  # the device and runtime are refused before the input size
        check_available(runtime, device)
    try:
        if input_size:
            spec.replace(input_size=input_size)  # refused here with its flag, not inside the build
    except SpecError as exc:
        fail(f"--input-size {input_size}: {exc.problem}")
    summary = build_summary(spec, weights=weights, out=out, export_path=export_path, measure=measure, device=device,
                            threads=threads, batch_size=batch_size, input_size=input_size, runtime=runtime)
    click.echo(json.dumps(summary, indent=2) if fmt == "json" else format_build(summary, saved_to=out))


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
    from fasternet_space.report import PCONV_FORMS, format_operator_tables, operators_to_dict

    rows, protocol = bench_operators(width, resolution, device, threads, batch_size)
    ratios = {op: flops_ratio(rows, op) for op, _ in PCONV_FORMS}
    if fmt == "json":
        click.echo(json.dumps(operators_to_dict(rows, ratios, protocol), indent=2))
    else:
        click.echo(format_operator_tables(rows, ratios, protocol))


@bench.command("models")
@click.argument("specs", nargs=-1)
@measure_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def bench_models(specs, device, threads, batch_size, input_size, runtime, fmt) -> None:
    """The named configs T0..L (or the given spec files) side by side: params, FLOPs, latency, FLOPS."""
    from fasternet_space import NAMED_SPECS, count, load_spec
    from fasternet_space.ladder import measure_side_by_side
    from fasternet_space.measure import resolve_device
    from fasternet_space.report import format_models_table, model_summary
    from fasternet_space.runtimes import check_available

    resolve_device(device)
    check_available(runtime, device)
    chosen = [load_spec(p) for p in specs] or list(NAMED_SPECS.values())
    measured = measure_side_by_side(chosen, runtime, device=device, threads=threads, throughput_batch=batch_size,
                                    input_size=input_size)
    results = [model_summary(spec, count(spec.replace(input_size=input_size or spec.input_size)), m)
               for spec, m in zip(chosen, measured, strict=True)]
    click.echo(json.dumps(results, indent=2) if fmt == "json" else format_models_table(results))


@cli.command()
@click.option("--device", default=SearchConfig.device, show_default=True,
              help="Where latency is measured: cpu, cuda, cuda:N, mps.")
@click.option("--latency-budget", "budget", default=f"{SearchConfig.budget_ms:g}ms", show_default=True,
              help="Hard latency limit: 20ms, 0.02s or 20 (ms).")
@click.option("--n-trials", type=int, default=SearchConfig.n_trials, show_default=True, callback=positive("--n-trials"),
              help="Finished trials the study should hold (a resumed study runs only the rest).")
@click.option("--timeout", "timeout_s", type=float, help="Stop starting new trials after this many seconds.")
@click.option("--seed", type=int, default=SearchConfig.seed, show_default=True)
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
@click.option("--sampler", type=click.Choice(SAMPLERS), default=SearchConfig.sampler, show_default=True)
@click.option("--pruner", type=click.Choice(PRUNERS), default=SearchConfig.pruner, show_default=True,
              help="percentile: stop a candidate below the 25th percentile of earlier ones at the same epoch (from the 2nd epoch on, so it needs --proxy-epochs 3 or more); median: below their median; none.")
@storage_option
@click.option("--study-name", help="[default: SPACE-DEVICE[-RUNTIME]-BUDGET-DATA]")
@click.option("--named/--no-named", default=SearchConfig.named, show_default=True,
              help="Enqueue T0..L first where they fit the space.")
@click.option("--proxy", "accuracy", default=SearchConfig.accuracy, show_default=True,
              help="train: the short proxy training; zero-cost:NAME: a training-free search on a zero-cost score "
                   "(synflow, naswot, grad_norm, snip, params, flops, or vote); none: a census, latency, FLOPs and "
                   "params only (use with --sampler random, then `analyze`).")
@click.option("--zero-cost/--no-zero-cost", "zero_cost_scores", default=SearchConfig.zero_cost_scores, show_default=True,
              help="Store every feasible candidate's zero-cost scores before training (CSV/JSON, fidelity).")
@click.option("--screen", type=int, default=SearchConfig.screen, show_default=True,
              help="Two-stage: first score this many candidates without training (a study STUDY-screen), then "
                   "train only the best --keep share of the feasible ones by the zero-cost vote (0: off).")
@click.option("--keep", type=float, default=SearchConfig.keep, show_default=True,
              help="With --screen: the share of the screened feasible candidates to train.")
@click.option("--rank-by", type=click.Choice(RANK_SCORES),
              help="What ranks trained candidates: loss, the proxy's held-out cross-entropy (it agrees best with a "
                   "4x longer training), or top1 [default: loss for a new study, the study's own on resume].")
@click.option("--pick", type=click.Choice(PICK_RULES), default=SearchConfig.pick, show_default=True,
              help="Which of the candidates tied with the best within the noise best.yaml holds: fastest, "
                   "best-score or most-flops.")
@click.option("--confirm", type=int, default=SearchConfig.confirm, show_default=True, callback=positive("--confirm"),
              help="Seeds per front candidate and named config, retrained at the end (1: none); the front is "
                   "decided on their means.")
@click.option("--threads", type=int, callback=positive("--threads"),
              help="CPU threads while timing [default: 1, the paper's protocol].")
@runtime_option()
@click.option("--latency", type=click.Choice(LATENCY_MODES), default=SearchConfig.latency,
              show_default=True, help="measured: time every candidate; predicted: from --latency-table, nothing "
              "timed; auto: a candidate predicted over the budget by more than the table's error is recorded "
              "infeasible without being built, the others are timed.")
@click.option("--latency-table", type=click.Path(dir_okay=False), help="A table from `profile` (for predicted, auto).")
@click.option("--latency-reference", type=click.Choice([*NAMED_SPECS, "none"]), default=SearchConfig.latency_reference,
              show_default=True, callback=lambda ctx, param, value: None if value == "none" else value,
              help="On CPU, time each candidate in pairs with this named config (latency = median ratio x its "
                   "calibrated latency); none: each candidate timed on its own, as studies made before.")
@click.option("--recalibrate", is_flag=True, help="Time the reference's latency anew instead of reusing the study's.")
@click.option("--calibration-seconds", "calibration_s", type=click.FloatRange(min=0, min_open=True),
              help=f"Seconds of reference calls per calibration [default: {CALIBRATION_WINDOW_S:g}, or "
                   f"${CALIBRATION_ENV}].")
@click.option("--allow-other-device", is_flag=True,
              help="Use a latency table profiled on another device or runtime than --device/--runtime.")
@click.option("--workers", type=int, default=SearchConfig.workers, show_default=True, callback=positive("--workers"),
              help="Worker processes on this machine.")
@click.option("--heartbeat", "heartbeat_s", type=int, default=SearchConfig.heartbeat_s, show_default=True,
              callback=positive("--heartbeat"),
              help="Seconds between a worker's heartbeats; a trial silent for 3x this long is failed and retried.")
@click.option("--out-spec", type=click.Path(dir_okay=False), help="Where to write the picked spec (--pick) "
              "[default: runs/STUDY/best.yaml].")
@click.option("--export", "export_dir", type=click.Path(file_okay=False), help="Write plots, CSV and the best spec here.")
@click.option("--quiet", is_flag=True, help="No per-trial progress lines.")
def search(budget, space_path, proxy_epochs, proxy_resolution, proxy_batch_size, proxy_lr, proxy_grad_clip, out_spec,
           export_dir, quiet, **settings) -> None:  # settings: the flags named as SearchConfig's fields
    """Search the space under a latency budget: measured latency, short-proxy accuracy, Optuna samplers."""
    from fasternet_space.measure import resolve_device
    from fasternet_space.runtimes import check_available
    from search import run_search
    from search.report.summary import SearchProgress, failed_workers_warning
    from search.run.latency import load_table
    from search.run.objective import default_lock_dir

    resolve_device(settings["device"])
    check_available(settings["runtime"], settings["device"])
    best_path = Path(out_spec) if out_spec else None
    for folder in (best_path.parent if best_path else None, Path(export_dir) if export_dir else None):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)  # fail now, not after the search (OSError: one line)
    config = SearchConfig(
        **budget_fields(budget, settings["latency_reference"]), space=spaces.resolve(space_path),
        proxy=ProxyConfig(epochs=proxy_epochs, resolution=proxy_resolution, batch_size=proxy_batch_size, lr=proxy_lr,
                          grad_clip=proxy_grad_clip or None),
        lock_dir=default_lock_dir(), **settings,
    ).validate()
    load_table(config)  # a table that cannot serve this search is refused now, not at the first trial
    progress = SearchProgress(config.n_trials, config.budget_text(), quiet, config.confirm)
    stop = threading.Event()

    def on_sigint(signum, frame) -> None:
        # First Ctrl-C: training stops at its next step and no new trial starts (raising here could land
        # in a finaliser, where Python swallows it). A second Ctrl-C interrupts at once.
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo("stopping: the running trial ends now, then the summary (Ctrl-C again to quit at once)", err=True)

    signal.signal(signal.SIGINT, on_sigint)
    outcome = run_search(config, on_trial=echoed(progress.trial_line), on_start=echoed(progress.start_lines),
                         on_confirm=echoed(progress.confirm_line), stop=stop)
    if outcome.failed_workers:
        click.echo(failed_workers_warning(outcome.failed_workers), err=True)
    print_search_summary(outcome, outcome.budget_ms or config.budget_ms, best_path, export_dir)
    if outcome.interrupted:
        raise SystemExit(130)


def budget_fields(text: str, reference: str | None) -> dict:
    """--latency-budget as SearchConfig fields: budget_ms, or budget_ratio for a budget like 1.2xT0."""
    from search.config import parse_budget, reference_budget

    ratio = reference_budget(text)
    if ratio is None:
        return {"budget_ms": parse_budget(text)}
    if ratio[1] != reference:
        fail(f"--latency-budget {text}: is in units of {ratio[1].upper()}, not of --latency-reference "
             f"{reference}; allowed: the same named config for both")
    return {"budget_ms": None, "budget_ratio": ratio[0]}


def echoed(lines_of):
    """A run_search callback that prints what `lines_of` formats: a line, a list of lines, or None."""
    def callback(*args) -> None:
        lines = lines_of(*args)
        for line in [lines] if isinstance(lines, str) else lines or []:
            click.echo(line)
    return callback


def print_search_summary(outcome, budget_ms, best_path, export_dir) -> None:
    """Prints the summary; saves the picked spec and, with --export, the study's plots and CSV."""
    from search import best_feasible, read_trials
    from search.records import study_attrs
    from search.report.export import export_study, save_best_spec
    from search.report.summary import closing_line, summary_lines

    study = outcome.study
    records = read_trials(study)
    click.echo("\n".join(summary_lines(outcome, records, budget_ms)))
    best_spec = None
    if best_feasible(records) is not None:
        best_spec = save_best_spec(records, study.study_name, best_path or Path("runs") / study.study_name / "best.yaml",
                                   outcome.pick, study_attrs.setting(study))
    click.echo(closing_line(records, study.study_name, budget_ms, best_spec, outcome.pick))
    if export_dir:
        for written in export_study(study, Path(export_dir), budget_ms=budget_ms):
            click.echo(f"wrote {written}")


@cli.command()
@study_options
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="FILE.html (offline), .png/.svg/.pdf (need Chromium), .csv or .json (one row per trial).")
@click.option("--latency-budget", "budget", help="Budget line to draw [default: the study's own].")
def pareto(study_name, storage, out, budget) -> None:
    """Export a study: its ranking score (held-out loss, or top-1) vs measured latency with the Pareto front, the
    tied set and the pick, and FLOPs vs latency (FLOPS lines)."""
    from search import load_study, parse_budget
    from search.report.export import write_report

    budget_ms = parse_budget(budget) if budget else None
    click.echo(f"wrote {write_report(load_study(study_name, storage), out, budget_ms)}")


@cli.command()
@study_options
@click.option("--sample", type=int, default=DEFAULT_SAMPLE, show_default=True,
              help="Trained trials to retrain: the Pareto front, the named configs, then others (at least 3; "
                   "fewer only when the study has fewer).")
@click.option("--budget-multiplier", type=int, default=DEFAULT_MULTIPLIER, show_default=True,
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
    from search import load_study
    from search.fidelity.plan import check_arguments
    from search.fidelity.plan import plan as make_plan
    from search.fidelity.plot import check_out, write_scatter
    from search.fidelity.report import format_text
    from search.fidelity.run import plan_line, progress_line, run

    check_arguments(sample, budget_multiplier, long_seeds)
    if out:
        check_out(out)
    study = load_study(study_name, storage)
    plan = make_plan(study, sample, budget_multiplier, seed, long_seeds=long_seeds)
    click.echo(plan_line(plan), err=True)
    report = run(study, plan, lambda progress: click.echo(progress_line(plan, progress), err=True))
    written = write_scatter(report, out) if out else None
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(format_text(report))
    if written:
        click.echo(f"wrote {written}", err=fmt == "json")


@cli.command()
@study_options
@click.option("--out", type=click.Path(dir_okay=False),
              help="FILE.html (a self-contained report, works offline) or FILE.json.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="What to print: a summary, or the whole analysis as one JSON object.")
def analyze(study_name, storage, out, fmt) -> None:
    """What the study says about its space (RegNet-style): importances for accuracy, latency and achieved FLOPS
    (fANOVA, PED-ANOVA), EDFs of proxy error per parameter value, costs per value, the paper's choices answered."""
    from search import load_study
    from search.analysis.analysis import analyze_study
    from search.analysis.html import FORMATS, format_text, to_json, write_analysis

    if out:
        check_suffix("--out", out, FORMATS, any_case=True)
    analysis = analyze_study(load_study(study_name, storage))
    written = write_analysis(analysis, out) if out else None
    click.echo(to_json(analysis) if fmt == "json" else format_text(analysis))
    if written:
        click.echo(f"wrote {written}", err=fmt == "json")


@cli.command("profile")
@click.option("--device", default="cpu", show_default=True, help="Where the parts are timed: cpu, cuda, cuda:N, mps.")
@runtime_option()
@click.option("--threads", type=int, callback=positive("--threads"), help="[default: 1 on CPU, the paper's protocol]")
@click.option("--space", "space_path", default=spaces.DEFAULT, show_default=True,
              help="A space YAML file, or the name of a shipped space: the table covers its points.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The table, a .json file.")
@click.option("--fit-specs", type=int, default=NETWORKS, show_default=True, callback=positive("--fit-specs"),
              help="Whole networks sampled from the space and measured, to fit the correction on.")
@click.option("--held-out-specs", type=int, default=NETWORKS, show_default=True, callback=positive("--held-out-specs"),
              help="Other whole networks measured for the table's own error (what `search --latency auto` trusts).")
@click.option("--seed", type=int, default=0, show_default=True, help="Which networks are sampled.")
@click.option("--part-time", type=click.FloatRange(min=0, min_open=True), default=PART_TIMING.max_time_s, show_default=True,
              help="Seconds of timing per part at most (after warm-up).")
@click.option("--network-time", type=click.FloatRange(min=0, min_open=True), default=MODEL_TIMING.max_time_s,
              show_default=True,
              help="Seconds of timing per whole network at most.")
def profile_command(device, runtime, threads, space_path, out, fit_specs, held_out_specs, seed, part_time,
                    network_time) -> None:
    """Latency table for this device and runtime: every part the space can produce and whole networks to fit
    a correction on, all timed as ratios to T0 interleaved with them (`predict`, `search --latency
    predicted|auto` read it; ms = ratio x T0's calibration, made once here)."""
    from dataclasses import replace

    from fasternet_space.latency_table import check_profilable, profile
    from fasternet_space.report import format_profiled
    from search.space import SearchSpace, profile_networks

    check_suffix("--out", out, (".json",))
    space = SearchSpace.from_yaml(spaces.resolve(space_path))

    def on_progress(stage: str, done: int, total: int) -> None:
        if done == total or done % (50 if stage == "parts" else 8) == 0:
            click.echo(f"[{stage}] {done}/{total}", err=True)

    check_profilable(space, runtime, device)  # refused before any network is sampled
    fit_networks, held_out_networks = profile_networks(space, fit_specs, held_out_specs, seed)
    table = profile(space, runtime, device=device, threads=threads, fit_specs=fit_networks,
                    held_out_specs=held_out_networks, seed=seed, on_progress=on_progress,
                    part_timing=replace(PART_TIMING, max_time_s=part_time),
                    model_timing=replace(MODEL_TIMING, max_time_s=network_time))
    path = table.save(out)
    click.echo(format_profiled(table))
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
    from fasternet_space import load_spec
    from fasternet_space.latency_table import LatencyTable, TableError
    from fasternet_space.report import format_predictions

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
        try:
            rows.append(table.prediction_row(text, load_spec(text), space))
        except TableError as exc:
            fail(f"{text}: {exc.message('spec')}")
    if fmt == "json":
        click.echo(json.dumps({"table": str(table_path), "protocol": table.protocol, "error": table.error,
                               "calibration": table.calibration, "predictions": rows}, indent=2))
        return
    click.echo(format_predictions(rows, table.describe()))


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
