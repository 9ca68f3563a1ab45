"""One network built as `cli.py build` reports it: its exact cost per stage, and on request the weights
loaded, the model saved, the inference form exported to ONNX and measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checkpoint import load_checkpoint, save_model
from .cost import count
from .export import export_onnx
from .inference import for_inference
from .ladder import measure_against_reference
from .measure import measure_model, resolve_device
from .model import build_model
from .relative import PROTOCOL_PAIRS, relative_timing_applies
from .report import measured_summary, spec_summary
from .runtimes import check_available, measure_in, model_session
from .spec import ArchSpec


def build_summary(spec: ArchSpec, *, weights: str | None = None, out: str | None = None,
                  export_path: str | None = None, measure: bool = False, device: str = "cpu",
                  threads: int | None = None, batch_size: int | None = None, input_size: int | None = None,
                  runtime: str = "torch") -> dict[str, Any]:
    """`spec_summary`, plus `weights` (a checkpoint loaded strictly), `saved` (the model written to `out`),
    `exported` (the inference form at `input_size` written to `export_path`) and, with `measure`, the speed
    of the inference form in `runtime` at `input_size` (the spec's when None)."""
    target = resolve_device(device) if measure else None
    if measure:
        check_available(runtime, device)
    measured_spec = spec.replace(input_size=input_size) if input_size else spec
    summary = spec_summary(spec, count(spec))
    model = build_model(spec)
    if weights:
        summary["weights"] = {"path": weights, "format": load_checkpoint(model, weights)}
    if out:
        summary["saved"] = str(save_model(model, out))
    fast = for_inference(model.eval(), device=target) if (measure or export_path) else None
    if export_path:
        export_onnx(fast, export_path, input_size=measured_spec.input_size, in_chans=spec.in_chans)
        summary["exported"] = {"path": export_path, "bytes": Path(export_path).stat().st_size}
    if measure:
        flops = count(measured_spec).flops
        kwargs = dict(device=device, threads=threads, throughput_batch=batch_size,
                      input_size=measured_spec.input_size, in_chans=spec.in_chans)
        if relative_timing_applies(device):  # in pairs with the reference, calibrated for this build
            result = measure_against_reference(
                model_session(fast, flops, runtime, **kwargs), runtime=runtime, device=device, threads=threads,
                input_size=measured_spec.input_size, in_chans=spec.in_chans, policy=PROTOCOL_PAIRS)
        elif runtime == "torch":
            result = measure_model(fast, flops, **kwargs)
        else:  # the engines run the same graph as --export writes, from a temporary file
            result = measure_in(fast, flops, runtime, **kwargs)
        summary.update(measured_summary(result, measured_spec.input_size, flops))
    return summary
