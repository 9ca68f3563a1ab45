import json
import math

import pytest
import torch
import yaml
from fvcore.nn import FlopCountAnalysis

from fasternet_space import NAMED_SPECS, build_model, count, for_inference
from fasternet_space.errors import InputError
from fasternet_space.measure import (
    DeviceError,
    Protocol,
    default_threads,
    default_throughput_batch,
    measure_spec,
    median_ci,
    resolve_device,
)
from fasternet_space.operators import OPERATORS, bench_operators, make_operator, operator_flops
from tests.cli_helpers import assert_one_line_error, run_cli
from tests.conftest import QUICK_TIMING

SMALL = NAMED_SPECS["t0"].replace(name="t0_64", input_size=64, num_classes=10)


def test_measurement_carries_its_protocol_and_finite_numbers():
    before = torch.get_num_threads()
    m = measure_spec(SMALL, policy=QUICK_TIMING)
    p = m.protocol
    assert (p.device, p.threads, p.batch, p.throughput_batch, p.input_size, p.dtype, p.folded) == (
        "cpu", 1, 1, 1, 64, "float32", True)
    assert p.runtime.startswith("pytorch-eager") and p.torch == torch.__version__ and p.device_name
    for value in (m.latency_ms, m.throughput, m.flops_per_s):
        assert math.isfinite(value) and value > 0
    assert m.latency_ci_ms[0] <= m.latency_ms <= m.latency_ci_ms[1]
    assert m.flops_per_s == pytest.approx(count(SMALL).flops / (m.latency_ms / 1e3))
    assert m.repeats >= QUICK_TIMING.min_repeats
    assert torch.get_num_threads() == before  # the 1-thread protocol did not leak out


def test_threads_are_restored_and_throughput_batch_is_honoured():
    before = torch.get_num_threads()
    m = measure_spec(SMALL, policy=QUICK_TIMING, threads=2, throughput_batch=4)
    assert torch.get_num_threads() == before
    assert (m.protocol.threads, m.protocol.throughput_batch) == (2, 4)
    assert m.throughput > 0


def test_paper_defaults_per_device():
    # torch.device objects only: nothing runs on them, so the GPU defaults are checked without a GPU.
    assert (default_threads(torch.device("cpu")), default_throughput_batch(torch.device("cpu"))) == (1, 1)
    for name in ("cuda", "cuda:1", "mps"):
        assert default_threads(torch.device(name)) == torch.get_num_threads()
        assert default_throughput_batch(torch.device(name)) == 32


def test_protocol_for_device_fills_defaults_and_keeps_what_is_given(monkeypatch):
    monkeypatch.setattr("fasternet_space.measure.device_name", lambda device: "Some GPU")
    cuda = Protocol.for_device(torch.device("cuda", 0), input_size=224, in_chans=3, runtime="pytorch-eager",
                               policy=QUICK_TIMING)
    assert (cuda.device, cuda.device_name, cuda.batch, cuda.throughput_batch, cuda.dtype) == (
        "cuda:0", "Some GPU", 1, 32, "float32")
    assert (cuda.threads, cuda.rel_ci, cuda.max_time_s) == (torch.get_num_threads(), 0.1, 0.5)
    cpu = Protocol.for_device(torch.device("cpu"), threads=3, throughput_batch=8, input_size=64, in_chans=1,
                              runtime="x", dtype=torch.float16, folded=False)
    assert (cpu.threads, cpu.batch, cpu.throughput_batch, cpu.dtype, cpu.folded) == (3, 1, 8, "float16", False)


def _protocol(**changes):
    fields = dict(device="cpu", device_name="Test CPU", threads=1, batch=1, throughput_batch=1, input_size=224,
                  in_chans=3, dtype="float32", runtime="pytorch-eager (onednn)", torch="2.5.0", folded=True,
                  rel_ci=0.02, max_time_s=10.0)
    return Protocol(**{**fields, **changes})


def test_describe_is_one_line_with_the_whole_protocol():
    line = _protocol().describe()
    assert line == ("Test CPU (cpu), 1 thread, batch 1, input 3x224x224, float32, pytorch-eager (onednn), "
                    "torch 2.5.0, BatchNorm folded")
    gpu = _protocol(device="cuda:0", device_name="H100", threads=8, throughput_batch=32, folded=False).describe()
    assert gpu.startswith("H100 (cuda:0), 8 threads, batch 1, throughput batch 32, input 3x224x224")
    assert gpu.endswith("BatchNorm not folded") and "\n" not in gpu


def test_protocol_dict_round_trip_and_older_records():
    protocol = _protocol(threads=4, throughput_batch=16, folded=False)
    assert Protocol.from_dict(json.loads(json.dumps(protocol.to_dict()))) == protocol
    old = {"device": "cpu", "device_name": "Old CPU", "threads": 1, "batch": 1, "input_size": 224, "dtype": "float32",
           "runtime": "pytorch-eager", "torch": "2.1.0", "retired_key": "ignored"}
    restored = Protocol.from_dict(old)
    assert (restored.throughput_batch, restored.in_chans, restored.folded, restored.rel_ci) == (None, None, None, None)
    assert restored.describe() == "Old CPU (cpu), 1 thread, batch 1, input 224x224, float32, pytorch-eager, torch 2.1.0"
    assert Protocol.from_dict({}).describe() == "unknown device"


