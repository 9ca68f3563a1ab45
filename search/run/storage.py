"""Optuna storage: opening it (with heartbeats), loading a study by name, and failing and retrying the
trials of workers that died. Messages never show a database password.

A storage that loses its database (a restart, a dropped connection) retries each call until it comes back,
up to `RECONNECT_S`, then fails with one line; with `FASTERNET_STORAGE_TIMING=DIR` in the environment each
process writes how long its storage calls took to DIR (what `benchmarks/many_workers.py` reads)."""

from __future__ import annotations

import atexit
import contextlib
import datetime
import functools
import json
import math
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from search.errors import SearchError
from search.records.trial import (
    WORKER,
    retry_attrs,
    retry_history,
    retry_system_attrs,
    store_failure_reason,
    store_worker,
    worker_of,
)
from search.run.buffered_storage import BufferedTrialWrites
from search.run.grpc_client import is_grpc_url, open_grpc_proxy

DEFAULT_STORAGE = "sqlite:///fasternet_studies.db"
#: The environment variable the CLI reads the storage URL from (keeps a password out of shell history).
STORAGE_ENV = "FASTERNET_STORAGE"
#: The trial system attribute naming the worker that runs it (written by claim_trial).

# The password of [scheme://]user:password@ (up to the last @, for a password with an unescaped @).
_PASSWORD = re.compile(r"((?:^|://)[^:/@\s]*:)([^/\s]\S*|)@")


def redact(url: str) -> str:
    """The URL with its password shown as ***, for messages."""
    try:
        parsed = make_url(url)
        if parsed.password is not None:  # rendering escapes the rest (a@b.db becomes a%40b.db): only then
            url = parsed.render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: the regex alone
        pass
    return _PASSWORD.sub(r"\1***@", url)


def _scrub(text: str, url: str) -> str:
    """`text` (an exception's message) with the password of `url` removed, in a URL or on its own."""
    passwords = {part for m in _PASSWORD.finditer(url) for part in (m.group(2), *m.group(2).split("@"))}
    try:
        passwords.add(make_url(url).password or "")
    except Exception:
        pass
    text = _PASSWORD.sub(r"\1***@", text)
    for password in sorted(passwords, key=len, reverse=True):
        if len(password) >= 4:  # shorter ones would mangle the message and protect nothing
            text = text.replace(password, "***")
    return text


def sqlite_path(url: str) -> Path | None:
    """The database file of a sqlite:///FILE URL (None for other URLs)."""
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


# --- A storage that outlives a database restart, and times itself -----------------------------------------

#: How long a storage call waits for a database that went away (a restart, a failover) before giving up.
RECONNECT_S = 60.0
#: The environment variable naming a directory where each process writes its storage call times.
TIMING_ENV = "FASTERNET_STORAGE_TIMING"
#: Connections per worker process: its main thread and its heartbeat thread each hold one at most.
POOL_SIZE, MAX_OVERFLOW = 2, 2

# What a PostgreSQL or MySQL server, or its driver, says when the connection is gone or refused for now.
_GONE = ("server closed the connection", "terminating connection", "connection refused", "could not connect",
         "connection to server", "database system is starting up", "database system is shutting down",
         "the database system is in recovery mode", "connection reset", "connection is closed",
         "consuming input failed", "ssl connection has been closed", "lost connection", "gone away",
         "connection timeout expired", "server didn't respond", "broken pipe")
_FULL = ("too many clients", "remaining connection slots are reserved", "too many connections")
# Calls that write (ask, tell and attributes); every other call reads, heartbeats apart.
# (Optuna's cache in front of the storage calls the underscored ones.)
_WRITES = ("create_new_trial", "_create_new_trial", "set_trial_param", "_set_trial_param", "set_trial_state_values",
           "set_trial_user_attr", "set_trial_system_attr", "set_trial_intermediate_value", "fail_and_retry")
