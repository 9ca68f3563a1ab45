"""Specs as YAML files: read a spec (or a named config by name), write one back."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .named import find_named, named_names
from .spec import ArchSpec, SpecError


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file, or SpecError naming the file and what is wrong with it."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(None, "file not found", str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(None, f"cannot be read ({exc.__class__.__name__})", str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise SpecError(None, f"is not valid YAML{line}", str(path)) from None
    if not isinstance(data, dict):
        raise SpecError(None, "expected a YAML mapping of field: value", str(path))
    return data


def load_spec(path: str | Path) -> ArchSpec:
    """The ArchSpec in a spec YAML file, or the named config of that name (`t0`, `T0`, `fasternet_t0`).

    A path that exists is always read as a file; otherwise a named-config name gives that config (the
    same values as the shipped `spaces/fasternet_*.yaml`); otherwise a one-line SpecError says the file
    is not found and lists the names allowed. Invalid content: SpecError naming the file and field.
    """
    if not Path(path).exists():
        named = find_named(str(path)) if Path(path).name == str(path) else None
        if named is not None:
            return named
        raise SpecError(None, f"file not found, and not a named config; allowed names: {named_names()}", str(path))
    data = read_yaml(path)
    try:
        return ArchSpec.from_dict(data)
    except SpecError as exc:
        raise exc.in_file(str(path)) from None
    except TypeError as exc:  # e.g. a list given for a scalar field reaching the dataclass
        raise SpecError(None, str(exc), str(path)) from None


def dump_spec(spec: ArchSpec) -> str:
    """The spec as YAML text, fields in schema order; load_spec reads it back to an equal spec."""
    return yaml.safe_dump(spec.to_dict(), sort_keys=False, default_flow_style=None)


def save_spec(spec: ArchSpec, path: str | Path, comments: Sequence[str] = ()) -> Path:
    """Writes dump_spec(spec) to `path` (creating its folder), after `comments` as YAML comment lines;
    returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"# {line}\n" for line in comments) + dump_spec(spec))
    return path
