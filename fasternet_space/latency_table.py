"""A per-device, per-runtime latency predictor: the measured latency of every part a space can produce,
summed per spec, with a correction fitted on whole networks for what the plain sum misses.

Parts (each timed alone, in the runtime, at batch 1, memoised by its signature):

- stem: (in_chans, width, patch size and stride, input size, norm)
- block: (width, feature-map side, kernel, PConv channels c_p, hidden width, activation, norm). Blocks are
  factorised: every (width, side, kernel, c_p, hidden) at a reference activation and norm, plus what each
  other activation/norm pair adds, which is work per hidden element: timed on one reference block per
  feature-map side and fitted as `k * hidden * side^2 + d` per pair.
- merge: (width in, width out, side in, merge size and stride, norm)
- head: (width, side, feature_dim, classes, activation)

Prediction: `a * sum(parts) + b * number_of_parts + c`, the coefficients least-squares fitted on whole
networks sampled from the space and measured in the same runtime; the table's error is measured on other
whole networks held out from that fit. Predicting needs only the spec's numbers: no network is built.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import InputError
from .measure import Protocol, TimingPolicy, device_name, resolve_device
from .spec import ArchSpec, SpecError, partial_channels

FORMAT = "fasternet-space latency table"
VERSION = 1
# Parts: a short fixed time each (memoised by signature); whole networks: longer, for the fit and its error.
PART_TIMING = TimingPolicy(warmup=2, min_repeats=5, max_repeats=400, max_time_s=0.15, rel_ci=0.02)
MODEL_TIMING = TimingPolicy(warmup=2, min_repeats=5, max_repeats=200, max_time_s=1.5, rel_ci=0.02)
MIN_FIT_FOR_OFFSET = 8  # networks needed to fit an offset besides the scale
# Fields that do not change the inference form's latency (training-only, or folded away).
IGNORED_FIELDS = ("name", "drop_path_rate", "layer_scale_init_value", "pconv_forward")


class TableError(InputError):
    """A latency table that cannot answer this question (other space, device or runtime; bad file)."""


Signature = tuple  # ("block", width, side, kernel, c_p, hidden, act, norm) and the like


def key(signature: Signature) -> str:
    return ":".join(str(v) for v in signature)


def decompose(spec: ArchSpec) -> list[tuple[Signature, int]]:
    """The parts of the spec's inference form with how often each occurs, from the spec's numbers alone."""
    widths, sides = spec.stage_widths, spec.feature_sizes
    parts: list[tuple[Signature, int]] = [
        (("stem", spec.in_chans, widths[0], spec.patch_size, spec.patch_stride, spec.input_size, spec.norm), 1)]
    for i, (width, side, depth) in enumerate(zip(widths, sides, spec.depths, strict=True)):
        if i > 0:
            parts.append((("merge", widths[i - 1], width, sides[i - 1], spec.merge_size, spec.merge_stride,
                           spec.norm), 1))
        if depth:
            cp = partial_channels(width, spec.stage_partial_ratios[i])
            parts.append((("block", width, side, spec.kernel_size, cp, int(width * spec.mlp_ratio), spec.act,
                           spec.norm), depth))
    parts.append((("head", widths[-1], sides[-1], spec.feature_dim, spec.num_classes, spec.act), 1))
    return parts


@dataclass(frozen=True)
class Prediction:
    name: str
    latency_ms: float
    parts_ms: float  # the plain sum of the parts
    parts: int  # how many parts (blocks counted once each)


@dataclass
class LatencyTable:
    protocol: dict[str, Any]  # Protocol.to_dict() of the part timings (device name, runtime + version, threads)
    space: dict[str, Any]  # the space's YAML content, as profiled
    space_source: str | None
    parts: dict[str, float]  # part key -> median ms
    reference: dict[str, Any]  # reference act/norm and, per block group, the reference (c_p, hidden)
    correction: list[float]  # a, b, c of a * sum + b * parts + c
    error: dict[str, Any]  # held-out error: n, median_rel, p95_rel, max_rel, within_10pct, bound_rel
    profile: dict[str, Any] = field(default_factory=dict)  # seconds, parts timed, specs fitted / held out
    source: str | None = None  # the file it was read from

    # --- prediction

    def check_target(self, device: str, runtime: str, allow_other_device: bool = False) -> None:
        """Refuses a table profiled on another device name or runtime than `device` / `runtime` here."""
        if allow_other_device:
            return
        here = device_name(resolve_device(device))
        table = (self.protocol.get("device_name"), self.protocol.get("runtime_name"))
        if table != (here, runtime):
            raise TableError("latency_table", self.source or "", f"was profiled on {table[0]} with {table[1]}, "
                             f"not on {here} with {runtime}; allowed: a table profiled here with that runtime, or "
                             "allow_other_device")

    def space_object(self):
        from search.space import SearchSpace

        return SearchSpace.from_dict(self.space, source=self.space_source)

    def predict(self, spec: ArchSpec, space=None) -> Prediction:
        """The spec's predicted latency; TableError when it is not a point of the table's space."""
        space = space or self.space_object()
        if not space.contains(spec):
            raise TableError("spec", spec.name, f"is not a point of the table's space {space.name!r}; allowed: "
                             "a spec of that space, or a table profiled for the spec's space")
        total, count = 0.0, 0
        for signature, times in decompose(spec):
            total += times * self.part_ms(signature, spec.name)
            count += times
        a, b, c = self.correction
        return Prediction(spec.name, a * total + b * count + c, total, count)

    def part_ms(self, signature: Signature, name: str = "spec") -> float:
        if signature[0] != "block":
            return self._stored(signature, name)
        *shape, act, norm = signature
        base = self._stored((*shape, self.reference["act"], self.reference["norm"]), name)
        if (act, norm) == (self.reference["act"], self.reference["norm"]):
            return base
        line = self.reference["deltas"].get(f"{act}:{norm}")
        if line is None:
            raise TableError("spec", name, f"uses activation {act} with norm {norm}, which the table did not time; "
                             "allowed: specs of the table's space")
        return base + line[0] * shape[5] * shape[2] ** 2 + line[1]

    def _stored(self, signature: Signature, name: str) -> float:
        found = self.parts.get(key(signature))
        if found is None:
            raise TableError("spec", name, f"needs part {key(signature)}, which the table did not time; allowed: "
                             "specs of the table's space")
        return found

    # --- file

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "protocol": self.protocol, "space": self.space,
                "space_source": self.space_source, "correction": self.correction, "error": self.error,
                "profile": self.profile, "reference": self.reference, "parts": self.parts}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        path = Path(path)
        problem = "allowed: a latency table JSON file written by `cli.py profile`"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise TableError("latency_table", str(path), f"file not found; {problem}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TableError("latency_table", str(path), f"unreadable ({exc.__class__.__name__}); {problem}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
            raise TableError("latency_table", str(path), f"is not a version-{VERSION} table; {problem}")
        try:
            return cls(protocol=data["protocol"], space=data["space"], space_source=data.get("space_source"),
                       parts={str(k): float(v) for k, v in data["parts"].items()}, reference=data["reference"],
                       correction=[float(v) for v in data["correction"]], error=data["error"],
                       profile=data.get("profile", {}), source=str(path))
        except (KeyError, TypeError, ValueError):
            raise TableError("latency_table", str(path), f"misses fields; {problem}") from None

    @property
    def error_bound(self) -> float:
        """The relative error a prediction is trusted to: the largest measured on the held-out networks."""
        return float(self.error["bound_rel"])

    def describe(self) -> str:
        p = Protocol.from_dict(self.protocol)
        e = self.error
        return (f"{p.describe()}; space {self.space.get('name', '?')}; held-out error on {e['n']} networks: median "
                f"{100 * e['median_rel']:.1f}%, max {100 * e['max_rel']:.1f}%, {100 * e['within_10pct']:.0f}% "
                "within +-10%")


# --- profiling


def enumerate_shapes(space) -> list[ArchSpec]:
    """One spec per combination of the latency-relevant free values of the space (each free depth at its
    largest value: depth only repeats a block); TableError for a free field with infinitely many values."""
    from search.space import Free

    frees, slots = [], []
    for field_name, value in space.entries.items():
        entries = value if isinstance(value, list) else [value]
        for index, entry in enumerate(entries):
            if not isinstance(entry, Free) or field_name in IGNORED_FIELDS:
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
        for name in IGNORED_FIELDS[1:]:
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
    the most common activation and norm, and per feature-map side one reference block shape (the median
    width there) on which every other activation/norm pair is timed."""
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
        references.append(shapes[len(shapes) // 2])
    for shape in references:
        todo |= {("block", *shape, act, norm) for act, norm in pairs}
    reference = {"act": ref_act, "norm": ref_norm, "delta_shapes": [list(r) for r in references],
                 "pairs": [f"{a}:{n}" for a, n in pairs], "deltas": {}}
    order = {"stem": 0, "block": 1, "merge": 2, "head": 3}
    return sorted(todo, key=lambda s: (order[s[0]], str(s))), reference


def fit_deltas(parts: dict[str, float], reference: dict[str, Any]) -> dict[str, list[float]]:
    """Per activation/norm pair, what it adds to a block over the reference pair, as [k, d] of
    k * hidden elements + d (least squares over the reference shapes; through zero with fewer than three)."""
    import numpy as np

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
    from .fast_layers import FastBlock, FoldedConv
    from .layers import ChannelLayerNorm

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
        from .fast_layers import in_graph_capture

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
        from .fast_layers import FastFasterNet

        return FastFasterNet.head(self, x)  # the inference form's own head, on these weights


def torch_mode(device: str, threads: int) -> str:
    """The forward mode the torch runtime's inference form uses here (as `inference.for_inference`)."""
    from .fast_layers import onednn_available
    from .inference import fastest_cpu_mode
    from .measure import cpu_threads

    if resolve_device(device).type != "cpu" or not onednn_available():
        return "portable"
    with cpu_threads(threads):
        return fastest_cpu_mode(threads)


def fit_correction(sums: list[float], counts: list[int], measured: list[float], overhead_ms: float) -> list[float]:
    """measured = a * (sum - parts * overhead) + c; the coefficients as [a, -a * overhead, c] of
    `a * sum + b * parts + c`. The overhead is the runtime's cost of one call of an empty part: every part
    timed alone pays it, the whole network once. Two forms compete by leave-one-out relative error over the
    networks: a scale alone (the median ratio, robust to a network timed in a noisy moment) and a scale with
    an offset (least squares on the relative error; it needs MIN_FIT_FOR_OFFSET networks and must keep every
    prediction positive)."""
    import numpy as np

    net = np.array([s - n * overhead_ms for s, n in zip(sums, counts, strict=True)])
    m = np.array(measured)
    forms = [_scale_only] + ([_scale_and_offset] if len(m) >= MIN_FIT_FOR_OFFSET else [])
    best = min(forms, key=lambda form: _leave_one_out(form, net, m))
    a, c = best(net, m)
    return [a, float(-a * overhead_ms), c]


def _scale_only(net, m) -> tuple[float, float]:
    import numpy as np

    return float(np.median(m / net)), 0.0


def _scale_and_offset(net, m) -> tuple[float, float]:
    import numpy as np

    x = np.stack([net, np.ones_like(net)], axis=1) / m[:, None]  # weighted by 1 / measured
    (a, c), *_ = np.linalg.lstsq(x, np.ones_like(m), rcond=None)
    if a <= 0 or a * net.min() + c <= 0:
        return _scale_only(net, m)
    return float(a), float(c)


def _leave_one_out(form, net, m) -> float:
    """Median relative error of `form` predicting each network from the others."""
    import numpy as np

    errors = []
    for i in range(len(m)):
        keep = np.arange(len(m)) != i
        a, c = form(net[keep], m[keep])
        errors.append(abs(a * net[i] + c - m[i]) / m[i])
    return float(np.median(errors))


class _Empty(nn.Module):
    """The smallest part there is: one ReLU on one number (its latency is a runtime's per-call cost)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


def error_summary(predicted: list[float], measured: list[float]) -> dict[str, Any]:
    rel = sorted(abs(p - m) / m for p, m in zip(predicted, measured, strict=True))
    if not rel:
        return {"n": 0, "median_rel": math.nan, "p95_rel": math.nan, "max_rel": math.nan, "within_10pct": math.nan,
                "bound_rel": 0.1}
    p95 = rel[min(len(rel) - 1, math.ceil(0.95 * len(rel)) - 1)]
    return {"n": len(rel), "median_rel": statistics.median(rel), "p95_rel": p95, "max_rel": rel[-1],
            "within_10pct": sum(r <= 0.1 for r in rel) / len(rel), "bound_rel": rel[-1]}


def profile(space, runtime: str = "torch", *, device: str = "cpu", threads: int | None = None,
            fit_specs: int = 16, held_out_specs: int = 16, seed: int = 0,
            part_timing: TimingPolicy = PART_TIMING, model_timing: TimingPolicy = MODEL_TIMING,
            on_progress: Callable[[str, int, int], None] | None = None) -> LatencyTable:
    """Times every part the space can produce in `runtime`, then fits the correction on `fit_specs` whole
    networks sampled from the space and measures its error on `held_out_specs` others."""
    from .measure import default_threads
    from .runtimes import check_available, measure_module_latency, spec_session

    if runtime == "torch-compile":
        raise TableError("runtime", runtime, "cannot be profiled part by part (each of hundreds of parts would be "
                         "compiled); allowed: torch, onnxruntime, openvino")
    found = check_available(runtime, device)
    dev = resolve_device(device)
    threads = default_threads(dev) if threads is None else threads
    started = time.perf_counter()
    shapes = enumerate_shapes(space)
    if not shapes:
        raise TableError("space", space.name, "has no valid network; allowed: a space with at least one")
    todo, reference = plan_parts(shapes)
    mode = torch_mode(device, threads) if runtime == "torch" else "portable"
    parts: dict[str, float] = {}
    for i, signature in enumerate(todo):
        module, shape = part_module(signature, mode)
        channels_last = mode == "onednn" and signature[0] != "stem"
        timing = measure_module_latency(module, shape, runtime, device=device, threads=threads, policy=part_timing,
                                        channels_last=channels_last)
        parts[key(signature)] = timing.median_ms
        if on_progress:
            on_progress("parts", i + 1, len(todo))
    overhead = measure_module_latency(_Empty(), (1, 1, 1), runtime, device=device, threads=threads,
                                      policy=part_timing).median_ms
    reference["deltas"] = fit_deltas(parts, reference)
    label = f"pytorch-eager ({mode})" if runtime == "torch" else runtime
    protocol = Protocol.for_device(dev, input_size=shapes[0].input_size, in_chans=shapes[0].in_chans,
                                   runtime=label, threads=threads, throughput_batch=1, policy=part_timing,
                                   runtime_version=found).to_dict()
    protocol["runtime_name"] = runtime
    table = LatencyTable(protocol=protocol, space=_space_dict(space), space_source=space.source, parts=parts,
                         reference=reference, correction=[1.0, 0.0, 0.0], error={})
    networks = distinct_specs(space.sample_specs(4 * (fit_specs + held_out_specs), seed=seed), fit_specs + held_out_specs)
    sums, counts, measured = [], [], []
    for i, spec in enumerate(networks):
        prediction = table.predict(spec, space)
        with spec_session(spec, runtime, device=device, threads=threads) as session:
            measured.append(session.measure(model_timing).latency_ms)
        sums.append(prediction.parts_ms)
        counts.append(prediction.parts)
        if on_progress:
            on_progress("networks", i + 1, len(networks))
    fit = len(networks) - min(held_out_specs, len(networks) // 2)
    table.correction = fit_correction(sums[:fit], counts[:fit], measured[:fit], overhead)
    a, b, c = table.correction
    predicted = [a * s + b * n + c for s, n in zip(sums[fit:], counts[fit:], strict=True)]
    table.error = error_summary(predicted, measured[fit:])
    table.profile = {"seconds": time.perf_counter() - started, "parts_timed": len(todo), "shapes": len(shapes),
                     "call_overhead_ms": overhead, "fit": {"parts_ms": sums, "parts": counts, "measured_ms": measured},
                     "fit_networks": [dump_name(s) for s in networks[:fit]],
                     "held_out_networks": [dump_name(s) for s in networks[fit:]], "seed": seed,
                     "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                     "space_sha256": hashlib.sha256(json.dumps(table.space, sort_keys=True).encode()).hexdigest()}
    return table


def spec_signature(spec: ArchSpec) -> str:
    """What makes two specs the same network for latency (fields that change it, not the name)."""
    data = spec.to_dict()
    for name in IGNORED_FIELDS:
        data.pop(name, None)
    return json.dumps(data, sort_keys=True)


def dump_name(spec: ArchSpec) -> str:
    return spec_signature(spec)


def distinct_specs(specs: list[ArchSpec], count: int, exclude: set[str] = frozenset()) -> list[ArchSpec]:
    """The first `count` specs whose signatures differ from each other and from those in `exclude`."""
    seen, out = set(exclude), []
    for spec in specs:
        sig = spec_signature(spec)
        if sig not in seen:
            seen.add(sig)
            out.append(spec)
        if len(out) == count:
            break
    return out


def _space_dict(space) -> dict[str, Any]:
    """The space as its YAML content (what `SearchSpace.from_dict` reads back)."""
    from .spec import read_yaml

    if space.source and Path(space.source).is_file():
        return read_yaml(space.source)
    raise TableError("space", space.name, "has no YAML file to record; allowed: a space read from a file")
