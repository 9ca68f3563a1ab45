"""One typed record of a trial: the only code that writes a trial's attributes or reads them back.

A search writes through `TrialWriter` (one method per stage of the objective, cheapest first); everything
else (the front, pruning, reports, the CLI, tests) reads `TrialRecord.from_trial`. A new attribute is
added here, in one place: a `Key`, a field of the record, and the writer method that stores it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, replace
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from fasternet_space import ArchSpec, CostReport, dump_spec, named_label
from fasternet_space.measure import Measurement
from fasternet_space.spec import SpecError
from fasternet_space.stats import loss_seed_interval, seed_interval, wilson_interval
from search.records import study_attrs
from search.records.values import finite_number

CONSTRAINT = "latency_over_budget_ms"  # the Optuna constraint: measured latency minus the budget


class Key:
    """User-attribute names as stored in the study (kept stable so that older studies still read)."""

    NAMED = "named"  # "T0".."L" when the candidate is a named config
    SPEC_NAME = "spec_name"  # the name given to an enqueued spec
    SPEC = "spec_yaml"
    PARAM_COUNT = "params"
    FLOPS = "flops"  # multiply-adds at batch 1
    LATENCY = "latency_ms"
    LATENCY_CI = "latency_ci_ms"
    THROUGHPUT = "throughput"  # images per second at the protocol's throughput batch
    FLOPS_PER_S = "flops_per_s"  # achieved multiply-adds per second
    PROTOCOL = "protocol"
    FEASIBLE = "feasible"
    PROXY_ACC = "proxy_acc"  # held-out top-1 after the last epoch (a fraction)
    CURVE = "proxy_curve"  # held-out top-1 after each epoch
    PROXY_LOSS = "proxy_loss"  # held-out cross-entropy after the last epoch (nats per image)
    LOSS_SD = "proxy_loss_sd"  # the per-image standard deviation of that cross-entropy (its noise: sd / sqrt(n))
    LOSS_CURVE = "proxy_loss_curve"  # held-out cross-entropy after each epoch
    TRAIN_LOSS = "proxy_train_loss"  # TSE-E: the training loss averaged over the last epoch's steps
    REPEAT_OF = "repeat_of"  # the earlier trial holding the same spec: its measurements reused, one more seed trained
    PRUNED_BELOW = "pruned_below"  # the ranking score (top-1, or minus the held-out loss) a pruned trial fell under
    REASON = "fail_reason"  # why it was not trained or did not finish
    TEST_SIZE = "test_size"  # held-out images the top-1 was measured on
    CHANCE = "chance"  # top-1 of guessing (1 / classes)
    SEED = "proxy_seed"  # the seed the proxy trained with
    LATENCY_STABLE = "latency_stable"  # the latency's interval settled before the timing cap
    LOAD = "load_per_core"  # the machine's 1-minute load average per core when timing started
    ZERO_COST = "zero_cost"  # zero-cost scores of the untrained candidate: name -> value
    SCORE = "score"  # a training-free trial's accuracy objective: (score name, value)
    MEASURED_ONLY = "measured_only"  # a census trial (accuracy 'none'): counted and timed, never trained or scored
    LATENCY_BORDERLINE = "latency_borderline"  # its first interval straddled the budget: re-measured longer
    LATENCY_SOURCE = "latency_source"  # "measured", or "predicted" (from a latency table, never timed)
    LATENCY_RELATIVE = "latency_relative"  # paired timing: reference, ratio, its interval, pairs, verdict, calibration




# What a trial came to, worked out in one place (`TrialRecord.status`).
TRAINED = "trained"  # within budget and trained to the end
SCORED = "scored"  # within budget, scored without training (a training-free search)
MEASURED = "measured"  # a census: costs and latency only, no accuracy of any kind
OVER_BUDGET = "over budget"  # measured over the latency budget, never trained
PRUNED = "pruned"  # stopped early by the pruner
REPEAT = "repeat"  # a spec the study already held: the earlier trial's measurements reused (and a seed added)
INVALID = "invalid"  # the sampled point is not a valid network
FAILED = "failed"  # an error, an interrupt, or a worker that died
NOT_RUN = "not run"  # made by a worker when the study already held its trials: it stood down, doing nothing
RUNNING = "running"
WAITING = "waiting"
STATUSES = (TRAINED, SCORED, MEASURED, OVER_BUDGET, PRUNED, REPEAT, INVALID, FAILED, NOT_RUN, RUNNING, WAITING)

_INVALID_PREFIX = "invalid spec: "
_NOT_RUN_PREFIX = "not run: "


@dataclass(frozen=True)
class TrialRecord:
    """What one trial is: its status, searched parameters, spec, exact costs, measured speed, accuracy, reason."""

    number: int
    state: str  # Optuna's: COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    status: str  # one of STATUSES
    pareto: bool  # on the feasible Pareto front of the ranking score and latency (read_trials)
    params: dict[str, Any]  # the searched parameters, as Optuna suggested them
    named: str | None
    spec: dict[str, Any] | None  # every ArchSpec field
    param_count: int | None
    flops: int | None  # multiply-adds at batch 1
    latency_ms: float | None
    latency_ci_ms: tuple[float, float] | None
    throughput: float | None
    flops_per_s: float | None
    protocol: dict[str, Any] | None
    feasible: bool | None  # None: never measured
    over_budget_ms: float | None  # latency minus the budget
    proxy_acc: float | None  # final held-out top-1, only for trained trials
    curve: tuple[float, ...] = ()
    pruned_below: float | None = None
    reason: str | None = None  # set for every trial that was not trained to the end
    test_size: int | None = None
    chance: float | None = None
    seed_accs: tuple[tuple[int, float], ...] = ()  # (seed, top-1): its own training first, then confirmations
    latency_stable: bool | None = None
    load_per_core: float | None = None
    zero_cost: dict[str, float] | None = None  # zero-cost scores of the untrained candidate
    score_name: str | None = None  # a training-free trial's objective: which score
    score: float | None = None  # and its value
    latency_borderline: bool | None = None  # re-measured because its interval straddled the budget
    latency_source: str | None = None  # "measured" or "predicted" (None: older records, measured)
    proxy_loss: float | None = None  # final held-out cross-entropy of its own training (None: older records)
    latency_reference: str | None = None  # the network it was timed in pairs with ("T0"; None: timed alone)
    latency_ratio: float | None = None  # its median latency ratio to the reference; latency = ratio x calibration
    latency_ratio_ci: tuple[float, float] | None = None  # the ratio's 95% interval
    calibration_ms: float | None = None  # the reference's calibrated latency the ratio was multiplied by
    latency_pairs: int | None = None  # pairs timed
    latency_early: str | None = None  # "over"/"under": timing stopped once the interval lay wholly on that side
    outside_cores: float | None = None  # cores' worth of CPU other processes used while it was timed
    steal_share: float | None = None  # share of CPU time the hypervisor took away while it was timed
    reference_min_ms: float | None = None  # the reference's fastest call among its pairs: the machine's speed then
    latency_unit_ratio: float | None = None  # its latency in the base reference's units (T0), via its rung
    latency_unit: str | None = None  # that base ("T0"); latency_reference is the rung it was paired with
    rank_by: str = "top1"  # what ranks its study's trained trials: "loss" (lower is better) or "top1"
    # (seed, held-out loss, its per-image sd): its own training first, then confirmations that stored a loss
    seed_losses: tuple[tuple[int, float, float | None], ...] = ()
    loss_curve: tuple[float, ...] = ()  # held-out loss after each epoch it trained
    repeat_of: int | None = None  # status REPEAT: the trial that holds this spec
    train_loss: float | None = None  # TSE-E: its training loss over the last epoch (the mean per step)

    @property
    def merit(self) -> float | None:
        """What the front maximises (higher is better): for a trained trial the ranking score (minus the
        (mean) held-out loss, or the (mean) top-1), for a scored one its score."""
        if self.status == SCORED:
            return self.score
        if self.status != TRAINED:
            return None
        if self.rank_by == "loss":
            return None if self.loss is None else -self.loss
        return self.accuracy

    @property
    def merit_ci(self) -> tuple[float, float] | None:
        """The 95% interval of `merit` (None for a scored trial, or without what the interval needs)."""
        if self.status != TRAINED:
            return None
        if self.rank_by == "loss":
            ci = self.loss_ci
            return None if ci is None else (-ci[1], -ci[0])
        return self.accuracy_ci

    @property
    def merit_curve(self) -> tuple[float, ...]:
        """The ranking score after each epoch (higher is better): what the pruner compares."""
        return tuple(-v for v in self.loss_curve) if self.rank_by == "loss" else self.curve

    @property
    def loss(self) -> float | None:
        """The held-out cross-entropy: the seed mean where more than one seed stored one, else its own run's."""
        if len(self.seed_losses) > 1:
            return statistics.fmean(loss for _, loss, _ in self.seed_losses)
        return self.proxy_loss

    @property
    def loss_ci(self) -> tuple[float, float] | None:
        """95% interval of `loss`: the per-image standard error (normal) of each run, and over seeds where
        several stored one (t-interval of the seed mean, at least the pooled per-image one)."""
        sds = [sd for _, _, sd in self.seed_losses]
        if self.loss is None or not self.test_size or not sds or None in sds:
            return None
        return loss_seed_interval([loss for _, loss, _ in self.seed_losses], sds, self.test_size)[2:]

    @property
    def loss_std(self) -> float | None:
        """The held-out loss's standard deviation over seeds (None with one seed)."""
        return statistics.stdev(loss for _, loss, _ in self.seed_losses) if len(self.seed_losses) > 1 else None

    @property
    def confirmed(self) -> bool:
        """Trained with more than one seed."""
        return len(self.seed_accs) > 1

    @property
    def accuracy(self) -> float | None:
        """The top-1 the front is decided on: the seed mean where confirmed, else the single run's."""
        if self.proxy_acc is None:
            return None
        return statistics.fmean(a for _, a in self.seed_accs) if self.confirmed else self.proxy_acc

    @property
    def accuracy_std(self) -> float | None:
        return statistics.stdev(a for _, a in self.seed_accs) if self.confirmed else None

    @property
    def accuracy_ci(self) -> tuple[float, float] | None:
        """95% interval of `accuracy`: binomial on the test split, and over seeds where confirmed."""
        if self.proxy_acc is None or not self.test_size:
            return None
        if self.confirmed:
            return seed_interval([a for _, a in self.seed_accs], self.test_size)[2:]
        return wilson_interval(self.proxy_acc, self.test_size)

    @property
    def learned_nothing(self) -> bool:
        """Trained, but its top-1 cannot be told apart from guessing: the binomial interval of its (mean)
        top-1 over every held-out prediction it made reaches chance. (Seed spread alone is not guessing.)"""
        if self.accuracy is None or not self.test_size or self.chance is None:
            return False
        return wilson_interval(self.accuracy, self.test_size * len(self.seed_accs))[0] <= self.chance

    @classmethod
    def from_trial(cls, trial: FrozenTrial, front: set[int] | frozenset[int] = frozenset(),
                   confirmations: dict[int, study_attrs.SeedResult] | None = None,
                   rank_by: str = "top1") -> TrialRecord:
        """The record of a trial; `front`: numbers on the Pareto front; `confirmations`: seed -> scores;
        `rank_by`: what ranks its study's trained trials (`study_attrs.rank_by`)."""
        a = trial.user_attrs
        latency = finite_number(a.get(Key.LATENCY))
        over = finite_number((trial.constraints or {}).get(CONSTRAINT))
        feasible = over <= 0 if over is not None else (a.get(Key.FEASIBLE) if isinstance(a.get(Key.FEASIBLE), bool)
                                                       else None)
        curve = tuple(v for v in (finite_number(v) for v in a.get(Key.CURVE) or []) if v is not None)
        reason = a.get(Key.REASON) if isinstance(a.get(Key.REASON), str) else None
        score = a.get(Key.SCORE) if isinstance(a.get(Key.SCORE), list) and len(a[Key.SCORE]) == 2 else None
        repeat_of = _integer(a.get(Key.REPEAT_OF))
        status = _status(trial.state, feasible, reason, score is not None, a.get(Key.MEASURED_ONLY) is True,
                         repeat_of is not None)
        if status == OVER_BUDGET and reason is None:
            reason = over_budget_reason(latency, over)
        ci = a.get(Key.LATENCY_CI)
        return cls(
            number=trial.number, state=trial.state.name, status=status, pareto=trial.number in front,
            params=dict(trial.params), named=a.get(Key.NAMED) or None, spec=_spec_dict(a.get(Key.SPEC)),
            param_count=_integer(a.get(Key.PARAM_COUNT)), flops=_integer(a.get(Key.FLOPS)), latency_ms=latency,
            latency_ci_ms=(float(ci[0]), float(ci[1])) if isinstance(ci, list | tuple) and len(ci) == 2 else None,
            throughput=finite_number(a.get(Key.THROUGHPUT)), flops_per_s=finite_number(a.get(Key.FLOPS_PER_S)),
            protocol=a.get(Key.PROTOCOL) if isinstance(a.get(Key.PROTOCOL), dict) else None,
            feasible=feasible, over_budget_ms=over,
            proxy_acc=finite_number(a.get(Key.PROXY_ACC)) if status == TRAINED else None,
            curve=curve, pruned_below=finite_number(a.get(Key.PRUNED_BELOW)), reason=reason,
            test_size=_integer(a.get(Key.TEST_SIZE)), chance=finite_number(a.get(Key.CHANCE)),
            seed_accs=_seed_accs(a, status, confirmations or {}),
            latency_stable=a.get(Key.LATENCY_STABLE) if isinstance(a.get(Key.LATENCY_STABLE), bool) else None,
            load_per_core=finite_number(a.get(Key.LOAD)),
            zero_cost=_scores(a.get(Key.ZERO_COST)),
            score_name=score[0] if score else None, score=finite_number(score[1]) if score else None,
            latency_borderline=a.get(Key.LATENCY_BORDERLINE) if isinstance(a.get(Key.LATENCY_BORDERLINE), bool)
            else None,
            latency_source=a.get(Key.LATENCY_SOURCE) if isinstance(a.get(Key.LATENCY_SOURCE), str) else None,
            proxy_loss=finite_number(a.get(Key.PROXY_LOSS)) if status == TRAINED else None,
            **_relative_fields(a.get(Key.LATENCY_RELATIVE)),
            rank_by=rank_by, seed_losses=_seed_losses(a, status, confirmations or {}),
            loss_curve=tuple(v for v in (finite_number(v) for v in a.get(Key.LOSS_CURVE) or []) if v is not None),
            repeat_of=repeat_of,
            train_loss=finite_number(a.get(Key.TRAIN_LOSS)) if status == TRAINED else None,
        )

    @property
    def finished(self) -> bool:
        """Counts toward the study's trials (complete or pruned)."""
        return self.state in (TrialState.COMPLETE.name, TrialState.PRUNED.name)

    @property
    def last_acc(self) -> float | None:
        """The top-1 after the last epoch it trained (a pruned trial's included)."""
        return self.curve[-1] if self.curve else self.proxy_acc

    def arch_spec(self) -> ArchSpec | None:
        if not self.spec:
            return None
        try:
            return ArchSpec.from_dict(self.spec)
        except (SpecError, TypeError):
            return None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency_ci_ms"] = list(self.latency_ci_ms) if self.latency_ci_ms else None
        data["curve"] = list(self.curve)
        data["seed_accs"] = [list(pair) for pair in self.seed_accs]
        data["seed_losses"] = [list(entry) for entry in self.seed_losses]
        data["loss_curve"] = list(self.loss_curve)
        data["latency_ratio_ci"] = list(self.latency_ratio_ci) if self.latency_ratio_ci else None
        ci = self.accuracy_ci
        loss_ci = self.loss_ci
        data.update(accuracy=self.accuracy, accuracy_std=self.accuracy_std,
                    accuracy_ci=list(ci) if ci else None, learned_nothing=self.learned_nothing,
                    loss=self.loss, loss_std=self.loss_std, loss_ci=list(loss_ci) if loss_ci else None)
        return data


