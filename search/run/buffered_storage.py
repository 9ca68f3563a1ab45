"""An RDBStorage that sends what a worker writes to its own running trial in few transactions, not one each.

A trial of the search writes ~20 parameters and attributes one by one, and Optuna re-reads the trial it runs
four times; each was a round trip and a commit. Here the trial's own writes wait in memory and go in one
transaction: at its first attribute after parameters were drawn (so that the parameters, and the worker's
claim, are stored at once, for a retry and for samplers of other workers), at each heartbeat (a dashboard
sees progress, a worker killed -9 loses at most one heartbeat interval of attributes, which the retry
measures again anyway), and at tell, together with the state and values. The trial's own reads are served
from memory, with its unsent writes merged in. Writes to other workers' trials (failing a dead worker's
trial) go straight to the database, as before."""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Container, Sequence
from datetime import datetime
from typing import Any

from optuna import distributions
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import IntegrityError

_KEPT_FINISHED = 16  # own finished trials kept for the reads right after tell (callbacks)


class _Own:
    """One running trial of this process: its view (the stored trial with the unsent writes merged in)
    and the writes not sent yet."""

    def __init__(self, trial: FrozenTrial | None):
        self.trial = trial  # None until first read (a waiting trial this process took)
        self.params: list[tuple[str, float, distributions.BaseDistribution, Any]] = []
        self.user_attrs: dict[str, str] = {}  # key -> JSON text
        self.system_attrs: dict[str, str] = {}
        self.sent_once = False

    def pending(self) -> bool:
        return bool(self.params or self.user_attrs or self.system_attrs)

    def merged(self, stored: FrozenTrial) -> FrozenTrial:
        trial = copy.deepcopy(stored)
        for name, internal, dist, _ in self.params:
            trial.params[name] = dist.to_external_repr(internal)
            trial.distributions[name] = dist
        trial.user_attrs.update({k: json.loads(v) for k, v in self.user_attrs.items()})
        trial.system_attrs.update({k: json.loads(v) for k, v in self.system_attrs.items()})
        return trial


