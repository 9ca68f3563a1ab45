"""Plain-text tables and human-readable numbers for the CLI (pure functions: they return strings)."""

from __future__ import annotations

from typing import Any

from .cost import CostReport
from .measure import Protocol
from .named import named_label
from .spec import ArchSpec


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
            f"measured at {size}x{size}{at}: latency {summary['latency_ms']:.3f} ms, "
            f"throughput {summary['throughput']:.1f} img/s, {human(summary['flops_per_s'], 'FLOPS')}; "
            f"protocol: {protocol.describe()}"
        )
    return "\n".join(lines)
