"""The paper's Table 1 on the user's device: 10 stacked 3x3 layers of Conv, GConv, DWConv and PConv.

Each operator runs on the feature-map shape of each of the four stages; FLOPs are exact
(multiply-adds), latency is measured with `measure.time_callable`, FLOPS = FLOPs / latency.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .measure import (
    Protocol,
    TimingPolicy,
    cpu_threads,
    cudnn_benchmark,
    default_throughput_batch,
    resolve_device,
    time_callable,
)

LAYERS = 10
KERNEL = 3
GROUPS = 16
PARTIAL_RATIO = 0.25
OPERATORS = ("conv", "gconv", "dwconv", "pconv", "pconv_fast")
OPERATOR_LABELS = {"conv": "Conv", "gconv": f"GConv (g={GROUPS})", "dwconv": "DWConv",
                   "pconv": "PConv (split+cat)", "pconv_fast": "PConv (fast)"}


class StackedConv(nn.Module):
    """10 stacked k x k convolutions over all channels, in `groups` groups."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.layers = nn.Sequential(*[nn.Conv2d(channels, channels, KERNEL, 1, KERNEL // 2, groups=groups,
                                                bias=False) for _ in range(LAYERS)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class StackedPConv(nn.Module):
    """10 stacked PConvs. `fast`: the untouched channels are never read or written (no concatenation):
    the c_p convolved channels and a view of the untouched ones are returned as they are, the operator's
    ideal memory access (paper eq. 5)."""

    def __init__(self, channels: int, fast: bool):
        super().__init__()
        self.partial = int(channels * PARTIAL_RATIO)
        self.fast = fast
        self.layers = nn.ModuleList(nn.Conv2d(self.partial, self.partial, KERNEL, 1, KERNEL // 2, bias=False)
                                    for _ in range(LAYERS))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.fast:
            part, untouched = x[:, : self.partial], x[:, self.partial:]
            for conv in self.layers:
                part = conv(part)
            return part, untouched
        for conv in self.layers:
            x1, x2 = torch.split(x, [self.partial, x.shape[1] - self.partial], dim=1)
            x = torch.cat((conv(x1), x2), 1)
        return x


def make_operator(name: str, channels: int) -> nn.Module:
    if name == "conv":
        return StackedConv(channels, 1)
    if name == "gconv":
        return StackedConv(channels, GROUPS)
    if name == "dwconv":
        return StackedConv(channels, channels)
    if name in ("pconv", "pconv_fast"):
        return StackedPConv(channels, fast=name == "pconv_fast")
    raise ValueError(f"unknown operator {name!r}; allowed: {', '.join(OPERATORS)}")


def operator_flops(name: str, channels: int, size: int) -> int:
    """Exact multiply-adds of the 10 stacked layers at batch 1."""
    per_position = {
        "conv": KERNEL * KERNEL * channels * channels,
        "gconv": KERNEL * KERNEL * channels * channels // GROUPS,
        "dwconv": KERNEL * KERNEL * channels,
    }
    if name in ("pconv", "pconv_fast"):
        partial = int(channels * PARTIAL_RATIO)
        return LAYERS * size * size * KERNEL * KERNEL * partial * partial
    return LAYERS * size * size * per_position[name]


def stage_shapes(width: int, resolution: int, stages: int = 4) -> list[tuple[int, int]]:
    """(channels, side) per stage: width doubles and the side halves, as in FasterNet."""
    shapes = []
    for i in range(stages):
        side = resolution // 2**i
        if side < 1:
            break
        shapes.append((width * 2**i, side))
    return shapes


@dataclass(frozen=True)
class OperatorRow:
    operator: str
    label: str
    channels: int
    size: int
    batch: int
    flops: int  # per image
    latency_ms: float
    flops_per_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def bench_operators(width: int = 96, resolution: int = 56, device: str = "cpu", threads: int | None = None,
                    batch_size: int | None = None, operators: tuple[str, ...] = OPERATORS,
                    policy: TimingPolicy = TimingPolicy(max_time_s=3.0)) -> tuple[list[OperatorRow], Protocol]:
    """The table's rows, and the protocol they were measured under."""
    dev = resolve_device(device)
    batch = batch_size or default_throughput_batch(dev)  # one batch for all: the throughput protocol
    protocol = Protocol.for_device(dev, threads=threads, batch=batch, throughput_batch=batch, input_size=resolution,
                                   in_chans=width, runtime="pytorch-eager", policy=policy, folded=None)
    rows = []
    with cpu_threads(protocol.threads), cudnn_benchmark(True), torch.inference_mode():
        for channels, size in stage_shapes(width, resolution):
            x = torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(0)).to(dev)
            for name in operators:
                module = make_operator(name, channels).to(dev).eval()
                timing = time_callable(lambda m=module, x=x: m(x), dev, policy)
                flops = operator_flops(name, channels, size)
                rows.append(OperatorRow(name, OPERATOR_LABELS[name], channels, size, batch, flops,
                                        timing.median_ms, flops * batch / (timing.median_ms / 1e3)))
    return rows, protocol


def flops_ratio(rows: list[OperatorRow], numerator: str, denominator: str = "dwconv") -> dict[tuple[int, int], float]:
    """FLOPS of one operator relative to another, per stage shape."""
    by_key = {(r.operator, r.channels, r.size): r for r in rows}
    return {
        (c, s): by_key[(numerator, c, s)].flops_per_s / by_key[(denominator, c, s)].flops_per_s
        for (op, c, s) in by_key if op == denominator and (numerator, c, s) in by_key
    }
