"""Making a latency table: every part a space can produce timed against the reference network (T0's
inference form at the space's input, same runtime and threads), then the correction fitted on whole networks,
also timed against it, and its error measured on others held out from that fit. Everything is in reference
units (x T0), so the table does not depend on how fast the machine was while each part was timed; the
reference's calibration, made once here, turns a ratio into ms."""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..cost import count
from ..measure import Protocol, default_threads, resolve_device
from ..paired import PairPolicy, RatioTiming, time_ratio
from ..relative import DEFAULT_REFERENCE, calibrate_session, reference_session
from ..runtimes import ModelSession, check_available, prepared, spec_session, timing_context, timing_device
from ..space import DesignSpace
from ..spec import ArchSpec
from ..spec_io import read_yaml
from .parts import EmptyPart, block_repeats, enumerate_shapes, fit_deltas, part_module, plan_parts, torch_mode
from .table import LatencyTable, TableError, key, spec_signature
from .timing import BlockPolicy, BlockRatio, time_block_ratio

# Parts: interleaved with the reference for a short time each (memoised by signature); whole networks: in
# pairs with it, longer, for the fit and its error.
PART_TIMING = BlockPolicy(warmup=3, min_rounds=7, max_rounds=400, max_time_s=0.6, rel_ci=0.02)
MODEL_TIMING = PairPolicy(warmup=2, min_pairs=7, max_pairs=400, max_time_s=3.0, rel_ci=0.02)
REPEATED_TIME = 4.0  # a block that repeats n times in a network is timed up to min(n / 4, this) x as long
MIN_FIT_FOR_OFFSET = 8  # networks needed to fit an offset besides the scale
MIN_FIT_FOR_DELTAS = 12  # networks needed for the free form (scale, per part, offset, deltas)
SAMPLED_PER_NETWORK = 4  # specs to sample per whole network wanted: repeats of a network are dropped
NETWORKS = 16  # whole networks to fit the correction on, and as many others for the table's error


def check_profilable(space: DesignSpace, runtime: str, device: str = "cpu") -> tuple[str, list[ArchSpec]]:
    """Refuses a runtime that cannot be profiled here or a space with no valid network (TableError), before
    anything is sampled or timed; returns the runtime's version and the space's part shapes."""
    if runtime == "torch-compile":
        raise TableError("runtime", runtime, "cannot be profiled part by part (each of hundreds of parts would be "
                         "compiled); allowed: torch, onnxruntime, openvino")
    found = check_available(runtime, device)
    shapes = enumerate_shapes(space)
    if not shapes:
        raise TableError("space", space.name, "has no valid network; allowed: a space with at least one")
    return found, shapes


