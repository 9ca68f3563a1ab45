"""Confirmation: retrain the front's candidates and the named configs with more seeds, so that the
front and the verdicts on it rest on seed means rather than on one seed's luck.

Repeats until every member of the front (recomputed on the means after each round) and every named
config within budget has all its seeds; each result is stored as it arrives, so a resumed study
resumes its confirmations.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import optuna

from fasternet_space.data import Dataset
from fasternet_space.proxy import ProxyConfig, ProxyDiverged, train_proxy
from search.records.study_attrs import SeedResult, store_confirmation
from search.records.trial import TRAINED, TrialRecord, read_trials


def confirmation_seeds(seed: int, count: int) -> list[int]:
    """The seeds a confirmed trial is trained with: its own, then the next ones."""
    return [seed + i for i in range(count)]


def pending(records: list[TrialRecord], seeds: list[int]) -> list[tuple[TrialRecord, int]]:
    """(trial, seed) pairs still to train: the front's members and the trained named configs."""
    chosen = [r for r in records if r.status == TRAINED and (r.pareto or r.named)]
    todo = []
    for record in sorted(chosen, key=lambda r: r.number):
        done = {s for s, _ in record.seed_accs}
        todo += [(record, seed) for seed in seeds if seed not in done]
    return todo


def confirm(study: optuna.Study, dataset: Dataset, proxy: ProxyConfig, seed: int, count: int,
            on_result: Callable[[TrialRecord, int, SeedResult], None] | None = None,
            stop: threading.Event | None = None, device: str = "cpu") -> int:
    """Trains (on `device`) what `pending` names until nothing is, or `stop` is set; returns how many ran.
    A training that diverges is skipped (the trial keeps the seeds it has)."""
    stop = stop or threading.Event()
    seeds = confirmation_seeds(seed, count)
    trained = 0
    skipped: set[tuple[int, int]] = set()
    while count > 1 and not stop.is_set():
        todo = [(r, s) for r, s in pending(read_trials(study), seeds) if (r.number, s) not in skipped]
        if not todo:
            break
        for record, extra_seed in todo:
            if stop.is_set():
                break
            spec = record.arch_spec()
            try:
                if spec is None:
                    raise ProxyDiverged("no spec stored")
                run = train_proxy(spec, dataset, proxy, seed=extra_seed, should_stop=stop.is_set, device=device)
            except ProxyDiverged:
                skipped.add((record.number, extra_seed))
                continue
            result = SeedResult(run.final.top1, run.final.loss, run.final.loss_sd)
            store_confirmation(study, record.number, extra_seed, result)
            trained += 1
            if on_result is not None:
                on_result(record, extra_seed, result)
    return trained
