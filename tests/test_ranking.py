"""The front ranked by held-out loss: its interval, --rank-by kept by the study, the tied set and the pick,
a spec sampled again treated as a repeat, and older studies (top-1 only) still read."""

import csv
import math
import statistics

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution

from fasternet_space.proxy import ProxyConfig
from fasternet_space.stats import Z95, loss_seed_interval, normal_interval, t_quantile
from search import SearchConfig, read_trials, run_search
from search.errors import SearchError
from search.records import study_attrs
from search.records.front import pick, tied_set
from search.records.study_attrs import SeedResult, store_confirmation
from search.records.trial import CONSTRAINT, REPEAT, TRAINED, Key
from search.report.export import save_best_spec, write_csv
from search.report.figure_data import figure_data
from search.report.summary import closing_line, summary_lines
from search.run.study import SearchOutcome
from tests.conftest import QUICK_TIMING, TINY_SPACE

N = 1000  # held-out images of the crafted trials


# --------------------------------------------------------------------------------------------- the maths


def test_a_single_loss_has_the_normal_interval_of_its_per_image_mean():
    low, high = normal_interval(0.5, 0.8, 400)
    assert (low, high) == pytest.approx((0.5 - Z95 * 0.04, 0.5 + Z95 * 0.04))
    mean, std, low2, high2 = loss_seed_interval([0.5], [0.8], 400)
    assert (mean, std, low2, high2) == pytest.approx((0.5, 0.0, low, high))


def test_seed_means_take_the_t_interval_when_the_seeds_disagree_more_than_the_images_do():
    losses, sds = [0.50, 0.60, 0.55], [0.8, 0.8, 0.8]
    mean, std, low, high = loss_seed_interval(losses, sds, N)
    half = t_quantile(2) * statistics.stdev(losses) / math.sqrt(3)
    assert mean == pytest.approx(0.55) and std == pytest.approx(0.05)
    assert (low, high) == pytest.approx((0.55 - half, 0.55 + half))
    # seeds that agree: the pooled per-image interval (3 x 1000 images) is the wider, and it is kept
    mean, _, low, high = loss_seed_interval([0.55, 0.5501, 0.5499], sds, N)
    assert (low, high) == pytest.approx(normal_interval(mean, 0.8, 3 * N))


# --------------------------------------------------------------------------------------------- crafted studies


def _study(rank_by="loss"):
    study = optuna.create_study(directions=["maximize", "minimize"])
    if rank_by:
        study_attrs.store_rank_by(study, rank_by)
    return study


def _trained(study, number, loss, latency, flops, top1=0.8, sd=0.9, named=None, spec=None):
    attrs = {Key.PROXY_ACC: top1, Key.PROXY_LOSS: loss, Key.LOSS_SD: sd, Key.LATENCY: latency, Key.FEASIBLE: True,
             Key.TEST_SIZE: N, Key.CHANCE: 0.1, Key.SEED: 0, Key.CURVE: [top1], Key.LOSS_CURVE: [loss],
             Key.FLOPS: int(flops), Key.SPEC: yaml.safe_dump(spec or {"name": f"n{number}", "embed_dim": 8 + number})}
    if named:
        attrs[Key.NAMED] = named
    study.add_trial(optuna.trial.create_trial(
        values=[-loss, latency], user_attrs=attrs, constraints={CONSTRAINT: latency - 100.0},
        params={"x": number}, distributions={"x": CategoricalDistribution(list(range(20)))}))


def _confirm(study, number, losses):
    for seed, loss in enumerate(losses, start=1):
        store_confirmation(study, number, seed, SeedResult(0.8, loss, 0.9))


def _crafted():
    """The front: #3 fastest and clearly worse; #0 fast and as good as the best within the noise; #1 the most
    multiply-adds, tied; #2 the best (lowest mean loss), slowest."""
    study = _study()
    _trained(study, 0, 0.52, 5.0, 100e6)
    _trained(study, 1, 0.50, 9.0, 500e6)
    _trained(study, 2, 0.49, 14.0, 400e6)
    _trained(study, 3, 0.90, 4.0, 50e6)
    _confirm(study, 0, [0.53, 0.51])
    _confirm(study, 1, [0.49, 0.51])
    _confirm(study, 2, [0.48, 0.50])
    _confirm(study, 3, [0.91, 0.89])
    return study


