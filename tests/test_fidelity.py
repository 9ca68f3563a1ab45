"""Proxy fidelity: rank correlations and their bootstrap, the sample, storage and reuse, the command.

The studies are written by hand (trained trials with a spec of the tiny space and a short-proxy top-1);
the command's tests then really retrain them (64 images, 32 px, 1 vs 2 epochs).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import warnings

import numpy as np
import optuna
import pytest
import yaml
from scipy import stats

import cli
import search.fidelity.plan as fidelity_plan
import search.fidelity.run as fidelity_run
from fasternet_space import dump_spec
from fasternet_space import stats as rank_stats
from fasternet_space.proxy import ProxyConfig, ProxyRun
from search import SearchConfig
from search.errors import SearchError
from search.fidelity.report import Correlation
from search.records.trial import Key, read_trials
from search.space import SearchSpace
from tests.cli_helpers import assert_one_line_error, run_cli
from tests.conftest import TINY_SPACE

# (named, short top-1, latency ms): #0, #1 and #3 are the front; #2 a named config behind it.
TRIALS = [(None, 0.30, 1.0), (None, 0.50, 2.0), ("T0", 0.40, 3.0), (None, 0.70, 4.0), (None, 0.20, 5.0),
          (None, 0.60, 6.0)]


pytestmark = pytest.mark.usefixtures("quiet_optuna")


def make_study(folder, trials=TRIALS, setup=True) -> tuple[optuna.Study, str]:
    """Trained trials as the search leaves them, with the tiny space's `setting` (and `proxy_setup`)."""
    space = folder / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    config = SearchConfig(space=str(space), budget_ms=1e6, max_train_samples=64, max_test_samples=64,
                          proxy=ProxyConfig(epochs=1, resolution=32, batch_size=32))
    storage = f"sqlite:///{folder / 's.db'}"
    study = optuna.create_study(storage=storage, study_name="t", directions=["maximize", "minimize"])
    study.set_user_attr("setting", config.setting())
    if setup:
        study.set_user_attr("proxy_setup", {"seed": 0, "max_test_samples": 64})
    specs = distinct_specs(len(trials))
    for (named, acc, latency), spec in zip(trials, specs, strict=True):
        add_trained(study, spec, acc, latency, named)
    return study, storage


def distinct_specs(count: int) -> list:
    """`count` different architectures of the tiny space (random draws may repeat one)."""
    found = {}
    for spec in SearchSpace.from_dict(TINY_SPACE).sample_specs(8 * count, seed=0):
        found.setdefault(dump_spec(spec.replace(name="x")), spec)
    return list(found.values())[:count]


def add_trained(study: optuna.Study, spec, acc: float, latency: float, named: str | None = None,
                loss: float | None = None, train_loss: float | None = None) -> None:
    attrs = {Key.SPEC: dump_spec(spec), Key.PROXY_ACC: acc, Key.CURVE: [acc], Key.LATENCY: latency,
             Key.FEASIBLE: True, Key.SEED: 0,
             Key.ZERO_COST: {"synflow": 10 * latency, "naswot": 100 * acc, "snip": latency, "grad_norm": acc}}
    if named:
        attrs[Key.NAMED] = named
    if loss is not None:
        attrs[Key.PROXY_LOSS] = loss
    if train_loss is not None:
        attrs[Key.TRAIN_LOSS] = train_loss
    study.add_trial(optuna.trial.create_trial(values=[acc, latency], user_attrs=attrs))


def fake_top1(spec, epochs: int, seed: int) -> float:
    return round(0.01 * spec.embed_dim + 0.05 * epochs + 0.001 * seed + 0.01 * sum(spec.depths), 4)


def fake_training(calls: list):
    """A stand-in for train_proxy: top-1 from the trial's width, the epochs and the seed; records each call."""
    def train(spec, dataset, config, seed=0, **kwargs):
        calls.append((spec.embed_dim, config.epochs, seed))
        top1 = fake_top1(spec, config.epochs, seed)
        return ProxyRun([top1], [2.0 - top1])
    return train


