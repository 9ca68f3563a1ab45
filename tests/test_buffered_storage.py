"""A worker's writes to its own running trial go in few transactions; its reads see them; others see them
when sent (the claim at once, the parameters with the first attribute, the rest at a heartbeat or at tell)."""

import signal
import subprocess
import sys
import textwrap

import optuna
import pytest
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from search.records.trial import RETRY_HISTORY, WORKER
from search.run.storage import fail_stale_trials, make_storage
from tests.conftest import ROOT


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'buffer.db'}"


def _study(url):
    return optuna.create_study(storage=make_storage(url), study_name="s", directions=["maximize", "minimize"])


def _stored(url, number):
    """The trial as another process reads it from the database."""
    return optuna.load_study(study_name="s", storage=url).trials[number]


def _commits(storage) -> list[int]:
    """A counter of the transactions that write (every read commits too)."""
    count, wrote = [0], [False]

    def on_statement(conn, cursor, statement, *args) -> None:
        wrote[0] = wrote[0] or statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))

    def on_commit(conn) -> None:
        count[0] += wrote[0]
        wrote[0] = False

    sqlalchemy.event.listen(storage.engine, "before_cursor_execute", on_statement)
    sqlalchemy.event.listen(storage.engine, "commit", on_commit)
    return count


def test_a_trial_is_written_in_three_transactions_and_reads_its_own_writes(url, quiet_optuna):
    study = _study(url)
    commits = _commits(study._storage._backend)
    trial = study.ask()
    assert commits[0] == 1  # created, with its claim
    assert _stored(url, trial.number).system_attrs[WORKER]["pid"] > 0

    trial.suggest_int("embed", 8, 64)
    trial.suggest_categorical("act", ["relu", "gelu"])
    trial.set_user_attr("spec_yaml", "a: 1")  # the parameters go with the first attribute
    assert commits[0] == 2
    stored = _stored(url, trial.number)
    assert stored.params == trial.params and stored.user_attrs == {"spec_yaml": "a: 1"}

    for key in ("flops", "params", "latency_ms"):
        trial.set_user_attr(key, 1.5)
    trial.set_user_attr("curve", (0.1, 0.2))
    trial.set_constraint("latency", -1.0)
    assert commits[0] == 2 and "flops" not in _stored(url, trial.number).user_attrs  # not sent yet
    own = study._storage.get_trial(trial._trial_id)  # this process sees them
    assert own.user_attrs["curve"] == [0.1, 0.2] and own.system_attrs["constraints:latency"] == -1.0
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    assert [t.user_attrs.get("latency_ms") for t in running] == [1.5]

    study.tell(trial, [0.5, 2.0])
    assert commits[0] == 3  # attributes, state and values together
    stored = _stored(url, trial.number)
    assert stored.state == TrialState.COMPLETE and stored.values == [0.5, 2.0]
    assert stored.user_attrs == {"spec_yaml": "a: 1", "flops": 1.5, "params": 1.5, "latency_ms": 1.5,
                                 "curve": [0.1, 0.2]}
    assert stored.system_attrs["constraints:latency"] == -1.0
    assert study._storage.get_trial(trial._trial_id) == stored  # read back from memory as stored


def test_a_heartbeat_sends_what_waits(url, quiet_optuna):
    study = _study(url)
    trial = study.ask()
    trial.set_user_attr("first", 1)
    trial.set_user_attr("curve", [0.3])
    assert "curve" not in _stored(url, trial.number).user_attrs
    study._storage.record_heartbeat(trial._trial_id)
    assert _stored(url, trial.number).user_attrs == {"first": 1, "curve": [0.3]}


def test_a_trial_failed_by_another_worker_refuses_its_tell(url, quiet_optuna):
    study = _study(url)
    trial = study.ask()
    trial.set_user_attr("first", 1)
    trial.set_user_attr("late", 2)
    other = make_storage(url)
    other.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    with pytest.raises(UpdateFinishedTrialError):
        study._storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [0.0, 1.0])
    stored = _stored(url, trial.number)
    assert stored.state == TrialState.FAIL and "late" not in stored.user_attrs


WORKER_KILLED_LATE = textwrap.dedent("""
    import sys, time
    import optuna
    from search.run.storage import make_storage
    study = optuna.load_study(study_name="s", storage=make_storage(sys.argv[1]))
    trial = study.ask()
    trial.suggest_int("embed", 8, 64)
    trial.set_user_attr("spec_yaml", "a: 1")
    trial.set_user_attr("latency_ms", 3.0)  # waits for a heartbeat or the tell: lost with the worker
    print(trial.number, flush=True)
    time.sleep(600)
""")


def test_a_killed_workers_trial_is_failed_and_retried_with_its_parameters(url, quiet_optuna):
    study = _study(url)
    worker = subprocess.Popen([sys.executable, "-c", WORKER_KILLED_LATE, url], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        number = int(worker.stdout.readline())
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker.stdout.close()
    assert fail_stale_trials(study) == [number]
    trials = study.trials
    dead = trials[number]
    assert dead.state == TrialState.FAIL and dead.user_attrs["spec_yaml"] == "a: 1"
    assert "latency_ms" not in dead.user_attrs and "gone" in dead.user_attrs["fail_reason"]
    retry = [t for t in trials if t.system_attrs.get(RETRY_HISTORY) == [number]]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING and retry[0].params == dead.params != {}

    taken = study.ask()  # the retry, taken by this process: claimed and written like any other
    assert taken.number == retry[0].number and taken.params == dead.params
    taken.set_user_attr("latency_ms", 4.0)
    study.tell(taken, [0.0, 4.0])
    stored = _stored(study._storage._backend.url, taken.number)
    assert stored.state == TrialState.COMPLETE and stored.user_attrs["latency_ms"] == 4.0
    assert stored.system_attrs[WORKER]["pid"] != dead.system_attrs[WORKER]["pid"]
