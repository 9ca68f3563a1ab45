import json

import optuna
import pytest
import torch
import yaml

from fasternet_space import ArchSpec, load_spec
from fasternet_space import proxy as proxy_module
from fasternet_space.data import load_dataset
from fasternet_space.model import build_model
from fasternet_space.proxy import ProxyConfig, ProxyRun, proxy_spec, train_proxy
from search import SearchConfig, SearchError, SearchSpace, TrialRecord, parse_budget, read_trials
from search.records.trial import OVER_BUDGET, PRUNED, TRAINED, Key
from search.run import objective as objective_module
from search.run.objective import Objective
from tests.cli_helpers import assert_one_line_error, run_cli
from tests.conftest import QUICK_TIMING, TINY_SPACE, distinct_draws_study


@pytest.fixture
def tiny_space_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SPACE))
    return path


def test_config_travels_to_workers_whole_and_validates():
    config = SearchConfig(budget_ms=7.5, proxy=ProxyConfig(epochs=2, lr=3e-3), timing=QUICK_TIMING,
                          storage="postgresql://u:pw@h/db", named=True, workers=3)
    worker = SearchConfig.from_json(config.for_worker(2, "shared").to_json())
    assert worker.proxy == config.proxy and worker.timing == config.timing and worker.budget_ms == 7.5
    assert (worker.worker_index, worker.study_name, worker.named, worker.workers) == (2, "shared", False, 1)
    assert worker.setting() == config.setting()
    for bad, parameter in ((dict(n_trials=0), "n_trials"), (dict(budget_ms=-1.0), "budget_ms"),
                           (dict(sampler="cmaes"), "sampler"), (dict(space="/no/such.yaml"), "space"),
                           (dict(proxy=ProxyConfig(batch_size=1)), "proxy_batch_size")):
        with pytest.raises(SearchError) as caught:
            SearchConfig(**bad).validate()
        assert caught.value.parameter == parameter and "allowed" in str(caught.value)


@pytest.mark.parametrize("text, ms", [("20ms", 20.0), ("0.02s", 20.0), ("20", 20.0), ("7.5 ms", 7.5), ("1e1ms", 10.0)])
def test_budget_strings(text, ms):
    assert parse_budget(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["20 parsecs", "fast", "-5ms", "0", "20us", ""])
def test_bad_budget_strings(text):
    with pytest.raises(SearchError, match="allowed: a positive number with unit ms or s"):
        parse_budget(text)


def _objective(space, budget_ms, epochs=1):
    dataset = load_dataset("digits", 32, max_train=64, max_test=32)
    config = SearchConfig(budget_ms=budget_ms, timing=QUICK_TIMING, proxy=ProxyConfig(epochs=epochs, resolution=32))
    return Objective(space, dataset, config)


def test_over_budget_candidates_are_never_trained(monkeypatch):
    calls = []
    monkeypatch.setattr(objective_module, "train_proxy", lambda *a, **k: calls.append(a) or ProxyRun([0.5], [1.0]))
    space = SearchSpace.from_dict(TINY_SPACE)
    study = distinct_draws_study()
    study.optimize(_objective(space, 1e-6), n_trials=3)
    assert calls == []
    for trial in study.trials:
        record = TrialRecord.from_trial(trial)
        assert record.state == "COMPLETE" and record.status == OVER_BUDGET
        assert record.feasible is False and record.proxy_acc is None
        assert record.latency_ms > 0 and trial.values[1] == record.latency_ms
        assert record.over_budget_ms == pytest.approx(record.latency_ms - 1e-6)
        assert "over budget: measured" in record.reason and "not trained" in record.reason
    assert study.best_trials == []  # nothing infeasible is ever on the front


def test_the_final_epochs_top1_and_held_out_loss_are_stored(monkeypatch):
    monkeypatch.setattr(objective_module, "train_proxy", lambda *a, **k: ProxyRun([0.4, 0.5], [1.7, 1.2], [2.0, 1.5]))
    study = distinct_draws_study()
    study.optimize(_objective(SearchSpace.from_dict(TINY_SPACE), 1e6, epochs=2), n_trials=1)
    record = TrialRecord.from_trial(study.trials[0])
    assert (record.proxy_acc, record.proxy_loss) == (0.5, 1.2) and study.trials[0].values[0] == 0.5


