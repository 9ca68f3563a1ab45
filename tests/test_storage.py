"""search.run.storage: passwords kept out of messages, the storage URL from the environment, dead workers' trials."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.errors import SearchError
from search.records.trial import WORKER as WORKER_ATTR
from search.run import storage as storage_module
from search.run.storage import (
    STORAGE_ENV,
    claim_trial,
    fail_stale_trials,
    load_study,
    make_storage,
    redact,
)
from tests.cli_helpers import run_cli
from tests.conftest import ROOT

SECRET = "s3cret"


@pytest.fixture(autouse=True)
def _quiet():
    optuna.logging.set_verbosity(optuna.logging.ERROR)


@pytest.mark.parametrize("url, shown", [
    ("postgresql://alice:s3cret@host/db", "postgresql://alice:***@host/db"),
    ("postgresql+psycopg://alice:s3cret@host:5432/db?sslmode=require",
     "postgresql+psycopg://alice:***@host:5432/db?sslmode=require"),
    ("postgresql://alice:s%40cret@host/db", "postgresql://alice:***@host/db"),  # an escaped @
    ("postgresql://alice:s@cret@host/db", "postgresql://alice:***@host/db"),  # an unescaped one
    ("postgresql://alice:s3cret@host:port/db", "postgresql://alice:***@host:port/db"),  # SQLAlchemy cannot parse it
    ("alice:s3cret@host/db", "alice:***@host/db"),
    ("postgresql://alice@host/db", "postgresql://alice@host/db"),
    ("sqlite:///runs/a@b:c.db", "sqlite:///runs/a@b:c.db"),  # no password: shown as given
])
def test_redact(url, shown):
    assert redact(url) == shown


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("url, fragment", [
    ("postgresql+pg8000://alice:s3cret@127.0.0.1:1/db", "driver"),
    ("mysql://alice:s3cret@127.0.0.1:1/db", "driver"),
    ("postgresql+psycopg://alice:s3cret@127.0.0.1:1/db", "cannot open"),  # nothing listens on port 1
    ("postgresql+psycopg://alice:s3cret@127.0.0.1:port/db", "cannot open"),
    ("postgresql+psycopg://alice:s3cr@t@127.0.0.1:1/db", "cannot open"),  # the driver sees host 't@127.0.0.1'
    ("mongodb://alice:s3cret@127.0.0.1:1/db", "not a storage URL"),
    ("alice:s3cret@127.0.0.1:1/db", "not a storage URL"),
])
@pytest.mark.parametrize("opener", [make_storage, lambda url: load_study("x", url)])
def test_error_paths_never_show_the_password(url, fragment, opener):
    with pytest.raises(SearchError) as exc:
        opener(url)
    message = one_line(exc)
    assert exc.value.parameter == "storage" and message.startswith("storage ")
    assert fragment in message and "***" in message
    assert SECRET not in message and "s3cr" not in message, message
    assert SECRET not in str(exc.value.value)


def test_a_missing_study_never_shows_the_password(tmp_path, monkeypatch):
    sqlite_url = f"sqlite:///{tmp_path / 'a.db'}"
    optuna.create_study(storage=sqlite_url, study_name="there")
    opened = []
    monkeypatch.setattr(storage_module, "make_storage",
                        lambda url: opened.append(url) or optuna.storages.RDBStorage(sqlite_url))
    url = "postgresql://alice:s3cret@db.example/fasternet"
    with pytest.raises(SearchError) as exc:
        load_study("nope", url)
    message = one_line(exc)
    assert opened == [url]
    assert "'nope'" in message and "'there'" in message and "alice:***@db.example" in message
    assert SECRET not in message



SEARCH = ["search", "--n-trials", "1", "--latency-budget", "1s"]
PARETO = ["pareto", "--study", "x", "--out", "x.csv"]
UNREACHABLE = "postgresql://alice:s3cret@127.0.0.1:1/db"  # nothing listens on port 1
NO_DRIVER = "postgresql+pg8000://alice:s3cret@127.0.0.1:1/db"


@pytest.mark.parametrize("command, url, from_env", [
    (SEARCH, UNREACHABLE, False), (SEARCH, NO_DRIVER, True), (PARETO, NO_DRIVER, False), (PARETO, UNREACHABLE, True)])
def test_cli_never_shows_the_password(tmp_path, command, url, from_env):
    args = command if from_env else [*command, "--storage", url]
    env = dict(os.environ, **{STORAGE_ENV: url}) if from_env else {k: v for k, v in os.environ.items()
                                                                     if k != STORAGE_ENV}
    result = run_cli(*args, cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "alice:***@127.0.0.1:1/db" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def _study_file(tmp_path, file_name, study_name):
    url = f"sqlite:///{tmp_path / file_name}"
    study = optuna.create_study(storage=url, study_name=study_name, directions=["maximize", "minimize"])
    study.tell(study.ask(), state=TrialState.FAIL)
    return url


def test_cli_takes_the_storage_from_the_environment_and_the_flag_wins(tmp_path):
    from_env = _study_file(tmp_path, "env.db", "in-env")
    from_flag = _study_file(tmp_path, "flag.db", "in-flag")
    env = dict(os.environ, **{STORAGE_ENV: from_env})

    result = run_cli("pareto", "--study", "in-env", "--out", str(tmp_path / "trials.csv"), cwd=tmp_path, env=env,
                     timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "trials.csv").is_file()
    assert not (tmp_path / "fasternet_studies.db").exists()  # not the default storage

    result = run_cli("pareto", "--study", "in-env", "--storage", from_flag, "--out", str(tmp_path / "t.csv"),
                     cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 2
    assert "flag.db" in result.stderr and "'in-flag'" in result.stderr and "env.db" not in result.stderr


# --- Trials of dead workers -----------------------------------------------------------------------------------


@pytest.fixture
def study(tmp_path):
    url = f"sqlite:///{tmp_path / 'workers.db'}"
    return optuna.create_study(storage=make_storage(url), study_name="s", directions=["maximize", "minimize"])


def _ask(study):
    trial = study.ask()
    trial.suggest_int("embed", 8, 64)
    trial.suggest_categorical("act", ["relu", "gelu"])
    trial.set_user_attr("named", None)
    return trial


WORKER = textwrap.dedent("""
    import sys, time
    import optuna
    from search.run.storage import claim_trial, make_storage
    study = optuna.load_study(study_name="s", storage=make_storage(sys.argv[1]))
    trial = study.ask()
    trial.suggest_int("embed", 8, 64)
    trial.suggest_categorical("act", ["relu", "gelu"])
    claim_trial(trial)
    print(trial.number, flush=True)
    time.sleep(600)