def read_trials(study: optuna.Study) -> list[TrialRecord]:
    """Every trial of the study as a record, with its confirmations and its membership of the feasible
    Pareto front: the trials no other beats on both the ranking score (held-out loss or top-1, the study's
    `rank_by`) and latency, within budget, computed on the seed means where a trial was trained with more
    seeds. A repeat of a spec is never on it (the trial it repeats is)."""
    confirmations = study_attrs.confirmations(study)
    rank_by = study_attrs.rank_by(study)
    records = [TrialRecord.from_trial(t, confirmations=confirmations.get(t.number), rank_by=rank_by)
               for t in study.get_trials(deepcopy=False)]
    front = _non_dominated([r for r in records if r.merit is not None and r.latency_ms is not None
                            and r.feasible is not False])
    return [replace(r, pareto=True) if r.number in front else r for r in records]


def _non_dominated(records: list[TrialRecord]) -> set[int]:
    front = set()
    for r in records:
        dominated = any(o.merit >= r.merit and o.latency_ms <= r.latency_ms
                        and (o.merit > r.merit or o.latency_ms < r.latency_ms) for o in records)
        if not dominated:
            front.add(r.number)
    return front


def _own_seed(attrs: dict[str, Any]) -> int:
    seed = _integer(attrs.get(Key.SEED))
    return 0 if seed is None else seed


