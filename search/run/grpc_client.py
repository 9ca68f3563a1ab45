"""The client side of Optuna's gRPC storage proxy (`--storage grpc://HOST:PORT`, with the [grpc] extra): a
proxy client whose calls are timed as the database's are (`search.run.storage`); the server is
`search.run.grpc_proxy`."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from typing import Any

from optuna.storages import BaseStorage

from search.errors import SearchError

_GRPC_URL = re.compile(r"^grpc://(?P<host>[^:/\s]+):(?P<port>\d+)/?$")
# The client's calls, timed as ResilientStorage times its own (FASTERNET_STORAGE_TIMING).
_TIMED = ("create_new_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
          "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
          "get_all_studies", "create_new_trial", "set_trial_param", "set_trial_state_values",
          "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
          "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials")


def is_grpc_url(url: str) -> bool:
    return url.startswith("grpc://")


def open_grpc_proxy(url: str, timing_now: Callable[[], Any], wait_s: float = 10.0) -> BaseStorage:
    """A client of the proxy at grpc://HOST:PORT, once it answers (a one-line SearchError if it does not);
    `timing_now()` gives the storage timing of this process (or None), as the database's calls use."""
    match = _GRPC_URL.match(url)
    if match is None:
        raise SearchError("storage", url, "not a proxy address; allowed: grpc://HOST:PORT")
    try:
        import grpc  # noqa: F401
    except ImportError:
        raise SearchError("storage", url, "the gRPC proxy needs grpcio; allowed: pip install -e '.[grpc]'") from None
    proxy = _timed_proxy_class(timing_now)(host=match["host"], port=int(match["port"]))
    try:
        proxy.wait_server_ready(timeout=wait_s)
    except Exception:  # grpc.FutureTimeoutError, or a refused connection
        raise SearchError("storage", url, f"no storage proxy answered within {wait_s:.0f} s; allowed: the address "
                          "of a running `python -m search.run.grpc_proxy`") from None
    return proxy


@functools.cache
def _timed_proxy_class(timing_now: Callable[[], Any]) -> type:
    from optuna.storages import GrpcStorageProxy

    def timed(name: str):
        method = getattr(GrpcStorageProxy, name)

        @functools.wraps(method)
        def call(self, *args, **kwargs):
            timing = timing_now()
            start = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                if timing is not None:
                    timing.add(name, time.perf_counter() - start)
                    timing.told(name, args, kwargs)

        return call

    return type("TimedGrpcStorageProxy", (GrpcStorageProxy,), {name: timed(name) for name in _TIMED})


