"""Optuna's gRPC storage proxy in front of the database: one process holds the database connections and a
cache of the study, workers talk to it (`--storage grpc://HOST:PORT`, with the [grpc] extra).

    FASTERNET_STORAGE=postgresql://... python -m search.run.grpc_proxy --host 0.0.0.0 --port 13000

The proxy has no heartbeat: a worker killed on another machine leaves its trial RUNNING (never failed, never
retried) until a run on that machine, or someone, fails it; on the worker's own machine it is failed at once
(its process is gone). Worth it only where the database, not the workers, is the limit (see the README)."""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import time
from typing import Any

from optuna.storages import BaseStorage
from optuna.trial import TrialState

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


def open_grpc_proxy(url: str, wait_s: float = 10.0) -> BaseStorage:
    """A client of the proxy at grpc://HOST:PORT, once it answers (a one-line SearchError if it does not)."""
    match = _GRPC_URL.match(url)
    if match is None:
        raise SearchError("storage", url, "not a proxy address; allowed: grpc://HOST:PORT")
    try:
        import grpc  # noqa: F401
    except ImportError:
        raise SearchError("storage", url, "the gRPC proxy needs grpcio; allowed: pip install -e '.[grpc]'") from None
    proxy = _timed_proxy_class()(host=match["host"], port=int(match["port"]))
    try:
        proxy.wait_server_ready(timeout=wait_s)
    except Exception:  # grpc.FutureTimeoutError, or a refused connection
        raise SearchError("storage", url, f"no storage proxy answered within {wait_s:.0f} s; allowed: the address "
                          "of a running `python -m search.run.grpc_proxy`") from None
    return proxy


@functools.cache
def _timed_proxy_class() -> type:
    from optuna.storages import GrpcStorageProxy

    from search.run.storage import _timing_now

    def timed(name: str):
        method = getattr(GrpcStorageProxy, name)

        @functools.wraps(method)
        def call(self, *args, **kwargs):
            timing = _timing_now()
            start = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                if timing is not None:
                    timing.add(name, time.perf_counter() - start)
                    state = kwargs.get("state", args[1] if len(args) > 1 else None)
                    if name == "set_trial_state_values" and state in (TrialState.COMPLETE, TrialState.PRUNED,
                                                                      TrialState.FAIL):
                        timing.finished += 1
                        timing.write()

        return call

    return type("TimedGrpcStorageProxy", (GrpcStorageProxy,), {name: timed(name) for name in _TIMED})


def serve(url: str, host: str, port: int, threads: int = 10) -> None:
    """Runs the proxy for the database at `url` until interrupted."""
    from concurrent.futures import ThreadPoolExecutor

    import optuna

    from search.run.storage import make_storage

    storage: Any = make_storage(url)
    storage.claim_trials = False  # the workers claim their trials, not the proxy
    optuna.storages.run_grpc_proxy_server(optuna.storages.get_storage(storage), host=host, port=port,
                                          thread_pool=ThreadPoolExecutor(max_workers=threads))


def _main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=13000)
    parser.add_argument("--threads", type=int, default=10)
    args = parser.parse_args()
    url = os.environ.get("FASTERNET_STORAGE")
    if not url:
        print("error: FASTERNET_STORAGE is not set; allowed: the database URL, e.g. postgresql://USER:PASSWORD@HOST/DB",
              file=sys.stderr)
        return 2
    try:
        serve(url, args.host, args.port, args.threads)
    except SearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(_main())
