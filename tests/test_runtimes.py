import builtins
import json
import math
import os

import optuna
import pytest
import torch
import yaml

from fasternet_space import NAMED_SPECS
from fasternet_space import runtimes as runtimes_module
from fasternet_space.errors import InputError
from fasternet_space.fast_layers import FastBlock
from fasternet_space.runtimes import RUNTIMES, RuntimeUnavailable, measure_module_latency, measure_spec_in
from search import SearchConfig, SearchSpace, TrialRecord
from tests.cli_helpers import assert_one_line_error, run_cli
from tests.conftest import QUICK_TIMING, TINY_SPACE

SMALL = NAMED_SPECS["t0"].replace(name="t0_32", input_size=32, num_classes=10)
MODULES = {"torch": "torch", "torch-compile": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino"}
LABELS = {"torch": "pytorch-eager", "torch-compile": "pytorch-inductor (frozen weights, C++ wrapper)"}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_each_runtime_records_its_name_and_version(runtime):
    module = pytest.importorskip(MODULES[runtime])
    before = torch.get_num_threads()
    m = measure_spec_in(SMALL, runtime, policy=QUICK_TIMING)
    p = m.protocol
    assert (p.device, p.threads, p.batch, p.input_size, p.rel_ci) == ("cpu", 1, 1, 32, QUICK_TIMING.rel_ci)
    assert p.runtime.startswith(LABELS.get(runtime, runtime))
    expected = torch.__version__ if MODULES[runtime] == "torch" else (
        module.get_version().split("-")[0] if runtime == "openvino" else module.__version__)
    assert p.runtime_version == expected and expected in p.describe() + f" {p.torch}"
    if MODULES[runtime] != "torch":
        assert f"{runtime} {expected}" in p.describe() and f"exported by torch {torch.__version__}" in p.describe()
    assert math.isfinite(m.latency_ms) and m.latency_ms > 0 and m.repeats >= QUICK_TIMING.min_repeats
    assert m.latency_ci_ms[0] <= m.latency_ms <= m.latency_ci_ms[1]
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("runtime", [r for r in RUNTIMES if r != "torch-compile"])  # Inductor keeps a cache
def test_any_module_is_timed_and_its_temporary_export_removed(runtime, tmp_path, monkeypatch):
    pytest.importorskip(MODULES[runtime])
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    block = FastBlock(torch.randn(4, 4, 3, 3) * 0.1, torch.randn(32, 16, 1, 1) * 0.1, torch.zeros(32),
                      torch.randn(16, 32, 1, 1) * 0.1, "gelu")
    timing = measure_module_latency(block, (16, 8, 8), runtime, policy=QUICK_TIMING)
    assert timing.median_ms > 0 and timing.ci_low_ms <= timing.median_ms <= timing.ci_high_ms
    assert os.listdir(tmp_path) == []  # nothing left behind


@pytest.mark.parametrize("runtime, extra", [("openvino", "openvino"), ("onnxruntime", "onnx")])
def test_a_missing_runtime_names_its_extra(runtime, extra, monkeypatch):
    real_import = builtins.__import__

    def no_runtime(name, *args, **kwargs):
        if name.split(".")[0] == runtime:
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_runtime)
    monkeypatch.setattr(runtimes_module.importlib, "import_module", lambda name: no_runtime(name))
    with pytest.raises(RuntimeUnavailable) as caught:
        measure_spec_in(SMALL, runtime, policy=QUICK_TIMING)
    assert isinstance(caught.value, InputError) and caught.value.parameter == "runtime"
    assert str(caught.value) == (f'runtime {runtime}: is not installed; allowed: install it with '
                                 f'pip install -e ".[{extra}]"')


def test_unknown_runtime_and_engine_off_cpu_are_refused():
    with pytest.raises(RuntimeUnavailable, match="allowed: torch, torch-compile, onnxruntime, openvino"):
        measure_spec_in(SMALL, "tvm")


