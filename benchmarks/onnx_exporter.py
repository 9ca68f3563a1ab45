"""Which ONNX exporter: torch's legacy (TorchScript-based) one or the dynamo one (torch.export + onnxscript).

For each named config: export the inference form both ways (export time, warnings raised), then time both
graphs in ONNX Runtime and in OpenVINO with the project's batch-1 settings (runtimes.ort_session,
runtimes.openvino_request) at one thread, the four sessions interleaved after a warm-up; medians and the
ratio dynamo / legacy. Prints a table, asserts nothing. Needs the [onnx] and [openvino] extras and onnxscript.

    python benchmarks/onnx_exporter.py [--models t0,t1] [--repeats 40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fasternet_space import NAMED_SPECS, build_model, for_inference  # noqa: E402
from fasternet_space.export import export_onnx  # noqa: E402
from fasternet_space.measure import device_name  # noqa: E402
from fasternet_space.runtimes import openvino_request, ort_session  # noqa: E402


def export_dynamo(model, path: Path) -> None:
    example = torch.zeros(1, 3, 224, 224)
    torch.onnx.export(model, (example,), str(path), dynamo=True, verbose=False, opset_version=18,
                      input_names=["input"], output_names=["logits"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},))


def timed_export(export, model, path: Path) -> tuple[float, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        export(model, path)
        seconds = time.perf_counter() - start
    return seconds, sorted({f"{w.category.__name__}: {str(w.message)[:70]}" for w in caught})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="t0,t1")
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{device_name(torch.device('cpu'))}, 1 thread, batch 1, 224x224, float32, torch {torch.__version__}")
    for name in args.models.split(","):
        model = for_inference(build_model(NAMED_SPECS[name]).eval(), device="cpu", mode="portable")
        with tempfile.TemporaryDirectory() as folder:
            paths = {"legacy": Path(folder) / "legacy.onnx", "dynamo": Path(folder) / "dynamo.onnx"}
            exports = {"legacy": lambda m, p: export_onnx(m, p, input_size=224), "dynamo": export_dynamo}
            for kind, export in exports.items():
                seconds, notices = timed_export(export, model, paths[kind])
                print(f"{name} {kind}: export {seconds:.2f} s; warnings not silenced: {notices or 'none'}")
            x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
            calls = {}
            for kind, path in paths.items():
                session, request = ort_session(path, 1), openvino_request(path, 1)
                calls[f"onnxruntime {kind}"] = lambda s=session, x=x: s.run(None, {"input": x})
                calls[f"openvino {kind}"] = lambda r=request, x=x: r.infer({0: x})
            times = {k: [] for k in calls}
            for _ in range(3):
                for call in calls.values():
                    call()
            for _ in range(args.repeats):
                for k, call in calls.items():
                    start = time.perf_counter()
                    call()
                    times[k].append((time.perf_counter() - start) * 1e3)
        medians = {k: statistics.median(v) for k, v in times.items()}
        for engine in ("onnxruntime", "openvino"):
            legacy, dynamo = medians[f"{engine} legacy"], medians[f"{engine} dynamo"]
            print(f"{name} {engine}: legacy {legacy:.2f} ms, dynamo {dynamo:.2f} ms, dynamo/legacy {dynamo / legacy:.3f}")


if __name__ == "__main__":
    main()
