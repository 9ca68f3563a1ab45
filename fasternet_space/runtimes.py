"""Latency in the runtime a model will run on: torch (the inference form, eager), torch-compile (the same
form compiled by TorchInductor, compiled.py), ONNX Runtime or OpenVINO.

One timing for all four: `measure.time_callable` with the same TimingPolicy (warm-up, median, 95% interval
of the median, caps). ONNX Runtime and OpenVINO run the project's ONNX export (export.py), written once to a
temporary file that is removed afterwards, with their CPU settings for batch-1 latency at the protocol's
thread count: ONNX Runtime with `intra_op_num_threads`, every graph optimisation and sequential execution;
OpenVINO with `inference_num_threads`, the LATENCY hint and one stream.

`measure_module_latency` times any module (a whole network or one part of it); `measure_spec_in` builds a
spec's inference form and measures it like `measure.measure_spec`, in the chosen runtime.
"""

from __future__ import annotations

import contextlib
import importlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import InputError
from .measure import (
    Measurement,
    Protocol,
    Timing,
    TimingPolicy,
    cpu_threads,
    cudnn_benchmark,
    default_threads,
    resolve_device,
    time_callable,
    time_latency_and_throughput,
)

RUNTIMES = ("torch", "torch-compile", "onnxruntime", "openvino")
# Runtimes that run the torch module itself, on any torch device (the others run its ONNX export on CPU).
TORCH_RUNTIMES = ("torch", "torch-compile")
# runtime -> (module to import, extra that installs it)
_PACKAGES = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino", "openvino")}


class RuntimeUnavailable(InputError):
    """A runtime that is unknown, not installed, or cannot run on the requested device."""


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise RuntimeUnavailable("runtime", repr(runtime), f"unknown runtime; allowed: {', '.join(RUNTIMES)}")
    return runtime


def load(runtime: str):
    """The runtime's Python module (torch for torch), or RuntimeUnavailable naming the extra to install."""
    check_runtime(runtime)
    if runtime in TORCH_RUNTIMES:
        return torch
    module, extra = _PACKAGES[runtime]
    try:
        loaded = importlib.import_module(module)
        if extra == "onnx":
            importlib.import_module("onnx")  # the exporter needs it too
    except ImportError:
        raise RuntimeUnavailable("runtime", runtime, f"is not installed; allowed: install it with "
                                 f'pip install -e ".[{extra}]"') from None
    return loaded


def version(runtime: str) -> str:
    module = load(runtime)
    if runtime == "openvino":
        return module.get_version().split("-")[0]
    return module.__version__


def check_available(runtime: str, device: str = "cpu") -> str:
    """Raises RuntimeUnavailable unless `runtime` is installed and runs on `device`; returns its version."""
    found = version(runtime)
    dev = resolve_device(device)
    if runtime not in TORCH_RUNTIMES and dev.type != "cpu":
        raise RuntimeUnavailable("runtime", runtime, f"is measured on the CPU only here (device {device}); "
                                 "allowed: --device cpu, or --runtime torch")
    if runtime == "torch-compile" and dev.type == "cpu":
        from .compiled import cpu_compiler

        if cpu_compiler() is None:
            raise RuntimeUnavailable("runtime", runtime, "needs a C++ compiler on CPU and found none; allowed: "
                                     "install g++ (or set $CXX), or --runtime torch")
    return found


def runtime_label(runtime: str, module: nn.Module | None = None) -> str:
    """The protocol's runtime name: pytorch-eager with the inference form's forward mode, pytorch-inductor
    with its settings, or the engine."""
    if runtime == "torch-compile":
        from .compiled import describe

        param = next(module.parameters(), None) if module is not None else None
        return describe(param.device if param is not None else torch.device("cpu"))
    if runtime != "torch":
        return runtime
    mode = getattr(module, "mode", None)
    return f"pytorch-eager ({mode})" if isinstance(mode, str) else "pytorch-eager"


