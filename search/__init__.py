"""Search the FasterNet design space with Optuna: measured latency under a budget, short-proxy accuracy.

    from search import SearchConfig, run_search, read_trials
    outcome = run_search(SearchConfig(budget_ms=20.0, n_trials=40))
    records = read_trials(outcome.study)
"""

from search.config import SAMPLERS, SearchConfig, parse_budget
from search.errors import SearchError
from search.records.front import best_feasible, pareto_front
from search.records.trial import STATUSES, TrialRecord, read_trials
from search.run.storage import DEFAULT_STORAGE, load_study
from search.run.study import SearchOutcome, run_search
from search.space import SearchSpace

__all__ = [
    "DEFAULT_STORAGE", "SAMPLERS", "STATUSES", "SearchConfig", "SearchError", "SearchOutcome", "SearchSpace",
    "TrialRecord", "best_feasible", "load_study", "pareto_front", "parse_budget", "read_trials", "run_search",
]