def _seed_accs(attrs: dict[str, Any], status: str,
               confirmations: dict[int, study_attrs.SeedResult]) -> tuple[tuple[int, float], ...]:
    own = finite_number(attrs.get(Key.PROXY_ACC))
    if status != TRAINED or own is None:
        return ()
    seed = _own_seed(attrs)
    others = tuple((s, r.top1) for s, r in sorted(confirmations.items()) if s != seed)
    return ((seed, own), *others)


def _seed_losses(attrs: dict[str, Any], status: str, confirmations: dict[int, study_attrs.SeedResult]
                 ) -> tuple[tuple[int, float, float | None], ...]:
    own = finite_number(attrs.get(Key.PROXY_LOSS))
    if status != TRAINED or own is None:
        return ()
    seed = _own_seed(attrs)
    others = tuple((s, r.loss, r.loss_sd) for s, r in sorted(confirmations.items())
                   if s != seed and r.loss is not None)
    return ((seed, own, finite_number(attrs.get(Key.LOSS_SD))), *others)


class TrialWriter:
    """Writes a running trial's attributes, stage by stage (the objective's only way to store them)."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial

    @property
    def enqueued_name(self) -> str | None:
        return self.trial.user_attrs.get(Key.SPEC_NAME)

    def not_run(self, n_trials: int) -> None:
        self.trial.set_user_attr(Key.REASON, f"{_NOT_RUN_PREFIX}{n_trials} trials made before it had filled the study")

    def invalid(self, problem: str) -> None:
        self.trial.set_user_attr(Key.REASON, _INVALID_PREFIX + problem)

    def cost(self, spec: ArchSpec, cost: CostReport) -> None:
        self.trial.set_user_attr(Key.SPEC, dump_spec(spec))
        self.trial.set_user_attr(Key.NAMED, self.trial.user_attrs.get(Key.NAMED) or named_label(spec))
        self.trial.set_user_attr(Key.PARAM_COUNT, cost.params)
        self.trial.set_user_attr(Key.FLOPS, cost.flops)

    def machine_load(self, load_per_core: float | None) -> None:
        """How busy the machine was when timing started (1.0: every core had a runnable process)."""
        self.trial.set_user_attr(Key.LOAD, load_per_core)

    def measurement(self, measurement: Measurement, budget_ms: float, borderline: bool = False) -> bool:
        """Stores the latency and the budget verdict (an Optuna constraint); True when within budget.
        `borderline`: its first interval straddled the budget and this is the longer re-measurement."""
        self.trial.set_user_attr(Key.LATENCY_SOURCE, "measured")
        self.trial.set_user_attr(Key.LATENCY_BORDERLINE, borderline)
        latency = measurement.latency_ms
        for key, value in ((Key.LATENCY, latency), (Key.LATENCY_CI, list(measurement.latency_ci_ms)),
                           (Key.THROUGHPUT, measurement.throughput), (Key.FLOPS_PER_S, measurement.flops_per_s),
                           (Key.PROTOCOL, measurement.protocol.to_dict())):
            self.trial.set_user_attr(key, value)
        self.trial.set_user_attr(Key.LATENCY_STABLE, measurement.stable)
        relative = measurement.extra.get("relative")
        if relative:
            self.trial.set_user_attr(Key.LATENCY_RELATIVE, _stored_relative(relative))
        self.trial.set_constraint(CONSTRAINT, latency - budget_ms)
        feasible = latency <= budget_ms
        self.trial.set_user_attr(Key.FEASIBLE, feasible)
        if not feasible:
            reason = (early_over_reason(measurement, budget_ms) if relative and relative["verdict"] == "over"
                      else over_budget_reason(latency, latency - budget_ms))
            self.trial.set_user_attr(Key.REASON, reason)
        return feasible

    def predicted(self, latency_ms: float, budget_ms: float, protocol: dict[str, Any], error_rel: float) -> bool:
        """Stores a latency predicted by a latency table (never measured: the candidate was not built for it)
        and the budget verdict; True when within budget."""
        over = latency_ms - budget_ms
        for key, value in ((Key.LATENCY, latency_ms), (Key.LATENCY_SOURCE, "predicted"), (Key.PROTOCOL, protocol),
                           (Key.FEASIBLE, over <= 0)):
            self.trial.set_user_attr(key, value)
        self.trial.set_constraint(CONSTRAINT, over)
        if over > 0:
            self.trial.set_user_attr(Key.REASON, f"over budget: predicted {latency_ms:.2f} ms by the latency table "
                                     f"(held-out error up to {100 * error_rel:.0f}%), {over:.2f} ms above the "
                                     f"{budget_ms:g} ms budget; not built")
        return over <= 0

    def zero_cost(self, scores: dict[str, float]) -> None:
        """The candidate's zero-cost scores (-inf, a degenerate naswot, is stored as -1e308)."""
        self.trial.set_user_attr(Key.ZERO_COST, {k: max(v, -1e308) if v == v else -1e308 for k, v in scores.items()})

    def scored(self, name: str, value: float) -> None:
        """A training-free trial's objective: the zero-cost score `name` in place of an accuracy."""
        self.trial.set_user_attr(Key.SCORE, [name, value])

    def measured_only(self) -> None:
        """A census trial: its costs and latency are all it has (no training, no zero-cost score)."""
        self.trial.set_user_attr(Key.MEASURED_ONLY, True)

    def epoch(self, curve: list[float], loss_curve: list[float]) -> None:
        """The held-out top-1 and cross-entropy after each epoch so far."""
        self.trial.set_user_attr(Key.CURVE, list(curve))
        self.trial.set_user_attr(Key.LOSS_CURVE, list(loss_curve))

    def pruned(self, epoch: int, merit: float, threshold: float, rule: str, compared: int, rank_by: str) -> str:
        """Stores why the pruner stopped it (`merit`, `threshold`: ranking scores, higher is better); returns
        that reason."""
        if rank_by == "loss":
            what = f"held-out loss {-merit:.3f} was above {-threshold:.3f}"
        else:
            what = f"top-1 {merit:.3f} was below {threshold:.3f}"
        reason = (f"stopped after epoch {epoch} of training: {what}, the {rule} of {compared} earlier trials at "
                  f"epoch {epoch}")
        self.trial.set_user_attr(Key.PRUNED_BELOW, threshold)
        self.trial.set_user_attr(Key.REASON, reason)
        return reason

    def repeat(self, original: TrialRecord, budget_ms: float) -> None:
        """This trial's spec is trial `original`'s: its latency and verdict are reused, not measured again."""
        self.trial.set_user_attr(Key.REPEAT_OF, original.number)
        if original.latency_ms is not None:
            self.trial.set_user_attr(Key.LATENCY, original.latency_ms)
            self.trial.set_user_attr(Key.FEASIBLE, original.latency_ms <= budget_ms)
            self.trial.set_constraint(CONSTRAINT, original.latency_ms - budget_ms)

    def proxy_result(self, acc: float, test_size: int, classes: int, seed: int, loss: float | None = None,
                     loss_sd: float | None = None, train_loss: float | None = None) -> None:
        """The final held-out top-1 (and cross-entropy with its per-image sd, and the last epoch's training
        loss), with what its noise and its meaning depend on."""
        train_loss = train_loss if train_loss is not None and math.isfinite(train_loss) else None
        for key, value in ((Key.TEST_SIZE, test_size), (Key.CHANCE, 1.0 / classes), (Key.SEED, seed),
                           (Key.PROXY_LOSS, loss), (Key.LOSS_SD, loss_sd), (Key.TRAIN_LOSS, train_loss),
                           (Key.PROXY_ACC, acc)):
            if value is not None:
                self.trial.set_user_attr(key, value)

    def failure(self, reason: str, keep_earlier: bool = False) -> None:
        """Why the trial failed (`keep_earlier`: unless a more precise reason is stored already)."""
        if keep_earlier and Key.REASON in self.trial.user_attrs:
            return
        self.trial.set_user_attr(Key.REASON, reason)


