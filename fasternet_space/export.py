"""ONNX export of the inference form, and timing it with onnxruntime under the same protocol."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from .errors import InputError
from .measure import Measurement, Protocol, TimingPolicy, resolve_device, time_latency_and_throughput


class ExportError(InputError):
    """An export that cannot be done here (missing optional package, bad path)."""


def _require(module: str, extra: str):
    try:
        return __import__(module)
    except ImportError:
        raise ExportError(None, None, f"{module} is not installed; allowed: install the extra with "
                          f"pip install -e '.[{extra}]'") from None


def check_onnx_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix != ".onnx":
        raise ExportError("path", str(path), "allowed: a path ending in .onnx")
    return path


def export_onnx(model: nn.Module, path: str | Path, *, input_size: int, in_chans: int = 3, opset: int = 17) -> Path:
    """Writes the model (batch dimension dynamic) to an ONNX file and returns its path."""
    _require("onnx", "onnx")
    path = check_onnx_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, in_chans, input_size, input_size, device=next(model.parameters()).device)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its own deprecation
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


def onnx_session(path: str | Path, device: str = "cpu", threads: int = 1):
    ort = _require("onnxruntime", "onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    dev = resolve_device(device)
    name = "CUDAExecutionProvider" if dev.type == "cuda" else "CPUExecutionProvider"
    if name not in ort.get_available_providers():
        raise ExportError("device", repr(device), f"onnxruntime has no {name} here; allowed: "
                          + ", ".join(ort.get_available_providers()))
    provider = (name, {"device_id": dev.index or 0}) if dev.type == "cuda" else name
    return ort.InferenceSession(str(path), options, providers=[provider])


def measure_onnx(path: str | Path, flops: int, *, input_size: int, in_chans: int = 3, device: str = "cpu",
                 threads: int | None = None, throughput_batch: int | None = None,
                 policy: TimingPolicy = TimingPolicy()) -> Measurement:
    """Times an ONNX file with onnxruntime under the same protocol as `measure.measure_model`."""
    import numpy as np

    ort = _require("onnxruntime", "onnx")
    dev = resolve_device(device)
    protocol = Protocol.for_device(dev, threads=threads, throughput_batch=throughput_batch, input_size=input_size,
                                   in_chans=in_chans, runtime=f"onnxruntime {ort.__version__}",
                                   policy=policy)
    session = onnx_session(path, device, protocol.threads)
    rng = np.random.default_rng(0)

    def run_batch(batch: int):
        x = rng.standard_normal((batch, in_chans, input_size, input_size), dtype=np.float32)
        return lambda: session.run(None, {"input": x})

    # onnxruntime synchronises before returning outputs, so host timing is exact here.
    latency, throughput = time_latency_and_throughput(run_batch, torch.device("cpu"), policy,
                                                      protocol.throughput_batch)
    return Measurement.from_timing(latency, throughput, flops, protocol)
