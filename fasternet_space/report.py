"""Plain-text tables and human-readable numbers for the CLI (pure functions: they return strings)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .cost import CostReport
from .measure import Measurement, Protocol
from .named import named_label
from .spec import ArchSpec

if TYPE_CHECKING:
    from .latency_table import LatencyTable
    from .operators import OperatorRow


def fixed(value: float | None, digits: int) -> str:
    """`value` with `digits` decimals, or 'n/a'."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def human(value: float, unit: str = "") -> str:
    """3 significant digits with an SI prefix: 3905500 -> '3.91 M'."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, "")):
        if abs(value) >= factor:
            return f"{_three_digits(value / factor)} {prefix}{unit}".rstrip()
    return f"{_three_digits(value)} {unit}".rstrip()


def _three_digits(x: float) -> str:
    return f"{x:#.3g}".rstrip(".")


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def spec_summary(spec: ArchSpec, cost: CostReport) -> dict[str, Any]:
    """The JSON-ready summary of one spec: identity, totals and the per-stage breakdown."""
    total_memory = cost.memory_access or 1
    stages = []
    sizes = dict(zip((f"stage{i + 1}" for i in range(spec.num_stages)), spec.feature_sizes, strict=True))
    for row in cost.by_stage(spec):
        stages.append({
            "stage": row.stage, "width": row.width, "depth": row.depth, "partial_channels": row.partial,
            "feature_size": sizes.get(row.stage), "params": row.params, "flops": row.flops,
            "memory_access": row.memory_access, "memory_access_share": row.memory_access / total_memory,
        })
    return {
        "name": spec.name, "named": named_label(spec), "params": cost.params, "flops": cost.flops,
        "memory_access": cost.memory_access, "input_size": spec.input_size, "stages": stages,
        "spec": spec.to_dict(),
    }


def measured_summary(measurement: Measurement, input_size: int, flops: int) -> dict[str, Any]:
    """What `build --measure` adds to `spec_summary`: the speed at `input_size` (where the FLOPs are `flops`)."""
    return {"measured_input_size": input_size, "measured_flops": flops, "latency_ms": measurement.latency_ms,
            "latency_ci_ms": list(measurement.latency_ci_ms), "throughput": measurement.throughput,
            "flops_per_s": measurement.flops_per_s, "protocol": measurement.protocol.to_dict(),
            **_relative(measurement)}


def model_summary(spec: ArchSpec, cost: CostReport, measurement: Measurement) -> dict[str, Any]:
    """One row of `bench models`, JSON-ready: the model, its exact cost and its measured speed."""
    return {"name": spec.name, "named": named_label(spec), "params": cost.params, "flops": cost.flops,
            "latency_ms": measurement.latency_ms, "throughput": measurement.throughput,
            "flops_per_s": measurement.flops_per_s, "protocol": measurement.protocol.to_dict(),
            **_relative(measurement)}


def _relative(measurement: Measurement) -> dict[str, Any]:
    """The paired timing behind a latency (ratio to the reference, its interval, the calibration), if any."""
    relative = measurement.extra.get("relative")
    return {"relative": relative} if relative else {}


def relative_text(summary: dict[str, Any]) -> str:
    """' = 0.930 x T0 (T0 calibrated at 15.90 ms)' for a latency measured in pairs; '' otherwise."""
    relative = summary.get("relative")
    if not relative:
        return ""
    calibration = relative["calibration"]
    base = calibration.get("unit") or relative["reference"]  # T0, or the rung itself when it is the base
    unit_ms = calibration["ms"] / (calibration.get("factor") or 1.0)
    ratio = relative.get("unit_ratio", relative["ratio"])
    rung = relative["reference"]
    via = f", timed in pairs with {rung}: {relative['ratio']:.3f} x {rung}" if rung != base else ""
    return f" = {ratio:.3f} x {base}{via} ({base} calibrated at {unit_ms:.2f} ms)"


def format_summary(summary: dict[str, Any]) -> str:
    spec = summary["spec"]
    named = f" ({summary['named']})" if summary.get("named") else ""
    lines = [
        f"{summary['name']}{named}: input {spec['in_chans']}x{spec['input_size']}x{spec['input_size']}, "
        f"{spec['num_classes']} classes, act {spec['act']}, norm {spec['norm']}, mlp_ratio {spec['mlp_ratio']:g}, "
        f"PConv {spec['kernel_size']}x{spec['kernel_size']}",
        "",
    ]
    rows = []
    for s in summary["stages"]:
        size = f"{s['feature_size']}x{s['feature_size']}" if s["feature_size"] else ""
        rows.append([s["stage"], s["width"], s["depth"], s["partial_channels"], size, human(s["params"]),
                     human(s["flops"]), f"{100 * s['memory_access_share']:.1f}%"])
    lines.append(format_table(["stage", "width", "depth", "c_p", "map", "params", "FLOPs", "mem. access"], rows))
    lines += ["", f"total: params {summary['params']:,} ({human(summary['params'])}), "
                  f"FLOPs {summary['flops']:,} ({human(summary['flops'])} multiply-adds), "
                  f"memory access {human(summary['memory_access'])} elements"]
    if "latency_ms" in summary:
        protocol = Protocol.from_dict(summary["protocol"])
        size = summary.get("measured_input_size", protocol.input_size)
        at = "" if size == summary["input_size"] else f" (FLOPs there {human(summary['measured_flops'])})"
        lines.append(
            f"measured at {size}x{size}{at}: latency {summary['latency_ms']:.3f} ms{relative_text(summary)}, "
            f"throughput {summary['throughput']:.1f} img/s, {human(summary['flops_per_s'], 'FLOPS')}; "
            f"protocol: {protocol.describe()}"
        )
    return "\n".join(lines)


def format_build(summary: dict[str, Any], saved_to: str | None = None) -> str:
    """`build` as text: `format_summary`, then the weights loaded, where the model was saved (`saved_to`, the
    path as the user gave it) and the ONNX export."""
    lines = [format_summary(summary)]
    if "weights" in summary:
        weights = summary["weights"]
        lines.append(f"loaded {weights['format']}-format weights from {weights['path']} (strict)")
    if saved_to:
        lines.append(f"saved model to {saved_to}")
    if "exported" in summary:
        exported = summary["exported"]
        lines.append(f"exported ONNX to {exported['path']} ({exported['bytes'] / 1e6:.1f} MB)")
    return "\n".join(lines)


# PConv's two forms in `bench ops`, each compared with DWConv
PCONV_FORMS = (("pconv", "PConv (split+cat)"), ("pconv_fast", "PConv (fast)"))


def operators_to_dict(rows: list[OperatorRow], ratios: dict[str, dict[tuple[int, int], float]],
                      protocol: Protocol) -> dict[str, Any]:
    """`bench ops` as JSON: the protocol, every row, and PConv's FLOPS relative to DWConv per stage shape
    (`ratios`: operators.flops_ratio per PConv form)."""
    return {
        "protocol": protocol.to_dict(),
        "rows": [r.to_dict() for r in rows],
        "pconv_vs_dwconv_flops": [{"channels": c, "size": s, "pconv": ratios["pconv"][(c, s)],
                                   "pconv_fast": ratios["pconv_fast"][(c, s)]} for (c, s) in ratios["pconv"]],
    }


def format_operator_tables(rows: list[OperatorRow], ratios: dict[str, dict[tuple[int, int], float]],
                           protocol: Protocol) -> str:
    """`bench ops` as text: Table 1 of the paper (operator by stage shape), PConv's FLOPS relative to DWConv
    (`ratios`: operators.flops_ratio per PConv form), and the protocol."""
    table = [[r.label, f"{r.channels}x{r.size}x{r.size}", human(r.flops), f"{r.latency_ms:.3f}",
              human(r.flops_per_s, "FLOPS")] for r in rows]
    shapes = [f"{c}x{s}x{s}" for (c, s) in ratios["pconv"]]
    vs_dwconv = [[label, *[f"{v:.1f}x" for v in ratios[op].values()],
                  f"{sum(ratios[op].values()) / len(ratios[op]):.1f}x"] for op, label in PCONV_FORMS]
    return "\n".join([
        format_table(["operator", "feature map", "FLOPs", "latency ms", "achieved"], table), "",
        format_table(["FLOPS vs DWConv"] + shapes + ["mean"], vs_dwconv),
        f"\nprotocol: {protocol.describe()}; 10 stacked 3x3 layers, "
        f"FLOPs = multiply-adds, FLOPS = FLOPs x batch / median latency"])


def format_models_table(results: list[dict[str, Any]]) -> str:
    """`bench models` as text: one row per measured model, then the protocol (the first model's)."""
    relative = [r["relative"] for r in results if r.get("relative")]
    base = (relative[0]["calibration"].get("unit") or relative[0]["reference"]) if relative else None
    table = [[r["named"] or r["name"], human(r["params"]), human(r["flops"]), f"{r['latency_ms']:.2f}",
              *([f"{r['relative'].get('unit_ratio', r['relative']['ratio']):.3f}", r["relative"]["reference"]]
                if relative else []),
              f"{r['throughput']:.1f}", human(r["flops_per_s"], "FLOPS")] for r in results]
    ratio = [f"x {base}", "paired with"] if relative else []
    text = format_table(["model", "params", "FLOPs", "latency ms", *ratio, "throughput img/s", "achieved"], table)
    if relative:
        first = relative[0]["calibration"]
        unit_ms = first["ms"] / (first.get("factor") or 1.0)
        text += (f"\n\nlatency = ratio x {base}'s calibrated latency ({unit_ms:.2f} ms, minimum of back-to-back "
                 f"calls{' in thread CPU time' if first.get('clock') == 'thread CPU' else ''}); each model timed "
                 f"in pairs with the named config nearest it in FLOPs, linked to {base} by paired ratios of "
                 "neighbouring configs")
    return text + f"\n\nprotocol: {Protocol.from_dict(results[0]['protocol']).describe()}"


def format_predictions(rows: list[dict[str, Any]], table_description: str) -> str:
    """`predict` as text: one row per spec ('14.80 ms = 0.930 x T0' from a table in reference units), then
    the latency table it came from."""
    table = [[r["spec"], f"{r['latency_ms']:.2f} ms" + ("" if r.get("ratio") is None else
                                                         f" = {r['ratio']:.3f} x {r['reference']}"),
              f"{r['parts_sum']:.3f}", r["parts"], f"{r['predict_us']:.0f}"] for r in rows]
    calibrated = next((r for r in rows if r.get("ratio") is not None), None)
    units = (f"{calibrated['reference']} calibrated at {calibrated['calibration_ms']:.2f} ms; " if calibrated
             else "")
    return (format_table(["spec", "predicted", "sum of parts", "parts", "took us"], table)
            + f"\n\n{units}table: {table_description}")


def format_profiled(table: LatencyTable) -> str:
    """What `profile` says of a table it made: what was timed, how long it took, and the table."""
    profiled = table.profile
    units = ""
    if table.calibration is not None:
        units = (f"parts and networks timed as ratios to {table.reference_name}; a prediction in ms is its "
                 f"ratio x {table.reference_name}'s calibration\n")
    return (f"{profiled['parts_timed']} parts and {len(profiled['fit_networks'])} + "
            f"{len(profiled['held_out_networks'])} networks timed in {profiled['seconds'] / 60:.1f} min\n"
            f"{units}table: {table.describe()}")
