"""The entry of one extra worker process (`python -m search.run.worker_main`): reads its `SearchConfig` from
the environment and runs the same search on the same study until it is done or asked to stop."""

from __future__ import annotations

import os
import signal
import sys
import threading

from search.config import SearchConfig
from search.errors import exit_code
from search.run.study import run_search
from search.run.workers import CONFIG_ENV, STOP_SIGNAL


def _main() -> int:
    config = SearchConfig.from_json(os.environ[CONFIG_ENV])
    stop = threading.Event()

    def on_sigint(signum, frame) -> None:  # Ctrl-C reaches the whole process group: stop like the first process
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, on_sigint)
    if STOP_SIGNAL is not None:
        signal.signal(STOP_SIGNAL, lambda signum, frame: stop.set())  # the first process asks: stop after this trial
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return exit_code(lambda: run_search(config, stop=stop))  # one line, as the first process says it


if __name__ == "__main__":
    sys.exit(_main())