def in_process(capsys, *args: str) -> subprocess.CompletedProcess:
    code = cli.main(list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


# --------------------------------------------------------------------------------------------- statistics


def test_perfect_and_reversed_order():
    x = [0.1, 0.4, 0.2, 0.9, 0.5]
    y = [1.0, 4.0, 2.0, 9.0, 5.0]
    assert rank_stats.spearman(x, y) == pytest.approx(1.0)
    assert rank_stats.kendall_tau_b(x, y) == pytest.approx(1.0)
    assert rank_stats.spearman(x, [-v for v in y]) == pytest.approx(-1.0)
    assert rank_stats.kendall_tau_b(x, [-v for v in y]) == pytest.approx(-1.0)


def test_ties_by_hand():
    x, y = [1, 2, 2, 3], [1, 2, 3, 4]
    # tau-b: 5 concordant, 0 discordant; 6 pairs, 1 tied in x, none in y: 5 / sqrt(5 * 6)
    assert rank_stats.kendall_tau_b(x, y) == pytest.approx(5 / math.sqrt(30))
    # Spearman: ranks [1, 2.5, 2.5, 4] vs [1, 2, 3, 4]: 4.5 / sqrt(4.5 * 5)
    assert list(rank_stats.ranks(x)) == [1.0, 2.5, 2.5, 4.0]
    assert rank_stats.spearman(x, y) == pytest.approx(4.5 / math.sqrt(22.5))
    assert math.isnan(rank_stats.spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(rank_stats.kendall_tau_b([1, 2, 3], [5, 5, 5]))


def test_equal_to_scipy_on_random_data():
    rng = np.random.default_rng(0)
    for i in range(60):
        n = int(rng.integers(3, 40))
        x = rng.integers(0, 6, n).astype(float) if i % 2 else rng.random(n)  # with ties, and without
        y = rng.integers(0, 6, n).astype(float) if i % 3 else rng.random(n)
        rho, tau = stats.spearmanr(x, y).statistic, stats.kendalltau(x, y).statistic  # tau-b by default
        assert rank_stats.spearman(x, y) == pytest.approx(rho, abs=1e-12, nan_ok=True)
        assert rank_stats.kendall_tau_b(x, y) == pytest.approx(tau, abs=1e-12, nan_ok=True)


def test_bootstrap_interval_holds_the_estimate_within_bounds():
    rng = np.random.default_rng(1)
    x = rng.random(15)
    y = x + 0.4 * rng.random(15)
    for statistic in (rank_stats.spearman, rank_stats.kendall_tau_b):
        c = Correlation.of(statistic, x, y, seed=3)
        assert -1.0 <= c.low <= c.value <= c.high <= 1.0 and c.low < c.high and c.n == 15
        assert rank_stats.bootstrap_interval(statistic, x, y, seed=3) == (c.low, c.high)  # reproducible
    assert rank_stats.bootstrap_interval(rank_stats.spearman, [1, 2, 3, 4], [2, 4, 6, 8]) == (1.0, 1.0)
    assert Correlation.of(rank_stats.spearman, [0.1, 0.2], [0.3, 0.4], seed=0).value is None
    assert Correlation.of(rank_stats.spearman, [0.1, 0.1, 0.1], [0.3, 0.4, 0.5], seed=0).value is None


# --------------------------------------------------------------------------------------------- library


def test_sample_is_front_then_named_then_others(tmp_path):
    study, _ = make_study(tmp_path)
    records = read_trials(study)
    assert {r.number for r in records if r.pareto} == {0, 1, 3}
    chosen = fidelity_plan.choose_sample(records, 5, order_seed=0)
    assert [(r.number, why) for r, why in chosen][:4] == [(0, "front"), (1, "front"), (3, "front"), (2, "named")]
    assert chosen[4][1] == "other"
    assert [r.number for r, _ in fidelity_plan.choose_sample(records, 6, 0)][:5] == [r.number for r, _ in chosen]
    done = {[n for n in (4, 5) if n != chosen[4][0].number][0]}  # the other one, already retrained: it goes first
    assert fidelity_plan.choose_sample(records, 5, 0, done)[4][0].number in done
    assert [r.number for r, _ in fidelity_plan.choose_sample(records, 2, 0)] == [0, 1]


def test_a_repeated_architecture_is_sampled_once(tmp_path, monkeypatch):
    study, _ = make_study(tmp_path)
    add_trained(study, read_trials(study)[4].arch_spec(), 0.25, 5.5)  # trial 6 repeats trial 4
    monkeypatch.setattr(fidelity_run, "train_proxy", fake_training([]))
    report = fidelity_run.fidelity(study, sample=12, budget_multiplier=2)
    numbers = {p.number for p in report.pairs}
    assert len(numbers) == 6 and {0, 1, 2, 3, 5} < numbers and len(numbers & {4, 6}) == 1
    assert any("1 trained trial(s) repeat the architecture" in n for n in report.notes)


def test_results_are_stored_one_key_per_trial_multiplier_and_seed(tmp_path, monkeypatch):
    study, _ = make_study(tmp_path)
    calls = []
    monkeypatch.setattr(fidelity_run, "train_proxy", fake_training(calls))
    report = fidelity_run.fidelity(study, sample=4, budget_multiplier=3)
    assert len(calls) == 8 and {(e, s) for _, e, s in calls} == {(3, 1), (1, 1)}  # 3x the 1 epoch; seed 0 + 1
    numbers = [p.number for p in report.pairs]
    assert sorted(k for k in study.user_attrs if k.startswith("fidelity:")) == sorted(
        [f"fidelity:3:{n}:1" for n in numbers] + [f"fidelity:1:{n}:1" for n in numbers])
    assert report.trained == 8 and report.reused == 0 and report.long_epochs == 3
    assert all(p.long_top1 == study.user_attrs[f"fidelity:3:{p.number}:1"] for p in report.pairs)
    again = fidelity_run.fidelity(study, sample=4, budget_multiplier=3)
    assert len(calls) == 8 and again.trained == 0 and again.reused == 8 and again.pairs == tuple(
        p.__class__(**{**p.__dict__, "trained_now": 0}) for p in report.pairs)
    other_seed = fidelity_run.fidelity(study, sample=4, budget_multiplier=3, seed=7)  # stored apart, nothing lost
    assert len(calls) == 16 and "fidelity:3:0:7" in study.user_attrs and "fidelity:3:0:1" in study.user_attrs
    assert [p.number for p in other_seed.pairs] == numbers  # the sample does not depend on the seed


def test_long_seeds_average_the_reference_and_measure_its_own_noise(tmp_path, monkeypatch, capsys):
    study, _ = make_study(tmp_path)
    monkeypatch.setattr(fidelity_run, "train_proxy", fake_training([]))
    fidelity_run.fidelity(study, sample=4, budget_multiplier=2)  # one long seed first: it is reused below
    calls = []
    monkeypatch.setattr(fidelity_run, "train_proxy", fake_training(calls))
    report = fidelity_run.fidelity(study, sample=4, budget_multiplier=2, long_seeds=3)
    # the study's seed is 0: the short rerun and the first long run take seed 1, the others 2 and 3
    assert report.long_seeds == (1, 2, 3) and sorted({s for _, e, s in calls if e == 2}) == [2, 3]
    assert len(calls) == 8 and report.reused == 8  # 4 trials x (long 1 + short rerun 1) were stored
    for p in report.pairs:
        runs = [study.user_attrs[f"fidelity:2:{p.number}:{s}"] for s in (1, 2, 3)]
        assert p.long_seeds_top1 == tuple(runs) and p.long_top1 == pytest.approx(sum(runs) / 3)
    # the fake's top-1 orders the trials alike under every seed: the reference agrees with itself
    assert report.long_seed_spearman.value == pytest.approx(1.0) and report.long_seed_spearman.n == 4
    data = report.to_dict()
    assert data["settings"]["long_seeds"] == [1, 2, 3] and data["long_seed_spearman"]["n"] == 4
    assert fidelity_run.fidelity(study, sample=4, budget_multiplier=2).long_seed_spearman is None  # one seed: none
    with pytest.raises(SearchError, match="long_seeds"):
        fidelity_plan.check_arguments(4, 2, long_seeds=0)


@pytest.mark.parametrize("sign", [1, -1])
def test_the_held_out_loss_is_correlated_with_the_longer_training_beside_the_top1(tmp_path, monkeypatch, capsys,
                                                                                sign):
    study, storage = make_study(tmp_path, trials=[])
    specs = distinct_specs(6)
    for i, spec in enumerate(specs):  # top-1 and latency alike for all: only the loss can rank them
        long = fake_top1(spec, epochs=2, seed=1)  # what the fake's longer run will answer
        # the held-out loss ranks them as the long run does (sign 1) or inversely; TSE-E always as it does
        add_trained(study, spec, 0.5, 1.0 + i, loss=round(2.0 - sign * long, 4), train_loss=round(3.0 - long, 4))
    monkeypatch.setattr(fidelity_run, "train_proxy", fake_training([]))
    report = fidelity_run.fidelity(study, sample=6, budget_multiplier=2)
    # lower loss first: a loss that falls as the longer run's top-1 rises ranks them exactly (1), and inversely (-1)
    assert report.loss_spearman.n == 6 and report.loss_spearman.value == pytest.approx(sign)
    assert {p.number: p.short_loss for p in report.pairs} == {
        i: round(2.0 - sign * fake_top1(s, 2, 1), 4) for i, s in enumerate(specs)}
    assert report.to_dict()["held_out_loss_spearman"]["value"] == pytest.approx(sign)
    result = in_process(capsys, "fidelity", "--study", "t", "--storage", storage, "--sample", "6",
                        "--budget-multiplier", "2")
    assert result.returncode == 0 and "0 trainings to run" in result.stderr
    assert f"Spearman, short held-out loss (lower first) vs 2-epoch top-1: {sign:.2f}" in result.stdout
    assert report.train_loss_spearman.value == pytest.approx(1.0) and report.train_loss_spearman.n == 6
    assert report.to_dict()["tse_e_spearman"]["value"] == pytest.approx(1.0)
    assert "Spearman, short training loss over the last epoch (TSE-E, lower first) vs 2-epoch top-1: 1.00" in result.stdout


def test_a_study_with_losses_on_some_trials_says_so(tmp_path, monkeypatch):
    study, _ = make_study(tmp_path)  # six trials without a loss, as searches before it was stored
    for i, spec in enumerate(distinct_specs(len(TRIALS) + 3)[len(TRIALS):]):
        add_trained(study, spec, 0.45, 10.0 + i, loss=1.0 + i / 10)
    monkeypatch.setattr(fidelity_run, "train_proxy", fake_training([]))
    report = fidelity_run.fidelity(study, sample=9, budget_multiplier=2)
    assert len(report.pairs) == 9 and report.loss_spearman.n == 3
    assert "the held-out loss is stored for 3 of the 9 pairs" in " ".join(report.notes)


def test_without_stored_losses_no_loss_correlation_is_claimed(tmp_path, monkeypatch):
    study, _ = make_study(tmp_path)  # as searches before the loss was stored
    monkeypatch.setattr(fidelity_run, "train_proxy", fake_training([]))
    report = fidelity_run.fidelity(study, sample=4, budget_multiplier=2)
    assert report.loss_spearman is None and report.to_dict()["held_out_loss_spearman"] is None
    assert report.train_loss_spearman is None and report.to_dict()["tse_e_spearman"] is None


def test_search_confirmations_are_reused_as_the_short_rerun(tmp_path, monkeypatch):
    study, _ = make_study(tmp_path)
    study.set_user_attr("confirm:0:1", 0.33)  # the search retrained trial 0 with seed 1
    calls = []
    monkeypatch.setattr(fidelity_run, "train_proxy", fake_training(calls))
    report = fidelity_run.fidelity(study, sample=3, budget_multiplier=2)
    assert len(calls) == 5 and report.pairs[0].rerun_top1 == 0.33


def test_recipe_defaults_without_proxy_setup(tmp_path, monkeypatch):
    study, _ = make_study(tmp_path, setup=False)
    monkeypatch.setattr(fidelity_run, "train_proxy", fake_training([]))
    recipe = fidelity_plan.read_recipe(study)
    assert (recipe.seed, recipe.max_test_samples, recipe.assumed) == (0, 2000, True)
    # the study's setting records clipping (the default), so the longer runs clip alike
    assert recipe.proxy(4) == ProxyConfig(epochs=4, resolution=32, batch_size=32, lr=ProxyConfig.lr,
                                          grad_clip=ProxyConfig.grad_clip)
    report = fidelity_run.fidelity(study, sample=3, budget_multiplier=2)
    assert any("assumed seed 0" in n for n in report.notes)


def test_library_refusals(tmp_path):
    few, full = tmp_path / "few", tmp_path / "full"
    few.mkdir(), full.mkdir()
    study, _ = make_study(few, trials=TRIALS[:2])
    with pytest.raises(SearchError, match="2 trained architecture"):
        fidelity_plan.plan(study)
    study, _ = make_study(full)
    with pytest.raises(SearchError, match="study's own seed") as exc:
        fidelity_plan.plan(study, seed=0)
    assert exc.value.parameter == "seed"
    for sample, multiplier, parameter in ((2, 4, "sample"), (12, 1, "budget_multiplier"), (12, 2.5, "budget_multiplier")):
        with pytest.raises(SearchError) as exc:
            fidelity_plan.check_arguments(sample, multiplier)
        assert exc.value.parameter == parameter


def test_fewer_trained_trials_than_asked_is_said(tmp_path, monkeypatch):
    study, _ = make_study(tmp_path)
    monkeypatch.setattr(fidelity_run, "train_proxy", fake_training([]))
    report = fidelity_run.fidelity(study, sample=12, budget_multiplier=2)
    assert len(report.pairs) == 6
    assert any("6 trained architectures: the sample is 6, not 12" in n for n in report.notes)


# --------------------------------------------------------------------------------------------- command


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """One study retrained once through the command (JSON): (storage, the JSON, the folder)."""
    folder = tmp_path_factory.mktemp("fidelity")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        _, storage = make_study(folder)
    result = run_cli("fidelity", "--study", "t", "--storage", storage, "--sample", "4", "--budget-multiplier", "2",
                     "--format", "json")
    assert result.returncode == 0, result.stderr
    return storage, json.loads(result.stdout), folder


def test_json_reports_correlations_settings_and_pairs(stored):
    _, data, _ = stored
    settings = data["settings"]
    assert (settings["short_epochs"], settings["long_epochs"], settings["budget_multiplier"]) == (1, 2, 2)
    assert (settings["seed"], settings["study_seed"], settings["sampled"]) == (1, 0, 4)
    assert data["trained"] == 8 and len(data["pairs"]) == 4
    assert [p["number"] for p in data["pairs"]][:3] == [0, 1, 3]
    for key in ("spearman", "kendall_tau_b", "seed_spearman"):
        c = data[key]
        assert c["n"] == 4
        if c["value"] is not None:
            assert -1 <= c["low"] <= c["high"] <= 1
    for p in data["pairs"]:
        assert 0 <= p["long_top1"] <= 1 and 0 <= p["rerun_top1"] <= 1
    # each zero-cost score stored by the search, beside the short proxy's, against the same longer training
    assert set(data["zero_cost_spearman"]) == {"grad_norm", "naswot", "snip", "synflow", "vote"}
    for c in data["zero_cost_spearman"].values():
        assert c["n"] == 4 and (c["value"] is None or -1 <= c["value"] <= 1)
    naswot = data["zero_cost_spearman"]["naswot"]["value"]  # naswot here is 100 x the short top-1: same ranks
    assert naswot == pytest.approx(data["spearman"]["value"]) if naswot is not None else True


def test_text_rerun_trains_nothing(stored):
    storage, _, _ = stored
    result = run_cli("fidelity", "--study", "t", "--storage", storage, "--sample", "4", "--budget-multiplier", "2")
    assert result.returncode == 0, result.stderr
    assert "0 trainings to run, 8 results" in result.stderr
    for fragment in ("Spearman, short vs 2 epochs", "Kendall tau-b", "seed-to-seed Spearman", "trained 0 this run",
                     "T0", "Spearman, zero-cost synflow (untrained) vs 2 epochs"):
        assert fragment in result.stdout


def test_rerun_reuses_and_a_larger_sample_trains_only_the_new(stored, tmp_path, monkeypatch, capsys):
    storage, _, folder = stored
    calls = []
    real = fidelity_run.train_proxy
    monkeypatch.setattr(fidelity_run, "train_proxy", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    args = ["fidelity", "--study", "t", "--sample", "4", "--budget-multiplier", "2", "--format", "json"]
    assert in_process(capsys, *args, "--storage", storage).returncode == 0
    assert calls == []
    shutil.copy(folder / "s.db", tmp_path / "s.db")  # the shared study stays as it is
    larger = in_process(capsys, *args[:3], "--sample", "5", *args[5:], "--storage", f"sqlite:///{tmp_path / 's.db'}")
    assert larger.returncode == 0, larger.stderr
    assert len(calls) == 2 and json.loads(larger.stdout)["trained"] == 2


def test_html_scatter_is_written(stored, tmp_path, capsys):
    storage, _, _ = stored
    out = tmp_path / "fidelity.html"
    result = in_process(capsys, "fidelity", "--study", "t", "--storage", storage, "--sample", "4",
                        "--budget-multiplier", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    html = out.read_text()
    assert "Spearman" in html and "Kendall tau-b" in html
    assert re.search(r"(<|\\u003c)b(>|\\u003e)T0", html)  # the named config's label (plotly escapes "<")
    assert "plotly.js v" in html and len(html) > 1_000_000  # plotly.js embedded: works offline
    assert re.search(r"<script[^>]*\ssrc=", html) is None  # no CDN or other external script


def test_long_seeds_through_the_command(tmp_path, monkeypatch, capsys):
    _, storage = make_study(tmp_path)
    monkeypatch.setattr(fidelity_run, "train_proxy", fake_training([]))
    two = in_process(capsys, "fidelity", "--study", "t", "--storage", storage, "--sample", "4",
                     "--budget-multiplier", "2", "--long-seeds", "2")
    assert two.returncode == 0, two.stderr
    assert "2-epoch top-1 (mean of seeds 1, 2)" in two.stdout
    assert "seed-to-seed Spearman, 2 epochs seed 1 vs 2: 1.00" in two.stdout and "own noise" in two.stdout


@pytest.mark.parametrize("args, fragments", [
    (["--study", "nope"], ["--study 'nope'", "allowed: 't'"]),
    (["--study", "t", "--sample", "2"], ["--sample 2", "allowed: an integer >= 3"]),
    (["--study", "t", "--budget-multiplier", "1"], ["--budget-multiplier 1", "allowed: an integer >= 2"]),
    (["--study", "t", "--out", "x.xls"], ["--out x.xls", "allowed: .html"]),
    (["--study", "t", "--long-seeds", "0"], ["--long-seeds 0", "allowed: an integer >= 1"]),
])
def test_bad_input_is_one_line(stored, capsys, args, fragments):
    storage, _, _ = stored
    assert_one_line_error(in_process(capsys, "fidelity", "--storage", storage, *args), *fragments)
