"""ArchSpec: the frozen, validated description of one FasterNet network, and when two specs are the same network.

One schema serves specs and spaces (DESIGN.md): a YAML file maps field -> value. A spec file is a
space whose fields are all fixed, so the rules for one field's value live here, in FIELD_RULES, and
`fasternet_space.space` reuses them for the choices and ranges of a free field. Files: `spec_io`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from dataclasses import dataclass, fields
from typing import Any

ACTIVATIONS = ("relu", "gelu", "silu", "hardswish")
NORMS = ("bn", "ln")
PCONV_FORWARDS = ("split_cat", "slicing")
PER_STAGE_FIELDS = ("widths", "depths", "partial_ratio")


class SpecError(ValueError):
    """A spec or space value that is not allowed; the message names the field and what is allowed."""

    def __init__(self, field: str | None, problem: str, source: str | None = None):
        self.field = field
        self.problem = problem
        self.source = source
        where = f"{source}: " if source else ""
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}{what}{problem}")

    def in_file(self, source: str) -> SpecError:
        return SpecError(self.field, self.problem, source)


@dataclass(frozen=True)
class FieldRule:
    """What one scalar value of a field may be."""

    kind: str  # "int", "float", "str"
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    low_open: bool = False  # True: value must be > low rather than >= low

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        kind = "an integer" if self.kind == "int" else "a number"
        if self.low is not None and self.high is not None:
            op = ">" if self.low_open else ">="
            return f"{kind} {op} {_fmt(self.low)} and <= {_fmt(self.high)}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {_fmt(self.low)}"
        return kind

    def check(self, field: str, value: Any) -> Any:
        """The value converted to the field's type, or SpecError naming what is allowed."""
        if self.kind == "str":
            if not isinstance(value, str) or value not in (self.choices or ()):
                raise SpecError(field, f"{value!r} is not allowed; allowed: {self.describe()}")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(field, f"{value!r} is not {self.describe()}")
        if self.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise SpecError(field, f"{value!r} is not {self.describe()}")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise SpecError(field, f"{value!r} is not {self.describe()}")
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and value > self.high
        if too_low or too_high:
            raise SpecError(field, f"{_fmt(value)} is out of range; allowed: {self.describe()}")
        return value


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


FIELD_RULES: dict[str, FieldRule] = {
    "embed_dim": FieldRule("int", 1, 4096),
    "widths": FieldRule("int", 1, 8192),
    "depths": FieldRule("int", 0, 64),
    "partial_ratio": FieldRule("float", 0, 1, low_open=True),
    "kernel_size": FieldRule("int", 1, 15),
    "mlp_ratio": FieldRule("float", 0, 16, low_open=True),
    "act": FieldRule("str", choices=ACTIVATIONS),
    "norm": FieldRule("str", choices=NORMS),
    "feature_dim": FieldRule("int", 1, 16384),
    "patch_size": FieldRule("int", 1, 32),
    "patch_stride": FieldRule("int", 1, 32),
    "merge_size": FieldRule("int", 1, 8),
    "merge_stride": FieldRule("int", 1, 8),
    "in_chans": FieldRule("int", 1, 64),
    "num_classes": FieldRule("int", 1, 100000),
    "input_size": FieldRule("int", 1, 4096),
    "drop_path_rate": FieldRule("float", 0, 1),
    "layer_scale_init_value": FieldRule("float", 0, 10),
    "pconv_forward": FieldRule("str", choices=PCONV_FORWARDS),
}

# Fields that leave some sense of "the same network" unchanged; each use ignores a union of these groups.
IDENTITY_FIELDS = ("name",)  # names a network, changes nothing in it
TRAINING_ONLY_FIELDS = ("drop_path_rate",)  # changes the training, not the trained network
FORWARD_FORM_FIELDS = ("pconv_forward",)  # the same computation written another way (split + cat, or slicing)
FOLDED_FIELDS = ("layer_scale_init_value",)  # a trained per-channel scale the inference form folds into a conv
TASK_FIELDS = ("in_chans", "num_classes", "input_size")  # the data it is applied to: input and head, not the body
# The same architecture (a named config under another name, another task or training): `named_label`.
ARCHITECTURE_NEUTRAL_FIELDS = IDENTITY_FIELDS + TRAINING_ONLY_FIELDS + FORWARD_FORM_FIELDS + TASK_FIELDS
# The same deployed latency (the inference form is the same graph): the latency table's parts and networks.
LATENCY_NEUTRAL_FIELDS = IDENTITY_FIELDS + TRAINING_ONLY_FIELDS + FORWARD_FORM_FIELDS + FOLDED_FIELDS