class BufferedTrialWrites(RDBStorage):
    """RDBStorage with the writes of this process's own running trials batched (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._init_buffer()

    def _init_buffer(self) -> None:
        self._own: dict[int, _Own] = {}
        self._finished: OrderedDict[int, FrozenTrial] = OrderedDict()
        self._buffer_lock = threading.RLock()  # guards _own and _finished
        self._send_lock = threading.Lock()  # one sending at a time: a heartbeat's never overtakes the tell

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        for key in ("_own", "_finished", "_buffer_lock", "_send_lock"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._init_buffer()

    # --- Trials this process runs -------------------------------------------------------------------------

    def _claim(self) -> dict[str, Any]:
        """System attributes stored on each trial this process starts (who runs it), with the trial itself."""
        return {}

    def _get_prepared_new_trial(self, study_id: int, template_trial: FrozenTrial | None, session: Any) -> Any:
        trial = super()._get_prepared_new_trial(study_id, template_trial, session)
        if template_trial is None:  # in the transaction that creates it: claimed from its first instant
            session.add_all([models.TrialSystemAttributeModel(trial_id=trial.trial_id, key=k, value_json=json.dumps(v))
                             for k, v in self._claim().items()])
        return trial

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        trial = super()._create_new_trial(study_id, template_trial)
        if template_trial is None and trial.state == TrialState.RUNNING:  # ask(): this process runs it
            trial.system_attrs.update(json.loads(json.dumps(self._claim())))
            with self._buffer_lock:
                self._own[trial._trial_id] = _Own(copy.deepcopy(trial))
        return trial

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        if state == TrialState.RUNNING:  # taking a waiting trial
            taken = super().set_trial_state_values(trial_id, state, values)
            if taken:
                with self._buffer_lock:
                    self._own[trial_id] = _Own(None)
                for key, value in self._claim().items():  # sent with its parameters
                    self._buffer(trial_id, key, value, user=False)
            return taken
        if state.is_finished() and trial_id in self._own:
            return self._send(trial_id, state, values)
        return super().set_trial_state_values(trial_id, state, values)

    def _set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                         distribution: distributions.BaseDistribution,
                         previous_distribution: distributions.BaseDistribution | None) -> None:
        with self._buffer_lock:
            own = self._own.get(trial_id)
            if own is not None:
                if previous_distribution is not None:  # else checked against the study's when sent
                    distributions.check_distribution_compatibility(previous_distribution, distribution)
                if all(p[0] != param_name for p in own.params):
                    own.params.append((param_name, param_value_internal, distribution, previous_distribution))
                    if own.trial is not None:
                        own.trial.params[param_name] = distribution.to_external_repr(param_value_internal)
                        own.trial.distributions[param_name] = distribution
                return
        super()._set_trial_param(trial_id, param_name, param_value_internal, distribution, previous_distribution)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        if not self._buffer(trial_id, key, value, user=True):
            super().set_trial_user_attr(trial_id, key, value)
            return
        own = self._own.get(trial_id)
        if own is not None and (own.params or not own.sent_once):  # parameters drawn: store them now
            self._send(trial_id)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        if not self._buffer(trial_id, key, value, user=False):
            super().set_trial_system_attr(trial_id, key, value)

    def _buffer(self, trial_id: int, key: str, value: Any, user: bool) -> bool:
        with self._buffer_lock:
            own = self._own.get(trial_id)
            if own is None:
                return False
            text = json.dumps(value)  # what the database would store (a tuple reads back as a list)
            (own.user_attrs if user else own.system_attrs)[key] = text
            if own.trial is not None:
                (own.trial.user_attrs if user else own.trial.system_attrs)[key] = json.loads(text)
            return True

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        super().set_trial_intermediate_value(trial_id, step, intermediate_value)  # at once: others' pruners read it
        with self._buffer_lock:
            own = self._own.get(trial_id)
            if own is not None and own.trial is not None:
                own.trial.intermediate_values[step] = intermediate_value

    def record_heartbeat(self, trial_id: int) -> None:
        own = self._own.get(trial_id)
        if own is not None and own.pending():
            try:
                self._send(trial_id)
            except UpdateFinishedTrialError:  # failed by another worker: nothing more to send
                pass
        super().record_heartbeat(trial_id)

    # --- Reads ----------------------------------------------------------------------------------------------

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._buffer_lock:
            own = self._own.get(trial_id)
            if own is not None and own.trial is not None:
                return copy.deepcopy(own.trial)
            if trial_id in self._finished:
                return copy.deepcopy(self._finished[trial_id])
        stored = super().get_trial(trial_id)
        with self._buffer_lock:
            own = self._own.get(trial_id)
            if own is None or stored.state.is_finished():
                return stored
            if own.trial is None:
                own.trial = own.merged(stored)
            return copy.deepcopy(own.trial)

    def get_trial_user_attrs(self, trial_id: int) -> dict[str, Any]:
        return self.get_trial(trial_id).user_attrs if trial_id in self._own else super().get_trial_user_attrs(trial_id)

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        if trial_id in self._own:
            return self.get_trial(trial_id).system_attrs
        return super().get_trial_system_attrs(trial_id)

    def get_trial_param(self, trial_id: int, param_name: str) -> float:
        with self._buffer_lock:
            own = self._own.get(trial_id)
            for name, internal, _, _ in own.params if own is not None else ():
                if name == param_name:
                    return internal
        return super().get_trial_param(trial_id, param_name)

    def _get_trials(self, study_id: int, states: Container[TrialState] | None, included_trial_ids: set[int],
                    trial_id_greater_than: int) -> list[FrozenTrial]:
        trials = super()._get_trials(study_id, states, included_trial_ids, trial_id_greater_than)
        with self._buffer_lock:
            if not self._own:
                return trials
            return [copy.deepcopy(self._own[t._trial_id].trial)
                    if t._trial_id in self._own and self._own[t._trial_id].trial is not None
                    and not t.state.is_finished() else t for t in trials]

    # --- Sending ----------------------------------------------------------------------------------------------

    def _send(self, trial_id: int, state: TrialState | None = None, values: Sequence[float] | None = None) -> bool:
        """Sends the trial's unsent writes, and its final state and values when given, in one transaction."""
        with self._send_lock:
            with self._buffer_lock:
                own = self._own.get(trial_id)
                if own is None:  # finished meanwhile
                    return False
                params, user, system = list(own.params), dict(own.user_attrs), dict(own.system_attrs)
            if not (params or user or system or state):
                return True
            finished_at = datetime.now()
            try:
                with _create_scoped_session(self.scoped_session) as session:
                    trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=state is not None)
                    self.check_trial_is_updatable(trial_id, trial.state)
                    self._add_params(session, trial, params)
                    self._upsert_attrs(session, models.TrialUserAttributeModel, trial, user)
                    self._upsert_attrs(session, models.TrialSystemAttributeModel, trial, system)
                    if state is not None:
                        for objective, value in enumerate(values or ()):
                            self._set_trial_value_without_commit(session, trial, objective, value)
                        trial.state = state
                        trial.datetime_complete = finished_at
            except UpdateFinishedTrialError:
                with self._buffer_lock:
                    self._own.pop(trial_id, None)
                raise
            except IntegrityError:  # as RDBStorage.set_trial_state_values says it
                return False
            with self._buffer_lock:
                own.params = own.params[len(params):]
                for sent, kept in ((user, own.user_attrs), (system, own.system_attrs)):
                    for key, text in sent.items():
                        if kept.get(key) is text:
                            del kept[key]
                own.sent_once = True
                if state is not None:
                    self._own.pop(trial_id, None)
                    if own.trial is not None:
                        own.trial.state = state
                        own.trial.values = None if values is None else [float(v) for v in values]
                        own.trial.datetime_complete = finished_at
                        self._finished[trial_id] = own.trial
                        while len(self._finished) > _KEPT_FINISHED:
                            self._finished.popitem(last=False)
            return True

    def _add_params(self, session: Any, trial: models.TrialModel, params: list) -> None:
        for name, internal, dist, previous in params:
            if previous is None:  # the study's distribution of this name (the first trial of this process)
                record = (session.query(models.TrialParamModel).join(models.TrialModel)
                          .filter(models.TrialModel.study_id == trial.study_id)
                          .filter(models.TrialParamModel.param_name == name).first())
                if record is not None:
                    distributions.check_distribution_compatibility(
                        distributions.json_to_distribution(record.distribution_json), dist)
            session.add(models.TrialParamModel(trial_id=trial.trial_id, param_name=name, param_value=internal,
                                               distribution_json=distributions.distribution_to_json(dist)))

    def _upsert_attrs(self, session: Any, model: type, trial: models.TrialModel, attrs: dict[str, str]) -> None:
        """Writes (or overwrites) the attributes in one statement where the database has an upsert."""
        if not attrs:
            return
        rows = [{"trial_id": trial.trial_id, "key": k, "value_json": v} for k, v in attrs.items()]
        name = self.engine.name
        if name == "postgresql" or (name == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0)):
            if name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            statement = insert(model).values(rows)
            session.execute(statement.on_conflict_do_update(index_elements=[model.trial_id, model.key],
                                                            set_={"value_json": statement.excluded.value_json}))
        elif name == "mysql":
            from sqlalchemy.dialects.mysql import insert

            statement = insert(model).values(rows)
            session.execute(statement.on_duplicate_key_update(value_json=statement.inserted.value_json))
        else:
            for key, text in attrs.items():
                self._set_trial_attr_without_commit(session, model, trial.trial_id, key, json.loads(text))
