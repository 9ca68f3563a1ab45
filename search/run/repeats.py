"""A spec a trained search already holds is not a new candidate: a sampler (TPE above all) proposes the same
point again. The new trial reuses the earlier trial's latency and, where that one was trained, trains it once
more with a seed it does not have yet, stored as one more seed of the earlier trial. (Training-free searches
and censuses score a point the same way every time: there, a point drawn again is a trial like any other.)"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from fasternet_space.spec import ArchSpec, same_network
from search.records import study_attrs
from search.records.trial import OVER_BUDGET, TRAINED, TrialRecord

REUSABLE = (TRAINED, OVER_BUDGET)  # what a repeat can take over (a failed or pruned one is not)


def earlier_same(study: optuna.Study, number: int, spec: ArchSpec) -> TrialRecord | None:
    """The earliest finished trial before `number` whose spec is `spec` (names aside) and whose outcome a
    repeat can reuse; None when there is none."""
    confirmations = study_attrs.confirmations(study)
    rank_by = study_attrs.rank_by(study)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.number >= number:
            continue
        record = TrialRecord.from_trial(trial, confirmations=confirmations.get(trial.number), rank_by=rank_by)
        if record.status not in REUSABLE:
            continue
        earlier = record.arch_spec()
        if earlier is not None and same_network(earlier, spec):
            return record
    return None


def next_seed(record: TrialRecord, base_seed: int) -> int:
    """The first seed after `base_seed` that the trial was not trained with (the seeds a confirmation
    would use next, so it does not train them again)."""
    done = {seed for seed, _ in record.seed_accs}
    seed = base_seed
    while seed in done:
        seed += 1
    return seed


def reread(study: optuna.Study, number: int) -> TrialRecord:
    """Trial `number`'s record with every seed stored so far."""
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    return TrialRecord.from_trial(trial, confirmations=study_attrs.confirmations(study).get(number),
                                  rank_by=study_attrs.rank_by(study))