def test_cli_runtimes(tmp_path):
    pytest.importorskip("onnxruntime")
    spec = tmp_path / "small.yaml"
    spec.write_text(yaml.safe_dump(SMALL.to_dict()))
    result = run_cli("bench", "models", str(spec), "--runtime", "onnxruntime", "--format", "json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["protocol"]["runtime"] == "onnxruntime" and row["latency_ms"] > 0


def test_search_measures_in_its_runtime_and_stores_it_in_the_setting(quiet_optuna):
    pytest.importorskip("onnxruntime")
    from fasternet_space.data import load_dataset
    from fasternet_space.proxy import ProxyConfig
    from search.run.objective import Objective

    config = SearchConfig(budget_ms=1e-6, timing=QUICK_TIMING, runtime="onnxruntime",
                          proxy=ProxyConfig(epochs=1, resolution=32))
    assert config.validate().setting()["runtime"] == "onnxruntime" and "runtime" not in SearchConfig().setting()
    assert config.resolved_study_name("tiny").startswith("tiny-cpu-onnxruntime-")
    study = optuna.create_study(directions=["maximize", "minimize"])
    dataset = load_dataset("digits", 32, max_train=64, max_test=32)
    study.optimize(Objective(SearchSpace.from_dict(TINY_SPACE), dataset, config), n_trials=1)
    record = TrialRecord.from_trial(study.trials[0])
    assert record.protocol["runtime"] == "onnxruntime" and record.protocol["runtime_version"]


def test_the_compiled_form_computes_what_the_official_structure_does():
    from fasternet_space import build_model
    from fasternet_space.compiled import compile_for_inference
    from fasternet_space.inference import for_inference

    torch.manual_seed(0)
    model = build_model(SMALL).eval()
    compiled = compile_for_inference(for_inference(model, mode="portable"), torch.device("cpu"))
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        expected, got = model(x), compiled(x)
    assert got.shape == (2, 10)
    assert (got - expected).abs().max().item() <= 1e-4 * expected.abs().max().item()
    # Frozen weights: the compiled graph holds them as constants, so changing the module's no longer matters
    # (unfrozen, they would be graph inputs and the output would change).
    with torch.no_grad():
        compiled.module.head_weight.mul_(2.0)
    with torch.inference_mode():
        assert torch.equal(compiled(x), got)
        assert not torch.allclose(compiled.module.forward_portable(x), got)


def test_torch_compile_without_a_cpu_compiler_is_refused(tmp_path):
    spec = tmp_path / "small.yaml"
    spec.write_text(yaml.safe_dump(SMALL.to_dict()))
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler")}
    result = run_cli("build", "--spec", str(spec), "--measure", "--runtime", "torch-compile", env=env)
    assert_one_line_error(result, "--runtime torch-compile: needs a C++ compiler on CPU",
                          "allowed: install g++ (or set $CXX), or --runtime torch")


def test_a_latency_table_is_not_profiled_under_torch_compile():
    from fasternet_space.latency_table import TableError, profile

    with pytest.raises(TableError, match="runtime torch-compile: cannot be profiled part by part"):
        profile(SearchSpace.from_dict(TINY_SPACE), "torch-compile")


@pytest.mark.parametrize("reset", [True, False])
def test_every_network_measured_under_torch_compile_is_compiled_not_left_eager(reset, monkeypatch):
    """Networks share one forward's code, hence torch.compile's cache and its recompile limit: the limit is
    set to 1 here, so without clearing the cache the second network would silently run eager."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from fasternet_space import build_model
    from fasternet_space.compiled import compile_for_inference
    from fasternet_space.inference import for_inference

    torch.compiler.reset()
    if not reset:
        monkeypatch.setattr(torch.compiler, "reset", lambda: None)
    x = torch.randn(1, 3, 32, 32)
    graphs = []
    with torch._dynamo.config.patch(recompile_limit=1):
        for width in (8, 12):
            spec = SMALL.replace(embed_dim=width, depths=(1, 1, 1, 1), feature_dim=32)
            compiled = compile_for_inference(for_inference(build_model(spec).eval(), mode="portable"),
                                             torch.device("cpu"))
            with torch.inference_mode():
                compiled(x)
            graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[1] - graphs[0] == (1 if reset else 0)
