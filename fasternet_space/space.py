"""DesignSpace: a spaces/*.yaml file whose fields are fixed values or free ranges/choices (DESIGN.md).

A plain value fixes a field; a mapping frees it: `{choices: [...]}` or `{low: L, high: H}` with
optional `step` and `log`. Per-stage fields take a list, each entry fixed or free. A free entry's
parameter name is the field name, or `field[i]` for a per-stage entry. Sampling: `search.space`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Self

from .spec import FIELD_RULES, PER_STAGE_FIELDS, ArchSpec, SpecError
from .spec_io import read_yaml

SPEC_FIELDS = [f.name for f in fields(ArchSpec)]
RANGE_KEYS = {"low", "high", "step", "log"}


@dataclass(frozen=True)
class Free:
    """One free parameter: a list of choices, or an int/float range."""

    param: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    integer: bool = False

    def contains(self, value: Any) -> bool:
        if self.choices is not None:
            return any(value == c and type(value) is type(c) or same_number(value, c) for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not self.low - 1e-12 <= value <= self.high + 1e-12:
            return False
        if self.integer and float(value) != int(value):
            return False
        if self.step:
            k = (value - self.low) / self.step
            return abs(k - round(k)) < 1e-9
        return True

    def grid_values(self) -> list[Any] | None:
        """Every value, where the set is finite (choices, int ranges, stepped float ranges)."""
        if self.choices is not None:
            return list(self.choices)
        if self.log:
            return None
        if self.integer:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step:
            n = int(math.floor((self.high - self.low) / self.step + 1e-9))
            return [self.low + i * self.step for i in range(n + 1)]
        return None


def same_number(a: Any, b: Any) -> bool:
    """Whether both are numbers (not booleans) of equal value, whatever their types (2 and 2.0)."""
    numbers = int | float
    return (isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool)
            and not isinstance(b, bool) and float(a) == float(b))


class DesignSpace:
    """Fields of ArchSpec, each fixed or free: which specs are points of it, and the grid of its free values."""

    def __init__(self, entries: dict[str, Any], name: str = "space", source: str | None = None):
        self.name = name
        self.source = source
        self.entries = entries  # field -> value | Free | list[value | Free]

    @classmethod
    def from_yaml(cls, path: str | Path) -> Self:
        data = read_yaml(path)
        try:
            return cls.from_dict(data, source=str(path))
        except SpecError as exc:
            raise exc.in_file(str(path)) from None

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | None = None) -> Self:
        data = dict(data)
        name = data.pop("name", None) or (Path(source).stem if source else "space")
        if not isinstance(name, str):
            raise SpecError("name", f"{name!r} is not allowed; allowed: a string")
        entries: dict[str, Any] = {}
        for key, value in data.items():
            if key not in SPEC_FIELDS:
                raise SpecError(str(key), "unknown field; allowed: " + ", ".join(SPEC_FIELDS))
            if key in PER_STAGE_FIELDS and isinstance(value, list):
                entries[key] = [_parse_entry(f"{key}[{i}]", key, v) for i, v in enumerate(value)]
            elif key in PER_STAGE_FIELDS and key != "partial_ratio" and not isinstance(value, list):
                raise SpecError(key, "allowed: a list with one entry per stage (each a value or a range/choices)")
            else:
                entries[key] = _parse_entry(key, key, value)
        space = cls(entries, name=name, source=source)
        space._check_stage_counts()
        return space

    def _check_stage_counts(self) -> None:
        depths = self.entries.get("depths")
        stages = len(depths) if isinstance(depths, list) else 4
        for key in PER_STAGE_FIELDS:
            value = self.entries.get(key)
            if isinstance(value, list) and len(value) != stages:
                raise SpecError(key, f"has {len(value)} entries; allowed: one per stage ({stages})")

    @property
    def free_params(self) -> list[Free]:
        out = []
        for value in self.entries.values():
            for entry in value if isinstance(value, list) else [value]:
                if isinstance(entry, Free):
                    out.append(entry)
        return out

    def contains(self, spec: ArchSpec) -> bool:
        return self.params_for(spec) is not None

    def params_for(self, spec: ArchSpec) -> dict[str, Any] | None:
        """The free parameters whose values make this space's point `spec` (for `study.enqueue_trial`), or None."""
        target = spec.to_dict()
        target.pop("name")
        defaults = _defaults()
        params: dict[str, Any] = {}
        for key in SPEC_FIELDS[1:]:  # every field but the name, in declaration order
            wanted = target.get(key)
            entry = self.entries.get(key, defaults.get(key))
            if isinstance(entry, list) or (key in PER_STAGE_FIELDS and isinstance(wanted, list)):
                if not isinstance(entry, list):
                    entry = [entry] * len(wanted) if not isinstance(entry, Free) else None
                if entry is None or not isinstance(wanted, list) or len(wanted) != len(entry):
                    return None
                pairs = list(zip(entry, wanted, strict=True))
            else:
                pairs = [(entry, wanted)]
            for e, w in pairs:
                if isinstance(e, Free):
                    if not e.contains(w):
                        return None
                    params[e.param] = _as_choice(e, w)
                elif not (e == w or same_number(e, w)):
                    return None
        return params

    def grid(self) -> dict[str, list[Any]] | None:
        """Optuna's GridSampler search space, where every free parameter has finitely many values."""
        grid = {}
        for free in self.free_params:
            values = free.grid_values()
            if values is None:
                return None
            grid[free.param] = values
        return grid

    def grid_size(self) -> int | None:
        grid = self.grid()
        return None if grid is None else math.prod(len(v) for v in grid.values())


@functools.cache
def _defaults() -> dict[str, Any]:
    """ArchSpec's default values (read, never changed)."""
    return ArchSpec().to_dict()


def _as_choice(free: Free, value: Any) -> Any:
    if free.choices is not None:
        for c in free.choices:
            if c == value or same_number(c, value):
                return c
    return value


def _parse_entry(param: str, field: str, value: Any) -> Any:
    rule = FIELD_RULES.get(field)
    if not isinstance(value, dict):
        if rule is not None:
            rule.check(param, value)
        return value
    keys = set(value)
    if keys == {"choices"}:
        choices = value["choices"]
        if not isinstance(choices, list) or not choices:
            raise SpecError(param, "choices must be a non-empty list")
        if rule is not None:
            choices = [rule.check(param, c) for c in choices]
        return Free(param, choices=tuple(choices))
    if "low" in keys and "high" in keys and keys <= RANGE_KEYS:
        if rule is None or rule.kind == "str":
            raise SpecError(param, "a range is not allowed for this field; allowed: {choices: [...]}")
        low, high = rule.check(param, value["low"]), rule.check(param, value["high"])
        if low > high:
            raise SpecError(param, f"low {low} is above high {high}; allowed: low <= high")
        step = value.get("step")
        log = value.get("log", False)
        if not isinstance(log, bool):
            raise SpecError(param, f"log {log!r} is not allowed; allowed: true or false")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int | float) or step <= 0):
            raise SpecError(param, f"step {step!r} is not allowed; allowed: a positive number")
        if log and (step is not None or low <= 0):
            raise SpecError(param, "log ranges need low > 0 and no step")
        integer = rule.kind == "int"
        if integer and step is not None and float(step) != int(step):
            raise SpecError(param, f"step {step!r} is not allowed for an integer field; allowed: a positive integer")
        return Free(param, low=low, high=high, step=step, log=log, integer=integer)
    raise SpecError(param, f"{value!r} is not allowed; allowed: a value, {{choices: [...]}} or "
                           "{low: L, high: H} with optional step and log")
