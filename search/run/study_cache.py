"""Optuna's cache in front of a worker's database storage, with one change: before each trial, Optuna looks
for waiting trials (enqueued points, retries) by refreshing its cache, which re-reads every running trial of
every worker with all its attributes. Here it first counts the waiting trials in the database, and refreshes
only when there is one (rarely: the named configs at the start, a dead worker's retry)."""

from __future__ import annotations

from collections.abc import Container

from optuna.storages import BaseStorage, _CachedStorage
from optuna.trial import FrozenTrial, TrialState


class WaitingFirstCache(_CachedStorage):
    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        if isinstance(states, tuple | list | set | frozenset) and set(states) == {TrialState.WAITING}:
            if not self._backend.count_by_state(study_id).get(TrialState.WAITING):
                return []
        return super().get_all_trials(study_id, deepcopy=deepcopy, states=states)


def cached(storage: BaseStorage) -> BaseStorage:
    """The storage as a study should hold it: a database storage of this package behind WaitingFirstCache,
    any other as Optuna would hold it."""
    return WaitingFirstCache(storage) if hasattr(storage, "count_by_state") else storage