""")


@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombie"])
def test_a_killed_workers_trial_is_failed_at_once_and_retried(study, tmp_path, reaped):
    url = f"sqlite:///{tmp_path / 'workers.db'}"
    worker = subprocess.Popen([sys.executable, "-c", WORKER, url], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        number = int(worker.stdout.readline())
        assert study.trials[number].state == TrialState.RUNNING
        worker.send_signal(signal.SIGKILL)
        if reaped:
            worker.wait()
        else:  # killed, not yet waited for by its parent (as --workers leaves it until the run ends)
            while Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                time.sleep(0.05)
        start = time.monotonic()
        assert fail_stale_trials(study) == [number]
        assert time.monotonic() - start < 5  # no waiting for heartbeats
    finally:
        worker.kill()
        worker.wait()
        worker.stdout.close()
    trials = study.trials
    dead = trials[number]
    assert dead.state == TrialState.FAIL
    assert dead.user_attrs["fail_reason"] == f"its worker (pid {worker.pid} on {dead.system_attrs[WORKER_ATTR]['host']}) is gone"
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == number]
    assert len(retries) == 1 and retries[0].state == TrialState.WAITING and retries[0].params == dead.params
    assert fail_stale_trials(study) == []  # failed once, retried once


def test_a_live_workers_trial_is_left_running(study):
    trial = _ask(study)
    claim_trial(trial)
    assert study.trials[trial.number].system_attrs[WORKER_ATTR]["pid"] == os.getpid()
    assert fail_stale_trials(study) == []
    assert study.trials[trial.number].state == TrialState.RUNNING


def test_a_reused_pid_is_not_the_worker(study):
    trial = _ask(study)
    claim_trial(trial)
    worker = study.trials[trial.number].system_attrs[WORKER_ATTR]
    if worker["started"] is None:
        pytest.skip("no /proc: a process start time cannot be read here")
    study._storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, dict(worker, started=worker["started"] - 1))
    assert fail_stale_trials(study) == [trial.number]


def test_another_machines_trial_is_left_to_the_heartbeat(study, tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    trial = _ask(study)
    study._storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, {
        "host": "elsewhere", "machine": "elsewhere/boot/pid:[1]", "pid": int(gone.stdout), "started": None})
    study._storage.record_heartbeat(trial._trial_id)
    assert fail_stale_trials(study) == []  # its pid means nothing here, and it beats
    assert study.trials[trial.number].state == TrialState.RUNNING

    with sqlite3.connect(tmp_path / "workers.db") as db:  # its last heartbeat, an hour ago
        db.execute("UPDATE trial_heartbeats SET heartbeat = datetime('now', '-1 hour')")
    assert fail_stale_trials(study) == [trial.number]
    failed = study.trials[trial.number]
    assert failed.state == TrialState.FAIL and failed.user_attrs["fail_reason"] == "no heartbeat for 30 s"
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == trial.number]
    assert len(retries) == 1 and retries[0].state == TrialState.WAITING and retries[0].params == failed.params


# --- A database that goes away, or is full ---------------------------------------------------------------------


def _flaky(monkeypatch, message: str, failures: int):
    """Study lookups by name fail `failures` times with the driver's `message`, then work."""
    import sqlalchemy.exc
    from optuna.storages._rdb import models

    real = models.StudyModel.find_or_raise_by_name
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) <= failures:
            raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception(message))
        return real(*args, **kwargs)

    monkeypatch.setattr(models.StudyModel, "find_or_raise_by_name", staticmethod(flaky))
    return calls