_HEARTBEAT = ("record_heartbeat", "_get_stale_trial_ids", "stale_trial_ids")
_WRAPPED = (*_WRITES, *_HEARTBEAT, "create_new_study", "set_study_user_attr", "set_study_system_attr",
            "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
            "get_study_system_attrs", "get_all_studies", "get_trial_id_from_study_id_trial_number",
            "get_trial", "get_all_trials", "get_n_trials", "count_by_state", "get_best_trial", "_get_best_trial_id",
            "_get_trials")


def _messages(exc: BaseException) -> str:
    """The messages of an exception and of those it was raised from, lower case, one string."""
    seen, parts = set(), []
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return " ".join(parts).lower()


def _database_trouble(exc: BaseException) -> str | None:
    """'gone' or 'full' where `exc` says the database went away or refuses more connections, else None."""
    text = _messages(exc)
    if any(s in text for s in _FULL):
        return "full"
    if getattr(exc, "connection_invalidated", False) or getattr(exc.__cause__, "connection_invalidated", False):
        return "gone"
    return "gone" if any(s in text for s in _GONE) else None


def _trouble_error(kind: str, shown: str, exc: BaseException, waited_s: float) -> SearchError:
    first = (str(exc.__cause__ or exc).splitlines() or [""])[0][:160]
    if kind == "full":
        return SearchError("storage", shown, f"the database refuses more connections ({first}) for {waited_s:.0f} s; "
                           f"allowed: fewer workers on it (each holds up to {POOL_SIZE + MAX_OVERFLOW}), a larger "
                           "max_connections on the server, or a pooler (PgBouncer) in front of it")
    return SearchError("storage", shown, f"the database went away ({first}) and was not back within {waited_s:.0f} s; "
                       "allowed: the same command once it is up again (finished trials are kept, the running one is "
                       "retried)")


class _Timing:
    """Seconds spent in storage calls by this process, per call, written to TIMING_ENV's directory."""

    def __init__(self, directory: str):
        self.path = Path(directory) / f"storage-{socket.gethostname()}-{os.getpid()}.json"
        self.lock = threading.Lock()
        self.calls: dict[str, list[float]] = {}  # name -> [count, seconds]
        self.phase = "start"  # what the calls serve: "start" (opening the study), "trials", "end" (the summary)
        self.by_phase: dict[str, dict[str, list[float]]] = {}  # phase -> name -> [count, seconds]
        self.finished = 0  # trials this process told finished
        self.retries = 0  # calls repeated because the database went away
        self.waited_s = 0.0  # seconds spent waiting for it to come back
        atexit.register(self.write)

    def add(self, name: str, seconds: float) -> None:
        with self.lock:
            for calls in (self.calls, self.by_phase.setdefault(self.phase, {})):
                entry = calls.setdefault(name, [0, 0.0])
                entry[0] += 1
                entry[1] += seconds

    def told(self, name: str, args: tuple, kwargs: dict) -> None:
        """Counts the trial a storage call `name(*args, **kwargs)` told finished (COMPLETE, PRUNED or FAIL)."""
        state = kwargs.get("state", args[1] if len(args) > 1 else None)
        if name == "set_trial_state_values" and state in _FINISHED:
            self.finished += 1
            self.write()

    def write(self) -> None:
        with self.lock:
            record = {"pid": os.getpid(), "host": socket.gethostname(), "finished": self.finished,
                      "retries": self.retries, "waited_s": self.waited_s, "calls": self.calls,
                      "by_phase": self.by_phase}
            text = json.dumps(record)
        tmp = self.path.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(text)
            os.replace(tmp, self.path)


_timing: _Timing | None = None
_local = threading.local()


def _timing_now() -> _Timing | None:
    global _timing
    directory = os.environ.get(TIMING_ENV)
    if directory and (_timing is None or _timing.path.parent != Path(directory)):
        _timing = _Timing(directory)
    return _timing if directory else None


def storage_phase(phase: str) -> None:
    """Names what this process's storage calls serve from now on ("trials", then "end"), in its timing file."""
    timing = _timing_now()
    if timing is not None:
        timing.phase = phase