def named_attrs(label: str, spec_name: str) -> dict[str, Any]:
    """The attributes an enqueued named config starts with."""
    return {Key.NAMED: label, Key.SPEC_NAME: spec_name}


def retry_attrs(trial: FrozenTrial) -> dict[str, Any]:
    """What a retry of a trial keeps: its identity, none of its measurements."""
    return {k: trial.user_attrs[k] for k in (Key.NAMED, Key.SPEC_NAME) if k in trial.user_attrs}


# System attributes: how the run loop tracks trials (Optuna's own retry keys, and who runs a trial).
RETRY_HISTORY = "retry_history"  # the numbers of the failed attempts this trial retries, first first
FAILED_TRIAL = "failed_trial"  # the first failed attempt (Optuna's key, as its retry callback writes it)
WORKER = "worker"  # the process running the trial: host, machine, pid, start time


def retry_history(trial: FrozenTrial) -> list[int]:
    """The failed attempts before this one and this one: what a retry of it records."""
    return [*trial.system_attrs.get(RETRY_HISTORY, []), trial.number]


def retry_system_attrs(history: list[int]) -> dict[str, Any]:
    return {FAILED_TRIAL: history[0], RETRY_HISTORY: history}


def store_worker(trial: optuna.Trial, worker: dict[str, Any]) -> None:
    trial.storage.set_trial_system_attr(trial._trial_id, WORKER, worker)


