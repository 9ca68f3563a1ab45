"""Many workers on one PostgreSQL study: one of them killed with SIGKILL, nothing lost, nothing done twice.

Runs against the PostgreSQL server whose URL `.ci/run` puts in FASTERNET_TEST_POSTGRES_URL (skipped without it).
The workers are the product's own command, as a user starts it on each machine."""

import os
import signal
import subprocess
import sys
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from search.records.trial import RETRY_HISTORY, WORKER, Key
from search.run.storage import STORAGE_ENV, make_storage
from search.run.study_cache import cached
from search.run.workers import StopWhenFull, room_left
from tests.conftest import ROOT
from tests.test_latency_search import _table_file

POSTGRES = os.environ.get("FASTERNET_TEST_POSTGRES_URL")
# 200: with writes buffered a census trial takes ~70 ms, and at 60 a worker could finish its share before
# the test caught it mid-trial
CANDIDATES, WORKERS = 200, 4


def _census(tmp_path, study_name: str, seed: int, env: dict) -> subprocess.Popen:
    space, table = tmp_path / "lat.yaml", tmp_path / "table.json"
    command = [sys.executable, str(ROOT / "cli.py"), "search", "--space", str(space), "--data", "digits",
               "--proxy", "none", "--latency", "predicted", "--latency-table", str(table), "--sampler", "random",
               "--n-trials", str(CANDIDATES), "--study-name", study_name, "--seed", str(seed), "--heartbeat", "1",
               "--latency-budget", "1s", "--quiet"]
    return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _claimed_by(url: str, study_name: str, pid: int, states=(TrialState.RUNNING,)) -> bool:
    try:
        study = optuna.load_study(study_name=study_name, storage=url)
    except KeyError:  # not created yet
        return False
    return any((t.system_attrs.get(WORKER) or {}).get("pid") == pid
               for t in study.get_trials(deepcopy=False, states=states))


@pytest.mark.skipif(not POSTGRES, reason="FASTERNET_TEST_POSTGRES_URL is not set (.ci/run starts a PostgreSQL)")
def test_a_worker_killed_mid_trial_loses_nothing_and_duplicates_nothing(tmp_path, quiet_optuna):
    _table_file(tmp_path, part_ms=1.0)
    study_name = f"kill9-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, **{STORAGE_ENV: POSTGRES})
    workers = [_census(tmp_path, study_name, seed, env) for seed in range(1, WORKERS + 1)]
    victim = workers[0]
    try:
        deadline = time.monotonic() + 60
        while not _claimed_by(POSTGRES, study_name, victim.pid, states=None):  # it runs trials
            assert victim.poll() is None and time.monotonic() < deadline, "the worker never ran a trial"
            time.sleep(0.05)
        while True:  # killed in the middle of a trial: stopped, and killed only if a trial of its is running
            victim.send_signal(signal.SIGSTOP)
            time.sleep(0.2)  # what it had sent before it stopped is in the database
            if _claimed_by(POSTGRES, study_name, victim.pid):
                break
            victim.send_signal(signal.SIGCONT)
            assert victim.poll() is None and time.monotonic() < deadline, "no trial of the worker was running"
            time.sleep(0.1)
        victim.send_signal(signal.SIGKILL)
        outputs = [w.communicate(timeout=120) for w in workers[1:]]
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    assert victim.returncode == -signal.SIGKILL
    for worker, (_, stderr) in zip(workers[1:], outputs, strict=True):
        assert worker.returncode == 0 and "Traceback" not in stderr, stderr

    trials = optuna.load_study(study_name=study_name, storage=POSTGRES).get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)] == []
    assert len(failed) >= 1 and all(t.user_attrs.get(Key.REASON) for t in failed)  # the killed worker's trial
    made_good = {n for t in finished for n in t.system_attrs.get(RETRY_HISTORY, [])}
    assert [t.number for t in failed if t.number not in made_good] == []  # lost: none
    by_number = {t.number: t for t in trials}

    def done_by_a_live_worker(original) -> bool:  # its result stored, then failed while its worker still ran
        killed = (original.system_attrs.get(WORKER) or {}).get("pid") == victim.pid
        return bool(original.user_attrs.get(Key.MEASURED_ONLY)) and not killed

    done_twice = [t.number for t in finished for n in t.system_attrs.get(RETRY_HISTORY, [])
                  if by_number[n].state != TrialState.FAIL or done_by_a_live_worker(by_number[n])]
    assert done_twice == []  # duplicated: none
    # A retry keeps the parameters its original had drawn (killed while drawing them: the rest are drawn anew).
    retries = [t for t in finished if t.system_attrs.get(RETRY_HISTORY)]
    assert retries and all(by_number[t.system_attrs[RETRY_HISTORY][0]].params.items() <= t.params.items()
                           for t in retries)
    # Exactly the census: a worker that found the study full made no trial (the database refuses it), and the
    # dead trial was failed together with its retry's enqueueing
    assert len(finished) == CANDIDATES


def _study_with(tmp_path, states, counted=False):
    url = f"sqlite:///{tmp_path / 'room.db'}"
    storage = cached(make_storage(url)) if counted else url  # counted in the database, or read by Optuna's cache
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    for state in states:
        values = [0.0, 1.0] if state == TrialState.COMPLETE else None
        study.add_trial(optuna.trial.create_trial(state=state, values=values))
    return study


@pytest.mark.parametrize("states, room", [
    ([TrialState.COMPLETE] * 3, 2),
    ([TrialState.COMPLETE] * 3 + [TrialState.RUNNING] * 2, 0),  # the others' running trials fill the study
    ([TrialState.COMPLETE] * 5 + [TrialState.FAIL, TrialState.WAITING], 1),  # a retry waits: run it anyway
    ([TrialState.COMPLETE] * 4 + [TrialState.FAIL], 1),
])
@pytest.mark.parametrize("counted", [False, True])
def test_room_left_counts_running_trials_and_never_leaves_a_retry_waiting(tmp_path, quiet_optuna, states, room,
                                                                          counted):
    study = _study_with(tmp_path, states, counted)
    assert room_left(study, 5) == room
    stopped = []
    study.stop = lambda: stopped.append(True)
    StopWhenFull(5)(study, study.trials[0])
    assert stopped == ([] if room else [True])


def test_machines_with_neighbouring_seeds_joining_later_draw_different_points(tmp_path, quiet_optuna):
    from search import SearchConfig, SearchSpace
    from search.run.study import open_study
    from tests.conftest import TINY_SPACE

    space = SearchSpace.from_dict(TINY_SPACE)
    base = SearchConfig(budget_ms=20.0, sampler="random", storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    study, created = open_study(base, space)
    assert created and study.sampler._rng.rng.randint(0, 2**31) == optuna.samplers.RandomSampler(
        seed=0)._rng.rng.randint(0, 2**31)  # a single fresh run keeps exactly its seed

    def draws(seed: int, existing: int) -> list[int]:
        while len(study.trials) < existing:
            study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
        joined, _ = open_study(SearchConfig(**{**base.__dict__, "seed": seed}), space)
        return [joined.sampler._rng.rng.randint(0, 2**31) for _ in range(5)]

    assert draws(seed=2, existing=4) != draws(seed=1, existing=5)  # once both were seed 6
