import random

import pytest

from fasternet_space import NAMED_SPECS, build_model, count
from fasternet_space.cost import fvcore_count
from tests.conftest import random_spec

# REFERENCE.md, "The named configurations": fvcore params and FLOPs (multiply-adds) at 224x224.
REFERENCE = {
    "t0": (3.91e6, 0.338e9), "t1": (7.60e6, 0.855e9), "t2": (14.98e6, 1.911e9),
    "s": (31.18e6, 4.560e9), "m": (53.52e6, 8.742e9), "l": (93.47e6, 15.521e9),
}


def _three_significant(x: float) -> str:
    return f"{x:.3g}"


@pytest.mark.parametrize("key", list(NAMED_SPECS))
def test_named_configs_match_reference_and_fvcore(key):
    spec = NAMED_SPECS[key]
    cost = count(spec)
    params, flops = REFERENCE[key]
    assert _three_significant(cost.params) == _three_significant(params)
    assert _three_significant(cost.flops) == _three_significant(flops)
    assert fvcore_count(build_model(spec), spec.input_size) == (cost.params, cost.flops)


def test_analytic_count_equals_fvcore_on_random_specs():
    rng = random.Random(3)
    for _ in range(25):
        spec = random_spec(rng)
        cost = count(spec)
        model = build_model(spec)
        assert fvcore_count(model, spec.input_size, spec.in_chans) == (cost.params, cost.flops), spec
        assert cost.params == sum(p.numel() for p in model.parameters())


def test_pconv_costs_follow_paper_equations_4_and_5():
    spec = NAMED_SPECS["t0"]
    layer = next(x for x in count(spec).layers if x.name == "stages.0.blocks.0.spatial_mixing.partial_conv3")
    h = w = 56
    c_p, k = 10, 3
    assert layer.flops == h * w * k * k * c_p * c_p
    assert layer.memory_access == h * w * 2 * c_p + k * k * c_p * c_p


def test_per_stage_rows_add_up():
    spec = NAMED_SPECS["s"]
    cost = count(spec)
    rows = cost.by_stage(spec)
    assert [r.stage for r in rows] == ["stage1", "stage2", "stage3", "stage4", "head"]
    assert sum(r.params for r in rows) == cost.params
    assert sum(r.flops for r in rows) == cost.flops
    assert [r.depth for r in rows[:4]] == [1, 2, 13, 2]
