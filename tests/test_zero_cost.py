import math

import pytest
import torch
from torch import nn

from fasternet_space import ArchSpec, count
from fasternet_space.data import Dataset
from fasternet_space.proxy import proxy_spec
from fasternet_space.zero_cost import (
    ACTIVATIONS,
    SCORES,
    fresh_model,
    grad_norm,
    kernel_logdet,
    naswot,
    naswot_kernel,
    score,
    scores,
    snip,
    synflow,
    training_batch,
    vote,
)

NORMS = ["bn", "ln"]


def tiny(norm: str = "bn", act: str = "relu", **fields) -> ArchSpec:
    values = dict(name="tiny", embed_dim=8, depths=(1, 1), feature_dim=16, num_classes=10, in_chans=1,
                  input_size=16, act=act, norm=norm)
    values.update(fields)
    return ArchSpec(**values)


def images(n: int = 8, seed: int = 0, size: int = 16) -> torch.Tensor:
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def labels(n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(seed))


def tiny_dataset(n: int = 40) -> Dataset:
    g = torch.Generator().manual_seed(5)
    return Dataset("tiny", torch.randn(n, 1, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g),
                   torch.randn(8, 1, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g), 10)


# synflow

@pytest.mark.parametrize("norm", NORMS)
def test_synflow_is_independent_of_the_data_and_positive(norm):
    spec = tiny(norm)
    a = synflow(spec, images(seed=1))
    b = synflow(spec, images(seed=2) * 100 + 3)
    assert a == b
    assert a > 0 and math.isfinite(a)
    assert synflow(spec, images(n=3, seed=4)) == a  # nor of the batch size


def test_synflow_grows_with_width():
    for norm in NORMS:
        for act in ("relu", "gelu"):
            narrow = synflow(tiny(norm, act, embed_dim=8), images())
            wide = synflow(tiny(norm, act, embed_dim=16), images())
            assert wide > narrow, (norm, act)


def test_synflow_treats_both_norms_alike():
    # Both are removed, and their (non-random) initialisation does not shift the weights' RNG stream.
    assert synflow(tiny("bn"), images()) == synflow(tiny("ln"), images())


def test_removing_batchnorm_agrees_with_eval_mode_at_its_initial_statistics():
    spec = tiny("bn", act="relu", depths=(2, 2))
    model = fresh_model(spec).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model(torch.ones(1, 1, 16, 16, dtype=torch.float64)).sum().backward()
    kept = sum(float((m.weight.detach() * m.weight.grad).abs().sum())
               for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear))
    assert synflow(spec, images()) == pytest.approx(kept, rel=1e-4)
    assert synflow(spec, images()) != kept


def test_synflow_matches_a_hand_built_linearised_copy():
    # The definition spelled out: norms dropped, |parameters|, double, one all-ones sample, R = sum of outputs.
    spec = tiny("bn", depths=(1,), embed_dim=4, partial_ratio=0.5)
    model = fresh_model(spec).double().eval()
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(module, child_name, nn.Identity())
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model(torch.ones(1, 1, 16, 16, dtype=torch.float64)).sum().backward()
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    expected = sum(float((w.detach() * w.grad).abs().sum()) for w in weights)
    assert synflow(spec, images()) == pytest.approx(expected, rel=1e-12)


# naswot

def test_naswot_kernel_counts_agreements():
    codes = torch.tensor([[1, 0, 1], [0, 1, 1], [1, 1, 0]], dtype=torch.bool)
    kernel = naswot_kernel(codes)
    assert kernel.dtype == torch.float64
    assert kernel.tolist() == [[3, 1, 1], [1, 3, 1], [1, 1, 3]]
    # det [[3,1,1],[1,3,1],[1,1,3]] = 3 * 8 - 1 * 2 + 1 * (1 - 3) = 20
    assert kernel_logdet(kernel) == pytest.approx(math.log(20))
    c = codes.double()
    assert torch.equal(kernel, c @ c.T + (1 - c) @ (1 - c).T)


def test_naswot_kernel_of_a_concatenation_is_the_sum():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(5, 7, generator=g) > 0.5, torch.rand(5, 11, generator=g) > 0.5
    assert torch.equal(naswot_kernel(torch.cat([a, b], 1)), naswot_kernel(a) + naswot_kernel(b))


def test_kernel_logdet_of_a_singular_kernel_is_minus_infinity():
    codes = torch.tensor([[1, 0, 1], [1, 0, 1], [0, 1, 1]], dtype=torch.bool)
    assert kernel_logdet(naswot_kernel(codes)) == float("-inf")


