"""What matters: each free parameter's importance for accuracy, latency and achieved FLOPS, by Optuna's
fANOVA and PED-ANOVA evaluators, with the number of trials behind each."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import optuna

from search.analysis.data import (
    NOT_ENOUGH,
    TARGET_VALUES,
    level_records,
    levels,
    target_frees,
    target_population,
)
from search.records.trial import TrialRecord
from search.space import Free, SearchSpace, distribution

MIN_IMPORTANCE_TRIALS = 10  # fewer: no importance (a forest or a Parzen estimator of a handful says nothing)
# PED-ANOVA's target quantile: what it takes to reach the space's best quarter (Optuna's default, the top 10%, is
# a search's question, and on 60 random trials its top 6 makes chance correlations look important), raised so
# that the top holds at least PED_ANOVA_MIN_TOP trials (Optuna advises at least 5).
PED_ANOVA_TOP = 0.25
PED_ANOVA_MIN_TOP = 10
RARE_VALUE = 3  # a value (or bin) seen in fewer trials than this: its parameter's importance may rest on it
MISSING = "not computed: needs"  # how a note begins when a package is missing (the install hint is one note)
LABELS = {"fanova": "fANOVA", "ped-anova": "PED-ANOVA"}
INSTALL = {"sklearn": "scikit-learn: pip install -e '.[analysis]'"}


@dataclass(frozen=True)
class Importance:
    """Importances of the free parameters for one target by one evaluator (normalised to sum to 1)."""

    target: str  # a key of TARGETS
    evaluator: str  # fanova or ped-anova
    n_trials: int
    values: dict[str, float]  # parameter -> importance, most important first; empty when not computed
    note: str | None = None  # why it was not computed, or how (PED-ANOVA's quantile)
    # parameter -> its values (or bins) seen in fewer than RARE_VALUE of the trials -> in how many: {"norm": {"ln": 1}}
    rare: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ranking(self) -> list[str]:
        return list(self.values)


def importances(records: Sequence[TrialRecord], space: SearchSpace, target: str, seed: int = 0) -> list[Importance]:
    """fANOVA and PED-ANOVA importances for `target` (see TARGETS) of every free parameter that can change it
    (`target_frees`)."""
    frees = target_frees(space.free_params, target)
    value_of = TARGET_VALUES[target]
    chosen = [(r, value_of(r)) for r in target_population(records, target, frees)]
    chosen = [(r, v) for r, v in chosen if v is not None and math.isfinite(v)]
    n = len(chosen)
    if n < MIN_IMPORTANCE_TRIALS or not frees:
        why = f"{NOT_ENOUGH}: {n} < {MIN_IMPORTANCE_TRIALS}" if frees else "the space has no free parameter"
        return [Importance(target, name, n, {}, why) for name in ("fanova", "ped-anova")]
    distributions = {f.param: distribution(f) for f in frees}
    study = optuna.create_study(direction="minimize")  # in memory: only the trials chosen, one objective
    study.add_trials([optuna.trial.create_trial(params={p: r.params[p] for p in distributions},
                                                distributions=distributions, value=v) for r, v in chosen])
    quantile = max(PED_ANOVA_TOP, min(0.5, PED_ANOVA_MIN_TOP / n))
    rare = rare_values([r for r, _ in chosen], frees)
    out = []
    for name, make in (("fanova", lambda: optuna.importance.FanovaImportanceEvaluator(seed=seed)),
                       ("ped-anova", lambda: optuna.importance.PedAnovaImportanceEvaluator(
                           target_quantile=quantile, evaluate_on_local=False))):
        note = f"top {quantile:.0%} of {n} trials against all of them" if name == "ped-anova" else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # experimental-feature warnings
                values = optuna.importance.get_param_importances(study, evaluator=make())
        except ImportError as exc:
            out.append(Importance(target, name, n, {}, f"{MISSING} {missing_module(exc)}"))
            continue
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # degenerate data, e.g. every value equal
            out.append(Importance(target, name, n, {}, f"could not be computed: {str(exc).splitlines()[0][:200]}"))
            continue
        out.append(Importance(target, name, n, {k: float(v) for k, v in values.items()}, note, rare))
    return out


def rare_values(records: Sequence[TrialRecord], frees: Sequence[Free]) -> dict[str, dict[str, int]]:
    """Per parameter, its values (or bins) that some but fewer than RARE_VALUE of `records` have, with how
    many: {"norm": {"ln": 1}}."""
    out = {}
    for free in frees:
        counts = {lv.label: len(level_records(records, free.param, lv)) for lv in levels(free)}
        rare = {label: k for label, k in counts.items() if 0 < k < RARE_VALUE}
        if rare:
            out[free.param] = rare
    return out


def rare_text(rare: dict[str, int]) -> str:
    """'ln: 1 trial, 80: 2 trials'."""
    return ", ".join(f"{label}: {k} trial{'s' if k > 1 else ''}" for label, k in rare.items())


def missing_module(exc: ImportError) -> str:
    """The top-level package an ImportError is about (Optuna re-raises its own, naming the module in the text)."""
    cause = exc.__cause__ if isinstance(exc.__cause__, ImportError) else None
    found = exc.name or (cause.name if cause else None) or next(iter(re.findall(r"import '([\w.]+)'", str(exc))), None)
    return found.split(".")[0] if found else "a package it imports"


def missing_packages(found: Sequence[Importance]) -> list[str]:
    """Each evaluator that could not import a package, once: "fANOVA needs scikit-learn: pip install ..."."""
    missing = dict.fromkeys((i.evaluator, i.note[len(MISSING):].strip()) for i in found
                            if i.note and i.note.startswith(MISSING))
    return [f"{LABELS[evaluator]} needs {INSTALL.get(name, name)}" for evaluator, name in missing]