def _resilient(name: str):
    """RDBStorage's method `name`, timed, and repeated while the database is away (up to RECONNECT_S)."""
    method = getattr(ResilientStorage, name)  # not wrapped yet: this class's, the buffer's or RDBStorage's

    @functools.wraps(method)
    def call(self: RDBStorage, *args, **kwargs):
        if getattr(_local, "depth", 0):  # called by another storage method: that one times and retries
            return method(self, *args, **kwargs)
        timing = _timing_now()
        start = time.perf_counter()
        attempt = 0
        _local.depth = 1
        try:
            while True:
                try:
                    result = method(self, *args, **kwargs)
                    self._given_up = False
                    break
                except (StorageInternalError, SQLAlchemyError) as exc:
                    kind = _database_trouble(exc)
                    waited = time.perf_counter() - start
                    if kind is None:
                        raise
                    if waited >= self.reconnect_s or self._given_up:
                        if name == "record_heartbeat":  # the trial's own calls report it; a thread cannot
                            return None
                        self._given_up = True  # the calls that follow (failing the trial) try once, not wait again
                        raise _trouble_error(kind, redact(self.url), exc, waited) from None
                    time.sleep(min(0.2 * 2 ** attempt, 5.0, max(self.reconnect_s - waited, 0.05)))
                    attempt += 1
        finally:
            _local.depth = 0
            if timing is not None:
                seconds = time.perf_counter() - start
                timing.add(name, seconds)
                if attempt:
                    timing.retries += attempt
                    timing.waited_s += seconds
        if timing is not None:
            timing.told(name, args, kwargs)
        return result

    return call


_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class StudyFull(Exception):
    """Raised instead of making a sampler's trial in a study that holds its trials (ResilientStorage.trial_cap)."""


# The states that fill a study's places: finished, being run, or waiting to be run (a FAIL frees its place).
_FILLING = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