def worker_of(trial: FrozenTrial) -> dict[str, Any] | None:
    worker = trial.system_attrs.get(WORKER)
    return worker if isinstance(worker, dict) else None


def store_failure_reason(storage: optuna.storages.BaseStorage, trial_id: int, reason: str) -> None:
    """Writes why a still running trial is being failed (by another process than its own worker)."""
    storage.set_trial_user_attr(trial_id, Key.REASON, reason)


def early_over_reason(measurement: Measurement, budget_ms: float) -> str:
    """An over-budget verdict reached early: by how much at least (the interval's low end)."""
    relative = measurement.extra["relative"]
    unit = relative["calibration"].get("unit") or relative["reference"]
    rung = f" (in pairs with {relative['reference']})" if relative["reference"] != unit else ""
    return (f"over budget: measured {measurement.latency_ms:.2f} ms = {relative.get('unit_ratio', relative['ratio']):.3f}"
            f" x {unit}{rung}, at least {measurement.latency_ci_ms[0] - budget_ms:.2f} ms above the "
            f"{budget_ms:g} ms budget (timing stopped after {relative['pairs']} pairs, once its interval lay wholly "
            "over): not trained")


def _stored_relative(relative: dict[str, Any]) -> dict[str, Any]:
    """What a trial keeps of a paired timing (the calibration itself is the study's)."""
    return {"reference": relative["reference"], "ratio": relative["ratio"], "ratio_ci": list(relative["ratio_ci"]),
            "pairs": relative["pairs"], "verdict": relative["verdict"], "seconds": relative["seconds"],
            "calibration_ms": relative["calibration"]["ms"], "outside_cores": relative.get("outside_cores"),
            "steal_share": relative.get("steal_share"), "reference_min_ms": relative.get("reference_min_ms_this_run"),
            "clock": relative.get("clock"), "unit_ratio": relative.get("unit_ratio"),
            "unit": relative["calibration"].get("unit") or relative["reference"]}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _relative_fields(stored: Any) -> dict[str, Any]:
    if not isinstance(stored, dict):
        return {}
    ci = stored.get("ratio_ci")
    return {"latency_reference": stored.get("reference") if isinstance(stored.get("reference"), str) else None,
            "latency_ratio": finite_number(stored.get("ratio")),
            "latency_ratio_ci": (float(ci[0]), float(ci[1])) if isinstance(ci, list) and len(ci) == 2 else None,
            "calibration_ms": finite_number(stored.get("calibration_ms")),
            "latency_pairs": _integer(stored.get("pairs")),
            "latency_early": stored.get("verdict") if stored.get("verdict") in ("over", "under") else None,
            "outside_cores": finite_number(stored.get("outside_cores")),
            "steal_share": finite_number(stored.get("steal_share")),
            "reference_min_ms": finite_number(stored.get("reference_min_ms")),
            "latency_unit_ratio": finite_number(stored.get("unit_ratio", stored.get("ratio"))),
            "latency_unit": _text(stored.get("unit", stored.get("reference")))}


