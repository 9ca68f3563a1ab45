"""Optuna's gRPC storage proxy in front of the database: one process holds the database connections and a
cache of the study, workers talk to it (`--storage grpc://HOST:PORT`, with the [grpc] extra).

    FASTERNET_STORAGE=postgresql://... python -m search.run.grpc_proxy --host 0.0.0.0 --port 13000

The proxy has no heartbeat: a worker killed on another machine leaves its trial RUNNING (never failed, never
retried) until a run on that machine, or someone, fails it; on the worker's own machine it is failed at once
(its process is gone). Worth it only where the database, not the workers, is the limit (see the README)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from search.errors import exit_code


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
    return exit_code(lambda: serve(url, args.host, args.port, args.threads))


if __name__ == "__main__":
    sys.exit(_main())