class ResilientStorage(BufferedTrialWrites):
    """An RDBStorage whose calls wait for a database that went away (up to `reconnect_s`) instead of failing
    at once, and fail with one line (SearchError) when it does not come back or refuses more connections.
    A worker's writes to its own running trial are sent in few transactions (BufferedTrialWrites)."""

    reconnect_s = RECONNECT_S
    _given_up = False  # a call gave up waiting for the database: the next ones try once

    claim_trials = True  # False in a process that serves others' trials (the gRPC proxy)

    def _claim(self) -> dict[str, Any]:
        return {WORKER: _worker_record()} if self.claim_trials else {}

    _stale_checked_at = -math.inf  # when this process last asked the database for stale trials (monotonic s)
    trial_cap: int | None = None  # a search's n_trials: a sampler's trial is made only while fewer fill the study

    def _get_prepared_new_trial(self, study_id: int, template_trial: FrozenTrial | None, session: Any) -> Any:
        """A sampler's trial is made with its first heartbeat (a trial whose creation was repeated after a dropped
        connection goes stale and is retried, not left running forever) and only while the study has room: it is
        counted after its own insert, which on PostgreSQL follows the study's row lock Optuna takes and on SQLite
        holds the database's write lock, so of two workers that both found room for the last trial, the second
        makes none (StudyFull, its insert rolled back)."""
        import sqlalchemy
        from optuna.storages._rdb import models

        trial = super()._get_prepared_new_trial(study_id, template_trial, session)
        if template_trial is not None:
            return trial
        if self.heartbeat_interval:
            session.add(models.TrialHeartbeatModel(trial_id=trial.trial_id))
        if self.trial_cap is not None:
            filled = session.query(sqlalchemy.func.count(models.TrialModel.trial_id)).filter(
                models.TrialModel.study_id == study_id, models.TrialModel.state.in_(_FILLING)).scalar()
            if filled > self.trial_cap:  # this one included
                raise StudyFull(f"the study holds its {self.trial_cap} trials")
        return trial

    def fail_and_retry(self, study_id: int, trial_id: int) -> int | None:
        """Fails a dead worker's running trial and enqueues its retry (retry_template) in one transaction under
        the study's row lock, so that no worker making a trial sees its place free between the two. Returns the
        trial's number, or None when it was no longer running (another worker failed it, or it finished)."""
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        if trial_id in self._own:  # this process's own trial: what it has not sent yet (the reason) goes first
            self._send(trial_id)
        template = retry_template(self.get_trial(trial_id))
        trial = models.TrialModel
        with _create_scoped_session(self.scoped_session) as session:
            models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
            # A conditional update: of two workers failing the same trial at once (SQLite has no row locks), one
            # changes it and enqueues the retry
            changed = session.query(trial).filter(trial.trial_id == trial_id, trial.state == TrialState.RUNNING).update(
                {trial.state: TrialState.FAIL}, synchronize_session=False)
            if not changed:
                return None
            failed = trial.find_or_raise_by_id(trial_id, session)
            failed.datetime_complete = datetime.datetime.now()
            number = failed.number
            if template is not None:
                RDBStorage._get_prepared_new_trial(self, study_id, template, session)
        with self._buffer_lock:
            self._own.pop(trial_id, None)  # this process's own trial: read from the database from now on
        return number

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """What Optuna fails before each trial of every worker: none, having failed and retried them itself
        (fail_and_retry). It asks for them at most once per heartbeat interval in a process (a trial is stale only
        after the grace period, several intervals; at 16 workers asking before every trial was a tenth of the
        storage time)."""
        now = time.monotonic()
        if now - self._stale_checked_at < (self.heartbeat_interval or 0):
            return []
        for trial_id in self.stale_trial_ids(study_id):  # failed and retried here at once (fail_and_retry)
            self.fail_and_retry(study_id, trial_id)
        self._stale_checked_at = now  # after it succeeded: a check the database interrupted is made again
        return []

    def stale_trial_ids(self, study_id: int) -> list[int]:
        """The running trials whose heartbeat is older than the grace period, each with its reason written while
        it still runs (Optuna writes no reason)."""
        grace = self.grace_period or 2 * (self.heartbeat_interval or 0)
        return [i for i in RDBStorage._get_stale_trial_ids(self, study_id)
                if _mark_failing(self, i, f"no heartbeat for {grace} s")]

    def count_by_state(self, study_id: int) -> dict[TrialState, int]:
        """How many trials the study holds in each state, counted in the database (one small query, where reading
        the trials re-reads every other worker's running trial with all its attributes)."""
        import sqlalchemy
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        trial = models.TrialModel
        with _create_scoped_session(self.scoped_session) as session:
            query = session.query(trial.state, sqlalchemy.func.count(trial.trial_id)).filter(trial.study_id == study_id)
            rows = query.group_by(trial.state).all()
        return {TrialState(state): int(n) for state, n in rows}

    def get_n_trials(self, study_id: int, state: TrialState | tuple[TrialState, ...] | None = None) -> int:
        """A COUNT in the database (Optuna's reads every trial with its attributes to count them: seconds for
        a study of thousands, at each worker's start)."""
        import sqlalchemy
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        with _create_scoped_session(self.scoped_session) as session:
            models.StudyModel.find_or_raise_by_id(study_id, session)  # KeyError for a study not there
            query = session.query(sqlalchemy.func.count(models.TrialModel.trial_id)).filter(
                models.TrialModel.study_id == study_id)
            if state is not None:
                states = (state,) if isinstance(state, TrialState) else tuple(state)
                query = query.filter(models.TrialModel.state.in_(states))
            return int(query.scalar())


for _name in _WRAPPED:
    setattr(ResilientStorage, _name, _resilient(_name))


