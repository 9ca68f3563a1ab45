"""fasternet-space command line: parse, call the library, print. Bad input: one line, exit code 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from fasternet_space.checkpoint import CheckpointError
from fasternet_space.export import ExportError
from fasternet_space.measure import DeviceError
from fasternet_space.spec import SpecError

ROOT = Path(__file__).resolve().parent
DEFAULT_SPACE = ROOT / "spaces" / "fasternet.yaml"

#: Errors that mean "the user asked for something that is not allowed": one line, exit 2.
USER_ERRORS: tuple[type[Exception], ...] = (SpecError, CheckpointError, DeviceError, ExportError)


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
    ]
    for option in reversed(options):
        func = option(func)
    return func


@cli.command()
@click.option("--spec", "spec_path", required=True, help="A spec YAML file (every field fixed), e.g. spaces/fasternet_l.yaml.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--weights", type=click.Path(dir_okay=False), help="Load an official- or timm-format checkpoint (strict).")
@click.option("--out", type=click.Path(dir_okay=False), help="Save the built model (spec + state dict) to a .pt file.")
@click.option("--measure", is_flag=True, help="Time the inference form on --device: latency, throughput, FLOPS.")
@measure_options
@click.option("--export", "export_path", type=click.Path(dir_okay=False), help="Write the inference form to an .onnx file.")
@click.option("--runtime", type=click.Choice(["pytorch", "onnxruntime"]), default="pytorch", show_default=True,
              help="What --measure times; onnxruntime needs --export and the [onnx] extra.")
def build(spec_path, fmt, weights, out, measure, device, threads, batch_size, input_size, export_path, runtime) -> None:
    """Build one network from a spec and print its exact cost per stage (and, with --measure, its speed)."""
    from fasternet_space import build_model, count, for_inference, load_spec
    from fasternet_space.checkpoint import load_checkpoint
    from fasternet_space.measure import measure_model, resolve_device
    from fasternet_space.report import format_summary, spec_summary

    spec = load_spec(spec_path)
    if out is not None and not out.endswith(".pt"):
        fail(f"--out {out}: allowed: a path ending in .pt")
    if export_path is not None and not export_path.endswith(".onnx"):
        fail(f"--export {export_path}: allowed: a path ending in .onnx")
    if runtime == "onnxruntime" and not export_path:
        fail("--runtime onnxruntime: needs --export FILE.onnx to have a file to run")
    if measure:
        resolve_device(device)
    measured_spec = spec.replace(input_size=input_size) if input_size else spec
    summary = spec_summary(spec, count(spec))
    model = build_model(spec)
    if weights:
        summary["weights"] = {"path": weights, "format": load_checkpoint(model, weights)}
    if out:
        import torch

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"spec": spec.to_dict(), "state_dict": model.state_dict()}, out)
        summary["saved"] = out
    fast = for_inference(model.eval()) if (measure or export_path) else None
    if export_path:
        from fasternet_space.export import export_onnx

        export_onnx(fast, export_path, input_size=measured_spec.input_size, in_chans=spec.in_chans)
        summary["exported"] = {"path": export_path, "bytes": Path(export_path).stat().st_size}
    if measure:
        flops = count(measured_spec).flops
        kwargs = dict(device=device, threads=threads, throughput_batch=batch_size,
                      input_size=measured_spec.input_size, in_chans=spec.in_chans)
        if runtime == "onnxruntime":
            from fasternet_space.export import measure_onnx

            result = measure_onnx(export_path, flops, **kwargs)
        else:
            result = measure_model(fast, flops, **kwargs)
        summary.update(latency_ms=result.latency_ms, latency_ci_ms=list(result.latency_ci_ms),
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

    rows = bench_operators(width, resolution, device, threads, batch_size)
    ratios = {op: flops_ratio(rows, op) for op in ("pconv", "pconv_fast")}
    if fmt == "json":
        click.echo(json.dumps({
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
        [OPERATOR_NAME, *[f"{v:.1f}x" for v in ratios[op].values()],
         f"{sum(ratios[op].values()) / len(ratios[op]):.1f}x"]
        for op, OPERATOR_NAME in (("pconv", "PConv (split+cat)"), ("pconv_fast", "PConv (fast)"))
    ]))


@bench.command("models")
@click.argument("specs", nargs=-1)
@measure_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def bench_models(specs, device, threads, batch_size, input_size, fmt) -> None:
    """The named configs T0..L (or the given spec files) side by side: params, FLOPs, latency, FLOPS."""
    from fasternet_space import NAMED_SPECS, count, load_spec, named_label
    from fasternet_space.measure import measure_spec, resolve_device
    from fasternet_space.report import format_table, human

    resolve_device(device)
    chosen = [load_spec(p) for p in specs] or list(NAMED_SPECS.values())
    results = []
    for spec in chosen:
        m = measure_spec(spec, device=device, threads=threads, throughput_batch=batch_size,
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
    p = results[0]["protocol"]
    click.echo(f"\nprotocol: {p['device_name']} [{p['device']}], {p['threads']} thread(s), batch 1 latency, "
               f"throughput at batch {p['throughput_batch']}, {p['input_size']}x{p['input_size']}, {p['dtype']}, "
               f"{p['runtime']}, torch {p['torch']}, BatchNorm folded")


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="cli.py", standalone_mode=False)
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
        click.echo(f"error: {_one_line(str(exc))}", err=True)
        return 2
    return 0


def _one_line(message: str) -> str:
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())
