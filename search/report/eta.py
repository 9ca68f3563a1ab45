"""How long a search has left: its remaining trials and the confirmation retrainings after them.

Trials cost two very different amounts: one that is trained (or pruned part way) takes the proxy training,
one that is not (over the budget, a census, a zero-cost score, a failure) only its build and timing. So the
time left is counted per kind, not as an average over the trials so far (after T0, the first named config,
that average is a training plus the calibration, and the estimate about twice the truth):

    left = trials left x (p x training + (1 - p) x quick) + (confirm - 1) x retraining seconds

with training and quick the mean seconds of the last RECENT trials of each kind (a machine's load changes), p
the share of the sampled trials trained so far, started at PRIOR_TRAINED of PRIOR_WEIGHT pseudo-trials (the
named configs come first and say little about the sampled ones, and a guided sampler trains more of its
later trials than of its first, random ones). Confirmation retrains, with confirm - 1 more seeds each,
every trained named config and every front member: those on the front now, each as long as its own training
(T1 trains longer than the small sampled networks), and those the trials left are expected to add, a mean
training each (for random points a front of n holds 1 + 1/2 + ... + 1/n, so n -> m adds H(m) - H(n); times
FRONT_FACTOR, calibrated on a recorded run, where seed noise kept the front small).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from search.records.trial import MEASURED, PRUNED, SCORED, TRAINED, TrialRecord

# Share of the sampled trials expected to be trained, before any is seen: the default sampler (TPE with the
# budget as a constraint) samples at random for its first 10 trials, then mostly within the budget (a recorded
# run of the README's main job: 24 of its 34 sampled trials trained, though its first 4 were over the budget).
PRIOR_TRAINED = 0.7
PRIOR_WEIGHT = 8.0  # pseudo-trials that share weighs against the sampled trials seen
QUICK_S = 2.0  # an untrained trial's seconds (build and timing), until one is seen
RECENT = 8  # trials of a kind the mean time is taken over
FRONT_FACTOR = 0.6  # front members added per unit of harmonic number (a recorded 40-trial run: 2 for H = 3.8)


@dataclass(frozen=True)
class TrialTime:
    """One finished trial: how long it took, whether it was trained (or pruned part way), whether named, and
    whether it is to be confirmed (a trained named config, or on the front now)."""

    seconds: float
    trained: bool
    named: bool = False
    confirmed: bool = False


def _recent_mean(values: Sequence[float]) -> float | None:
    recent = list(values)[-RECENT:]
    return sum(recent) / len(recent) if recent else None


def harmonic(n: float) -> float:
    """1 + 1/2 + ... + 1/n, for a real n >= 0 (the expected size of a front of n random points)."""
    whole = int(n)
    return sum(1.0 / k for k in range(1, whole + 1)) + (n - whole) / (whole + 1)


def seconds_left(done: Sequence[TrialTime], trials_left: int, confirm: int = 1, confirmations_done: int = 0,
                 trains: bool = True) -> float | None:
    """Seconds until the search ends: `trials_left` more trials (`done`: those finished, in order), then
    `confirm` - 1 more seeds for each trial to be confirmed (each as long as its own training) and each
    expected to join the front, less `confirmations_done`. `trains`: False for a search that never trains (a
    census, zero-cost scores). None while there is nothing to scale by: no trial finished, or none trained
    yet in a search that trains."""
    quick = _recent_mean([t.seconds for t in done if not t.trained])
    if not trains:
        return None if quick is None else trials_left * quick
    training = _recent_mean([t.seconds for t in done if t.trained])
    if training is None:
        return None
    quick = min(quick if quick is not None else QUICK_S, training)
    sampled = [t for t in done if not t.named]
    trained_sampled = sum(t.trained for t in sampled)
    share = (PRIOR_TRAINED * PRIOR_WEIGHT + trained_sampled) / (PRIOR_WEIGHT + len(sampled))
    search = trials_left * (share * training + (1 - share) * quick)
    if confirm <= 1:
        return search
    joining = FRONT_FACTOR * (harmonic(trained_sampled + share * trials_left) - harmonic(trained_sampled))
    seeds = (sum(max(t.seconds - quick, 0.0) for t in done if t.confirmed and t.trained)
             + (joining - confirmations_done / (confirm - 1)) * (training - quick))
    return search + max(seeds, 0.0) * (confirm - 1)


def study_seconds_left(study: optuna.Study, records: Sequence[TrialRecord], trials_left: int,
                       confirm: int = 1) -> float | None:
    """`seconds_left` for a study: its finished trials' times (trained or pruned: a training), its trained
    named configs and the confirmation retrainings it already holds."""
    by_number = {r.number: r for r in records}
    done = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
        record = by_number.get(trial.number)
        if record is None or trial.datetime_start is None or trial.datetime_complete is None:
            continue
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
        trained = record.status in (TRAINED, PRUNED)
        done.append(TrialTime(seconds, trained, bool(record.named),
                              confirmed=record.status == TRAINED and (bool(record.named) or record.pareto)))
    return seconds_left(done, trials_left, confirm,
                        confirmations_done=sum(max(len(r.seed_accs) - 1, 0) for r in records),
                        trains=not any(r.status in (SCORED, MEASURED) for r in records))
