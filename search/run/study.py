"""The Optuna study: sampler, named configs enqueued first, resume, workers, and the run loop."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from fasternet_space import NAMED_SPECS, zero_cost
from fasternet_space.data import Dataset, load_dataset
from fasternet_space.spec import SpecError
from search.config import SAMPLERS, SearchConfig
from search.errors import SearchError
from search.records import study_attrs
from search.records.trial import SCORED, TrialRecord, named_attrs, read_trials
from search.run.confirm import confirm
from search.run.objective import Objective
from search.run.pruning import make_pruner
from search.run.storage import StudyFull, cap_trials, fail_stale_trials, make_storage, redact, storage_phase
from search.run.study_cache import cached
from search.run.workers import StopWhenFull, room_left, start_workers, trial_states, wait_for_workers
from search.space import SearchSpace

DIRECTIONS = ["maximize", "minimize"]  # proxy_acc, latency_ms
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def make_sampler(name: str, space: SearchSpace, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, n_trials // 3)),
                                          multivariate=True, constant_liar=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, n_trials // 3)))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        try:
            import scipy  # noqa: F401
        except ImportError:
            raise SearchError("sampler", "gp", "needs scipy; allowed: pip install -e '.[gp]', or another sampler: "
                              + ", ".join(s for s in SAMPLERS if s != "gp")) from None
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=min(10, max(2, n_trials // 3)))
    if name == "grid":
        grid = space.grid()
        if grid is None:
            raise SearchError("sampler", "grid", f"needs a finite space; {space.source or space.name} has a "
                              "continuous range; allowed: choices, integer ranges or stepped ranges only")
        return optuna.samplers.GridSampler(grid, seed=seed)
    raise SearchError("sampler", repr(name), f"not known; allowed: {', '.join(SAMPLERS)}")


def open_study(config: SearchConfig, space: SearchSpace) -> tuple[optuna.Study, bool]:
    """Creates the study, or loads it to resume: (study, created here). Creation is atomic in the storage,
    so of several workers started at once exactly one creates it. A resumed study must have the same setting."""
    storage = make_storage(config.storage, config.heartbeat_s)
    name = config.resolved_study_name(space.name)
    # Workers, and a resumed run, must not replay the same random suggestions: the seed mixed with the
    # worker and the trials already there (a single fresh run keeps exactly the configured seed). Mixed, not
    # added: machines with seeds 1 and 2 joining at 5 and 4 trials would otherwise both draw with seed 6.
    import hashlib

    existing = _trial_count(storage, name)
    offset = (config.worker_index, existing)
    mixed = hashlib.sha256(f"{config.seed}/{offset[0]}/{offset[1]}".encode()).digest()
    seed = config.seed if offset == (0, 0) else int.from_bytes(mixed[:4], "big") >> 1
    sampler = make_sampler(config.sampler, space, seed, config.n_trials)
    setting = config.setting()
    where = redact(config.storage)
    try:
        study = optuna.create_study(storage=cached(storage), study_name=name, directions=DIRECTIONS, sampler=sampler)
        rank_by = (config.rank_by or "loss") if config.accuracy == "train" else None
        study_attrs.write_new(study, setting, config.proxy_setup(), config.sampler, rank_by)
        study.set_metric_names(["minus_heldout_loss" if rank_by == "loss" else "proxy_acc", "latency_ms"])
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=cached(storage), study_name=name, sampler=sampler)
    if list(study.directions) != [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]:
        raise SearchError("study_name", repr(name), f"the study in {where} is not a fasternet-space search; "
                          "allowed: another study name")
    stored = study_attrs.setting(study)
    deadline = time.monotonic() + 10.0  # many workers started at once on a busy database: the creator is slow
    while stored is None and time.monotonic() < deadline:  # created by another worker a moment ago
        time.sleep(0.5)
        stored = study_attrs.setting(study)
    stored = stored or setting
    differ = [k for k in {**stored, **setting} if k != "space" and stored.get(k) != setting.get(k)]
    if differ:
        was = ", ".join(f"{k} {_show(stored.get(k))}" for k in differ)
        raise SearchError("study_name", repr(name), f"the study in {where} was made with {was}; allowed: the same "
                          "setting to resume it (numbers measured otherwise are not comparable), or another study name")
    study_attrs.add_sampler(study, config.sampler)
    return study, False


def settle_rank_by(study: optuna.Study, created: bool, config: SearchConfig) -> tuple[SearchConfig, str | None]:
    """What ranks the study's trained candidates, with a note for the user where it is not what a new study
    would use. A new study stores it (loss unless asked otherwise); a resumed one keeps its own, and asking
    for another is refused."""
    if config.accuracy != "train":  # a training-free search or a census: scores, not trainings, rank
        return config, None
    stored = study_attrs.rank_by(study)  # a new study's was written with its setting (open_study)
    if created:
        return replace(config, rank_by=stored), None
    if config.rank_by is not None and config.rank_by != stored:
        raise SearchError("rank_by", config.rank_by, f"the study {study.study_name!r} ranks its candidates by "
                          f"{stored}; allowed: --rank-by {stored} to resume it, or another study name")
    note = None
    if study.user_attrs.get(study_attrs.RANK_BY) is None:
        note = ("this study was made before candidates were ranked by held-out loss: it stays ranked by top-1 "
                "(--rank-by top1); start a new study (another --study-name) to rank by loss")
    return replace(config, rank_by=stored), note


def _show(value: Any) -> str:
    return "another version of the file" if isinstance(value, str) and len(value) == 64 else str(value)


def _trial_count(storage: optuna.storages.BaseStorage, name: str) -> int:
    try:  # a count in the database: loading the trials takes seconds per worker in a study of thousands
        return storage.get_n_trials(storage.get_study_id_from_name(name))
    except KeyError:
        return 0


def named_points(space: SearchSpace) -> dict[str, tuple[str, dict[str, Any]]]:
    """The named configs that are points of the space: label -> (spec name, Optuna parameters)."""
    points = {}
    for key, spec in NAMED_SPECS.items():
        params = space.params_for(spec)
        if params is not None:
            points[key.upper()] = (spec.name, params)
    return points


def enqueue_named(study: optuna.Study, space: SearchSpace) -> list[str]:
    """Enqueues the named configs that are points of the space (called once, by the study's creator)."""
    points = named_points(space)
    for label, (spec_name, params) in points.items():
        study.enqueue_trial(params, user_attrs=named_attrs(label, spec_name))
    return list(points)


def screen(config: SearchConfig, space: SearchSpace, on_trial: Callable | None = None,
           stop: threading.Event | None = None) -> tuple[list[dict[str, Any]], SearchOutcome]:
    """The first stage of a two-stage search: scores `config.screen` candidates without training (a study
    of its own, STUDY-screen, resumable like any other), then returns the parameters of the best
    `config.keep` share of the feasible ones by the zero-cost vote (named configs left out: they are
    enqueued in the trained study anyway), with the screening run's outcome."""
    main_name = config.resolved_study_name(space.name)
    screening = replace(config, study_name=f"{main_name}-screen", accuracy="zero-cost:vote", rank_by=None, n_trials=config.screen,
                        screen=0, confirm=1, zero_cost_scores=True)
    outcome = run_search(screening, on_trial=on_trial, stop=stop)
    scored = {r.number: r for r in read_trials(outcome.study)
              if r.status == SCORED and r.zero_cost and not r.named
              and all(n in r.zero_cost for n in zero_cost.VOTE_SCORES)}
    votes = zero_cost.vote({n: r.zero_cost for n, r in scored.items()})
    best = sorted(votes, key=lambda n: -votes[n])[:math.ceil(config.keep * len(votes))]
    return [scored[n].params for n in best], outcome


def check_space(space: SearchSpace, dataset: Dataset, samples: int = 32) -> None:
    """Refuses, before any trial, a space that gives no valid network or a proxy resolution too small for it."""
    specs, problems = [], []
    for seed in range(samples):
        try:
            specs.append(space.sample_specs(1, seed=seed)[0])
        except SpecError as exc:
            problems.append(str(exc))
    if not specs:
        raise SearchError("space", space.source or space.name, f"no valid network in {samples} random suggestions "
                          f"(e.g. {problems[0]}); allowed: a space whose points are valid specs")
    smallest = min(spec.min_input_size() for spec in specs)
    if dataset.resolution < smallest:
        raise SearchError("proxy_resolution", dataset.resolution, "too small for this space's patch and merge "
                          f"layers; allowed: >= {smallest}")


def count_finished(study: optuna.Study) -> int:
    states = trial_states(study)
    return sum(states[state] for state in FINISHED)


BUILT_IN_DATA = ("digits", "fashion")


def deployment_note(space: SearchSpace, dataset: Dataset, data: str) -> str | None:
    """Where the user's own data has other classes than the space's head: latency is measured for the
    space's head and input, the proxy trains with the data's classes; say so, and how to align them."""
    if data.split(":")[0] in BUILT_IN_DATA:
        return None
    spec = space.sample_specs(1, seed=0)[0]
    if spec.num_classes == dataset.classes:
        return None
    return (f"latency is measured for the space's deployment, {spec.num_classes} classes at "
            f"{spec.input_size}x{spec.input_size}, while the proxy trains with the data's {dataset.classes} classes "
            f"at {dataset.resolution}x{dataset.resolution}; if you deploy on this data, set num_classes: "
            f"{dataset.classes} and input_size: YOUR_SIZE in the space file")


@dataclass
class SearchOutcome:
    """What a run of `run_search` did: the study, whether it was interrupted, what it enqueued and cleaned up."""

    study: optuna.Study
    interrupted: bool = False
    enqueued: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    failed_workers: int = 0  # extra worker processes that ended with an error
    stale_failed: list[int] = field(default_factory=list)  # trials of dead workers failed by this run
    notes: list[str] = field(default_factory=list)  # what the user should know about this setting
    confirmations: int = 0  # retrainings with other seeds done by this run
    budget_ms: float | None = None  # the budget in ms (a budget in reference units: as calibrated)
    budget_in_reference: bool = False  # the budget was given in the reference's units (1.2xT0)
    rank_by: str | None = None  # what ranked the trained candidates: loss or top1
    pick: str | None = None  # the rule that picks best.yaml among the candidates tied with the best


def run_search(config: SearchConfig, on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
               on_start: Callable[[SearchOutcome], None] | None = None,
               on_confirm: Callable[[TrialRecord, int, float], None] | None = None,
               stop: threading.Event | None = None) -> SearchOutcome:
    """Runs (or resumes) the study until it holds `n_trials` finished trials or the timeout passes,
    with `config.workers - 1` extra processes on this machine sharing it through the storage.

    Setting `stop` (e.g. from a SIGINT handler) ends the run: training polls it every step, and the
    study stops after the current trial even where a KeyboardInterrupt was swallowed on its way up."""
    config.validate()
    stop = stop or threading.Event()
    space = SearchSpace.from_yaml(config.space)
    kept: list[dict[str, Any]] = []
    if config.screen:
        kept, screened = screen(config, space, on_trial=on_trial, stop=stop)
        if stop.is_set():
            return screened  # interrupted while screening: its summary; the same command resumes
        config = replace(config, n_trials=len(kept) + (len(named_points(space)) if config.named else 0))
    dataset = load_dataset(config.data, config.proxy.resolution, seed=config.seed,
                           max_train=config.max_train_samples, max_test=config.max_test_samples)
    check_space(space, dataset)
    study, created = open_study(config, space)
    config, rank_note = settle_rank_by(study, created, config)
    if config.worker_index == 0:
        study_attrs.store_pick(study, config.pick)
    outcome = SearchOutcome(study, budget_ms=config.budget_ms, rank_by=config.rank_by, pick=config.pick,
                            budget_in_reference=config.budget_ratio is not None)
    outcome.notes += [rank_note] if rank_note else []
    outcome.stale_failed = fail_stale_trials(study)
    capped = cap_trials(study, config.n_trials)  # of workers that race for the last place, one makes a trial
    outcome.enqueued = enqueue_named(study, space) if config.named and created else []
    if kept and not study_attrs.screened(study):  # once, by the run that screened
        for params in kept:
            study.enqueue_trial(params)
        study_attrs.mark_screened(study, len(kept))
    note = deployment_note(space, dataset, config.data)
    outcome.notes += [note] if note else []
    if on_start is not None:
        on_start(outcome)
    objective = Objective(space, dataset, config, make_pruner(config.pruner), stop=stop, stand_down=not capped)
    outcome.budget_ms = objective.prepare(study)
    config = objective.config  # a budget in reference units is in ms from here on
    workers = start_workers(config, study.study_name, config.workers - 1)
    start = time.perf_counter()
    room = room_left(study, config.n_trials)  # waiting trials (named configs, retries) first, then up to n_trials
    cap = 3 * max(config.n_trials - count_finished(study), room) + 5

    def stop_when_asked(study: optuna.Study, trial: FrozenTrial) -> None:
        if stop.is_set():
            study.stop()

    callbacks = [StopWhenFull(config.n_trials)]  # counts what other workers run, so the study ends at n_trials
    if on_trial is not None:
        callbacks.append(on_trial)
    callbacks.append(stop_when_asked)
    storage_phase("trials")
    try:
        while room > 0:
            # Failed trials do not count toward n_trials; the cap only stops a study whose every trial fails.
            # gc after a training frees its tensors; a census trial needs none (it was most of its CPU time)
            timeout = None if config.timeout_s is None else config.timeout_s - (time.perf_counter() - start)
            if timeout is not None and timeout <= 0:
                break
            with contextlib.suppress(StudyFull):  # another worker made the last trial: this one makes none
                study.optimize(objective, n_trials=cap, timeout=timeout, callbacks=callbacks,
                               catch=(Exception,), gc_after_trial=config.accuracy == "train")
            if stop.is_set():
                break
            # A dead worker's trial failed only now leaves its retry waiting: run it before ending (where the
            # storage refuses trials beyond n_trials, every worker may look; behind the gRPC proxy only the one
            # that failed it goes on, so that no other starts a surplus trial).
            failed_now = fail_stale_trials(study)
            outcome.stale_failed += failed_now
            room = room_left(study, config.n_trials) if failed_now or capped else 0
    except KeyboardInterrupt:
        stop.set()
    finally:
        storage_phase("end")
        outcome.failed_workers = wait_for_workers(workers, stop)
        objective.close()
    if config.worker_index == 0 and not stop.is_set():
        try:
            outcome.confirmations = confirm(study, dataset, config.proxy, config.seed, config.confirm,
                                            on_result=on_confirm, stop=stop, device=config.device)
        except KeyboardInterrupt:
            stop.set()
    outcome.stale_failed += fail_stale_trials(study)
    outcome.interrupted = stop.is_set()
    outcome.elapsed_s = time.perf_counter() - start
    return outcome
