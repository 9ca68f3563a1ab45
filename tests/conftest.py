import os
import random
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Paired timing calibrates the reference for 8 s; tests check behaviour, not speed (subprocesses inherit it).
os.environ["FASTERNET_CALIBRATION_SECONDS"] = "0.3"

from fasternet_space import ArchSpec  # noqa: E402
from fasternet_space.measure import TimingPolicy  # noqa: E402
from fasternet_space.spec import ACTIVATIONS  # noqa: E402


def random_spec(rng: random.Random, norm: str | None = None, **fixed) -> ArchSpec:
    """A small random valid spec: a few channels, 1-4 stages, varied ratios, kernels and activations."""
    stages = rng.randint(1, 4)
    width = rng.choice([4, 6, 8, 12, 16])
    widths = None
    if rng.random() < 0.4:
        widths = tuple(width * rng.choice([1, 2, 3]) ** min(i, 1) * (2 ** max(i - 1, 0)) for i in range(stages))
        widths = (width,) + widths[1:]
    ratio = rng.choice([0.25, 0.5, 1 / 3, 1.0]) if rng.random() < 0.6 else tuple(
        rng.choice([0.25, 0.5, 0.75]) for _ in range(stages))
    fields = dict(
        name="random", embed_dim=width, widths=widths, depths=tuple(rng.randint(0, 2) for _ in range(stages)),
        partial_ratio=ratio, kernel_size=rng.choice([1, 3, 5]), mlp_ratio=rng.choice([1.0, 1.5, 2.0, 3.0]),
        act=rng.choice(ACTIVATIONS), norm=norm or rng.choice(["bn", "ln"]), feature_dim=rng.choice([16, 32]),
        patch_size=rng.choice([2, 4]), patch_stride=rng.choice([2, 4]), merge_size=2, merge_stride=2,
        in_chans=rng.choice([1, 3]), num_classes=rng.choice([2, 10]), input_size=rng.choice([32, 48, 64]),
        layer_scale_init_value=rng.choice([0.0, 0.0, 1e-2]), pconv_forward=rng.choice(["split_cat", "slicing"]),
    )
    if sum(fields["depths"]) == 0:
        fields["depths"] = (1,) + fields["depths"][1:]
    fields.update(fixed)
    return ArchSpec(**fields)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine parameters, so that folding is really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


#: Timing for tests: a few repeats, a loose interval, a short cap (tests check behaviour, not speed).
QUICK_TIMING = TimingPolicy(warmup=1, min_repeats=3, max_time_s=0.5, rel_ci=0.1)

#: A space of tiny networks (trained in a second on 64 images), with categorical and integer fields.
TINY_SPACE = {
    "name": "tiny", "embed_dim": {"choices": [8, 12, 16]}, "depths": [1, {"low": 0, "high": 1}, 1, 1],
    "partial_ratio": {"choices": [0.25, 0.5]}, "mlp_ratio": 2.0, "act": {"choices": ["relu", "gelu"]},
    "norm": {"choices": ["bn", "ln"]}, "feature_dim": 32, "input_size": 64, "num_classes": 10,
}


@pytest.fixture
def quiet_optuna():
    """Optuna's info lines and experimental-feature warnings off, for tests that build many studies."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def distinct_draws_study():
    """A study whose first five draws of TINY_SPACE are different networks (a network drawn again would be a
    repeat of the first, with no measurement of its own: search.run.repeats)."""
    import optuna

    return optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1))
