"""Optuna storage: opening it (with heartbeats), loading a study by name, retrying a dead worker's trial."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from .errors import SearchError

DEFAULT_STORAGE = "sqlite:///fasternet_studies.db"


def sqlite_path(url: str) -> Path | None:
    """The database file of a sqlite:///FILE URL (None for other URLs)."""
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def make_storage(url: str, heartbeat_s: int = 10) -> RDBStorage:
    """An RDB storage with heartbeats, so that a trial left running by a killed worker is failed and retried."""
    allowed = ("allowed: sqlite:///FILE.db, postgresql://USER:PASSWORD@HOST/DB (with the [postgres] extra), "
               "mysql://...")
    if not re.match(r"^(sqlite|postgresql(\+\w+)?|mysql(\+\w+)?)://", url):
        raise SearchError(f"--storage {url!r} is not a storage URL; {allowed}")
    engine_kwargs: dict[str, Any] = {}
    path = sqlite_path(url)
    if url.startswith("sqlite") and (path is None or not path.name):
        raise SearchError(f"--storage {url!r} is not a file (an in-memory study keeps nothing); {allowed}")
    if path is not None:
        if not path.parent.is_dir():
            raise SearchError(f"--storage {url}: directory {path.parent} does not exist")
        engine_kwargs = {"connect_args": {"timeout": 120}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    for attempt in range(5):
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s,
                              grace_period=3 * heartbeat_s, heartbeat_stale_trial_callback=retry_stale_trial)
        except ImportError:
            raise SearchError(f"--storage {url}: its database driver is not installed; allowed: "
                              "pip install -e '.[postgres]' for PostgreSQL") from None
        except Exception as exc:  # SQLAlchemy raises many kinds for an unreachable or malformed database
            # Workers opening a new database at once race to create its tables: the losers retry.
            racing = any(s in str(exc) for s in ("UNIQUE constraint failed", "database is locked", "duplicate key value"))
            if racing and attempt < 4:
                time.sleep(0.5 * (attempt + 1))
                continue
            first = (str(exc).splitlines() or [""])[0][:200]
            raise SearchError(f"--storage {url}: cannot open ({exc.__class__.__name__}: {first})") from None
    raise AssertionError("unreachable")


def retry_stale_trial(study: optuna.Study, trial: FrozenTrial, max_retry: int = 3) -> None:
    """Enqueues a fresh copy of a trial whose worker died: same parameters, nothing it measured.

    Optuna's own retry callback copies every attribute, constraints included, and a constraint once
    set cannot be set again: the retry would keep the dead attempt's latency verdict."""
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if len(history) > max_retry:
        return
    keep = {k: trial.user_attrs[k] for k in ("named", "spec_name") if k in trial.user_attrs}
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions, user_attrs=keep,
        system_attrs={"failed_trial": history[0], "retry_history": history}))


def load_study(name: str, storage: str) -> optuna.Study:
    """Loads an existing study; a missing one is a one-line SearchError that lists the studies there."""
    path = sqlite_path(storage)
    if path is not None:
        if not path.is_file():  # opening it would create an empty database
            raise SearchError(f"--storage {storage}: file {path} does not exist; allowed: the sqlite:///FILE.db "
                              "a search wrote (python cli.py search ... --storage sqlite:///FILE.db)")
    rdb = make_storage(storage)
    names = sorted(optuna.get_all_study_names(storage=rdb))
    if name not in names:
        allowed = ", ".join(repr(n) for n in names) if names else "none, the storage holds no study"
        raise SearchError(f"study {name!r} is not in {storage}; allowed: {allowed}")
    return optuna.load_study(study_name=name, storage=rdb)