@dataclass(frozen=True)
class ArchSpec:
    """One FasterNet network. `widths` None means doubling from `embed_dim` at every stage."""

    name: str = "custom"
    embed_dim: int = 96
    widths: tuple[int, ...] | None = None
    depths: tuple[int, ...] = (1, 2, 8, 2)
    partial_ratio: float | tuple[float, ...] = 0.25
    kernel_size: int = 3
    mlp_ratio: float = 2.0
    act: str = "relu"
    norm: str = "bn"
    feature_dim: int = 1280
    patch_size: int = 4
    patch_stride: int = 4
    merge_size: int = 2
    merge_stride: int = 2
    in_chans: int = 3
    num_classes: int = 1000
    input_size: int = 224
    drop_path_rate: float = 0.0
    layer_scale_init_value: float = 0.0
    pconv_forward: str = "split_cat"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SpecError("name", f"{self.name!r} is not allowed; allowed: a non-empty string")
        for f in fields(self):
            if f.name == "name" or (f.name == "widths" and self.widths is None):
                continue
            value = getattr(self, f.name)
            if f.name in PER_STAGE_FIELDS and not (f.name == "partial_ratio" and _is_scalar(value)):
                value = self._check_list(f.name, value)
            else:
                value = FIELD_RULES[f.name].check(f.name, value)
            object.__setattr__(self, f.name, value)
        self._check_consistency()

    def _check_list(self, field: str, value: Any) -> tuple:
        if not isinstance(value, list | tuple):
            raise SpecError(field, f"{value!r} is not allowed; allowed: a list of one value per stage")
        if field == "depths" and not 1 <= len(value) <= 8:
            raise SpecError(field, f"has {len(value)} entries; allowed: 1 to 8 stages")
        if field != "depths" and len(value) != len(self.depths):
            raise SpecError(field, f"has {len(value)} entries; allowed: one per stage ({len(self.depths)})")
        return tuple(FIELD_RULES[field].check(f"{field}[{i}]", v) for i, v in enumerate(value))

    def _check_consistency(self) -> None:
        if self.widths is not None and self.widths[0] != self.embed_dim:
            raise SpecError("embed_dim", f"{self.embed_dim} differs from widths[0] = {self.widths[0]}; "
                                         "allowed: equal to widths[0] (or leave embed_dim out)")
        if sum(self.depths) == 0:
            raise SpecError("depths", "all stages are empty; allowed: at least one block in total")
        for i, (width, ratio) in enumerate(zip(self.stage_widths, self.stage_partial_ratios, strict=True)):
            if partial_channels(width, ratio) < 1:
                field = "partial_ratio" if _is_scalar(self.partial_ratio) else f"partial_ratio[{i}]"
                raise SpecError(field, f"gives c_p = floor({width} * {ratio:g}) = 0 at stage {i + 1}; "
                                       f"allowed: a ratio >= {1 / width:.4g} for width {width}")
            if int(width * self.mlp_ratio) < 1:
                raise SpecError("mlp_ratio", f"{self.mlp_ratio:g} gives an empty hidden layer at stage {i + 1}; "
                                             f"allowed: >= {1 / width:.4g}")
        if self.kernel_size % 2 == 0:
            raise SpecError("kernel_size", f"{self.kernel_size} is even; allowed: an odd integer (keeps the size)")
        if self.input_size < self.min_input_size():
            smallest = self.min_input_size()
            allowed = (f"allowed: >= {smallest}" if smallest <= FIELD_RULES["input_size"].high else
                       "no input size works: allowed: fewer stages or smaller patch/merge sizes")
            raise SpecError("input_size", f"{self.input_size} shrinks to nothing before the last stage; {allowed}")

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def stage_widths(self) -> tuple[int, ...]:
        if self.widths is not None:
            return self.widths
        return tuple(self.embed_dim * 2**i for i in range(self.num_stages))

    @property
    def stage_partial_ratios(self) -> tuple[float, ...]:
        if _is_scalar(self.partial_ratio):
            return (float(self.partial_ratio),) * self.num_stages
        return tuple(self.partial_ratio)

    @property
    def partial_channels(self) -> tuple[int, ...]:
        """c_p per stage: the channels the PConv convolves."""
        return tuple(partial_channels(c, r) for c, r in zip(self.stage_widths, self.stage_partial_ratios, strict=True))

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        return tuple(int(c * self.mlp_ratio) for c in self.stage_widths)

    @property
    def feature_sizes(self) -> tuple[int, ...]:
        """Square feature-map side at each stage for the spec's input size."""
        return self.feature_sizes_at(self.input_size)

    def feature_sizes_at(self, input_size: int) -> tuple[int, ...]:
        size = conv_out(input_size, self.patch_size, self.patch_stride)
        sizes = [size]
        for _ in range(self.num_stages - 1):
            size = conv_out(size, self.merge_size, self.merge_stride)
            sizes.append(size)
        return tuple(sizes)

    def min_input_size(self) -> int:
        """The smallest input side that leaves every stage at least one pixel (inverting conv_out)."""
        size = 1
        for _ in range(self.num_stages - 1):
            size = (size - 1) * self.merge_stride + self.merge_size
        return (size - 1) * self.patch_stride + self.patch_size

    def replace(self, **changes: Any) -> ArchSpec:
        data = self.to_dict()
        data.update(changes)
        if "embed_dim" in changes and "widths" not in changes:
            data.pop("widths", None)
        return ArchSpec.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-ready values in field order; `widths` left out when it is the default doubling."""
        data = {}
        for f in fields(self):  # every value is immutable (numbers, strings, tuples): no deep copy needed
            key, value = f.name, getattr(self, f.name)
            if key == "widths" and value is None:
                continue
            data[key] = list(value) if isinstance(value, tuple) else value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchSpec:
        if not isinstance(data, dict):
            raise SpecError(None, f"expected a mapping of field: value, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(map(str, data)) - known)
        if unknown:
            raise SpecError(unknown[0], "unknown field; allowed: " + ", ".join(f.name for f in fields(cls)))
        for key, value in data.items():
            if isinstance(value, dict):
                raise SpecError(key, "is free (a range or choices); a spec needs every field fixed, "
                                     "so search it with `cli.py search --space` instead")
        values = dict(data)
        if values.get("widths") is not None and "embed_dim" not in values and isinstance(values["widths"], list | tuple):
            values["embed_dim"] = values["widths"][0] if values["widths"] else 0
        for key in PER_STAGE_FIELDS:
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)


def partial_channels(width: int, ratio: float) -> int:
    # The small epsilon keeps e.g. 96 * (1/3) from flooring to 31 through float rounding.
    return math.floor(width * ratio + 1e-9)


def conv_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1 if size >= kernel else 0


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, list | tuple)


def network_key(spec: ArchSpec | dict[str, Any], ignoring: Collection[str] = IDENTITY_FIELDS) -> str:
    """The spec's fields but `ignoring`, as canonical JSON (sorted keys): equal keys, the same network.

    `widths` is taken as written (absent when it is the default doubling), as stored keys have always been;
    `same_network` also counts the default doubling equal to the same widths written out.
    """
    return json.dumps(_kept_fields(spec.to_dict() if isinstance(spec, ArchSpec) else spec, ignoring), sort_keys=True)


def same_network(a: ArchSpec, b: ArchSpec, ignoring: Collection[str] = IDENTITY_FIELDS) -> bool:
    """Whether the specs agree on every field but `ignoring`, widths compared per stage (given or doubling)."""
    return _kept_fields(_widths_written_out(a), ignoring) == _kept_fields(_widths_written_out(b), ignoring)


def _kept_fields(data: dict[str, Any], ignoring: Collection[str]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in ignoring}


def _widths_written_out(spec: ArchSpec) -> dict[str, Any]:
    data = spec.to_dict()
    data.setdefault("widths", list(spec.stage_widths))
    return data
