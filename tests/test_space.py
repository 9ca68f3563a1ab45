import optuna
import pytest
import yaml

from fasternet_space import NAMED_SPECS, ArchSpec, SpecError
from fasternet_space.space import Free
from search.records.trial import Key, TrialWriter
from search.space import SearchSpace, distribution, suggest_value
from tests.conftest import ROOT

DEFAULT_SPACE = ROOT / "spaces" / "fasternet.yaml"


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return SearchSpace.from_yaml(DEFAULT_SPACE)


@pytest.mark.parametrize("key", list(NAMED_SPECS))
def test_named_configs_are_points_of_the_default_space(space, key):
    spec = NAMED_SPECS[key]
    assert space.contains(spec)
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.enqueue_trial(space.params_for(spec), user_attrs={Key.SPEC_NAME: spec.name})
    trial = study.ask()
    assert space.suggest(trial, name=TrialWriter(trial).enqueued_name) == spec


def test_the_default_space_frees_what_the_card_says(space):
    free = {f.param.split("[")[0] for f in space.free_params}
    assert {"embed_dim", "depths", "partial_ratio", "act", "norm", "mlp_ratio"} <= free


def test_suggestions_are_always_valid_specs(space):
    specs = space.sample_specs(300, seed=1)
    assert all(isinstance(s, ArchSpec) for s in specs)
    assert all(space.contains(s) for s in specs)
    assert len({s.replace(name="x") for s in specs}) > 250


def test_specs_outside_the_space_are_not_contained(space):
    assert not space.contains(NAMED_SPECS["t0"].replace(kernel_size=5))
    assert not space.contains(NAMED_SPECS["t0"].replace(depths=(1, 2, 19, 2)))
    assert not space.contains(NAMED_SPECS["t0"].replace(embed_dim=44))
    assert not space.contains(NAMED_SPECS["t0"].replace(widths=(40, 80, 160, 320)))


def test_grid_of_a_finite_space():
    space = SearchSpace.from_dict({"embed_dim": {"choices": [8, 16]}, "depths": [1, {"low": 1, "high": 3}],
                                   "act": {"choices": ["relu", "gelu"]}})
    assert space.grid_size() == 2 * 3 * 2
    assert SearchSpace.from_dict({"mlp_ratio": {"low": 1.0, "high": 2.0}}).grid() is None
    assert SearchSpace.from_dict({"mlp_ratio": {"low": 1.0, "high": 2.0, "step": 0.5}}).grid() == {
        "mlp_ratio": [1.0, 1.5, 2.0]}


@pytest.mark.parametrize("data, fragment", [
    ({"colour": 3}, "field 'colour': unknown field"),
    ({"act": {"choices": ["relu", "mish"]}}, "field 'act': 'mish' is not allowed"),
    ({"act": {"low": 1, "high": 2}}, "a range is not allowed"),
    ({"embed_dim": {"low": 64, "high": 32}}, "low 64 is above high 32"),
    ({"embed_dim": {"low": 8, "high": 64, "step": 0}}, "step 0 is not allowed"),
    ({"embed_dim": {"lo": 8}}, "allowed: a value, {choices"),
    ({"depths": 3}, "one entry per stage"),
    ({"depths": [1, 2, {"low": -1, "high": 3}, 1]}, "field 'depths[2]'"),
    ({"depths": [1, 2, 3, 4], "partial_ratio": [0.25, 0.5]}, "one per stage (4)"),
    ({"embed_dim": {"choices": []}}, "non-empty list"),
])
def test_space_errors_name_file_and_field(tmp_path, data, fragment):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as info:
        SearchSpace.from_yaml(path)
    assert str(info.value).startswith(str(path))
    assert fragment in str(info.value)


def test_search_has_its_public_names():
    import search

    for name in search.__all__:
        assert getattr(search, name) is not None
    assert search.SearchSpace is SearchSpace
    assert search.SearchSpace.from_yaml(DEFAULT_SPACE).contains(NAMED_SPECS["t0"])


def test_the_design_space_needs_no_optuna_and_the_search_space_extends_it():
    import subprocess
    import sys

    from fasternet_space.space import DesignSpace, same_number
    from search.space import Free as SearchFree

    code = ("import sys; from fasternet_space.space import DesignSpace; from fasternet_space.latency_table import "
            "profile; DesignSpace.from_yaml(sys.argv[1]); assert 'optuna' not in sys.modules, 'optuna'; "
            "assert 'search' not in sys.modules, 'search'")
    subprocess.run([sys.executable, "-c", code, str(DEFAULT_SPACE)], check=True, cwd=ROOT)
    assert type(SearchSpace.from_yaml(DEFAULT_SPACE)) is SearchSpace
    assert type(SearchSpace.from_dict({"embed_dim": 8})) is SearchSpace
    assert isinstance(SearchSpace.from_dict({}), DesignSpace)
    assert SearchFree is Free
    assert same_number(2, 2.0) and not same_number(True, 1) and not same_number("2", 2)


@pytest.mark.parametrize("entry", [{"choices": [8, 16, 32]}, {"low": 8, "high": 64, "step": 8},
                                   {"low": 8, "high": 64, "log": True}])
def test_a_free_value_is_sampled_from_its_distribution(entry):
    space = SearchSpace.from_dict({"embed_dim": entry})
    (free,) = space.free_params
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        value = suggest_value(free, trial)
        assert trial.distributions[free.param] == distribution(free)
        assert free.contains(value) and distribution(free)._contains(distribution(free).to_internal_repr(value))
        study.tell(trial, 0.0)
