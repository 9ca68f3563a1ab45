"""Training-free and two-stage searches: zero-cost scores stored per trial, resumed and exported."""

import csv
import json

import pytest
import yaml

from fasternet_space.proxy import ProxyConfig
from search import SearchConfig, SearchError, read_trials, run_search
from search.records.trial import REPEAT, SCORED, TRAINED
from search.report.export import write_report
from search.run.objective import STORED_SCORES, vote_percentile
from tests.conftest import QUICK_TIMING, TINY_SPACE


@pytest.fixture
def base(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SPACE))
    return SearchConfig(space=str(path), budget_ms=1e6, max_train_samples=64, max_test_samples=64,
                        proxy=ProxyConfig(epochs=1, resolution=32), timing=QUICK_TIMING, confirm=1, named=False,
                        storage=f"sqlite:///{tmp_path / 'z.db'}")


def test_vote_percentile_is_the_mean_share_scored_at_least_as_high():
    others = [{"synflow": 1.0, "naswot": 5.0, "snip": 2.0}, {"synflow": 3.0, "naswot": 1.0, "snip": 4.0}]
    mine = {"synflow": 2.0, "naswot": 5.0, "snip": 9.0}
    # synflow: 2 of 3 <= 2.0; naswot: 3 of 3 <= 5.0 (a tie counts); snip: 3 of 3
    assert vote_percentile(mine, others) == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert vote_percentile(mine, []) == 1.0


def test_training_free_search_scores_resumes_and_exports(base, tmp_path, monkeypatch):
    from search.run import objective as objective_module

    monkeypatch.setattr(objective_module, "train_proxy", lambda *a, **k: pytest.fail("a training-free search trained"))
    config = base.__class__(**{**base.__dict__, "accuracy": "zero-cost:synflow", "n_trials": 3, "study_name": "zc"})
    run_search(config)
    resumed = run_search(config.__class__(**{**config.__dict__, "n_trials": 5}))
    records = read_trials(resumed.study)
    assert len(records) == 5 and all(r.status == SCORED for r in records)
    for r in records:
        assert r.score_name == "synflow" and r.score == r.zero_cost["synflow"] > 0
        assert set(STORED_SCORES) <= set(r.zero_cost) and r.proxy_acc is None
    assert any(r.pareto for r in records)
    rows = list(csv.DictReader(write_report(resumed.study, tmp_path / "t.csv").open()))
    assert {"zc_synflow", "zc_naswot", "zc_grad_norm", "zc_snip"} <= set(rows[0])
    assert all(float(row["zc_synflow"]) > 0 and row["status"] == "scored" for row in rows)
    data = json.loads(write_report(resumed.study, tmp_path / "t.json").read_text())
    assert data[0]["zero_cost"]["synflow"] == records[0].zero_cost["synflow"]
    assert write_report(resumed.study, tmp_path / "f.html").stat().st_size > 10_000
    with pytest.raises(SearchError, match="was made with accuracy zero-cost:synflow"):  # a trained search cannot resume it
        run_search(config.__class__(**{**config.__dict__, "accuracy": "train"}))


def test_two_stage_search_trains_only_the_best_screened(base):
    config = base.__class__(**{**base.__dict__, "screen": 6, "keep": 0.5, "study_name": "two"})
    outcome = run_search(config)
    trained = read_trials(outcome.study)
    screened = read_trials(run_search(config.__class__(**{**config.__dict__, "screen": 0, "accuracy":
                                                           "zero-cost:vote", "study_name": "two-screen",
                                                           "n_trials": 6})).study)
    assert len(screened) == 6 and all(r.status == SCORED for r in screened)
    # two screened draws of one network make the second a repeat of the first (one more seed for it)
    by_number = {r.number: r for r in trained}
    assert len(trained) == 3 and all(r.status == TRAINED and r.zero_cost or r.status == REPEAT
                                     and by_number[r.repeat_of].params == r.params for r in trained)
    # the three trained are the screen's best by the final vote
    from fasternet_space.zero_cost import vote

    votes = vote({r.number: r.zero_cost for r in screened})
    best = sorted(votes, key=lambda n: -votes[n])[:3]
    assert sorted(map(str, (r.params for r in trained))) == sorted(
        map(str, (next(s.params for s in screened if s.number == n) for n in best)))
    again = run_search(config)  # resuming: nothing screened or trained twice
    assert len(read_trials(again.study)) == 3


def test_bad_zero_cost_settings_name_the_parameter(base):
    for bad, parameter in ((dict(accuracy="zero-cost:magic"), "accuracy"), (dict(keep=0.0), "keep"),
                           (dict(screen=5, accuracy="zero-cost:vote"), "screen")):
        with pytest.raises(SearchError) as caught:
            base.__class__(**{**base.__dict__, **bad}).validate()
        assert caught.value.parameter == parameter and "allowed" in str(caught.value)
