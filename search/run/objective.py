"""The search objective: spec -> metrics, cheapest first (count, then latency, then the proxy).

Objectives: maximise the ranking score (minus the held-out loss, or the top-1: `rank_by`), minimise
latency_ms. The latency budget is an Optuna constraint; a candidate over budget is recorded as infeasible
with its measured latency (or the latency a latency table predicts, `search.run.latency`) and is never
trained (its score objective is `untrained_merit`: chance's loss, or 0.0 top-1, and its record's
`proxy_acc` is None). A spec the study already holds is a repeat (`search.run.repeats`). Every attribute
is written through `TrialWriter`.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import optuna
import torch

from fasternet_space import count, zero_cost
from fasternet_space.data import Dataset
from fasternet_space.paired import load_per_core
from fasternet_space.proxy import HeldOut, ProxyDiverged, train_proxy
from fasternet_space.spec import ArchSpec, SpecError
from search.config import SearchConfig
from search.errors import SearchError
from search.records import study_attrs
from search.records.trial import TRAINED, TrialRecord, TrialWriter
from search.run import repeats
from search.run.latency import References, load_table, measure_candidate, screened_out
from search.run.pruning import CurvePruner
from search.run.storage import StudyFull, claim_trial
from search.run.workers import beyond_n_trials
from search.space import SearchSpace

# Stored for every feasible candidate (the baselines params and flops are exact counts, stored already).
STORED_SCORES = ("synflow", "naswot", "grad_norm", "snip")


def _needed(accuracy: str) -> tuple[str, ...]:
    name = accuracy.removeprefix("zero-cost:")
    return zero_cost.VOTE_SCORES if name == "vote" else (name,)


def _stored_scores(trial: optuna.Trial) -> list[dict[str, float]]:
    """The zero-cost scores of the study's other finished trials."""
    finished = trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return [r.zero_cost for r in map(TrialRecord.from_trial, finished) if r.zero_cost and r.number != trial.number]


def vote_percentile(scores: dict[str, float], others: list[dict[str, float]]) -> float:
    """The vote of a candidate while the study grows: the mean, over synflow, naswot and snip, of the share
    of scored candidates (itself included) that it scores at least as high as; in (0, 1], higher is better.
    It is relative to the trials so far, so early values are coarse (the study's vote is final at the end)."""
    shares = []
    for name in zero_cost.VOTE_SCORES:
        pool = [o[name] for o in others if name in o] + [scores[name]]
        shares.append(sum(v <= scores[name] for v in pool) / len(pool))
    return sum(shares) / len(shares)


@contextlib.contextmanager
def device_lock(lock_dir: str | Path | None, device: str, exclusive: bool) -> Iterator[None]:
    """A readers-writer lock per device, shared by the workers on this machine: timing takes it
    exclusively (a latency measured while another worker trains is not a measurement); training takes
    it shared, so trainings overlap with each other but never with a timing."""
    if lock_dir is None:
        yield
        return
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"device-{device.replace(':', '_')}.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def default_lock_dir() -> str:
    return str(Path(tempfile.gettempdir()) / "fasternet-space-locks")


def _first_line(exc: BaseException, limit: int = 300) -> str:
    return (str(exc).splitlines() or [""])[0][:limit]


