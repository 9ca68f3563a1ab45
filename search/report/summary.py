"""The search's progress and summary as text: the lines `cli.py search` prints, returned (nothing printed here).

`SearchProgress` formats what run_search's callbacks report (the start, each finished trial, each confirmation
retraining); `summary_lines` and `closing_line` format the summary after the run, `search_warnings` what makes
its numbers less trustworthy.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fasternet_space.report import fixed, format_table, human
from search.records.front import Pick, best_feasible, pareto_front, pick, score_name, standing
from search.records.speed import (
    BORDERLINE,
    ReferenceSpeed,
    borderline_on_speed,
    budget_verdict,
    latency_range_ms,
    reference_speed,
)
from search.records.study_attrs import SeedResult
from search.records.trial import (
    FAILED,
    MEASURED,
    NOT_RUN,
    OVER_BUDGET,
    PRUNED,
    REPEAT,
    SCORED,
    TRAINED,
    TrialRecord,
    read_trials,
)

if TYPE_CHECKING:
    from pathlib import Path

    import optuna
    from optuna.trial import FrozenTrial

    from search.run.study import SearchOutcome

__all__ = ["SearchProgress", "accuracy_text", "closing_line", "failed_workers_warning", "loss_text", "score_text",
           "search_warnings", "summary_lines"]


def accuracy_text(record: TrialRecord) -> str:
    """'0.861 [0.846, 0.876] (3 seeds)': the top-1 the front is decided on, with its 95% interval."""
    if record.score is not None:
        return f"{record.score_name} {record.score:.4g} (untrained)"
    if record.accuracy is None:
        return "n/a"
    ci = record.accuracy_ci
    interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    seeds = f" ({len(record.seed_accs)} seeds)" if record.confirmed else ""
    return f"{record.accuracy:.3f}{interval}{seeds}"


def loss_text(record: TrialRecord) -> str:
    """'0.512 [0.498, 0.526]': the held-out loss (seed mean where confirmed) with its 95% interval."""
    if record.loss is None:
        return "n/a"
    ci = record.loss_ci
    return f"{record.loss:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def score_text(record: TrialRecord) -> str:
    """What a trial scored, the ranking score first: 'held-out loss 0.512 [...], top-1 0.861 [...] (3 seeds)'."""
    if record.score is not None or record.rank_by != "loss":
        return accuracy_text(record) if record.score is not None else f"top-1 {accuracy_text(record)}"
    return f"held-out loss {loss_text(record)}, top-1 {accuracy_text(record)}"


def _label(record: TrialRecord) -> str:
    return f"#{record.number}" + (f" {record.named}" if record.named else "")


class SearchProgress:
    """One line per finished trial: n of N, the trial, the best feasible so far, time left. Every method
    returns the lines to show (none when quiet)."""

    def __init__(self, n_trials: int, budget: str, quiet: bool, confirm: int = 1):
        self.n_trials = n_trials
        self.confirm = confirm  # seeds per front member and named config: retrainings after the trials
        self.budget = budget  # as SearchConfig.budget_text() gives it: '20ms', '1.2xT0'
        self.quiet = quiet
        self.started = time.perf_counter()  # restarted by start_lines; a screening stage's trials come before it
        self.done_here = 0

    def start_lines(self, outcome: SearchOutcome) -> list[str]:
        """Starts the clock; the study, the named configs enqueued and the notes."""
        from search.run.study import count_finished

        self.started = time.perf_counter()
        self.done_here = 0  # a screening stage's trials were its own
        initial = count_finished(outcome.study)
        if self.quiet:
            return []
        resumed = f", resuming with {initial} finished" if initial else ""
        lines = [f"study {outcome.study.study_name!r}: {self.n_trials} trials, budget {_spaced(self.budget)}{resumed}"]
        if outcome.enqueued:
            lines.append(f"named configs enqueued first: {', '.join(outcome.enqueued)}")
        return lines + [f"note: {note}" for note in outcome.notes]

    def confirm_line(self, record: TrialRecord, seed: int, result: SeedResult) -> str | None:
        """One confirmation retraining: its seed's scores next to the first seed's."""
        if self.quiet:
            return None
        loss = (f"held-out loss {result.loss:.3f} (first seed {record.proxy_loss:.3f}), "
                if result.loss is not None and record.proxy_loss is not None else "")
        return (f"[confirm] {_label(record)}: seed {seed} {loss}top-1 {result.top1:.3f} "
                f"(first seed {record.proxy_acc:.3f})")

    def trial_line(self, study: optuna.Study, trial: FrozenTrial) -> str | None:
        """One finished trial: what it came to, the best feasible so far, time spent and left."""
        self.done_here += 1
        if self.quiet:
            return None
        records = read_trials(study)
        finished = sum(r.finished for r in records)
        record = next(r for r in records if r.number == trial.number)
        best = best_feasible(records)
        best_text = (f"best {_best_score(best)} @ {best.latency_ms:.1f} ms (#{best.number})" if best
                     else "census, no accuracy" if record.status == MEASURED else "no feasible yet")
        elapsed = time.perf_counter() - self.started
        left = max(self.n_trials - finished, 0)
        from search.report.eta import study_seconds_left

        seconds = study_seconds_left(study, records, left, self.confirm)
        then = " (confirmations)" if not left else ""
        eta = f", ~{seconds / 60:.1f} min left{then}" if seconds else ""
        return (f"[{min(finished, self.n_trials)}/{self.n_trials}] {_label(record)}: {_outcome_text(record)} | "
                f"{best_text} | {elapsed / 60:.1f} min{eta}")


def _best_score(record: TrialRecord) -> str:
    if record.status == TRAINED and record.rank_by == "loss":
        return f"loss {record.loss:.3f}"
    if record.status == TRAINED:
        return f"top-1 {record.accuracy:.3f}"
    return f"{record.score_name} {record.merit:.4g}"


def _budget(budget_ms: float | None) -> str:
    """'20 ms budget', or 'budget' when a budget in reference units was never calibrated (interrupted first)."""
    return "budget" if budget_ms is None else f"{budget_ms:g} ms budget"


def _spaced(budget: str) -> str:
    """'20ms' -> '20 ms' (as the summary always wrote it); '1.2xT0' -> '1.2 x T0'."""
    return budget.replace("ms", " ms") if budget.endswith("ms") else budget.replace("x", " x ", 1)


def _outcome_text(record: TrialRecord) -> str:
    """What one trial came to: its top-1, score or census numbers, or why it has none."""
    if record.status == TRAINED:
        loss = f"held-out loss {record.proxy_loss:.3f}, " if record.proxy_loss is not None else ""
        return f"{loss}top-1 {record.proxy_acc:.3f}, latency {record.latency_ms:.2f} ms"
    if record.status == REPEAT:
        return (f"the spec of #{record.repeat_of} again: its latency reused"
                + (f" ({record.latency_ms:.2f} ms)" if record.latency_ms is not None else "")
                + ", one more seed trained for it if it was trained")
    if record.status == SCORED:
        return f"{record.score_name} {record.score:.4g} (untrained), latency {record.latency_ms:.2f} ms"
    if record.status == MEASURED:
        return (f"latency {record.latency_ms:.2f} ms, {human(record.flops or 0)} FLOPs, "
                f"{human(record.param_count or 0)} params (census)")
    reason = record.reason or "no reason stored (its worker stopped or was killed)"
    return reason if reason.startswith(record.status) else f"{record.status}: {reason}"


def failed_workers_warning(count: int) -> str:
    return f"warning: {count} extra worker(s) stopped with an error; their finished trials are kept"


def summary_lines(outcome: SearchOutcome, records: list[TrialRecord], budget_ms: float) -> list[str]:
    """The summary after a run, up to its closing line: counts, the Pareto front, the named configs,
    warnings and notes (a line may start with a blank line of its own)."""
    lines = [""]
    if outcome.interrupted:
        lines.append("interrupted: the study keeps every finished trial; run the same command to resume")
    if outcome.stale_failed:
        lines.append(f"failed {len(outcome.stale_failed)} trial(s) left running by a stopped worker: "
                     + ", ".join(f"#{n}" for n in outcome.stale_failed))
    lines.append(_counts_line(outcome, records, budget_ms))
    front = pareto_front(records)
    chosen = pick(records, outcome.pick) if outcome.pick else pick(records)
    speed = None if outcome.budget_in_reference or budget_ms is None else reference_speed(records)
    lines += _front_lines(front, chosen) + _tied_lines(chosen) + _named_lines(records, front, speed, budget_ms)
    lines += _speed_lines(records, speed, budget_ms)
    lines += [f"\nwarning: {warning}" for warning in search_warnings(records)]
    return lines + [f"\nnote: {note}" for note in outcome.notes]


def _counts_line(outcome: SearchOutcome, records: list[TrialRecord], budget_ms: float) -> str:
    counts = {s: sum(r.status == s for r in records) for s in (TRAINED, SCORED, MEASURED, OVER_BUDGET, PRUNED, FAILED)}
    scored = f"{counts[SCORED]} scored without training, " if counts[SCORED] else ""
    scored += f"{counts[MEASURED]} measured only (census), " if counts[MEASURED] else ""
    repeats = sum(r.status == REPEAT for r in records)
    scored += f"{repeats} repeat(s) of a spec already in the study, " if repeats else ""
    predicted_over = sum(r.status == OVER_BUDGET and r.latency_source == "predicted" for r in records)
    how = (f"{counts[OVER_BUDGET] - predicted_over} measured, {predicted_over} predicted by the latency table; "
           if predicted_over else "measured; ") + "not trained"
    return (f"study {outcome.study.study_name!r}: {counts[TRAINED]} trained within budget, {scored}"
            f"{counts[OVER_BUDGET]} over the {_budget(budget_ms)} ({how}), {counts[PRUNED]} pruned, "
            f"{counts[FAILED]} failed{_not_run(records)}; {outcome.elapsed_s / 60:.1f} min this run")


def _not_run(records: list[TrialRecord]) -> str:
    count = sum(r.status == NOT_RUN for r in records)
    return f", {count} not run (started by a worker when the study was already full)" if count else ""


def _front_lines(front: list[TrialRecord], chosen: Pick | None) -> list[str]:
    if not front:
        return []
    tied = {r.number for r in chosen.tied} if chosen else set()
    by_loss = front[0].rank_by == "loss" and front[0].status == TRAINED
    table = [[r.number, r.named or "", *([loss_text(r)] if by_loss else []), accuracy_text(r),
              fixed(r.latency_ms, 2), human(r.flops or 0), human(r.flops_per_s or 0, "FLOPS"),
              human(r.param_count or 0), _mark(r, chosen, tied)] for r in front]
    score = "held-out loss (lower is better) and top-1" if by_loss else "proxy top-1"
    return [f"\nPareto front (feasible trials; {score} with 95% intervals vs latency):",
            format_table(["trial", "named", *(["held-out loss [95% CI]"] if by_loss else []), "proxy top-1 [95% CI]",
                          "latency ms", "FLOPs", "achieved", "params", "tied"], table)]


def _mark(record: TrialRecord, chosen: Pick | None, tied: set[int]) -> str:
    if chosen is not None and record.number == chosen.chosen.number:
        return "picked"
    return "tied" if record.number in tied else ""


def _tied_lines(chosen: Pick | None) -> list[str]:
    """The candidates tied with the best within the noise, the rule that picks best.yaml among them, and why."""
    if chosen is None or chosen.best.status != TRAINED:
        return []
    what = score_name(chosen.best.rank_by)
    seeds = "seed means, " if chosen.confirmed else "some on a single training (--confirm 1, or interrupted), "
    members = ", ".join(_label(r) + f" ({r.latency_ms:.2f} ms)" for r in chosen.tied)
    return [f"\ntied with the best (#{chosen.best.number}) within the noise ({seeds}95% intervals of the {what} "
            f"overlap): {len(chosen.tied)} candidate(s): {members}",
            f"picked (--pick {chosen.rule}): #{chosen.chosen.number}, {chosen.reason}"]


def _named_lines(records: list[TrialRecord], front: list[TrialRecord], speed: ReferenceSpeed | None = None,
                 budget_ms: float | None = None) -> list[str]:
    named = sorted((r for r in records if r.named and r.status in (TRAINED, SCORED, MEASURED, OVER_BUDGET, PRUNED)),
                   key=lambda r: r.latency_ms or 0.0)
    if not named:
        return []
    return ["\nnamed configs in this study:"] + [
        f"  {r.named}: latency {r.latency_ms:.2f} ms{_ratio_text(r)}, {_named_standing(r, front)}"
        + _speed_mark(r, speed, budget_ms) for r in named]


def _ratio_text(record: TrialRecord) -> str:
    """' = 1.864 x T0' for a candidate timed in pairs with a reference (in the base's units, whatever rung)."""
    if record.latency_ratio is None or record.latency_reference is None:
        return ""
    return f" = {record.latency_unit_ratio or record.latency_ratio:.3f} x {record.latency_unit or record.latency_reference}"


def _speed_mark(record: TrialRecord, speed: ReferenceSpeed | None, budget_ms: float | None) -> str:
    if speed is None or budget_ms is None or budget_verdict(record, speed, budget_ms) != BORDERLINE:
        return ""
    fast, slow = latency_range_ms(record, speed)
    return f"; borderline on this machine's speed ({fast:.1f} to {slow:.1f} ms)"


def _speed_lines(records: list[TrialRecord], speed: ReferenceSpeed | None, budget_ms: float | None) -> list[str]:
    """How far the reference's speed moved during the study, and the candidates that movement could put on
    either side of a ms budget (a budget in the reference's units does not move with it)."""
    if speed is None or budget_ms is None:
        return []
    ref = speed.reference
    lines = [f"\n{ref}'s speed during this study: calibrated at {speed.calibration_ms:.2f} ms; the references' "
             f"fastest call per timing put it at {speed.fastest_ms:.2f} to {speed.slowest_ms:.2f} ms "
             f"({100 * speed.spread:.0f}% apart, over {speed.trials} timings; the ms above are ratios x the "
             "calibration)"]
    moving = borderline_on_speed(records, speed, budget_ms)
    if moving:
        shown = ", ".join(f"{_label(r)} ({_ratio_text(r).removeprefix(' = ')}: "
                          + "{:.1f} to {:.1f} ms)".format(*latency_range_ms(r, speed)) for r in moving[:6])
        more = f" and {len(moving) - 6} more" if len(moving) > 6 else ""
        lines.append(f"{len(moving)} candidate(s) are within the {budget_ms:g} ms budget at {ref}'s fastest and over "
                     f"it at its slowest, so another run on this machine may decide them either way: {shown}{more}. "
                     f"For verdicts that do not move with the machine's speed, give the budget in {ref}'s units: "
                     f"--latency-budget {budget_ms / speed.calibration_ms:.3g}x{ref} is {budget_ms:g} ms at this "
                     "calibration")
    return lines


def _named_standing(record: TrialRecord, front: list[TrialRecord]) -> str:
    if record.status == TRAINED:
        return f"{score_text(record)}, {standing(record, front)}"
    if record.status == SCORED:
        return f"{accuracy_text(record)}, " + ("on the front" if record.pareto else "behind the front")
    if record.status == PRUNED:
        return f"pruned ({record.reason})"
    if record.status == MEASURED:
        return "within budget, measured only (census)"
    return "over budget, not trained"


def closing_line(records: list[TrialRecord], study_name: str, budget_ms: float, best_spec: Path | None,
                 rule: str | None = None) -> str:
    """The summary's last line: the picked trial (`rule`, see search.records.front.pick) and `best_spec`, where
    its spec was saved; or, with none feasible, why not (a census, or nothing within the budget)."""
    chosen = pick(records, rule) if rule else pick(records)
    best = chosen.chosen if chosen else None
    measured = sum(r.status == MEASURED for r in records)
    if best is None and measured:
        return (f"\ncensus: {measured} candidates measured within budget, no accuracy (--proxy none: nothing "
                f"trained or scored, so no front); python cli.py analyze --study {study_name} --out FILE.html")
    if best is None:
        return f"\nno trial met the {_budget(budget_ms)} yet; raise --latency-budget or --n-trials"
    why = (f" (--pick {chosen.rule}, of {len(chosen.tied)} tied)" if len(chosen.tied) > 1
           else " (the best, no other within the noise)" if best.status == TRAINED else "")
    return (f"\nbest feasible: trial #{best.number}{why}, {score_text(best)}, latency {best.latency_ms:.2f} ms -> "
            f"{best_spec}  (python cli.py build --spec {best_spec})")


BUSY_CORES = 0.5  # other processes using more than half a core while a candidate was timed: say so
BUSY_STEAL = 0.05  # the hypervisor taking more than 5% of the CPU time while timing: say so


def search_warnings(records: list[TrialRecord]) -> list[str]:
    """What makes this study's numbers less trustworthy, with what to change."""
    warnings = []
    blind = [r for r in records if r.status == TRAINED and r.learned_nothing]
    if blind:
        chance = blind[0].chance
        warnings.append(
            f"{len(blind)} trained trial(s) did not beat chance ({chance:.3f}): the proxy learned nothing for them "
            f"(#{', #'.join(str(r.number) for r in blind[:8])}); raise --proxy-epochs, lower --proxy-batch-size, "
            "or give the proxy more images (--max-train-samples, more data)")
    busy = [r for r in records if (r.outside_cores or 0.0) > BUSY_CORES or (r.steal_share or 0.0) > BUSY_STEAL]
    if busy:
        cores = max(r.outside_cores or 0.0 for r in busy)
        steal = max(r.steal_share or 0.0 for r in busy)
        warnings.append(
            f"{len(busy)} latency measurement(s) ran while other processes used up to {cores:.1f} core(s) of this "
            f"machine, or its hypervisor took up to {100 * steal:.0f}% of the CPU time: paired timing cancels "
            "most of it in the ratio, but the calibration and the intervals are less certain; stop what else runs "
            "(or use a dedicated machine) and rerun with --recalibrate for a clean front")
    # older records (no paired timing): the timing cap was reached, read with the machine's load average
    unsettled = [r for r in records if r.latency_stable is False and r.outside_cores is None]
    if unsettled:
        load = max((r.load_per_core or 0.0) for r in unsettled)
        why = "the machine was busy" if load >= 0.75 else "the timings were noisy"
        warnings.append(
            f"{len(unsettled)} latency measurement(s) did not settle within the timing cap (machine load up to "
            f"{load:.1f} per core): {why}, so those latencies are less certain than their intervals' target; "
            "rerun on an idle machine for a clean front")
    return warnings
