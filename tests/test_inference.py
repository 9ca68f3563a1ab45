"""The inference form gives the eval-mode training form's outputs, in every mode, for any spec."""

import copy
import io
import pickle
import random

import pytest
import torch

from fasternet_space import NAMED_SPECS, build_model
from fasternet_space.fast_layers import FastFasterNet, onednn_available
from fasternet_space.inference import MODES, for_inference
from fasternet_space.layers import ChannelLayerNorm
from fasternet_space.spec import ACTIVATIONS
from tests.conftest import random_spec, randomize_batchnorm

CPU_MODES = [m for m in MODES if m != "onednn" or onednn_available()]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small tensors: one thread is faster and immune to spin-waiting when the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomize_everything(model: torch.nn.Module, seed: int = 0) -> None:
    """Random BatchNorm statistics, channel LayerNorm affines and layer scales: nothing folds trivially."""
    randomize_batchnorm(model, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ChannelLayerNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            if getattr(m, "layer_scale", None) is not None:
                m.layer_scale.copy_(torch.rand(m.layer_scale.shape, generator=g) + 0.5)


def assert_same_outputs(fast, model, x):
    with torch.no_grad():
        ref, out = model(x), fast(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def check_spec(spec, seed, batches=(1, 3), modes=CPU_MODES):
    model = build_model(spec).eval()
    randomize_everything(model, seed)
    g = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(n, spec.in_chans, spec.input_size, spec.input_size, generator=g) for n in batches]
    with torch.no_grad():
        expected = [model(x) for x in inputs]
    for mode in modes:
        fast = for_inference(model, mode=mode)
        assert fast.mode == mode
        for x, ref in zip(inputs, expected, strict=True):
            with torch.no_grad():
                out = fast(x)
            torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


@pytest.mark.parametrize("key", list(NAMED_SPECS))
def test_named_configs_match_the_eval_model(key):
    check_spec(NAMED_SPECS[key].replace(input_size=64), seed=len(key))


def test_random_specs_match_the_eval_model():
    rng = random.Random(7)
    # Every activation, kernel size, norm and layer-scale choice appears; the rest is random.
    combos = [(act, k, norm, ls) for act in ACTIVATIONS for k, norm, ls in
              [(1, "bn", 0.0), (3, "ln", 1e-2), (5, "bn", 1e-2), (3, "bn", 0.0), (5, "ln", 0.0)]]
    assert len(combos) == 20
    for i, (act, k, norm, ls) in enumerate(combos):
        spec = random_spec(rng, norm=norm, act=act, kernel_size=k, layer_scale_init_value=ls)
        check_spec(spec, seed=i)


def test_depth_zero_stages_per_stage_ratios_and_one_input_channel():
    spec = random_spec(random.Random(3), norm="bn", depths=(0, 2, 0, 1), embed_dim=8, widths=(8, 16, 24, 32),
                       partial_ratio=(0.25, 1.0, 0.5, 0.75), in_chans=1, input_size=48, act="gelu")
    check_spec(spec, seed=5)
    spec = random_spec(random.Random(4), norm="ln", depths=(2, 0), embed_dim=12, widths=(12, 12), partial_ratio=(1 / 3, 0.5),
                       in_chans=3, input_size=32, layer_scale_init_value=1e-2)
    check_spec(spec, seed=6)


def test_other_input_sizes_and_alternating_shapes():
    spec = NAMED_SPECS["t0"].replace(input_size=64, embed_dim=16)
    model = build_model(spec).eval()
    randomize_everything(model)
    fast = for_inference(model)
    for n, size in [(1, 64), (2, 40), (1, 64), (4, 32), (1, 71), (2, 40)]:
        assert_same_outputs(fast, model, torch.randn(n, 3, size, size))


def test_source_model_is_untouched_and_shares_no_storage():
    spec = NAMED_SPECS["t0"].replace(input_size=64, layer_scale_init_value=0.5, drop_path_rate=0.1)
    model = build_model(spec).train()  # a model still in training mode is read as its eval form
    randomize_everything(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = for_inference(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = fast(x)
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert isinstance(model.stages[0].blocks[0].mlp[1], torch.nn.BatchNorm2d)
    source_ptrs = {t.untyped_storage().data_ptr() for t in model.state_dict().values()}
    assert not any(t.untyped_storage().data_ptr() in source_ptrs for t in fast.state_dict().values())
    with torch.no_grad():
        ref = model.eval()(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_inference_form_structure():
    spec = NAMED_SPECS["t1"].replace(input_size=64)
    model = build_model(spec).eval()
    fast = for_inference(model)
    assert isinstance(fast, FastFasterNet)
    assert fast.spec == spec
    assert not fast.training
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert not any(p.requires_grad for p in fast.parameters())
    # Folded weights are stored once: fewer parameters than the source (BatchNorm gone), nothing duplicated.
    n_source = sum(p.numel() for p in model.parameters())
    n_fast = sum(p.numel() for p in fast.parameters())
    bn = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert n_fast == n_source - bn
    with pytest.raises(ValueError, match="unknown inference mode"):
        for_inference(model, mode="turbo")


def test_loading_new_weights_refreshes_the_onednn_cache():
    spec = NAMED_SPECS["t0"].replace(input_size=32, embed_dim=8)
    a, b = build_model(spec).eval(), build_model(spec).eval()
    randomize_everything(a, 1)
    randomize_everything(b, 2)
    fast = for_inference(a)
    x = torch.randn(1, 3, 32, 32)
    assert_same_outputs(fast, a, x)
    fast.load_state_dict(for_inference(b).state_dict())
    assert_same_outputs(fast, b, x)


def test_copies_pickles_and_autograd_inputs():
    spec = NAMED_SPECS["t0"].replace(input_size=32, embed_dim=8, norm="ln")
    model = build_model(spec).eval()
    randomize_everything(model)
    fast = for_inference(model)
    x = torch.randn(2, 3, 32, 32)
    fast(x)  # fills the oneDNN weight cache
    assert_same_outputs(copy.deepcopy(fast), model, x)
    assert_same_outputs(pickle.loads(pickle.dumps(fast)), model, x)
    buf = io.BytesIO()
    torch.save(fast, buf)
    buf.seek(0)
    assert_same_outputs(torch.load(buf, weights_only=False), model, x)
    xg = x.clone().requires_grad_(True)
    out = fast(xg)
    out.sum().backward()
    assert xg.grad is not None and xg.grad.shape == x.shape
    torch.testing.assert_close(out.detach(), model(x).detach(), rtol=1e-4, atol=1e-4 * out.abs().max().item())


def test_trace_and_onnx_export_capture_the_portable_forward():
    spec = NAMED_SPECS["t0"].replace(input_size=32, embed_dim=8, act="hardswish")
    model = build_model(spec).eval()
    randomize_everything(model)
    fast = for_inference(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        traced = torch.jit.trace(fast, x)
    assert_same_outputs(traced, model, torch.randn(3, 3, 32, 32))
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    buf = io.BytesIO()
    torch.onnx.export(fast, (x,), buf, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    graph = onnx.load_from_string(buf.getvalue()).graph
    stored = sum(int(torch.tensor(list(t.dims)).prod()) for t in graph.initializer)
    assert stored <= sum(p.numel() for p in fast.parameters())
    assert not {n.op_type for n in graph.node} & {"BatchNormalization"}
    session = ort.InferenceSession(buf.getvalue())
    x3 = torch.randn(3, 3, 32, 32)
    got = torch.from_numpy(session.run(None, {"x": x3.numpy()})[0])
    with torch.no_grad():
        ref = model(x3)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_default_cpu_mode_is_the_one_measured_fastest():
    from fasternet_space.inference import MODES, fastest_cpu_mode

    choice = fastest_cpu_mode(torch.get_num_threads())
    assert choice in MODES
    fast = for_inference(build_model(NAMED_SPECS["t0"].replace(input_size=64)).eval())
    assert fast.mode == choice
