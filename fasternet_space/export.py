"""ONNX export of the inference form (or of any part of it); timing it in a runtime is runtimes.py's job."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from .errors import InputError
from .measure import resolve_device


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


# The legacy (TorchScript-based) exporter announces its own deprecation and that of torch.jit.trace under it.
# It is kept on purpose: torch's dynamo exporter (torch 2.13, onnxscript 0.7) gave graphs 10-28% slower in
# ONNX Runtime (T0, T1) and as fast in OpenVINO, took 10-15x as long to export, and raised a FutureWarning of
# its own (benchmarks/onnx_exporter.py). Only these two announcements are silenced, by message.
_LEGACY_EXPORT_NOTICES = (r"You are using the legacy TorchScript-based ONNX export",
                          r"The feature will be removed\. Please remove usage of this function")


def export_onnx(model: nn.Module, path: str | Path, *, input_size: int, in_chans: int = 3, opset: int = 17) -> Path:
    """Writes the model (batch dimension dynamic) to an ONNX file and returns its path."""
    return export_module_onnx(model, path, (in_chans, input_size, input_size), opset=opset)


def export_module_onnx(module: nn.Module, path: str | Path, input_shape: tuple[int, ...], *, opset: int = 17,
                       output_name: str = "logits") -> Path:
    """Writes any module taking one tensor of shape (batch, *input_shape) to an ONNX file (batch dynamic)."""
    _require("onnx", "onnx")
    path = check_onnx_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    param = next(module.parameters(), None)
    example = torch.zeros(1, *input_shape, device=param.device if param is not None else "cpu")
    with warnings.catch_warnings(), torch.no_grad():
        for notice in _LEGACY_EXPORT_NOTICES:
            warnings.filterwarnings("ignore", message=notice, category=DeprecationWarning)
        torch.onnx.export(module.eval(), (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=[output_name],
                          dynamic_axes={"input": {0: "batch"}, output_name: {0: "batch"}})
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