def test_median_confidence_interval():
    median, low, high = median_ci([float(x) for x in range(1, 101)])
    assert median == 50.5 and low < median < high
    assert 35 <= low <= 45 and 56 <= high <= 66


def test_device_errors():
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(DeviceError, match="unknown device") as caught:
        resolve_device("tpu")
    assert isinstance(caught.value, InputError) and caught.value.parameter == "device"
    assert str(caught.value) == "device 'tpu': unknown device; allowed: cpu, cuda, cuda:N, mps"
    assert caught.value.message("--device").startswith("--device 'tpu': unknown device")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="device 'cuda': is not available"):
            resolve_device("cuda")


def test_export_errors_name_their_parameter():
    from fasternet_space.export import ExportError, check_onnx_path

    with pytest.raises(ExportError) as caught:
        check_onnx_path("model.tflite")
    assert isinstance(caught.value, InputError) and caught.value.parameter == "path"
    assert str(caught.value) == "path model.tflite: allowed: a path ending in .onnx"


@pytest.mark.parametrize("name", OPERATORS)
def test_operator_flops_are_exact(name):
    module = make_operator(name, 32).eval()
    analysis = FlopCountAnalysis(module, torch.zeros(1, 32, 14, 14))
    analysis.unsupported_ops_warnings(False)
    assert operator_flops(name, 32, 14) == analysis.total()


def test_operator_table_rows():
    rows, protocol = bench_operators(width=16, resolution=16, policy=QUICK_TIMING)
    assert (protocol.device, protocol.threads, protocol.batch, protocol.throughput_batch) == ("cpu", 1, 1, 1)
    assert (protocol.input_size, protocol.in_chans, protocol.folded) == (16, 16, None)
    assert [(r.channels, r.size) for r in rows[:: len(OPERATORS)]] == [(16, 16), (32, 8), (64, 4), (128, 2)]
    assert len(rows) == 4 * len(OPERATORS)
    conv = next(r for r in rows if r.operator == "conv" and r.channels == 16)
    pconv = next(r for r in rows if r.operator == "pconv" and r.channels == 16)
    assert conv.flops == 10 * 16 * 16 * 9 * 16 * 16 and pconv.flops * 16 == conv.flops  # 1/16 of a Conv at r = 1/4
    assert all(r.latency_ms > 0 and r.flops_per_s > 0 for r in rows)


def test_fast_pconv_computes_the_same_as_plain_pconv():
    plain, fast = make_operator("pconv", 32).eval(), make_operator("pconv_fast", 32).eval()
    fast.load_state_dict(plain.state_dict())
    x = torch.randn(1, 32, 8, 8)
    part, untouched = fast(x)
    torch.testing.assert_close(torch.cat([part, untouched], 1), plain(x))


@pytest.mark.parametrize("norm", ["bn", "ln"])
def test_onnx_round_trip(tmp_path, norm):
    pytest.importorskip("onnxruntime")
    from fasternet_space.export import export_onnx, onnx_session

    spec = SMALL.replace(norm=norm)
    model = for_inference(build_model(spec).eval())
    path = export_onnx(model, tmp_path / "m.onnx", input_size=64)
    params = count(spec).params
    assert path.stat().st_size < 4 * params * 1.05  # compact: about 4 bytes per parameter
    x = torch.randn(3, 3, 64, 64)
    ort_out = onnx_session(path).run(None, {"input": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(ort_out), model(x), rtol=1e-4, atol=1e-4)


def _small_spec_file(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL.to_dict()))
    return str(path)


def test_cli_build_measure_json(tmp_path):
    result = run_cli("build", "--spec", _small_spec_file(tmp_path), "--measure", "--device", "cpu", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["latency_ms"] > 0 and data["throughput"] > 0 and data["flops_per_s"] > 0
    assert data["protocol"]["threads"] == 1 and data["protocol"]["device"] == "cpu"


def test_cli_build_measure_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    result = run_cli("build", "--spec", _small_spec_file(tmp_path), "--measure", "--export", str(tmp_path / "m.onnx"),
                     "--runtime", "onnxruntime", "--format", "json")
    assert result.returncode == 0, result.stderr
    protocol = json.loads(result.stdout)["protocol"]
    assert protocol["runtime"] == "onnxruntime" and protocol["runtime_version"]


def test_cli_bench_ops_and_models(tmp_path):
    result = run_cli("bench", "ops", "--width", "16", "--resolution", "16", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["rows"]) == 20 and len(data["pconv_vs_dwconv_flops"]) == 4
    assert data["protocol"]["threads"] == 1
    result = run_cli("bench", "models", _small_spec_file(tmp_path), "--format", "json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["name"] == "t0_64" and row["named"] == "T0" and row["latency_ms"] > 0


def test_cli_measure_bad_input(tmp_path):
    spec = _small_spec_file(tmp_path)
    assert_one_line_error(run_cli("build", "--spec", spec, "--measure", "--device", "tpu"), "unknown device", "cpu")
    assert_one_line_error(run_cli("build", "--spec", spec, "--measure", "--threads", "0"), "--threads", "positive")
    assert_one_line_error(run_cli("build", "--spec", spec, "--runtime", "tflite", "--measure"), "--runtime",
                          "onnxruntime", "openvino")
    if not torch.cuda.is_available():
        assert_one_line_error(run_cli("build", "--spec", spec, "--measure", "--device", "cuda"), "not available")
