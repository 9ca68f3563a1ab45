"""Optuna storage: opening it (with heartbeats), loading a study by name, and failing and retrying the
trials of workers that died. Messages never show a database password."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from search.errors import SearchError
from search.records.trial import (
    retry_attrs,
    retry_history,
    retry_system_attrs,
    store_failure_reason,
    store_worker,
    worker_of,
)

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


def make_storage(url: str, heartbeat_s: int = 10) -> RDBStorage:
    """An RDB storage with heartbeats, so that a trial left running by a killed worker is failed and retried."""
    shown = redact(url)
    allowed = ("allowed: sqlite:///FILE.db, postgresql://USER:PASSWORD@HOST/DB (with the [postgres] extra), "
               "mysql://...")
    if not re.match(r"^(sqlite|postgresql(\+\w+)?|mysql(\+\w+)?)://", url):
        raise SearchError("storage", shown, f"not a storage URL; {allowed}")
    path = sqlite_path(url)
    if url.startswith("sqlite") and (path is None or not path.name):
        raise SearchError("storage", shown, f"not a file (an in-memory study keeps nothing); {allowed}")
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if path is not None:
        if not path.parent.is_dir():
            raise SearchError("storage", shown, f"directory {path.parent} does not exist")
        engine_kwargs = {"connect_args": {"timeout": 120}}
    for attempt in range(5):
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s,
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
            first = _scrub((str(exc).splitlines() or [""])[0][:200], url)
            raise SearchError("storage", shown, f"cannot open ({exc.__class__.__name__}: {first})") from None
    raise AssertionError("unreachable")


def retry_stale_trial(study: optuna.Study, trial: FrozenTrial, max_retry: int = 3) -> None:
    """Enqueues a fresh copy of a trial whose worker died: same parameters, nothing it measured.

    Optuna's own retry callback copies every attribute, constraints included, and a constraint once
    set cannot be set again: the retry would keep the dead attempt's latency verdict."""
    history = retry_history(trial)
    if len(history) > max_retry:
        return
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs=retry_attrs(trial),
        system_attrs=retry_system_attrs(history)))


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


def claim_trial(trial: optuna.Trial) -> None:
    """Records on a running trial which process runs it, so that its death is seen at once on this machine."""
    pid = os.getpid()
    stat = _proc_stat(pid)
    worker = {"host": socket.gethostname(), "machine": _machine(), "pid": pid, "started": stat and stat[1]}
    store_worker(trial, worker)


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
    failed = []
    machine = _machine()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = _dead_worker(trial, machine)
        if reason is None or not _mark_failing(storage, trial._trial_id, reason):
            continue
        try:
            if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue
        retry_stale_trial(study, storage.get_trial(trial._trial_id))
        failed.append(trial.number)
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    if interval is not None:  # an RDB storage with heartbeats
        grace = getattr(getattr(storage, "_backend", storage), "grace_period", None) or 2 * interval
        stale = [i for i in storage._get_stale_trial_ids(study._study_id)
                 if _mark_failing(storage, i, f"no heartbeat for {grace} s")]
        optuna.storages.fail_stale_trials(study)  # fails them and calls the storage's retry callback
        failed += [t.number for t in map(storage.get_trial, stale) if t.state == TrialState.FAIL]
    return sorted(failed)