def make_storage(url: str, heartbeat_s: int = 10) -> RDBStorage:
    """An RDB storage with heartbeats, so that a trial left running by a killed worker is failed and retried.

    A PostgreSQL or MySQL storage holds at most POOL_SIZE + MAX_OVERFLOW connections per process (one worker's
    main thread and heartbeat thread use two), and rides out a database restart (ResilientStorage).
    grpc://HOST:PORT is a client of Optuna's storage proxy (search.run.grpc_proxy): no heartbeat there."""
    shown = redact(url)
    allowed = ("allowed: sqlite:///FILE.db, postgresql://USER:PASSWORD@HOST/DB (with the [postgres] extra), "
               "mysql://..., grpc://HOST:PORT (a storage proxy, with the [grpc] extra)")
    if is_grpc_url(url):
        return open_grpc_proxy(url, _timing_now)
    if not re.match(r"^(sqlite|postgresql(\+\w+)?|mysql(\+\w+)?)://", url):
        raise SearchError("storage", shown, f"not a storage URL; {allowed}")
    path = sqlite_path(url)
    if url.startswith("sqlite") and (path is None or not path.name):
        raise SearchError("storage", shown, f"not a file (an in-memory study keeps nothing); {allowed}")
    # No pool_pre_ping (a round trip before every call): a dead pooled connection fails its call, the pool
    # is invalidated and ResilientStorage repeats the call on a new one.
    engine_kwargs: dict[str, Any] = {"pool_size": POOL_SIZE, "max_overflow": MAX_OVERFLOW, "pool_timeout": 60}
    if url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}  # an unreachable host fails, not hangs
    if path is not None:
        if not path.parent.is_dir():
            raise SearchError("storage", shown, f"directory {path.parent} does not exist")
        engine_kwargs = {"connect_args": {"timeout": 120}}
    start = time.perf_counter()
    for attempt in range(1_000_000):
        try:
            return ResilientStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s,
                                    grace_period=3 * heartbeat_s, heartbeat_stale_trial_callback=retry_stale_trial)
        except ImportError as exc:
            driver = f" ({exc.name})" if exc.name else ""
            raise SearchError("storage", shown, f"its database driver{driver} is not installed; allowed: "
                              "pip install -e '.[postgres]' for PostgreSQL") from None
        except Exception as exc:  # SQLAlchemy raises many kinds for an unreachable or malformed database
            # Workers opening a new database at once race to create its tables: the losers retry.
            racing = any(s in str(exc) for s in ("UNIQUE constraint failed", "database is locked", "duplicate key value",
                                                 "already exists"))
            if racing and attempt < 4:
                time.sleep(0.5 * (attempt + 1))
                continue
            # A server that is restarting, dropped the connection or is full for now: wait for it (a refused
            # connection fails at once: most likely a wrong host or port).
            trouble = _database_trouble(exc)
            text = _messages(exc)
            refused = any(s in text for s in ("connection refused", "could not translate host name"))
            transient = trouble == "full" or (trouble == "gone" and not refused)  # dropped while opening: restarting
            waited = time.perf_counter() - start
            if transient and waited < RECONNECT_S:
                time.sleep(min(0.2 * 2 ** attempt, 5.0))
                continue
            if transient:
                raise _trouble_error(trouble or "gone", shown, exc, waited) from None
            cause = exc.__cause__ if isinstance(exc, StorageInternalError) and exc.__cause__ else exc  # not Optuna's
            first = _scrub((str(cause).splitlines() or [""])[0][:200], url)  # generic "raised during the commit"
            raise SearchError("storage", shown, f"cannot open ({cause.__class__.__name__}: {first})") from None
    raise AssertionError("unreachable")


def cap_trials(study: optuna.Study, n_trials: int) -> bool:
    """Makes the study's storage refuse a sampler's trial once `n_trials` fill the study (StudyFull from
    study.ask); False where it cannot (the gRPC proxy: there the objective stands down instead)."""
    backend = getattr(study._storage, "_backend", study._storage)
    if not isinstance(backend, ResilientStorage):
        return False
    backend.trial_cap = n_trials
    return True


def retry_template(trial: FrozenTrial, max_retry: int = 3) -> FrozenTrial | None:
    """A fresh copy of a trial whose worker died, to enqueue: same parameters, nothing it measured (None once it
    was retried `max_retry` times).

    Optuna's own retry callback copies every attribute, constraints included, and a constraint once
    set cannot be set again: the retry would keep the dead attempt's latency verdict."""
    history = retry_history(trial)
    if len(history) > max_retry:
        return None
    return optuna.trial.create_trial(state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
                                     user_attrs=retry_attrs(trial), system_attrs=retry_system_attrs(history))


def retry_stale_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna's heartbeat callback: enqueues retry_template(trial)."""
    template = retry_template(trial)
    if template is not None:
        study.add_trial(template)


