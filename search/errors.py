"""The search package's one user-facing error, and how a process of its own ends on one."""

import sys
from collections.abc import Callable

from fasternet_space.errors import InputError


class SearchError(InputError):
    """A search setting that is not allowed (budget, storage, sampler, study); one line for the user."""


def exit_code(work: Callable[[], object]) -> int:
    """Runs a process's work (a worker, the storage proxy): 0 when it ends, 2 with one line on stderr for an
    input error (a database that went away or is full), 130 when interrupted."""
    try:
        work()
    except InputError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
