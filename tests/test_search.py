import json

import optuna
import pytest
import yaml

from fasternet_space import ArchSpec, load_spec
from fasternet_space.data import load_dataset
from fasternet_space.measure import TimingPolicy
from fasternet_space.proxy import ProxyConfig, train_proxy
from search import objective as objective_module
from search.objective import Objective, ObjectiveConfig
from search.space import SearchSpace
from search.study import SearchError, parse_budget
from tests.cli_helpers import assert_one_line_error, run_cli

TINY_SPACE = {
    "name": "tiny", "embed_dim": {"choices": [8, 12, 16]}, "depths": [1, {"low": 0, "high": 1}, 1, 1],
    "partial_ratio": {"choices": [0.25, 0.5]}, "mlp_ratio": 2.0, "act": {"choices": ["relu", "gelu"]},
    "norm": {"choices": ["bn", "ln"]}, "feature_dim": 32, "input_size": 64, "num_classes": 10,
}
QUICK = TimingPolicy(warmup=1, min_repeats=3, max_time_s=0.5, rel_ci=0.1)


@pytest.fixture
def tiny_space_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SPACE))
    return path


@pytest.mark.parametrize("text, ms", [("20ms", 20.0), ("0.02s", 20.0), ("20", 20.0), ("7.5 ms", 7.5), ("1e1ms", 10.0)])
def test_budget_strings(text, ms):
    assert parse_budget(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["20 parsecs", "fast", "-5ms", "0", "20us", ""])
def test_bad_budget_strings(text):
    with pytest.raises(SearchError, match="allowed: a positive number with unit ms or s"):
        parse_budget(text)


def _objective(space, budget_ms, calls):
    dataset = load_dataset("digits", 32, max_train=64, max_test=32)
    config = ObjectiveConfig(budget_ms=budget_ms, timing=QUICK, proxy=ProxyConfig(epochs=1, resolution=32))
    return Objective(space, dataset, config)


def test_over_budget_candidates_are_never_trained(monkeypatch):
    calls = []
    monkeypatch.setattr(objective_module, "train_proxy", lambda *a, **k: calls.append(a) or [0.5])
    space = SearchSpace.from_dict(TINY_SPACE)
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.optimize(_objective(space, 1e-6, calls), n_trials=3)
    assert calls == []
    for trial in study.trials:
        assert trial.state.name == "COMPLETE"
        assert trial.user_attrs["feasible"] is False and trial.user_attrs["proxy_acc"] is None
        assert trial.user_attrs["latency_ms"] > 0 and trial.values[1] == trial.user_attrs["latency_ms"]
        assert trial.constraints["latency_over_budget_ms"] > 0
    assert study.best_trials == []  # nothing infeasible is ever on the front


def test_feasible_trials_store_every_metric():
    space = SearchSpace.from_dict(TINY_SPACE)
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.optimize(_objective(space, 1e6, []), n_trials=2)
    for trial in study.trials:
        a = trial.user_attrs
        assert a["feasible"] is True and 0 <= a["proxy_acc"] <= 1 and trial.values[0] == a["proxy_acc"]
        for key in ("latency_ms", "flops", "params", "flops_per_s"):
            assert a[key] > 0
        assert a["protocol"]["threads"] == 1 and len(a["proxy_curve"]) == 1
        assert ArchSpec.from_dict(yaml.safe_load(a["spec_yaml"])).input_size == 64


def test_proxy_is_deterministic_for_a_seed():
    spec = ArchSpec(embed_dim=8, depths=(1, 1, 1, 1), feature_dim=16, input_size=64)
    dataset = load_dataset("digits", 32, seed=3, max_train=128, max_test=64)
    config = ProxyConfig(epochs=2, resolution=32, batch_size=32)
    assert train_proxy(spec, dataset, config, seed=3) == train_proxy(spec, dataset, config, seed=3)


def test_small_search_completes_resumes_and_exports_a_buildable_spec(tiny_space_file, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    common = ["search", "--space", str(tiny_space_file), "--latency-budget", "1s", "--storage", storage,
              "--study-name", "tiny", "--proxy-epochs", "1", "--max-train-samples", "128", "--seed", "1"]
    best = tmp_path / "best.yaml"
    first = run_cli(*common, "--n-trials", "3", "--out-spec", str(best))
    assert first.returncode == 0, first.stderr
    assert "[3/3]" in first.stdout and "Pareto front" in first.stdout
    export = tmp_path / "report"
    second = run_cli(*common, "--n-trials", "5", "--out-spec", str(best), "--export", str(export))
    assert second.returncode == 0, second.stderr
    assert "resuming with 3 finished" in second.stdout
    assert {"pareto.html", "trials.csv", "best.yaml"} <= {p.name for p in export.iterdir()}
    study = optuna.load_study(study_name="tiny", storage=storage)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 5
    assert len({t.number for t in study.trials}) == len(study.trials)
    spec = load_spec(best)
    assert spec.name == "tiny-best" and spec.embed_dim in (8, 12, 16)
    built = run_cli("build", "--spec", str(best), "--format", "json")
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["params"] > 0


def test_grid_sampler_and_named_configs_outside_the_space(tmp_path):
    space = dict(TINY_SPACE, embed_dim=8, partial_ratio=0.5, act="relu", norm={"choices": ["bn"]})
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(space))
    result = run_cli("search", "--space", str(path), "--sampler", "grid", "--latency-budget", "1s",
                     "--storage", f"sqlite:///{tmp_path / 'g.db'}", "--n-trials", "2", "--proxy-epochs", "1",
                     "--max-train-samples", "64", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "named configs enqueued" not in result.stdout  # T0..L are not points of this space


def test_search_bad_input(tiny_space_file, tmp_path):
    base = ["search", "--space", str(tiny_space_file), "--storage", f"sqlite:///{tmp_path / 'b.db'}"]
    assert_one_line_error(run_cli(*base, "--latency-budget", "20 parsecs"), "20 parsecs", "ms or s")
    assert_one_line_error(run_cli(*base, "--n-trials", "-3"), "--n-trials", "positive")
    assert_one_line_error(run_cli(*base, "--data", "mnist"), "mnist", "digits, cifar10:DIR, imagefolder:DIR")
    assert_one_line_error(run_cli(*base, "--sampler", "grid", "--space", "spaces/fasternet.yaml", "--n-trials", "1",
                                  "--space", str(tmp_path / "missing.yaml")), "file not found")


def test_pruning_stops_hopeless_candidates_but_never_a_fully_trained_one():
    from search.pruning import CurvePruner

    space = SearchSpace.from_dict(TINY_SPACE)
    always = CurvePruner(percentile=100.0, n_startup_trials=0, n_warmup_epochs=0)  # prunes all below the best
    for epochs, expected in ((1, "COMPLETE"), (2, "PRUNED")):
        objective = _objective(space, 1e6, [])
        objective.config.proxy = ProxyConfig(epochs=epochs, resolution=32)
        objective.pruner = always
        study = optuna.create_study(directions=["maximize", "minimize"])
        # A perfect earlier curve that every candidate falls below.
        study.add_trial(optuna.trial.create_trial(values=[1.0, 1.0], user_attrs={"proxy_curve": [1.0, 1.0]}))
        study.optimize(objective, n_trials=1)
        assert study.trials[1].state.name == expected, study.trials[1].user_attrs