def over_budget_reason(latency_ms: float | None, over_ms: float | None) -> str:
    if latency_ms is None or over_ms is None:
        return "over the latency budget: not trained"
    return (f"over budget: measured {latency_ms:.2f} ms, {over_ms:.2f} ms above the {latency_ms - over_ms:.4g} ms "
            "budget; not trained")


def _status(state: TrialState, feasible: bool | None, reason: str | None, scored: bool = False,
            measured_only: bool = False, repeat: bool = False) -> str:
    if state == TrialState.COMPLETE and repeat:
        return REPEAT
    if state == TrialState.COMPLETE:
        return OVER_BUDGET if feasible is False else SCORED if scored else MEASURED if measured_only else TRAINED
    if state == TrialState.PRUNED:
        if reason is not None and reason.startswith(_INVALID_PREFIX):
            return INVALID
        return OVER_BUDGET if feasible is False else PRUNED
    if state == TrialState.FAIL:
        return NOT_RUN if reason is not None and reason.startswith(_NOT_RUN_PREFIX) else FAILED
    return RUNNING if state == TrialState.RUNNING else WAITING


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _scores(value: Any) -> dict[str, float] | None:
    if not isinstance(value, dict):
        return None
    return {str(k): float(v) for k, v in value.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _spec_dict(spec_yaml: Any) -> dict[str, Any] | None:
    if not isinstance(spec_yaml, str):
        return None
    try:
        data = yaml.safe_load(spec_yaml)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None