def test_a_storage_call_waits_for_a_database_that_went_away(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'gone.db'}"
    storage = make_storage(url)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    calls = _flaky(monkeypatch, "server closed the connection unexpectedly", failures=2)
    monkeypatch.setenv(storage_module.TIMING_ENV, str(tmp_path))
    assert storage.get_study_id_from_name("s") == study_id
    assert len(calls) == 3
    timing = storage_module._timing_now()
    assert timing.retries == 2 and timing.calls["get_study_id_from_name"][0] == 1
    storage_module.storage_phase("trials")  # the calls made while trials run are kept apart from the start's
    storage.get_study_directions(study_id)
    assert timing.by_phase["start"] == {"get_study_id_from_name": [1, pytest.approx(timing.calls[
        "get_study_id_from_name"][1])]} and list(timing.by_phase["trials"]) == ["get_study_directions"]


@pytest.mark.parametrize("message, fragment", [
    ("server closed the connection unexpectedly", "the database went away"),
    ("FATAL:  sorry, too many clients already", "refuses more connections"),
])
def test_a_database_that_stays_away_or_full_is_one_line(tmp_path, monkeypatch, message, fragment):
    url = f"sqlite:///{tmp_path / 'gone.db'}"
    storage = make_storage(url)
    storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    _flaky(monkeypatch, message, failures=10**6)
    monkeypatch.setattr(storage, "reconnect_s", 0.5)
    with pytest.raises(SearchError) as exc:
        storage.get_study_id_from_name("s")
    text = one_line(exc)
    assert text.startswith("storage ") and fragment in text and "allowed:" in text
    start = time.monotonic()
    with pytest.raises(SearchError):  # failing the trial afterwards tries once, it does not wait again
        storage.get_study_id_from_name("s")
    assert time.monotonic() - start < 0.4


def test_another_database_error_is_not_waited_for(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'gone.db'}"
    storage = make_storage(url)
    calls = _flaky(monkeypatch, "syntax error at or near SELECT", failures=1)
    with pytest.raises(optuna.exceptions.StorageInternalError):
        storage.get_study_id_from_name("s")
    assert len(calls) == 1


def _dropped(message: str):
    """Optuna's error for a failed commit, raised from the driver's `message` (as it wraps it)."""
    import sqlalchemy.exc

    try:
        raise sqlalchemy.exc.OperationalError("COMMIT", {}, Exception(message))
    except sqlalchemy.exc.OperationalError as cause:
        try:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from cause
        except optuna.exceptions.StorageInternalError as exc:
            return exc


@pytest.mark.parametrize("message, opened", [
    ("server closed the connection unexpectedly", True),  # a restart dropped it while opening: waited for
    ("permission denied for schema public", False),  # not the database's absence: one line naming the cause
])
def test_opening_waits_for_a_dropped_connection_and_names_other_causes(tmp_path, monkeypatch, message, opened):
    attempts = []
    real = storage_module.ResilientStorage

    class Flaky(real):
        def __init__(self, *args, **kwargs):
            attempts.append(1)
            if len(attempts) <= 2:
                raise _dropped(message)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(storage_module, "ResilientStorage", Flaky)
    if opened:
        assert isinstance(make_storage(f"sqlite:///{tmp_path / 'open.db'}"), real) and len(attempts) == 3
        return
    with pytest.raises(SearchError) as exc:
        make_storage(f"sqlite:///{tmp_path / 'open.db'}")
    text = one_line(exc)
    assert len(attempts) == 1 and "OperationalError" in text and message in text and "during the commit" not in text
