import random
import re

import pytest
import torch

from fasternet_space import NAMED_SPECS, build_model, for_inference
from fasternet_space.checkpoint import CheckpointError, load_checkpoint
from tests.conftest import random_spec, randomize_batchnorm
from tests.reference_fasternet import reference_forward

OFFICIAL_KEY = re.compile(
    r"^(patch_embed\.proj\.weight|patch_embed\.norm\.\w+"
    r"|stages\.[1357]\.(reduction\.weight|norm\.\w+)"
    r"|stages\.[0246]\.blocks\.\d+\.(spatial_mixing\.partial_conv3\.weight|mlp\.[03]\.weight|mlp\.1\.\w+)"
    r"|avgpool_pre_head\.1\.weight|head\.(weight|bias))$"
)


@pytest.mark.parametrize("key", list(NAMED_SPECS))
def test_named_state_dicts_follow_the_official_layout(key):
    spec = NAMED_SPECS[key]
    sd = build_model(spec).state_dict()
    assert all(OFFICIAL_KEY.match(k) for k in sd), [k for k in sd if not OFFICIAL_KEY.match(k)]
    c = spec.embed_dim
    assert sd["patch_embed.proj.weight"].shape == (c, 3, 4, 4)
    assert sd["stages.0.blocks.0.spatial_mixing.partial_conv3.weight"].shape == (c // 4, c // 4, 3, 3)
    assert sd["stages.0.blocks.0.mlp.0.weight"].shape == (2 * c, c, 1, 1)
    assert sd["stages.0.blocks.0.mlp.3.weight"].shape == (c, 2 * c, 1, 1)
    assert sd["stages.1.reduction.weight"].shape == (2 * c, c, 2, 2)
    assert sd["stages.5.reduction.weight"].shape == (8 * c, 4 * c, 2, 2)
    assert sd["avgpool_pre_head.1.weight"].shape == (1280, 8 * c, 1, 1)
    assert sd["head.weight"].shape == (1000, 1280)
    last = spec.depths[2] - 1
    assert f"stages.4.blocks.{last}.mlp.1.running_var" in sd
    assert f"stages.4.blocks.{last + 1}.mlp.0.weight" not in sd


@pytest.mark.parametrize("key", ["t0", "t2"])
def test_named_outputs_equal_the_functional_reference(key):
    spec = NAMED_SPECS[key].replace(input_size=64)
    model = build_model(spec).eval()
    randomize_batchnorm(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference_forward(model.state_dict(), spec.depths, spec.act, x),
                                   rtol=1e-4, atol=1e-5)


def test_forward_shapes_on_random_specs():
    rng = random.Random(11)
    for _ in range(20):
        spec = random_spec(rng)
        model = build_model(spec)
        x = torch.randn(2, spec.in_chans, spec.input_size, spec.input_size)
        feats = model.forward_features(x)
        assert feats.shape == (2, spec.stage_widths[-1], spec.feature_sizes[-1], spec.feature_sizes[-1])
        assert model(x).shape == (2, spec.num_classes)


def test_split_cat_and_slicing_agree():
    spec = NAMED_SPECS["t0"].replace(input_size=64)
    a = build_model(spec).eval()
    b = build_model(spec.replace(pconv_forward="slicing")).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


def test_folded_model_equals_eval_model_on_random_specs():
    rng = random.Random(5)
    for i in range(15):
        spec = random_spec(rng)
        model = build_model(spec).eval()
        randomize_batchnorm(model, seed=i)
        fast = for_inference(model)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules()) or spec.norm == "ln"
        x = torch.randn(2, spec.in_chans, spec.input_size, spec.input_size)
        with torch.no_grad():
            ref, out = model(x), fast(x)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


def _timm_keys(sd):
    out = {}
    for k, v in sd.items():
        k = re.sub(r"^stages\.([1357])\.", lambda m: f"stages.{(int(m[1]) + 1) // 2}.downsample.", k)
        k = re.sub(r"^stages\.([0246])\.blocks", lambda m: f"stages.{int(m[1]) // 2}.blocks", k)
        k = {"avgpool_pre_head.1.weight": "conv_head.weight", "head.weight": "classifier.weight",
             "head.bias": "classifier.bias"}.get(k, k)
        out[k] = v
    return out


def test_official_and_timm_checkpoints_load_strictly(tmp_path):
    spec = NAMED_SPECS["t0"].replace(input_size=64)
    source = build_model(spec).eval()
    randomize_batchnorm(source)
    x = torch.randn(1, 3, 64, 64)
    expected = source(x)
    torch.save(source.state_dict(), tmp_path / "official.pth")
    torch.save({"state_dict": _timm_keys(source.state_dict())}, tmp_path / "timm.pth")
    assert "conv_head.weight" in _timm_keys(source.state_dict())
    for name, fmt in (("official.pth", "official"), ("timm.pth", "timm")):
        target = build_model(spec).eval()
        assert load_checkpoint(target, tmp_path / name) == fmt
        torch.testing.assert_close(target(x), expected)


def test_checkpoint_mismatch_names_the_keys(tmp_path):
    torch.save(build_model(NAMED_SPECS["t0"]).state_dict(), tmp_path / "t0.pth")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(build_model(NAMED_SPECS["t1"]), tmp_path / "t0.pth")
    assert "wrong shape: patch_embed.proj.weight (40, 3, 4, 4) != (64, 3, 4, 4)" in str(info.value)
    with pytest.raises(CheckpointError, match="missing: stages.4.blocks.8"):
        load_checkpoint(build_model(NAMED_SPECS["s"]), tmp_path / "t0.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(build_model(NAMED_SPECS["t0"]), tmp_path / "junk.pth")


def test_forward_is_forward_head_of_forward_features():
    rng = random.Random(3)
    for spec in [NAMED_SPECS["t0"].replace(input_size=64)] + [random_spec(rng) for _ in range(5)]:
        model = build_model(spec).eval()
        randomize_batchnorm(model)
        x = torch.randn(2, spec.in_chans, spec.input_size, spec.input_size)
        with torch.no_grad():
            feats = model.forward_features(x)
            pre = model.forward_head(feats, pre_logits=True)
            logits = model.forward_head(feats)
            torch.testing.assert_close(model(x), logits, rtol=0, atol=0)
        assert pre.shape == (2, spec.feature_dim) == (2, model.num_features)
        assert logits.shape == (2, spec.num_classes)
        torch.testing.assert_close(model.head(pre), logits, rtol=0, atol=0)
