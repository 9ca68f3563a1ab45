"""The reads a worker makes around each trial stay small as workers and trials grow: states are counted in the
database, the look for waiting trials does not re-read every running trial, and stale trials are asked for
once per heartbeat interval (yet failed at once when a worker asks on purpose)."""

import os
import threading
import uuid
from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

from search.run.storage import fail_stale_trials, make_storage
from search.run.study_cache import WaitingFirstCache, cached
from search.run.workers import trial_states


@pytest.fixture
def study(tmp_path, quiet_optuna):
    storage = make_storage(f"sqlite:///{tmp_path / 'reads.db'}", heartbeat_s=3600)  # stale only when made so
    return optuna.create_study(storage=cached(storage), study_name="s", directions=["maximize", "minimize"])


def _calls(storage, name) -> list[tuple]:
    """Records the calls of the backend's method `name` (their arguments)."""
    seen, method = [], getattr(storage, name)

    def record(*args, **kwargs):
        seen.append(args)
        return method(*args, **kwargs)

    setattr(storage, name, record)
    return seen


def test_states_are_counted_in_the_database(study):
    for state in [TrialState.COMPLETE] * 3 + [TrialState.FAIL, TrialState.WAITING, TrialState.PRUNED]:
        values = [0.0, 1.0] if state == TrialState.COMPLETE else None
        study.add_trial(optuna.trial.create_trial(state=state, values=values))
    study.ask()  # pops the waiting one: RUNNING
    reads = _calls(study._storage._backend, "_get_trials")
    counted = trial_states(study)
    assert reads == []
    assert counted == {TrialState.COMPLETE: 3, TrialState.FAIL: 1, TrialState.PRUNED: 1, TrialState.RUNNING: 1}
    assert counted == Counter(t.state for t in study.get_trials(deepcopy=False))  # what Optuna's reads say


def test_asking_reads_no_trial_when_none_waits_and_pops_one_that_does(study):
    assert isinstance(study._storage, WaitingFirstCache)
    study.ask()
    reads = _calls(study._storage._backend, "_get_trials")
    study.ask()  # another worker's running trial is not read again to find that nothing waits
    assert reads == []
    study.enqueue_trial({"x": 3})
    trial = study.ask()
    assert trial.suggest_int("x", 0, 5) == 3 and len(reads) == 1


def _long_dead(backend, trial) -> None:
    """The trial's worker beat once, long ago: its heartbeat is stale."""
    import sqlalchemy

    backend.record_heartbeat(trial._trial_id)
    with backend.engine.begin() as db:
        db.execute(sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00' WHERE trial_id = :t"),
                   {"t": trial._trial_id})


def test_stale_trials_are_asked_for_once_per_heartbeat_interval_and_failed_at_once_on_purpose(study):
    backend = study._storage._backend
    first = study.ask()
    _long_dead(backend, first)
    queries = _calls(backend, "stale_trial_ids")
    assert backend._get_stale_trial_ids(study._study_id) == []  # Optuna's check: failed and retried here already
    assert len(queries) == 1 and trial_states(study) == {TrialState.FAIL: 1, TrialState.WAITING: 1}
    second = study.ask()  # takes the retry
    assert second.params == first.params
    _long_dead(backend, second)
    assert backend._get_stale_trial_ids(study._study_id) == [] and len(queries) == 1  # within one interval
    assert fail_stale_trials(study) == [second.number]  # a worker's own check asks now, fails and retries it
    assert len(queries) == 2 and trial_states(study) == {TrialState.FAIL: 2, TrialState.WAITING: 1}


def test_a_dead_trial_is_failed_and_retried_in_one_step_and_only_once(study):
    backend = study._storage._backend
    dead = study.ask()
    dead.suggest_int("x", 0, 5)
    dead.set_user_attr("spec_yaml", "a: 1")  # the buffered parameters are sent with it
    writes = []
    sqlalchemy_event = pytest.importorskip("sqlalchemy").event
    sqlalchemy_event.listen(backend.engine, "commit", lambda conn: writes.append(1))
    assert backend.fail_and_retry(study._study_id, dead._trial_id) == dead.number
    assert len(writes) == 1  # one transaction: failed, and its retry enqueued with it
    assert backend.fail_and_retry(study._study_id, dead._trial_id) is None  # failed already: no second retry
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].params == {"x": dead.params["x"]} and trials[1].system_attrs["failed_trial"] == dead.number