def profile(space: DesignSpace, runtime: str = "torch", *, fit_specs: Sequence[ArchSpec] = (),
            held_out_specs: Sequence[ArchSpec] = (), seed: int = 0, device: str = "cpu", threads: int | None = None,
            part_timing: BlockPolicy = PART_TIMING, model_timing: PairPolicy = MODEL_TIMING,
            calibration_window_s: float | None = None,
            on_progress: Callable[[str, int, int], None] | None = None) -> LatencyTable:
    """Times every part the space can produce in `runtime` against the reference, then fits the correction
    on the whole networks `fit_specs` and measures its error on `held_out_specs` (points of the space;
    `split_networks` picks them from sampled specs). `seed`: the seed they were sampled with, recorded in the
    table. `calibration_window_s`: the reference's calibration window (None: `paired`'s default)."""
    found, shapes = check_profilable(space, runtime, device)
    if not fit_specs:
        raise TableError("fit_specs", None, "is empty; allowed: at least one whole network of the space to fit on")
    dev = resolve_device(device)
    threads = default_threads(dev) if threads is None else threads
    started = time.perf_counter()
    todo, reference = plan_parts(shapes)
    repeats = block_repeats(shapes)
    mode = torch_mode(device, threads) if runtime == "torch" else "portable"
    with reference_session(DEFAULT_REFERENCE, runtime, device=device, threads=threads,
                           input_size=shapes[0].input_size, in_chans=shapes[0].in_chans) as t0:
        calibration = calibrate_session(t0, DEFAULT_REFERENCE, window_s=calibration_window_s)
        parts: dict[str, float] = {}
        for i, signature in enumerate(todo):
            module, shape = part_module(signature, mode)
            channels_last = mode == "onednn" and signature[0] != "stem"
            policy = part_policy(part_timing, repeats.get(signature[1:6], 1) if signature[0] == "block" else 1)
            parts[key(signature)] = part_ratio(module, shape, t0, runtime, device=device, threads=threads,
                                               policy=policy, channels_last=channels_last, seed=i).ratio
            if on_progress:
                on_progress("parts", i + 1, len(todo))
        overhead = part_ratio(EmptyPart(), (1, 1, 1), t0, runtime, device=device, threads=threads,
                              policy=part_timing).ratio
        reference["deltas"] = fit_deltas(parts, reference)
        label = f"pytorch-eager ({mode})" if runtime == "torch" else runtime
        protocol = Protocol.for_device(dev, input_size=shapes[0].input_size, in_chans=shapes[0].in_chans,
                                       runtime=label, threads=threads, throughput_batch=1, policy=part_timing,
                                       runtime_version=found).to_dict()
        protocol["runtime_name"] = runtime
        table = LatencyTable(protocol=protocol, space=_space_dict(space), space_source=space.source, parts=parts,
                             reference=reference, correction=[1.0, 0.0, 0.0], error={},
                             calibration=calibration.to_dict())
        networks = [*fit_specs, *held_out_specs]
        measured = []
        for i, spec in enumerate(networks):
            measured.append(network_ratio(spec, t0, runtime, device=device, threads=threads, policy=model_timing,
                                          seed=i).ratio)
            if on_progress:
                on_progress("networks", i + 1, len(networks))
    fit = len(fit_specs)
    sums, counts, deltas = fit_table(table, space, networks, fit, measured, overhead)
    table.profile = {"seconds": time.perf_counter() - started, "parts_timed": len(todo), "shapes": len(shapes),
                     "call_overhead_ratio": overhead,
                     "fit": {"parts_sum": sums, "parts": counts, "deltas_sum": deltas, "measured_ratio": measured,
                             "flops": [count(spec).flops for spec in networks]},
                     "fit_networks": [spec_signature(s) for s in networks[:fit]],
                     "held_out_networks": [spec_signature(s) for s in networks[fit:]], "seed": seed,
                     "part_timing": _policy_dict(part_timing), "model_timing": _policy_dict(model_timing),
                     "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                     "space_sha256": hashlib.sha256(json.dumps(table.space, sort_keys=True).encode()).hexdigest()}
    return table


def fit_table(table: LatencyTable, space: DesignSpace, networks: Sequence[ArchSpec], fit: int,
              measured: list[float], overhead: float) -> tuple[list[float], list[int], list[float]]:
    """Sets the table's correction, fitted on the first `fit` networks' measured ratios, and its error on the
    others; returns each network's parts sum, number of parts and activation/norm deltas sum."""
    sums, counts, deltas = [], [], []
    for spec in networks:
        total, delta, parts = table.sums(spec, space)
        sums.append(total)
        deltas.append(delta)
        counts.append(parts)
    table.correction = fit_correction(sums[:fit], counts[:fit], measured[:fit], overhead, deltas[:fit])
    predicted = [correct(table.correction, s, n, d) for s, n, d in zip(sums, counts, deltas, strict=True)]
    table.error = error_summary(predicted[fit:], measured[fit:])
    return sums, counts, deltas


def refit(table: LatencyTable) -> LatencyTable:
    """The table's correction and error fitted again, by this version's `fit_correction`, on the networks
    and ratios its profile measured (nothing is timed)."""
    profiled = table.profile
    signatures = [*profiled["fit_networks"], *profiled["held_out_networks"]]
    networks = [ArchSpec.from_dict(json.loads(sig) | {"name": f"network{i}"}) for i, sig in enumerate(signatures)]
    sums, counts, deltas = fit_table(table, table.space_object(), networks, len(profiled["fit_networks"]),
                                     profiled["fit"]["measured_ratio"], profiled["call_overhead_ratio"])
    profiled["fit"].update(parts_sum=sums, parts=counts, deltas_sum=deltas)
    return table


def part_policy(policy: BlockPolicy, repeats: int) -> BlockPolicy:
    """A part that repeats in a network (a block of a deep stage) timed longer and to a tighter interval:
    its error is made as many times over."""
    factor = min(max(repeats / 4, 1.0), REPEATED_TIME)
    if factor == 1.0:
        return policy
    return replace(policy, max_time_s=policy.max_time_s * factor, rel_ci=policy.rel_ci / 2,
                   max_rounds=int(policy.max_rounds * factor))


def part_ratio(module: nn.Module, input_shape: tuple[int, ...], reference: ModelSession, runtime: str, *,
               device: str, threads: int, policy: BlockPolicy, channels_last: bool = False,
               seed: int = 0) -> BlockRatio:
    """One part's cost as a ratio to the prepared reference (`timing.time_block_ratio`), in `runtime`."""
    with prepared(module, input_shape, runtime, device, threads, channels_last=channels_last) as run_batch, \
            timing_context(runtime, device, threads), reference.timing():
        return time_block_ratio(run_batch(1), reference.run_batch(1), timing_device(runtime, device), policy,
                                seed=seed)


def network_ratio(spec: ArchSpec, reference: ModelSession, runtime: str, *, device: str, threads: int | None,
                  policy: PairPolicy, seed: int = 0) -> RatioTiming:
    """A whole network's median per-pair ratio to the prepared reference (`paired.time_ratio`)."""
    with spec_session(spec, runtime, device=device, threads=threads) as candidate, candidate.timing(), \
            reference.timing():
        return time_ratio(candidate.run_batch(1), reference.run_batch(1), candidate.timing_device, policy, seed=seed)


def _policy_dict(policy: Any) -> dict[str, Any]:
    return dict(vars(policy))


def split_networks(candidates: Sequence[ArchSpec], fit: int, held_out: int) -> tuple[list[ArchSpec], list[ArchSpec]]:
    """The first `fit + held_out` distinct networks of `candidates` (sample SAMPLED_PER_NETWORK times as many),
    split into those to fit the correction on and those to measure its error on. With fewer networks than
    asked for, the fit keeps at least half of them."""
    networks = distinct_specs(candidates, fit + held_out)
    cut = len(networks) - min(held_out, len(networks) // 2)
    return networks[:cut], networks[cut:]


def distinct_specs(specs: Sequence[ArchSpec], count: int, exclude: set[str] = frozenset()) -> list[ArchSpec]:
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


def fit_correction(sums: list[float], counts: list[int], measured: list[float], overhead: float,
                   deltas: list[float] | None = None) -> list[float]:
    """The coefficients [a, b, c, d] of `a * sum + b * parts + c + d * deltas` (`correct`; any one unit: the
    table's is the reference's). `deltas`: what the networks' activation/norm pairs add to their blocks over the
    reference pair (a part of `sums`). Three forms compete by leave-one-out relative error over the networks:
    - a scale alone of the sum less one call overhead per part (the median ratio, robust to a network timed in
      a noisy moment): the overhead is the runtime's cost of one call of an empty part, which every part timed
      on its own pays and the whole network once;
    - that scale with an offset (least squares on the relative error; MIN_FIT_FOR_OFFSET networks);
    - a free scale, cost per part, offset and extra scale of the deltas (MIN_FIT_FOR_DELTAS networks): the
      deltas are small differences of two timings, timed on a few shapes and extrapolated, and a network's
      per-block cost is not the same as its part's alone.
    A form that would predict a non-positive ratio for a fit network is not used."""
    s, n, m = np.array(sums, dtype=float), np.array(counts, dtype=float), np.array(measured, dtype=float)
    d = np.zeros_like(s) if deltas is None else np.array(deltas, dtype=float)
    forms = [_scale_only]
    if len(m) >= MIN_FIT_FOR_OFFSET:
        forms.append(_scale_and_offset)
    if len(m) >= MIN_FIT_FOR_DELTAS and np.any(d):
        forms.append(_free)
    best = min(forms, key=lambda form: _leave_one_out(form, s, n, d, m, overhead))
    return [float(v) for v in best(s, n, d, m, overhead)]


def correct(coefficients: list[float], total: float, parts: int, deltas: float = 0.0) -> float:
    """A prediction from a table's correction (3 coefficients: a version-1 table's, no deltas term)."""
    a, b, c, *rest = coefficients
    return a * total + b * parts + c + (rest[0] * deltas if rest else 0.0)


def _scale_only(s, n, d, m, overhead) -> tuple[float, ...]:
    a = float(np.median(m / (s - n * overhead)))
    return a, -a * overhead, 0.0, 0.0


def _scale_and_offset(s, n, d, m, overhead) -> tuple[float, ...]:
    net = s - n * overhead
    x = np.stack([net, np.ones_like(net)], axis=1) / m[:, None]  # weighted by 1 / measured
    (a, c), *_ = np.linalg.lstsq(x, np.ones_like(m), rcond=None)
    if a <= 0 or a * net.min() + c <= 0:
        return _scale_only(s, n, d, m, overhead)
    return float(a), float(-a * overhead), float(c), 0.0


def _free(s, n, d, m, overhead) -> tuple[float, ...]:
    x = np.stack([s, n, np.ones_like(s), d], axis=1) / m[:, None]
    coefficients, *_ = np.linalg.lstsq(x, np.ones_like(m), rcond=None)
    if coefficients[0] <= 0 or np.min(x * m[:, None] @ coefficients) <= 0:
        return _scale_and_offset(s, n, d, m, overhead)
    return tuple(float(v) for v in coefficients)


def _leave_one_out(form, s, n, d, m, overhead) -> float:
    """Median relative error of `form` predicting each network from the others."""
    errors = []
    for i in range(len(m)):
        keep = np.arange(len(m)) != i
        coefficients = form(s[keep], n[keep], d[keep], m[keep], overhead)
        errors.append(abs(correct(list(coefficients), s[i], n[i], d[i]) - m[i]) / m[i])
    return float(np.median(errors))


def error_summary(predicted: list[float], measured: list[float]) -> dict[str, Any]:
    rel = sorted(abs(p - m) / m for p, m in zip(predicted, measured, strict=True))
    if not rel:
        return {"n": 0, "median_rel": math.nan, "p95_rel": math.nan, "max_rel": math.nan, "within_10pct": math.nan,
                "bound_rel": 0.1}
    p95 = rel[min(len(rel) - 1, math.ceil(0.95 * len(rel)) - 1)]
    return {"n": len(rel), "median_rel": statistics.median(rel), "p95_rel": p95, "max_rel": rel[-1],
            "within_10pct": sum(r <= 0.1 for r in rel) / len(rel), "bound_rel": rel[-1]}


def _space_dict(space: DesignSpace) -> dict[str, Any]:
    """The space as its YAML content (what `DesignSpace.from_dict` reads back)."""
    if space.source and Path(space.source).is_file():
        return read_yaml(space.source)
    raise TableError("space", space.name, "has no YAML file to record; allowed: a space read from a file")