class Objective:
    def __init__(self, space: SearchSpace, dataset: Dataset, config: SearchConfig,
                 pruner: CurvePruner | None = None, stop: threading.Event | None = None, stand_down: bool = False):
        self.space = space
        self.dataset = dataset
        self.config = config
        self.pruner = pruner
        self.stop = stop or threading.Event()
        self.table = load_table(config)  # None unless latency is predicted or auto
        self.references = References(config) if config.reference() else None  # paired timing (CPU)
        self.rank_by = "top1"  # what ranks the study's candidates: the study's, read in prepare()
        self.stand_down = stand_down  # check that the study has room for each new trial (storage that cannot)

    def prepare(self, study: optuna.Study) -> float | None:
        """Calibrates the reference now (or reads the study's calibration) for the space's input, if fixed:
        before the extra workers start, so that they read this calibration instead of each making one.
        A budget in reference units becomes ms here (ratio x calibration); returns the budget in ms."""
        size, chans = (self.space.entries.get(k, getattr(ArchSpec, k)) for k in ("input_size", "in_chans"))
        fixed = isinstance(size, int) and isinstance(chans, int)
        self.rank_by = study_attrs.rank_by(study)  # settled when the study was made: it never changes
        if self.references is not None and fixed:
            with device_lock(self.config.lock_dir, self.config.device, exclusive=True):
                _, calibration = self.references.get(study, size, chans)
            if self.config.budget_ratio is not None:
                self.config = replace(self.config, budget_ms=self.config.budget_ratio * calibration.ms)
                study_attrs.store_budget_ms(study, self.config.budget_ms)
        elif self.config.budget_ratio is not None:
            raise SearchError("budget", self.config.budget_text(), "needs one calibration, and the space's input "
                              "size or channels are free; allowed: a budget in ms, or fixed input_size and in_chans")
        return self.config.budget_ms

    def close(self) -> None:
        if self.references is not None:
            self.references.close()

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        """Any failure marks this trial failed with its reason stored on it; the study goes on."""
        writer = TrialWriter(trial)
        claim_trial(trial)
        if self.stand_down and beyond_n_trials(trial.study, trial, self.config.n_trials):
            writer.not_run(self.config.n_trials)
            raise StudyFull(f"the study already holds {self.config.n_trials} trials")
        try:
            return self._evaluate(trial, writer)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            writer.failure("interrupted by the user (Ctrl-C); the same command resumes")
            raise
        except Exception as exc:
            writer.failure(f"{exc.__class__.__name__}: {_first_line(exc)}", keep_earlier=True)
            raise

    def _evaluate(self, trial: optuna.Trial, writer: TrialWriter) -> tuple[float, float]:
        config = self.config
        try:
            spec = self.space.suggest(trial, name=writer.enqueued_name)
        except SpecError as exc:
            writer.invalid(str(exc))
            raise optuna.TrialPruned(f"invalid spec: {exc}") from None
        cost = count(spec)
        writer.cost(spec, cost)
        earlier = repeats.earlier_same(trial.study, trial.number, spec) if config.accuracy == "train" else None
        if earlier is not None:
            return self._repeat(trial, writer, spec, earlier)

        latency_ms = None
        if self.table is not None:
            predicted = self.table.predict(spec, self.space).latency_ms  # the same space: load_table checks
            if config.latency == "predicted" or screened_out(predicted, self.table, config):
                if not writer.predicted(predicted, config.budget_ms, self.table.protocol, self.table.error_bound):
                    return self.untrained_merit, predicted
                latency_ms = predicted
        if latency_ms is None:
            with device_lock(config.lock_dir, config.device, exclusive=True):
                writer.machine_load(load_per_core())
                reference = (self.references.get(trial.study, spec.input_size, spec.in_chans, cost.flops,
                                                 config.budget_ms) if self.references is not None else None)
                measurement, borderline = measure_candidate(spec, config, reference)
            latency_ms = measurement.latency_ms
            if not writer.measurement(measurement, config.budget_ms, borderline):
                return self.untrained_merit, latency_ms
        if config.accuracy == "none":  # a census: the accuracy objective is a constant the random sampler ignores
            writer.measured_only()
            return 0.0, latency_ms

        if config.zero_cost_scores or config.accuracy != "train":
            names = STORED_SCORES if config.zero_cost_scores else _needed(config.accuracy)
            scores = zero_cost.scores(names, spec, self.dataset, seed=config.seed, threads=config.proxy.threads)
            writer.zero_cost(scores)
        if config.accuracy != "train":
            name = config.accuracy.removeprefix("zero-cost:")
            value = vote_percentile(scores, _stored_scores(trial)) if name == "vote" else scores[name]
            writer.scored(name, value)
            return value, latency_ms

        curve: list[float] = []
        loss_curve: list[float] = []

        def on_epoch(epoch: int, scores: HeldOut) -> None:
            curve.append(scores.top1)
            loss_curve.append(scores.loss)
            writer.epoch(curve, loss_curve)
            last_epoch = epoch + 1 == config.proxy.epochs  # a fully trained candidate is complete, never pruned
            if self.pruner is None or last_epoch:
                return
            merits = [-v for v in loss_curve] if self.rank_by == "loss" else curve
            verdict = self.pruner.judge(trial.study, trial.number, merits)
            if verdict.prune:
                raise optuna.TrialPruned(writer.pruned(epoch + 1, merits[-1], verdict.threshold,
                                                       self.pruner.describe(), verdict.compared, self.rank_by))

        try:
            with device_lock(config.lock_dir, config.device, exclusive=False):
                run = train_proxy(spec, self.dataset, config.proxy, seed=config.seed, on_epoch=on_epoch,
                                  should_stop=self.stop.is_set, device=config.device)
        except ProxyDiverged as exc:
            writer.failure(f"proxy training diverged: {exc}")
            raise
        except (torch.OutOfMemoryError, MemoryError) as exc:
            writer.failure(f"out of memory while training: {_first_line(exc)}")
            raise
        scores = run.final
        if not (math.isfinite(scores.top1) and math.isfinite(scores.loss)):
            raise ProxyDiverged(f"held-out top-1 {scores.top1}, loss {scores.loss}")
        writer.proxy_result(scores.top1, len(self.dataset.test_y), self.dataset.classes, config.seed, loss=scores.loss,
                            loss_sd=scores.loss_sd, train_loss=run.train_loss[-1] if run.train_loss else None)
        return (-scores.loss if self.rank_by == "loss" else scores.top1), latency_ms

    @property
    def untrained_merit(self) -> float:
        """The score objective of a candidate never trained (over budget): a guess's, minus ln(classes) for
        the loss (so that a sampler reads it as bad, not as a loss of zero), 0.0 for top-1."""
        return -math.log(self.dataset.classes) if self.rank_by == "loss" else 0.0

    def _repeat(self, trial: optuna.Trial, writer: TrialWriter, spec: ArchSpec,
                earlier: TrialRecord) -> tuple[float, float]:
        """A spec the study already holds: the earlier trial's latency and verdict, and where it was trained,
        one more seed of its training (stored as a seed of the earlier trial, as a confirmation is)."""
        writer.repeat(earlier, self.config.budget_ms)
        if earlier.status != TRAINED:  # over budget: nothing to add
            return self.untrained_merit, earlier.latency_ms
        seed = repeats.next_seed(earlier, self.config.seed)
        with device_lock(self.config.lock_dir, self.config.device, exclusive=False):
            scores = train_proxy(spec, self.dataset, self.config.proxy, seed=seed, should_stop=self.stop.is_set,
                                 device=self.config.device).final
        if not (math.isfinite(scores.top1) and math.isfinite(scores.loss)):
            raise ProxyDiverged(f"held-out top-1 {scores.top1}, loss {scores.loss} (seed {seed} of #{earlier.number})")
        study_attrs.store_confirmation(trial.study, earlier.number, seed,
                                       study_attrs.SeedResult(scores.top1, scores.loss, scores.loss_sd))
        return repeats.reread(trial.study, earlier.number).merit, earlier.latency_ms