def test_feasible_trials_store_every_metric():
    space = SearchSpace.from_dict(TINY_SPACE)
    study = distinct_draws_study()
    study.optimize(_objective(space, 1e6), n_trials=2)
    records = read_trials(study)
    for trial, record in zip(study.trials, records, strict=True):
        assert record.status == TRAINED and record.feasible is True and record.reason is None
        assert 0 <= record.proxy_acc <= 1 and trial.values[0] == record.proxy_acc
        assert 0 < record.proxy_loss < 10  # held-out cross-entropy in nats (chance on 10 classes: 2.3)
        for value in (record.latency_ms, record.flops, record.param_count, record.flops_per_s, record.throughput):
            assert value > 0
        low, high = record.latency_ci_ms
        assert low <= record.latency_ms <= high
        assert record.protocol["threads"] == 1 and len(record.curve) == 1 and record.curve[-1] == record.proxy_acc
        assert set(record.params) == {"embed_dim", "depths[1]", "partial_ratio", "act", "norm"}
        assert record.arch_spec().input_size == 64
        assert record.arch_spec().embed_dim == record.params["embed_dim"]
    assert any(r.pareto for r in records)


def test_held_out_loss_is_the_mean_cross_entropy_and_top1_the_accuracy():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x, y = torch.randn(700, 3, 2, 2), torch.randint(0, 3, (700,))
    scores = proxy_module.held_out(model, x, y, batch_size=256)  # three batches, the last one partial
    with torch.no_grad():
        logits = model(x)
    assert scores.loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)), rel=1e-6)
    assert scores.top1 == int((logits.argmax(1) == y).sum()) / 700


def test_proxy_is_deterministic_for_a_seed():
    spec = ArchSpec(embed_dim=8, depths=(1, 1, 1, 1), feature_dim=16, input_size=64)
    dataset = load_dataset("digits", 32, seed=3, max_train=128, max_test=64)
    config = ProxyConfig(epochs=2, resolution=32, batch_size=32, threads=2)  # a fixed thread count: none chosen
    run = train_proxy(spec, dataset, config, seed=3)
    assert run == train_proxy(spec, dataset, config, seed=3)  # top-1, held-out loss and training loss alike
    assert len(run.top1) == len(run.loss) == len(run.train_loss) == 2 and min(run.loss + run.train_loss) > 0


def test_training_loss_is_the_mean_over_each_epochs_steps(monkeypatch):
    spec = ArchSpec(embed_dim=8, depths=(1, 1, 1, 1), feature_dim=16, input_size=64)
    dataset = load_dataset("digits", 32, seed=3, max_train=128, max_test=64)
    steps, real = [], torch.nn.functional.cross_entropy

    def recording(logits, labels, **kwargs):
        loss = real(logits, labels, **kwargs)
        if "label_smoothing" in kwargs:  # the training step's call (the held-out one sums instead)
            steps.append(float(loss.detach()))
        return loss

    monkeypatch.setattr(proxy_module.F, "cross_entropy", recording)
    run = train_proxy(spec, dataset, ProxyConfig(epochs=2, batch_size=32, threads=1), seed=3)
    assert len(steps) == 8  # 128 images in batches of 32, twice
    assert run.train_loss == pytest.approx([sum(steps[:4]) / 4, sum(steps[4:]) / 4], rel=1e-6)