def load_study(name: str, storage: str) -> optuna.Study:
    """Loads an existing study; a missing one is a one-line SearchError that lists the studies there."""
    path = sqlite_path(storage)
    if path is not None and not path.is_file():  # opening it would create an empty database
        raise SearchError("storage", redact(storage), f"file {path} does not exist; allowed: the sqlite:///FILE.db "
                          "storage a search wrote")
    rdb = make_storage(storage)
    names = sorted(optuna.get_all_study_names(storage=rdb))
    if name not in names:
        allowed = ", ".join(repr(n) for n in names) if names else "none, the storage holds no study"
        raise SearchError("study", repr(name), f"not in {redact(storage)}; allowed: {allowed}")
    return optuna.load_study(study_name=name, storage=rdb)


# --- Trials of dead workers -------------------------------------------------------------------------------


def _machine() -> str:
    """This host, and where available its boot and pid namespace: where a pid names the same process."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(os.readlink("/proc/self/ns/pid"))
    return "/".join(parts)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """Process `pid`'s state letter and start time (clock ticks since boot) from /proc, or None without it."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # the name may hold spaces
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[19])


_workers: dict[int, dict[str, Any]] = {}


def _worker_record() -> dict[str, Any]:
    """This process, as a trial's WORKER attribute names it (computed once per process)."""
    pid = os.getpid()
    if pid not in _workers:
        stat = _proc_stat(pid)
        _workers[pid] = {"host": socket.gethostname(), "machine": _machine(), "pid": pid, "started": stat and stat[1]}
    return _workers[pid]


def claim_trial(trial: optuna.Trial) -> None:
    """Records on a running trial which process runs it, so that its death is seen at once on this machine
    (a ResilientStorage has stored it already, with the trial)."""
    store_worker(trial, _worker_record())


def _alive(pid: int, started: int | None) -> bool:
    """Whether the process `pid` that started at `started` still runs (a zombie or a reused pid does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        pass
    stat = _proc_stat(pid)
    if stat is None:  # no /proc: the pid exists, that is all one can tell
        return True
    return stat[0] not in ("Z", "X") and started in (None, stat[1])


def _dead_worker(trial: FrozenTrial, machine: str) -> str | None:
    """Why the trial's worker is known to be gone: it ran on this machine and its process is not there."""
    worker = worker_of(trial)
    if worker is None or worker.get("machine") != machine:
        return None  # unclaimed, or another machine's: the heartbeat rule applies
    if _alive(worker["pid"], worker.get("started")):
        return None
    return f"its worker (pid {worker['pid']} on {worker['host']}) is gone"


def _mark_failing(storage: Any, trial_id: int, reason: str) -> bool:
    """Writes the reason on a still running trial (user attributes are frozen once it has finished)."""
    try:
        store_failure_reason(storage, trial_id, reason)
        return True
    except UpdateFinishedTrialError:  # finished meanwhile (another worker failed it)
        return False


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Fails, with a reason, and retries (retry_stale_trial) every running trial whose worker is gone:
    at once when it ran on this machine and its process no longer exists, else once its heartbeat is stale.
    Returns the numbers of the trials failed."""
    storage = study._storage
    backend = getattr(storage, "_backend", storage)
    machine = _machine()
    if isinstance(backend, RDBStorage):  # the running trials only (the cache would read every trial first)
        running = backend._get_trials(study._study_id, states=(TrialState.RUNNING,), included_trial_ids=set(),
                                      trial_id_greater_than=-1)
    else:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    doomed = [t._trial_id for t in running
              if (reason := _dead_worker(t, machine)) is not None and _mark_failing(storage, t._trial_id, reason)]
    if isinstance(backend, ResilientStorage) and backend.heartbeat_interval:  # stale heartbeats, checked now
        doomed += backend.stale_trial_ids(study._study_id)
    failed = []
    for trial_id in dict.fromkeys(doomed):
        if isinstance(backend, ResilientStorage):
            number = backend.fail_and_retry(study._study_id, trial_id)
            failed += [] if number is None else [number]
            continue
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:  # another worker failed it first
            continue
        trial = storage.get_trial(trial_id)
        retry_stale_trial(study, trial)
        failed.append(trial.number)
    return sorted(failed)