@pytest.mark.parametrize("norm,act", [("bn", "relu"), ("ln", "gelu"), ("bn", "hardswish"), ("ln", "silu")])
def test_naswot_equals_logdet_of_the_concatenated_codes(norm, act):
    spec = tiny(norm, act)
    batch = images()
    model = fresh_model(spec).train()
    codes = []
    handles = [m.register_forward_pre_hook(lambda m, i: codes.append((i[0] > 0).flatten(1)))
               for m in model.modules() if isinstance(m, ACTIVATIONS)]
    with torch.no_grad():
        model(batch)
    for h in handles:
        h.remove()
    assert len(codes) == sum(spec.depths) + 1  # one per block MLP, one before the head
    c = torch.cat(codes, 1).double()
    expected = torch.linalg.slogdet(c @ c.T + (1 - c) @ (1 - c).T).logabsdet.item()
    value = naswot(spec, batch)
    assert math.isfinite(value)
    assert value == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("norm", NORMS)
def test_naswot_of_a_batch_with_duplicates_is_minus_infinity(norm):
    batch = images()
    batch[3] = batch[0]
    assert naswot(tiny(norm), batch) == float("-inf")


# grad_norm and snip

@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("fn", [grad_norm, snip])
def test_gradient_scores_are_positive_and_finite(fn, norm):
    value = fn(tiny(norm), images(), labels())
    assert value > 0 and math.isfinite(value)


def test_snip_is_weight_times_gradient():
    spec, batch, y = tiny("ln"), images(), labels()
    model = fresh_model(spec).train()
    nn.functional.cross_entropy(model(batch), y).backward()
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert snip(spec, batch, y) == pytest.approx(sum(float((w.detach() * w.grad).abs().sum()) for w in weights), rel=1e-5)
    assert grad_norm(spec, batch, y) == pytest.approx(sum(float(w.grad.norm()) for w in weights), rel=1e-5)


# the entry point

@pytest.mark.parametrize("norm", NORMS)
def test_every_score_is_deterministic_for_a_seed(norm):
    data, spec = tiny_dataset(), tiny(norm, num_classes=3, in_chans=3, input_size=64)
    state = torch.get_rng_state()
    for name in SCORES:
        first = score(name, spec, data, batch_size=8, seed=1)
        assert score(name, spec, data, batch_size=8, seed=1) == first, name
        assert math.isfinite(first), name
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left alone
    assert score("snip", spec, data, batch_size=8, seed=2) != score("snip", spec, data, batch_size=8, seed=1)


def test_scores_at_once_equal_the_scores_one_by_one():
    data, spec = tiny_dataset(), tiny("ln", act="silu")
    names = ["snip", "flops", "synflow", "naswot", "grad_norm", "params"]
    together = scores(names, spec, data, batch_size=8, seed=2)
    assert list(together) == names
    assert together == {name: score(name, spec, data, batch_size=8, seed=2) for name in names}
    assert scores(["synflow", "synflow", "snip"], spec, data, batch_size=8, seed=2) == {
        "synflow": together["synflow"], "snip": together["snip"]}
    with pytest.raises(KeyError, match="allowed"):
        scores(["snip", "fisher"], spec, data)


def test_score_uses_the_proxy_shape_and_a_seeded_training_batch():
    data, spec = tiny_dataset(), tiny(num_classes=1000, in_chans=3, input_size=224)
    shaped = proxy_spec(spec, data)
    assert score("params", spec, data) == count(shaped).params
    assert score("flops", spec, data) == count(shaped).flops
    x, y = training_batch(data, 8, seed=3)
    assert score("naswot", spec, data, batch_size=8, seed=3) == naswot(shaped, x, seed=3)
    assert score("snip", spec, data, batch_size=8, seed=3) == snip(shaped, x, y, seed=3)
    assert torch.equal(training_batch(data, 8, seed=3)[0], x)
    assert not torch.equal(training_batch(data, 8, seed=4)[0], x)
    with pytest.raises(KeyError, match="allowed"):
        score("jacov", spec, data)


# vote

def test_vote_is_the_mean_rank_over_synflow_naswot_and_snip():
    scores = {
        "a": {"synflow": 1.0, "naswot": 10.0, "snip": 5.0, "params": 1e9},
        "b": {"synflow": 2.0, "naswot": 30.0, "snip": 5.0},
        "c": {"synflow": 3.0, "naswot": float("-inf"), "snip": 1.0},
    }
    # synflow ranks a1 b2 c3; naswot a2 b3 c1 (-inf last); snip c1, a and b tie on 2 and 3 -> 2.5
    assert vote(scores) == {"a": pytest.approx((1 + 2 + 2.5) / 3), "b": pytest.approx((2 + 3 + 2.5) / 3),
                            "c": pytest.approx((3 + 1 + 1) / 3)}
    assert list(vote(scores)) == ["a", "b", "c"]
    assert vote({}) == {}
    with pytest.raises(KeyError, match="snip"):
        vote({"a": {"synflow": 1.0, "naswot": 1.0}})


def test_vote_ranks_nan_and_minus_infinity_last():
    scores = {"x": {"synflow": float("nan"), "naswot": float("-inf"), "snip": 0.0},
              "y": {"synflow": 0.0, "naswot": -1e300, "snip": 1.0}}
    assert vote(scores) == {"x": 1.0, "y": 2.0}
