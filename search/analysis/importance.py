"""What matters: each free parameter's importance for accuracy, latency and achieved FLOPS, by Optuna's
fANOVA and PED-ANOVA evaluators, with the number of trials behind each."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import optuna

from search.analysis.data import NOT_ENOUGH, TARGET_VALUES, target_population
from search.records.trial import TrialRecord
from search.space import SearchSpace, distribution

MIN_IMPORTANCE_TRIALS = 10  # fewer: no importance (a forest or a Parzen estimator of a handful says nothing)
# PED-ANOVA's target quantile: what it takes to reach the space's best quarter (Optuna's default, the top 10%, is
# a search's question, and on 60 random trials its top 6 makes chance correlations look important), raised so
# that the top holds at least PED_ANOVA_MIN_TOP trials (Optuna advises at least 5).
PED_ANOVA_TOP = 0.25
PED_ANOVA_MIN_TOP = 10


@dataclass(frozen=True)
class Importance:
    """Importances of the free parameters for one target by one evaluator (normalised to sum to 1)."""

    target: str  # a key of TARGETS
    evaluator: str  # fanova or ped-anova
    n_trials: int
    values: dict[str, float]  # parameter -> importance, most important first; empty when not computed
    note: str | None = None  # why it was not computed, or how (PED-ANOVA's quantile)

    @property
    def ranking(self) -> list[str]:
        return list(self.values)


def importances(records: Sequence[TrialRecord], space: SearchSpace, target: str, seed: int = 0) -> list[Importance]:
    """fANOVA and PED-ANOVA importances of every free parameter for `target` (see TARGETS)."""
    frees = space.free_params
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
    out = []
    for name, make in (("fanova", lambda: optuna.importance.FanovaImportanceEvaluator(seed=seed)),
                       ("ped-anova", lambda: optuna.importance.PedAnovaImportanceEvaluator(
                           target_quantile=quantile, evaluate_on_local=False))):
        note = f"top {quantile:.0%} of {n} trials against all of them" if name == "ped-anova" else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # experimental-feature warnings
                values = optuna.importance.get_param_importances(study, evaluator=make())
        except ImportError:
            out.append(Importance(target, name, n, {}, "fANOVA needs scikit-learn: pip install -e '.[analysis]'"))
            continue
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # degenerate data, e.g. every value equal
            out.append(Importance(target, name, n, {}, f"could not be computed: {str(exc).splitlines()[0][:200]}"))
            continue
        out.append(Importance(target, name, n, {k: float(v) for k, v in values.items()}, note))
    return out