def test_a_capped_study_makes_no_trial_beyond_its_places_but_runs_what_waits(study):
    from search.run.storage import StudyFull, cap_trials

    assert cap_trials(study, 2)
    study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, values=[0.0, 1.0]))
    study.ask()  # the second place
    with pytest.raises(StudyFull):
        study.ask()  # another worker that had counted one place free: makes none
    study.enqueue_trial({"x": 2})  # a named config or a retry still goes in, and runs
    assert study.ask().suggest_int("x", 0, 5) == 2
    assert trial_states(study) == {TrialState.COMPLETE: 1, TrialState.RUNNING: 2}


def test_a_trial_made_after_the_study_filled_stands_down_unless_it_was_waiting(tmp_path, quiet_optuna):
    """Behind the gRPC proxy the database cannot refuse a trial: the objective checks (beyond_n_trials)."""
    from search.records.trial import NOT_RUN, TrialWriter, read_trials
    from search.run.workers import beyond_n_trials

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'full.db'}", directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, values=[0.0, 1.0]))
    study.enqueue_trial({"x": 1})  # a named config, waiting
    running = study.ask()  # takes the waiting one: made first, so never beyond
    assert not beyond_n_trials(study, running, 2)
    last = study.ask()  # the sampler's: one complete and one running were made before it
    assert not beyond_n_trials(study, last, 3)
    surplus = study.ask()  # two workers both found room for the third trial: the later one stands down
    assert beyond_n_trials(study, surplus, 3)
    TrialWriter(surplus).not_run(3)
    study.tell(surplus, state=TrialState.FAIL)
    assert [r.status for r in read_trials(study)][-1] == NOT_RUN
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, system_attrs={"failed_trial": 1}))
    retry = study.ask()  # a retry of a dead worker's trial runs even in a full study
    assert retry.number == 4 and not beyond_n_trials(study, retry, 3)


POSTGRES = os.environ.get("FASTERNET_TEST_POSTGRES_URL")


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_two_workers_racing_for_the_last_place_make_one_trial(tmp_path, quiet_optuna, monkeypatch, database):
    from optuna.storages._rdb import models

    from search.run.storage import StudyFull, cap_trials

    if database == "postgres" and not POSTGRES:
        pytest.skip("FASTERNET_TEST_POSTGRES_URL is not set (.ci/run starts a PostgreSQL)")
    url = POSTGRES if database == "postgres" else f"sqlite:///{tmp_path / 'race.db'}"
    name = f"race-{uuid.uuid4().hex[:8]}"
    first = optuna.create_study(storage=cached(make_storage(url)), study_name=name,
                                directions=["maximize", "minimize"])
    second = optuna.load_study(storage=cached(make_storage(url)), study_name=name)
    first.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, values=[0.0, 1.0]))
    assert cap_trials(first, 2) and cap_trials(second, 2)
    both_counted = threading.Barrier(2, timeout=30)
    lookup = models.StudyModel.find_or_raise_by_id

    def together(study_id, session, for_update=False):  # both start making their trial at the same moment
        if for_update:
            both_counted.wait()
        return lookup(study_id, session, for_update=for_update)

    monkeypatch.setattr(models.StudyModel, "find_or_raise_by_id", staticmethod(together))
    outcomes = []

    def ask(study) -> None:
        try:
            study.ask()
            outcomes.append("made")
        except StudyFull:
            outcomes.append("full")

    workers = [threading.Thread(target=ask, args=(study,)) for study in (first, second)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(outcomes) == ["full", "made"]
    assert trial_states(first) == {TrialState.COMPLETE: 1, TrialState.RUNNING: 1}
