"""The shipped YAML files: the default design space (`fasternet`) and the six official specs (`fasternet_t0` ..
`fasternet_l`), installed with the package so that they are found from any directory.

    import spaces
    spaces.path("fasternet")        # the default search space: a Path to the installed fasternet.yaml
    spaces.path("fasternet_t0")     # also "fasternet_t0.yaml", "t0", "T0"
    spaces.names()                  # ['fasternet', 'fasternet_l', ..., 'fasternet_t2']

`fasternet_space.load_spec("t0")` gives the same spec without reading these files (the named configs are
`fasternet_space.NAMED_SPECS`; a test keeps the two equal).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["DEFAULT", "names", "path", "resolve"]

#: The name of the default design space, the one `cli.py search` explores without `--space`.
DEFAULT = "fasternet"


def _root() -> Path:
    # A regular package installed as files (wheel, --target, editable): files() is the folder itself.
    return Path(str(resources.files(__name__)))


def names() -> list[str]:
    """The shipped files' names without `.yaml`, sorted: 'fasternet', 'fasternet_l', .., 'fasternet_t2'."""
    return sorted(p.stem for p in _root().glob("*.yaml"))


def path(name: str) -> Path:
    """The shipped YAML file called `name` ('fasternet', 'fasternet.yaml', 'fasternet_t0', 't0', any case).

    FileNotFoundError listing the shipped names when there is none.
    """
    stem = str(name).lower().removesuffix(".yaml")
    shipped = names()
    for candidate in (stem, f"fasternet_{stem}"):
        if candidate in shipped:
            return _root() / f"{candidate}.yaml"
    raise FileNotFoundError(f"no shipped space or spec named {name!r}; shipped: {', '.join(shipped)}")


def resolve(text: str) -> str:
    """A space file as given, or the path of the shipped space called `text` (`fasternet`); InputError
    naming the shipped spaces otherwise."""
    from fasternet_space.errors import InputError

    if Path(text).is_file():
        return text
    try:
        return str(path(text))
    except FileNotFoundError:
        shipped = ", ".join(n for n in names() if not n.startswith("fasternet_"))
        raise InputError("space", text, "file not found; allowed: a space YAML file or a shipped space "
                         f"({shipped})") from None