def test_the_front_ranks_by_loss_and_the_tied_set_holds_what_the_noise_cannot_separate():
    records = read_trials(_crafted())
    assert all(r.rank_by == "loss" and r.confirmed for r in records)
    assert records[1].loss == pytest.approx(0.50) and records[1].merit == pytest.approx(-0.50)
    assert records[1].seed_losses == ((0, 0.50, 0.9), (1, 0.49, 0.9), (2, 0.51, 0.9))
    assert {r.number for r in records if r.pareto} == {0, 1, 2, 3}
    assert [r.number for r in tied_set(records)] == [0, 1, 2]  # fastest first; #3 is beyond the noise


def test_a_trial_off_the_front_is_never_tied_however_wide_its_interval():
    study = _crafted()
    _trained(study, 4, 0.60, 7.0, int(900e6))  # beaten by #0 on both; two far-apart seeds: a very wide interval
    store_confirmation(study, 4, 1, SeedResult(0.8, 0.50, 0.9))  # mean 0.55: worse than #0
    records = read_trials(study)
    assert not records[4].pareto and records[4].merit_ci[0] < records[2].merit_ci[1]  # it overlaps the best
    assert 4 not in [r.number for r in tied_set(records)]
    assert pick(records, "most-flops").chosen.number == 1 and pick(records, "fastest").chosen.number == 0


@pytest.mark.parametrize("rule, chosen", [("fastest", 0), ("best-score", 2), ("most-flops", 1)])
def test_each_pick_rule_chooses_among_the_tied_set(rule, chosen):
    result = pick(read_trials(_crafted()), rule)
    assert result.best.number == 2 and result.chosen.number == chosen and result.confirmed


def test_the_summary_and_best_yaml_name_the_tied_set_the_rule_and_the_pick(tmp_path):
    study = _crafted()
    records = read_trials(study)
    text = "\n".join(summary_lines(SearchOutcome(study, pick="fastest"), records, 100.0))
    assert "held-out loss [95% CI]" in text and "picked" in text
    assert "tied with the best (#2) within the noise (seed means, 95% intervals of the held-out loss overlap): " \
           "3 candidate(s): #0 (5.00 ms), #1 (9.00 ms), #2 (14.00 ms)" in text
    assert "picked (--pick fastest): #0, the fastest of the tied set" in text
    closing = closing_line(records, "s", 100.0, tmp_path / "best.yaml", "fastest")
    assert closing.startswith("\nbest feasible: trial #0 (--pick fastest, of 3 tied), held-out loss 0.520 [")
    path = save_best_spec(records, "s", tmp_path / "best.yaml", "most-flops", {"data": "fashion", "proxy_resolution": 32})
    text = path.read_text()
    assert "# picked by --pick most-flops" in text and "# tied with the best (#2) on held-out loss" in text
    assert "#0, #1, #2" in text and "trained on fashion at 32x32 px, 10 classes" in text
    assert yaml.safe_load(text)["embed_dim"] == 9  # trial #1's spec, comments aside


def test_the_csv_and_json_carry_the_loss_its_interval_and_every_seed(tmp_path):
    records = read_trials(_crafted())
    rows = list(csv.DictReader(write_csv(records, tmp_path / "t.csv", "fastest").open()))
    first = rows[0]
    assert first["rank_by"] == "loss" and first["tied"] == "picked" and rows[2]["tied"] == "tied" and rows[3]["tied"] == ""
    assert float(first["loss"]) == pytest.approx(0.52) and first["seed_loss"] == "0:0.5200;1:0.5300;2:0.5100"
    assert first["seed_top1"] == "0:0.8000;1:0.8000;2:0.8000"
    assert float(first["loss_ci_low"]) < 0.52 < float(first["loss_ci_high"])
    data = records[0].to_dict()
    assert data["loss"] == pytest.approx(0.52) and len(data["seed_losses"]) == 3 and data["loss_ci"][0] < 0.52


def test_the_plot_draws_the_loss_downwards_and_marks_the_tied_set():
    data = figure_data(read_trials(_crafted()), budget_ms=100.0, rule="fastest")
    assert data.score_name == "held-out loss" and "lower is better" in data.y_title
    assert data.y_score.downwards and data.y_score.range[0] > data.y_score.range[1]  # the bottom is the worse loss
    by_number = {p.number: p for p in data.points}
    assert by_number[1].score == pytest.approx(0.50) and by_number[0].picked and by_number[2].tied and by_number[1].tied
    assert not by_number[3].tied and "held-out loss (ranks the front): 0.500" in by_number[1].hover
    assert "proxy top-1: 0.800, 95% CI" in by_number[1].hover


