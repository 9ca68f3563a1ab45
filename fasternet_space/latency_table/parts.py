"""The parts a space's networks are made of, each as a module of its own, and which of them to time.

Parts (each timed in blocks interleaved with the reference network, as a ratio to it (`timing`), in the
runtime, at batch 1, memoised by its signature):

- stem: (in_chans, width, patch size and stride, input size, norm)
- block: (width, feature-map side, kernel, PConv channels c_p, hidden width, activation, norm). Blocks are
  factorised: every (width, side, kernel, c_p, hidden) at a reference activation and norm, plus what each
  other activation/norm pair adds, which is work per hidden element: timed on the narrowest, median and
  widest block of each feature-map side and fitted as `k * hidden * side^2 + d` per pair.
- merge: (width in, width out, side in, merge size and stride, norm)
- head: (width, side, feature_dim, classes, activation)
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
from torch import nn

from ..fast_layers import FastBlock, FastFasterNet, FoldedConv, in_graph_capture, onednn_available
from ..inference import fastest_cpu_mode
from ..layers import ChannelLayerNorm
from ..measure import cpu_threads, resolve_device
from ..space import DesignSpace, Free
from ..spec import LATENCY_NEUTRAL_FIELDS, ArchSpec, SpecError
from .table import Signature, TableError, decompose, key


def enumerate_shapes(space: DesignSpace) -> list[ArchSpec]:
    """One spec per combination of the latency-relevant free values of the space (each free depth at its
    largest value: depth only repeats a block); TableError for a free field with infinitely many values."""
    frees, slots = [], []
    for field_name, value in space.entries.items():
        entries = value if isinstance(value, list) else [value]
        for index, entry in enumerate(entries):
            if not isinstance(entry, Free) or field_name in LATENCY_NEUTRAL_FIELDS:
                continue
            values = entry.grid_values()
            if values is None:
                raise TableError("space", space.name, f"{entry.param} is a continuous range; allowed: choices or "
                                 "stepped ranges (a table times every value)")
            if field_name == "depths":
                values = [max(values)]
            frees.append(values)
            slots.append((field_name, index if isinstance(value, list) else None))
    specs = []
    for combo in itertools.product(*frees):
        values: dict[str, Any] = {}
        for name, value in space.entries.items():
            values[name] = list(value) if isinstance(value, list) else value
        for (name, index), chosen in zip(slots, combo, strict=True):
            if index is None:
                values[name] = chosen
            else:
                values[name][index] = chosen
        for name in LATENCY_NEUTRAL_FIELDS:  # back to their defaults (the name is set below)
            values.pop(name, None)
        for name, value in list(values.items()):
            if isinstance(value, list):
                values[name] = [v.grid_values()[0] if hasattr(v, "grid_values") else v for v in value]
            elif hasattr(value, "grid_values"):
                values[name] = value.grid_values()[0]
        values["name"] = "shape"
        try:
            specs.append(ArchSpec.from_dict(values))
        except SpecError:
            continue
    return specs


def plan_parts(specs: list[ArchSpec]) -> tuple[list[Signature], dict[str, Any]]:
    """The parts to time for these specs (blocks factorised, see the module's docstring) and the reference:
    the most common activation and norm, and per feature-map side the reference block shapes (the narrowest,
    median and widest there) on which every other activation/norm pair is timed: what a pair adds is a small
    difference of two timings, so it is fitted on several shapes per side."""
    needed = {sig for spec in specs for sig, _ in decompose(spec)}
    blocks = sorted((s for s in needed if s[0] == "block"), key=str)
    acts = [s[6] for s in blocks]
    norms = [s[7] for s in blocks]
    ref_act = max(sorted(set(acts)), key=acts.count) if acts else "relu"
    ref_norm = max(sorted(set(norms)), key=norms.count) if norms else "bn"
    todo = {s for s in needed if s[0] != "block"} | {("block", *s[1:6], ref_act, ref_norm) for s in blocks}
    pairs = sorted({(s[6], s[7]) for s in blocks} - {(ref_act, ref_norm)})
    references = []
    for side in sorted({s[2] for s in blocks}):
        shapes = sorted({s[1:6] for s in blocks if s[2] == side})
        references += sorted({shapes[0], shapes[len(shapes) // 2], shapes[-1]})
    for shape in references:
        todo |= {("block", *shape, act, norm) for act, norm in pairs}
    reference = {"act": ref_act, "norm": ref_norm, "delta_shapes": [list(r) for r in references],
                 "pairs": [f"{a}:{n}" for a, n in pairs], "deltas": {}}
    order = {"stem": 0, "block": 1, "merge": 2, "head": 3}
    return sorted(todo, key=lambda s: (order[s[0]], str(s))), reference


def block_repeats(specs: list[ArchSpec]) -> dict[tuple, int]:
    """Per block shape (width, side, kernel, c_p, hidden), the most times it repeats in one network of these
    specs (its stage's largest depth): an error in its timing is made that many times over."""
    repeats: dict[tuple, int] = {}
    for spec in specs:
        for signature, times in decompose(spec):
            if signature[0] == "block":
                repeats[signature[1:6]] = max(times, repeats.get(signature[1:6], 0))
    return repeats


def fit_deltas(parts: dict[str, float], reference: dict[str, Any]) -> dict[str, list[float]]:
    """Per activation/norm pair, what it adds to a block over the reference pair, as [k, d] of
    k * hidden elements + d (least squares over the reference shapes; through zero with fewer than three)."""
    deltas = {}
    for pair in reference["pairs"]:
        act, norm = pair.split(":")
        elements, added = [], []
        for shape in reference["delta_shapes"]:
            with_pair = parts[key(("block", *shape, act, norm))]
            base = parts[key(("block", *shape, reference["act"], reference["norm"]))]
            elements.append(shape[4] * shape[1] ** 2)  # hidden x side^2
            added.append(with_pair - base)
        e, d = np.array(elements, dtype=float), np.array(added)
        if len(e) >= 3:
            (k, c), *_ = np.linalg.lstsq(np.stack([e, np.ones_like(e)], axis=1), d, rcond=None)
        else:
            k, c = float(e @ d / (e @ e)), 0.0
        deltas[pair] = [float(k), float(c)]
    return deltas


def part_module(signature: Signature, mode: str) -> tuple[nn.Module, tuple[int, ...]]:
    """The inference-form module of one part (official-scale random weights) and its input shape."""
    g = torch.Generator().manual_seed(0)

    def weight(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.02

    kind = signature[0]
    if kind in ("stem", "merge"):
        if kind == "stem":
            _, cin, cout, size, stride, side, norm = signature
        else:
            _, cin, cout, side, size, stride, norm = signature
        ln = ChannelLayerNorm(cout) if norm == "ln" else None
        conv = FoldedConv(weight(cout, cin, size, size), None if ln else torch.zeros(cout), stride, 0, ln)
        return _Part(conv, mode), (cin, side, side)
    if kind == "block":
        _, width, side, k, cp, hidden, act, norm = signature
        ln = ChannelLayerNorm(hidden) if norm == "ln" else None
        block = FastBlock(weight(cp, cp, k, k), weight(hidden, width, 1, 1), None if ln else torch.zeros(hidden),
                          weight(width, hidden, 1, 1), act, ln)
        return _Part(block, mode), (width, side, side)
    _, width, side, feature_dim, classes, act = signature
    return _Head(weight(feature_dim, width), weight(classes, feature_dim), torch.zeros(classes), act), (width, side, side)


class _Part(nn.Module):
    """A stem, merge or block of the inference form, run as the whole network runs it (oneDNN or portable)."""

    def __init__(self, module: nn.Module, mode: str):
        super().__init__()
        self.module = module
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "onednn" and not in_graph_capture():
            return self.module.forward_onednn(x)
        return self.module(x)


class _Head(nn.Module):
    def __init__(self, feature: torch.Tensor, head: torch.Tensor, bias: torch.Tensor, act: str):
        super().__init__()
        self.feature_weight = nn.Parameter(feature, requires_grad=False)
        self.head_weight = nn.Parameter(head, requires_grad=False)
        self.head_bias = nn.Parameter(bias, requires_grad=False)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return FastFasterNet.head(self, x)  # the inference form's own head, on these weights


class EmptyPart(nn.Module):
    """The smallest part there is: one ReLU on one number (its latency is a runtime's per-call cost)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


def torch_mode(device: str, threads: int) -> str:
    """The forward mode the torch runtime's inference form uses here (as `inference.for_inference`)."""
    if resolve_device(device).type != "cpu" or not onednn_available():
        return "portable"
    with cpu_threads(threads):
        return fastest_cpu_mode(threads)
