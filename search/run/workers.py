"""Extra worker processes on this machine: each runs the same search on the same study.

A worker receives the whole `SearchConfig` as JSON in its environment (not on its command line, where
a storage password would show in process lists) and runs `python -m search.run.worker_main`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.records.trial import FAILED_TRIAL

CONFIG_ENV = "FASTERNET_WORKER_CONFIG"
_ROOT = Path(__file__).resolve().parents[2]


def start_workers(config, study_name: str, count: int) -> list[subprocess.Popen]:
    """Starts `count` workers (indices 1..count) on `study_name`; their output is discarded."""
    processes = []
    for index in range(1, count + 1):
        env = dict(os.environ, **{CONFIG_ENV: config.for_worker(index, study_name).to_json()})
        # The checkout (or site-packages) on the path, whatever the current directory.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH")) if p)
        processes.append(subprocess.Popen([sys.executable, "-m", "search.run.worker_main"], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return processes


# Asks a worker to stop after its current trial. Not SIGINT: a Ctrl-C in a terminal already reached the
# whole process group, and a second SIGINT makes a worker quit at once.
STOP_SIGNAL = getattr(signal, "SIGUSR1", None)


def wait_for_workers(processes: list[subprocess.Popen], stop: threading.Event | None = None) -> int:
    """Waits for every worker; returns how many ended with an error. When this process was asked to stop
    (`stop` set: a SIGINT sent to it alone, as a process manager or `kill -INT` does), the workers still
    running are asked to stop too, rather than running on to the end of the study."""
    if stop is not None and stop.is_set():
        for process in processes:
            if process.poll() is None:
                if STOP_SIGNAL is not None:
                    process.send_signal(STOP_SIGNAL)
                else:  # no SIGUSR1 (Windows): the worker ends at once, its running trial is failed on resume
                    process.terminate()
    # A worker that SIGUSR1 ended by its default action was still importing (its handler comes first
    # thing after): it had started no trial, so that is a stop, not an error.
    stopped = (0, -STOP_SIGNAL) if STOP_SIGNAL is not None else (0,)
    return sum(p.wait() not in stopped for p in processes)


class StopWhenFull:
    """A study.optimize callback for many workers on one study: stops this worker once the study holds
    `n_trials` finished trials counting those other workers are running, and no trial waits (a retry of a dead
    worker's trial is run before the study ends, never left behind).

    Optuna's MaxTrialsCallback counts finished trials only: with W workers the last W - 1 each start one more
    (a study of N ends with up to N + W - 1), and a retry enqueued near the end is left waiting. Here a
    surplus trial needs two workers to decide within the same few milliseconds."""

    def __init__(self, n_trials: int):
        self.n_trials = n_trials

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if not room_left(study, self.n_trials):
            study.stop()


def room_left(study: optuna.Study, n_trials: int) -> int:
    """How many more trials a worker may start on the study: the waiting ones (retries, enqueued points),
    or, when none waits, what `n_trials` leaves after the finished and running ones."""
    states = trial_states(study)
    if states[TrialState.WAITING]:
        return states[TrialState.WAITING]
    return max(n_trials - states[TrialState.COMPLETE] - states[TrialState.PRUNED] - states[TrialState.RUNNING], 0)


def trial_states(study: optuna.Study) -> Counter[TrialState]:
    """How many trials the study holds in each state: counted in the database where the storage can (a
    callback after every trial of every worker asks), else read from Optuna's cache."""
    backend = getattr(study._storage, "_backend", study._storage)
    if hasattr(backend, "count_by_state"):
        return Counter(backend.count_by_state(study._study_id))
    return Counter(t.state for t in study.get_trials(deepcopy=False))


def beyond_n_trials(study: optuna.Study, trial: optuna.Trial, n_trials: int) -> bool:
    """Whether a trial the sampler just made is one more than the study needs: `n_trials` trials made before it
    are finished, running or waiting. Two workers that both found room for the last trial both make one; trials
    are numbered in the order they are made, so the later one sees this and stands down. (For a storage that
    cannot refuse the trial itself: search.run.storage.cap_trials.)"""
    if {"fixed_params", FAILED_TRIAL} & set(study._storage.get_trial(trial._trial_id).system_attrs):  # a named config or a retry, taken from the
        return False  # waiting ones: always run
    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    return sum(t.state in counted for t in study.get_trials(deepcopy=False) if t.number < trial.number) >= n_trials
