"""A latency table and its predictions: a spec's parts (from its numbers alone, no network is built) summed
from the table's part timings, then corrected: `a * sum(parts) + b * number_of_parts + c + d * deltas`
(deltas: what the blocks' activation/norm pair adds over the reference pair, a part of the sum).

Units: a version-2 table holds every number as a ratio to its reference network (T0 at the space's input,
same runtime and threads), with the reference's calibration: a prediction is that ratio, and in ms that
ratio x the calibrated ms. A version-1 table (parts timed alone, in ms) is still read; its predictions
have no ratio.

How the parts are timed: `parts`; how a table is made (the correction fitted on whole networks, its error
measured on others held out from that fit): `profile`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..measure import Protocol, device_name, resolve_device
from ..space import DesignSpace
from ..spec import LATENCY_NEUTRAL_FIELDS, ArchSpec, network_key, partial_channels

FORMAT = "fasternet-space latency table"
VERSION = 2  # parts and correction in reference units, with the reference's calibration
VERSIONS = (1, 2)  # what `load` reads (1: parts and correction in ms, no calibration)


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


def spec_signature(spec: ArchSpec) -> str:
    """What makes two specs the same network for latency (fields that change it, not the name)."""
    return network_key(spec, ignoring=LATENCY_NEUTRAL_FIELDS)


@dataclass(frozen=True)
class Prediction:
    name: str
    latency_ms: float  # ratio x the table's calibration (a version-1 table: its ms)
    parts_sum: float  # the plain sum of the parts, in the table's units (x the reference; version 1: ms)
    parts: int  # how many parts (blocks counted once each)
    ratio: float | None = None  # x the reference network (None: a version-1 table)


@dataclass
class LatencyTable:
    protocol: dict[str, Any]  # Protocol.to_dict() of the part timings (device name, runtime + version, threads)
    space: dict[str, Any]  # the space's YAML content, as profiled
    space_source: str | None
    parts: dict[str, float]  # part key -> median ratio to the reference network (version 1: ms)
    reference: dict[str, Any]  # reference act/norm and, per block group, the reference (c_p, hidden)
    correction: list[float]  # a, b, c[, d] of a * sum + b * parts + c + d * deltas (`profile.fit_correction`)
    error: dict[str, Any]  # held-out error (relative): n, median_rel, p95_rel, max_rel, within_10pct, bound_rel
    profile: dict[str, Any] = field(default_factory=dict)  # seconds, parts timed, specs fitted / held out
    source: str | None = None  # the file it was read from
    # paired.Calibration.to_dict() of the reference network, made once while profiling; None: a version-1
    # table, whose numbers are ms
    calibration: dict[str, Any] | None = None

    @property
    def version(self) -> int:
        return 1 if self.calibration is None else VERSION

    @property
    def calibration_ms(self) -> float | None:
        return None if self.calibration is None else float(self.calibration["ms"])

    @property
    def reference_name(self) -> str | None:
        return None if self.calibration is None else str(self.calibration["reference"])

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

    def space_object(self) -> DesignSpace:
        return DesignSpace.from_dict(self.space, source=self.space_source)

    def predict(self, spec: ArchSpec, space: DesignSpace | None = None) -> Prediction:
        """The spec's predicted latency; TableError when it is not a point of the table's space."""
        space = space or self.space_object()
        if not space.contains(spec):
            raise TableError("spec", spec.name, f"is not a point of the table's space {space.name!r}; allowed: "
                             "a spec of that space, or a table profiled for the spec's space")
        total, deltas, count = self.sums(spec, space)
        a, b, c, *rest = self.correction
        value = a * total + b * count + c + (rest[0] * deltas if rest else 0.0)
        if self.calibration is None:
            return Prediction(spec.name, value, total, count)
        return Prediction(spec.name, value * self.calibration_ms, total, count, ratio=value)

    def sums(self, spec: ArchSpec, space: DesignSpace | None = None) -> tuple[float, float, int]:
        """The spec's parts summed (in the table's units), what its blocks' activation/norm pair adds over the
        reference pair (a part of that sum), and how many parts."""
        total = deltas = 0.0
        count = 0
        for signature, times in decompose(spec):
            total += times * self.part_value(signature, spec.name)
            if signature[0] == "block":
                deltas += times * self.block_delta(signature, spec.name)
            count += times
        return total, deltas, count

    def prediction_row(self, label: str, spec: ArchSpec, space: DesignSpace | None = None) -> dict[str, Any]:
        """What `predict` shows of one spec (`label`: as the user named it), with how long predicting took."""
        start = time.perf_counter()
        prediction = self.predict(spec, space)
        return {"spec": label, "name": spec.name, "latency_ms": prediction.latency_ms, "ratio": prediction.ratio,
                "reference": self.reference_name, "calibration_ms": self.calibration_ms,
                "parts_sum": prediction.parts_sum, "parts": prediction.parts, "source": "predicted",
                "predict_us": (time.perf_counter() - start) * 1e6}

    def part_value(self, signature: Signature, name: str = "spec") -> float:
        """One part's stored figure, in the table's units (x the reference; version 1: ms)."""
        if signature[0] != "block":
            return self._stored(signature, name)
        *shape, act, norm = signature
        return self._stored((*shape, self.reference["act"], self.reference["norm"]), name) + self.block_delta(
            signature, name)

    def block_delta(self, signature: Signature, name: str = "spec") -> float:
        """What a block's activation/norm pair adds over the reference pair (fitted per pair, see `parts`)."""
        *shape, act, norm = signature
        if (act, norm) == (self.reference["act"], self.reference["norm"]):
            return 0.0
        line = self.reference["deltas"].get(f"{act}:{norm}")
        if line is None:
            raise TableError("spec", name, f"uses activation {act} with norm {norm}, which the table did not time; "
                             "allowed: specs of the table's space")
        return line[0] * shape[5] * shape[2] ** 2 + line[1]

    def _stored(self, signature: Signature, name: str) -> float:
        found = self.parts.get(key(signature))
        if found is None:
            raise TableError("spec", name, f"needs part {key(signature)}, which the table did not time; allowed: "
                             "specs of the table's space")
        return found

    # --- file

    def to_dict(self) -> dict[str, Any]:
        calibration = {} if self.calibration is None else {"calibration": self.calibration}
        return {"format": FORMAT, "version": self.version, "protocol": self.protocol, "space": self.space,
                "space_source": self.space_source, **calibration, "correction": self.correction, "error": self.error,
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
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise TableError("latency_table", str(path), f"is not a latency table; {problem}")
        if data.get("version") not in VERSIONS:
            raise TableError("latency_table", str(path), f"is a version-{data.get('version')} table; allowed: "
                             f"versions {', '.join(map(str, VERSIONS))} (re-profile with `cli.py profile`)")
        try:
            calibration = data["calibration"] if data["version"] > 1 else None
            if calibration is not None and not float(calibration["ms"]) > 0:
                raise ValueError("calibration")
            return cls(protocol=data["protocol"], space=data["space"], space_source=data.get("space_source"),
                       parts={str(k): float(v) for k, v in data["parts"].items()}, reference=data["reference"],
                       correction=[float(v) for v in data["correction"]], error=data["error"],
                       profile=data.get("profile", {}), source=str(path), calibration=calibration)
        except (KeyError, TypeError, ValueError):
            raise TableError("latency_table", str(path), f"misses fields; {problem}") from None

    @property
    def error_bound(self) -> float:
        """The relative error a prediction is trusted to (unit-free): the largest measured on the held-out
        networks."""
        return float(self.error["bound_rel"])

    def describe(self) -> str:
        p = Protocol.from_dict(self.protocol)
        e = self.error
        units = ("version 1, in ms (timed alone)" if self.calibration is None else
                 f"x {self.reference_name} ({self.reference_name} calibrated at {self.calibration_ms:.2f} ms, "
                 f"{self.calibration.get('at', '?')})")
        return (f"{p.describe()}; space {self.space.get('name', '?')}; units {units}; held-out error on {e['n']} "
                "networks: median "
                f"{100 * e['median_rel']:.1f}%, max {100 * e['max_rel']:.1f}%, {100 * e['within_10pct']:.0f}% "
                "within +-10%")
