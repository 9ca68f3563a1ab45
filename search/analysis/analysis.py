"""What a study says about its design space (RegNet's method, Radosavovic et al. 2020), as plain data.

`analyze(records, space, ...)` (or `analyze_study(study)`) gives an `Analysis`:
- per free parameter, its importance for accuracy, latency and achieved FLOPS, from Optuna's evaluators
  (fANOVA and PED-ANOVA), with the number of trials behind each (`importance`);
- EDFs of proxy error among the feasible trained trials (pycls style: one curve per value of a categorical
  parameter or per bin of a numeric one, n on each), the named configs left out (they are enqueued, not
  sampled) (`edf`);
- latency and achieved FLOPS per value or bin of each parameter: medians with distribution-free 95% intervals,
  over every candidate whose latency was measured (trained, over budget, pruned, scored or a census) (`costs`);
  a parameter that cannot change the deployed network (drop path, layer scale) has no latency, FLOPS or cost
  entries: any difference there is confounding;
- the FasterNet paper's choices answered from the study, each with numbers and 95% intervals, or "not enough
  trials": the best partial ratio at the study's budget, ReLU against GELU, BN against LN, stage 3's depth
  share (`choices`);
- warnings: a study not sampled at random (a guided sampler biases EDFs and importances), too few trials.
No plotting and no printing here: `search.analysis.html` draws and writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna

from search.analysis.choices import Choice, paper_choices
from search.analysis.costs import CostGroup, cost_groups
from search.analysis.data import (
    ACCURACY_METRICS,
    TARGETS,
    accuracy_metric,
    deploy_neutral,
    measured_population,
    study_space,
    trained_population,
)
from search.analysis.edf import MIN_CURVE, STABLE_EDF, EdfGroup, edf_groups
from search.analysis.importance import RARE_VALUE, Importance, importances, missing_packages
from search.records import study_attrs
from search.records.trial import TrialRecord, read_trials
from search.space import SearchSpace


@dataclass(frozen=True)
class Analysis:
    study: str | None
    budget_ms: float | None
    samplers: list[str] | None  # every sampler that added trials (None: not recorded)
    counts: dict[str, int]  # trials per status
    params: list[str]  # the space's free parameters, as the space names them
    n_trained: int  # feasible trained trials with every free parameter
    n_edf: int  # of those, sampled (named configs left out): the EDFs' population
    n_measured: int  # candidates with a latency (measured, or predicted by a latency table)
    n_predicted: int  # of those, latencies a latency table predicted (--latency auto|predicted), never timed
    importances: list[Importance]
    edfs: list[EdfGroup]
    costs: list[CostGroup]
    choices: list[Choice]
    warnings: list[str]
    notes: list[str]
    accuracy_metric: str = "top1"  # what the accuracy importances are computed on: a key of ACCURACY_METRICS
    deploy_neutral: list[str] = field(default_factory=list)  # free parameters with no cost entries

    @property
    def targets(self) -> dict[str, str]:
        """TARGETS, the accuracy target described by the score this study ranks on."""
        described = dict(TARGETS)
        if self.accuracy_metric == "loss":
            described["accuracy"] = ("held-out loss (cross-entropy, the seed mean where confirmed) of the feasible "
                                     "trained trials")
        return described

    def params_for(self, target: str) -> list[str]:
        """The free parameters `target` has entries for (a cost target: none that cannot change the network)."""
        return [p for p in self.params if target == "accuracy" or p not in self.deploy_neutral]

    def importance(self, target: str, evaluator: str) -> Importance:
        return next(i for i in self.importances if i.target == target and i.evaluator == evaluator)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["targets"] = self.targets
        data["accuracy_metric_label"] = ACCURACY_METRICS[self.accuracy_metric]
        return data


def analyze(records: Sequence[TrialRecord], space: SearchSpace, study_name: str | None = None,
            budget_ms: float | None = None, samplers: list[str] | None = None, screened: bool = False,
            seed: int = 0) -> Analysis:
    """The analysis of a study's trial records over its space (see the module's docstring)."""
    frees = space.free_params
    trained = trained_population(records, frees)
    sampled = [r for r in trained if not r.named]
    measured = measured_population(records, frees)
    front = [r for r in trained if r.pareto]
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1

    warns, notes = [], []
    guided = [s for s in samplers or [] if s not in ("random", "grid")]
    if samplers is None:
        warns.append("the study does not record its sampler (made before samplers were stored): EDFs and "
                     "importances describe the space only when it was sampled at random")
    elif guided:
        warns.append(f"sampled with {', '.join(guided)}: a guided sampler concentrates its trials where it expects "
                     "good results, so EDFs and importances describe where it searched, not the space; for the "
                     "space, search with --sampler random (or a census, --proxy none)")
    if screened:
        warns.append("the trained trials were chosen by a zero-cost screen (--screen): the EDFs describe that "
                     "selection, not the space")
    if not trained:
        notes.append("accuracy parts (accuracy importances, EDFs, the accuracy side of the paper's choices) need "
                     "trained trials; this study has none" + (" (a census, --proxy none)" if counts.get("measured")
                                                            else ""))
    elif len(sampled) < STABLE_EDF:
        warns.append(f"EDFs rest on {len(sampled)} sampled trained trials: too few for a stable EDF (RegNet "
                     f"compares about {STABLE_EDF} or more per design space); curves of fewer than {MIN_CURVE} "
                     "trials are marked")
    predicted = sum(r.latency_source == "predicted" for r in measured)
    if predicted:
        notes.append(f"{predicted} of the {len(measured)} latencies are a latency table's predictions (--latency "
                     "auto or predicted), not measurements: the latency and FLOPS importances and costs rest on "
                     "both, and carry the table's error (see `cli.py profile`)")
    named_out = len(trained) - len(sampled)
    if named_out:
        notes.append(f"{named_out} named config(s) left out of the EDFs: enqueued, not sampled")
    neutral = deploy_neutral(frees)
    if neutral:
        notes.append(f"{', '.join(neutral)} cannot change the deployed network (training only, or folded into a "
                     "convolution at inference): no latency, FLOPS or cost entries for "
                     f"{'them' if len(neutral) > 1 else 'it'}, whose differences there could only be confounding")
    result = []
    for target in TARGETS:
        result += importances(records, space, target, seed=seed)
    notes += [f"{missing} (its importances are left out)" for missing in missing_packages(result)]
    rare = sorted({p for i in result if i.values for p in i.rare})
    if rare:
        warns.append(f"{', '.join(rare)}: a value seen in fewer than {RARE_VALUE} trials (marked on its bars): "
                     "its importance may rest on those few trials")
    return Analysis(study=study_name, budget_ms=budget_ms, samplers=samplers, counts=counts,
                    params=[f.param for f in frees], n_trained=len(trained), n_edf=len(sampled),
                    n_measured=len(measured), n_predicted=predicted, importances=result, edfs=edf_groups(sampled, space),
                    costs=cost_groups(measured, space),
                    choices=paper_choices(trained, measured, front, space, budget_ms), warnings=warns, notes=notes,
                    accuracy_metric=accuracy_metric(trained), deploy_neutral=neutral)


def analyze_study(study: optuna.Study, seed: int = 0) -> Analysis:
    """The analysis of a stored study: its records over its space, budget and samplers."""
    return analyze(read_trials(study), study_space(study), study.study_name, study_attrs.budget_ms(study),
                   samplers=study_attrs.samplers(study), screened=bool(study_attrs.screened(study)), seed=seed)