def ort_session(path: str | Path, threads: int, profile_prefix: str | None = None):
    """An ONNX Runtime CPU session for batch-1 latency: `threads` intra-op threads, all graph optimisations,
    sequential execution; with `profile_prefix`, ONNX Runtime's per-node profiler writes there."""
    ort = load("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def openvino_request(path: str | Path, threads: int):
    """An OpenVINO CPU infer request for batch-1 latency: `threads` inference threads, LATENCY hint, one
    stream."""
    ov = load("openvino")
    import openvino.properties as props
    import openvino.properties.hint as hints

    config = {hints.performance_mode: hints.PerformanceMode.LATENCY, props.inference_num_threads: threads,
              props.num_streams: 1}
    return ov.Core().compile_model(str(path), "CPU", config).create_infer_request()


def timing_context(runtime: str, device: str, threads: int | None) -> contextlib.AbstractContextManager:
    """What a torch run is timed under (the thread count, cuDNN's autotuner, inference mode): entered only
    while timing, so that a session kept open between timings changes nothing for the code around it. The
    engines set their threads in their own session."""
    if runtime not in TORCH_RUNTIMES:
        return contextlib.nullcontext()
    dev = resolve_device(device)
    stack = contextlib.ExitStack()
    stack.enter_context(cpu_threads(default_threads(dev) if threads is None else threads))
    stack.enter_context(cudnn_benchmark(True))
    stack.enter_context(torch.inference_mode())
    return stack


@contextlib.contextmanager
def prepared(module: nn.Module, input_shape: tuple[int, ...], runtime: str, device: str = "cpu",
             threads: int | None = None, dtype: torch.dtype = torch.float32, seed: int = 0,
             channels_last: bool = False) -> Iterator[Callable[[int], Callable[[], Any]]]:
    """Yields run_batch(b): the call to time on a random input of shape (b, *input_shape) in `runtime`, to be
    called under `timing_context`. For the engines, the module is exported once to a temporary ONNX file,
    removed on leaving. `channels_last`: torch's input in that memory format (what a part sees inside a
    oneDNN forward)."""
    check_available(runtime, device)
    dev = resolve_device(device)
    threads = default_threads(dev) if threads is None else threads
    generator = torch.Generator().manual_seed(seed)
    if runtime in TORCH_RUNTIMES:
        module = module.to(device=dev, dtype=dtype).eval()
        compiles = runtime == "torch-compile"
        if compiles:
            from .compiled import compile_for_inference

            module = compile_for_inference(module, dev)

        def run_torch(batch: int) -> Callable[[], Any]:
            x = torch.randn(batch, *input_shape, generator=generator).to(dev, dtype)
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            if compiles:
                with timing_context(runtime, device, threads):
                    module(x)  # compiles for this shape now, so that no timing (warm-up included) pays for it
            return lambda: module(x)

        yield run_torch
        return
    from .export import export_module_onnx

    with tempfile.TemporaryDirectory(prefix="fasternet-onnx-") as folder:
        path = export_module_onnx(module.cpu().eval(), Path(folder) / "model.onnx", input_shape)
        if runtime == "onnxruntime":
            session = ort_session(path, threads)

            def run(x):
                return session.run(None, {"input": x})
        else:
            request = openvino_request(path, threads)

            def run(x):
                return request.infer({0: x})

        def run_engine(batch: int) -> Callable[[], Any]:
            x = torch.randn(batch, *input_shape, generator=generator).numpy()
            return lambda: run(x)

        yield run_engine  # both engines return only when the outputs are ready: host timing is exact


def timing_device(runtime: str, device: str) -> torch.device:
    """Where a run in `runtime` finishes, i.e. what timing waits on: the torch device for the torch runtimes,
    the CPU for the engines (which run there only)."""
    return resolve_device(device) if runtime in TORCH_RUNTIMES else torch.device("cpu")


def measure_module_latency(module: nn.Module, input_shape: tuple[int, ...], runtime: str = "torch", *,
                           device: str = "cpu", threads: int | None = None,
                           policy: TimingPolicy = TimingPolicy(), channels_last: bool = False) -> Timing:
    """Batch-1 latency of any module (a whole network or one part) taking one tensor (1, *input_shape)."""
    with prepared(module, input_shape, runtime, device, threads, channels_last=channels_last) as run_batch, \
            timing_context(runtime, device, threads):
        return time_callable(run_batch(1), timing_device(runtime, device), policy)


class ModelSession:
    """A model made ready once in a runtime (exported and loaded for the engines), measured as often as
    asked: `measure(policy)` gives latency at batch 1 and throughput at the protocol's batch."""

    def __init__(self, run_batch: Callable[[int], Callable[[], Any]], protocol_for: Callable[[TimingPolicy], Protocol],
                 timing_device: torch.device, flops: int,
                 timing: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext):
        self.run_batch = run_batch  # call it, and the calls it returns, under `timing()`
        self.protocol_for = protocol_for
        self.timing_device = timing_device
        self.flops = flops
        self.timing = timing  # the context a timing of this model runs in (`timing_context`)

    def measure(self, policy: TimingPolicy = TimingPolicy()) -> Measurement:
        protocol = self.protocol_for(policy)
        with self.timing():
            latency, throughput = time_latency_and_throughput(self.run_batch, self.timing_device, policy,
                                                              protocol.throughput_batch)
        return Measurement.from_timing(latency, throughput, self.flops, protocol)


@contextlib.contextmanager
def model_session(model: nn.Module, flops: int, runtime: str = "torch", *, device: str = "cpu",
                  input_size: int = 224, in_chans: int = 3, threads: int | None = None,
                  throughput_batch: int | None = None, folded: bool = True) -> Iterator[ModelSession]:
    """An inference-ready model in `runtime`, for one or more measurements (the engines' export is made once)."""
    dev = resolve_device(device)
    found = check_available(runtime, device)

    def protocol_for(policy: TimingPolicy) -> Protocol:
        return Protocol.for_device(dev, threads=threads, throughput_batch=throughput_batch, input_size=input_size,
                                   in_chans=in_chans, runtime=runtime_label(runtime, model), policy=policy,
                                   folded=folded, runtime_version=found)

    threads_used = protocol_for(TimingPolicy()).threads
    with prepared(model, (in_chans, input_size, input_size), runtime, device, threads_used) as run_batch:
        yield ModelSession(run_batch, protocol_for, timing_device(runtime, device), flops,
                           timing=lambda: timing_context(runtime, device, threads_used))


def measure_in(model: nn.Module, flops: int, runtime: str = "torch", *, policy: TimingPolicy = TimingPolicy(),
               **kwargs: Any) -> Measurement:
    """`measure.measure_model` in `runtime`: latency at batch 1, throughput at the protocol's batch."""
    with model_session(model, flops, runtime, **kwargs) as session:
        return session.measure(policy)


@contextlib.contextmanager
def spec_session(spec, runtime: str = "torch", *, device: str = "cpu", threads: int | None = None,
                 input_size: int | None = None, **kwargs: Any) -> Iterator[ModelSession]:
    """The spec's inference form, built once, ready to measure in `runtime` (see `model_session`).
    torch: the forward mode measured fastest for this device and thread count, as `measure.measure_spec`;
    torch-compile and the engines: the portable forward, which is what compilation and ONNX export capture."""
    from .cost import count
    from .inference import for_inference
    from .model import build_model

    check_available(runtime, device)
    dev = resolve_device(device)
    input_size = input_size or spec.input_size
    model = build_model(spec).eval()
    if runtime == "torch":
        with cpu_threads(default_threads(dev) if threads is None else threads):
            fast = for_inference(model, device=dev)
    elif runtime == "torch-compile":
        fast = for_inference(model, device=dev, mode="portable")
    else:
        fast = for_inference(model, device="cpu", mode="portable")
    flops = count(spec.replace(input_size=input_size)).flops
    with model_session(fast, flops, runtime, device=device, threads=threads, input_size=input_size,
                       in_chans=spec.in_chans, **kwargs) as session:
        yield session


def measure_spec_in(spec, runtime: str = "torch", *, policy: TimingPolicy = TimingPolicy(),
                    **kwargs: Any) -> Measurement:
    """Builds the spec's inference form and measures it in `runtime` (torch: as `measure.measure_spec`)."""
    with spec_session(spec, runtime, **kwargs) as session:
        return session.measure(policy)