def test_gradient_clipping_bounds_each_step_and_is_part_of_the_setting(monkeypatch):
    spec = ArchSpec(embed_dim=8, depths=(1, 1, 1, 1), feature_dim=16, input_size=64)
    dataset = load_dataset("digits", 32, seed=3, max_train=128, max_test=64)
    trained = []  # each training's model, as its evaluation receives it
    real_held_out = proxy_module.held_out
    monkeypatch.setattr(proxy_module, "held_out",
                        lambda model, *a, **k: trained.append(model) or real_held_out(model, *a, **k))

    def moved(grad_clip):
        torch.manual_seed(3)
        start = [p.detach().clone() for p in build_model(proxy_spec(spec, dataset)).parameters()]
        train_proxy(spec, dataset, ProxyConfig(epochs=1, batch_size=32, threads=1, weight_decay=0.0,
                                               grad_clip=grad_clip), seed=3)
        return sum(float((p.detach() - q).abs().sum()) for p, q in zip(trained[-1].parameters(), start, strict=True))

    # AdamW normalises the gradient's scale, so a norm far below its epsilon (1e-8) all but stops the steps
    assert moved(1e-12) < 0.01 * moved(None)
    assert moved(1.0) > 0.5 * moved(None)
    clipped, unclipped = SearchConfig(), SearchConfig(proxy=ProxyConfig(grad_clip=None))
    assert clipped.setting()["proxy_grad_clip"] == ProxyConfig().grad_clip == 1.0
    assert "proxy_grad_clip" not in unclipped.setting()  # as studies written before clipping record it
    smoothed = SearchConfig(proxy=ProxyConfig(label_smoothing=0.1))  # changes the numbers: part of the setting
    assert smoothed.setting()["proxy_label_smoothing"] == 0.1 and "proxy_label_smoothing" not in clipped.setting()
    with pytest.raises(SearchError, match="proxy_grad_clip"):
        SearchConfig(proxy=ProxyConfig(grad_clip=-1.0)).validate()


def test_training_threads_are_chosen_by_measuring_the_first_steps():
    from fasternet_space.proxy import ThreadChooser

    def run(step_seconds):  # step_seconds(threads) -> seconds of one step
        chooser, threads = ThreadChooser(2), 2
        while chooser.deciding:
            threads = chooser.after_step(step_seconds(threads))
        return chooser.chosen, chooser.times

    assert run(lambda t: 1.0 if t == 2 else 1.6)[0] == 2  # an idle machine: two threads are faster
    chosen, times = run(lambda t: 5.0 if t == 2 else 1.6)  # a core held elsewhere: two threads stall
    assert chosen == 1 and len(times[2]) == len(times[1]) == 2
    assert run(lambda t: 1.0 if t == 2 else 0.9)[0] == 2  # one thread must be clearly faster


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
    assert_one_line_error(run_cli(*base, "--proxy-grad-clip", "-1"), "--proxy-grad-clip -1", "0 on the command line")
    assert_one_line_error(run_cli(*base, "--data", "svhn"), "svhn", "digits, fashion, fashion-mnist:DIR")
    assert_one_line_error(run_cli(*base, "--sampler", "grid", "--space", "spaces/fasternet.yaml", "--n-trials", "1",
                                  "--space", str(tmp_path / "missing.yaml")), "file not found")


def test_pruning_stops_hopeless_candidates_but_never_a_fully_trained_one():
    from search.run.pruning import CurvePruner

    space = SearchSpace.from_dict(TINY_SPACE)
    always = CurvePruner(percentile=100.0, n_startup_trials=0, n_warmup_epochs=0)  # prunes all below the best
    for epochs, expected in ((1, TRAINED), (2, PRUNED)):
        objective = _objective(space, 1e6, epochs=epochs)
        objective.pruner = always
        study = distinct_draws_study()
        # A perfect earlier curve that every candidate falls below.
        study.add_trial(optuna.trial.create_trial(values=[1.0, 1.0], user_attrs={Key.CURVE: [1.0, 1.0]}))
        study.optimize(objective, n_trials=1)
        record = read_trials(study)[1]
        assert record.status == expected, record
        if expected == PRUNED:  # the reason says what the pruning compared
            assert record.pruned_below == 1.0 and record.last_acc < 1.0 and len(record.curve) == 1
            assert "stopped after epoch 1" in record.reason and "below 1.000" in record.reason
            assert "of 1 earlier trials at epoch 1" in record.reason