def test_with_one_seed_the_front_is_compared_on_its_per_image_intervals():
    study = _study()
    _trained(study, 0, 0.50, 5.0, 1e8, sd=0.5)
    _trained(study, 1, 0.51, 4.0, 1e8, sd=0.5)  # within 1.96 x 0.5 / sqrt(1000) x 2 of #0
    _trained(study, 2, 0.70, 3.0, 1e8, sd=0.5)
    result = pick(read_trials(study))
    assert not result.confirmed and [r.number for r in result.tied] == [1, 0] and result.chosen.number == 1


def test_an_older_study_without_a_loss_still_reads_ranks_by_top1_and_exports(tmp_path):
    study = _study(rank_by=None)
    for acc, latency in ((0.80, 5.0), (0.70, 4.0)):
        study.add_trial(optuna.trial.create_trial(
            values=[acc, latency], constraints={CONSTRAINT: latency - 10.0},
            user_attrs={Key.PROXY_ACC: acc, Key.LATENCY: latency, Key.TEST_SIZE: N, Key.CHANCE: 0.1}))
    study.set_user_attr("confirm:0:1", 0.78)  # an older confirmation: top-1 alone
    records = read_trials(study)
    assert all(r.rank_by == "top1" and r.loss is None and r.loss_ci is None for r in records)
    assert records[0].seed_accs == ((0, 0.80), (1, 0.78)) and records[0].merit == pytest.approx(0.79)
    assert pick(records).best.number == 0
    rows = list(csv.DictReader(write_csv(records, tmp_path / "old.csv").open()))
    assert rows[0]["loss"] == "" and rows[0]["rank_by"] == "top1" and rows[0]["top1"] == "0.7900"
    assert figure_data(records).score_name == "proxy top-1"


# --------------------------------------------------------------------------------------------- a real study


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SPACE))
    return SearchConfig(space=str(path), budget_ms=1e6, n_trials=2, max_train_samples=64, max_test_samples=64,
                        proxy=ProxyConfig(epochs=1, resolution=32), timing=QUICK_TIMING, confirm=2, seed=3,
                        storage=f"sqlite:///{tmp_path / 's.db'}", study_name="r", named=False, sampler="random",
                        latency_reference=None)


def test_rank_by_is_stored_with_a_new_study_and_enforced_on_resume(tiny):
    from dataclasses import replace

    outcome = run_search(tiny)
    assert outcome.rank_by == "loss" and study_attrs.rank_by(outcome.study) == "loss"
    records = [r for r in read_trials(outcome.study) if r.status == TRAINED]
    assert records and all(r.rank_by == "loss" and r.loss_ci is not None for r in records)
    trial = next(t for t in outcome.study.trials if t.number == records[0].number)
    assert trial.values[0] == pytest.approx(-records[0].proxy_loss)  # the sampler minimises the loss
    front = [r for r in records if r.pareto]
    assert front and all(len(r.seed_losses) == 2 for r in front)  # confirmations stored a loss per seed
    with pytest.raises(SearchError, match="ranks its candidates by loss; allowed: --rank-by loss"):
        run_search(replace(tiny, rank_by="top1", n_trials=3))
    again = run_search(replace(tiny, rank_by="loss"))
    assert again.rank_by == "loss" and not any("made before" in n for n in again.notes)


def test_a_study_made_before_resumes_ranked_by_top1_and_says_so(tiny):
    from dataclasses import replace

    first = run_search(replace(tiny, rank_by="top1", confirm=1))
    first.study.set_user_attr(study_attrs.RANK_BY, None)  # as a study made before --rank-by existed
    resumed = run_search(replace(tiny, n_trials=3, confirm=1))
    assert resumed.rank_by == "top1" and any("stays ranked by top-1" in note for note in resumed.notes)
    assert all(r.rank_by == "top1" for r in read_trials(resumed.study))


def test_a_spec_sampled_again_reuses_the_measurement_and_adds_a_seed(tiny):
    from dataclasses import replace

    outcome = run_search(replace(tiny, n_trials=1, confirm=1))
    study = outcome.study
    first = study.trials[0]
    study.enqueue_trial(first.params)  # a sampler proposing the same point again
    run_search(replace(tiny, n_trials=2, confirm=1))
    records = read_trials(study)
    repeat = records[1]
    assert repeat.status == REPEAT and repeat.repeat_of == 0 and repeat.latency_ms == records[0].latency_ms
    assert "1 repeat(s) of a spec already in the study" in summary_lines(SearchOutcome(study), records, 1e6)[1]
    original = records[0]
    assert [s for s, _ in original.seed_accs] == [3, 4] and len(original.seed_losses) == 2  # one more seed
    assert [r.number for r in records if r.pareto] == [0]  # the spec is listed once
    assert study.trials[1].values[0] == pytest.approx(original.merit)
