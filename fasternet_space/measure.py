"""Latency, throughput and achieved FLOPS of a model on a device, with the protocol stated next to them.

Timing: warm-up, then repetitions until the 95% confidence interval of the median (distribution-free,
from order statistics) is within `rel_ci` of the median, or a time cap. CUDA is timed with events and
synchronisation; CPU with a monotonic clock, on a set number of threads that is restored afterwards.
"""

from __future__ import annotations

import contextlib
import math
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn

from .errors import InputError


class DeviceError(InputError):
    """A device name that is not allowed or not available here."""


@dataclass(frozen=True)
class TimingPolicy:
    warmup: int = 5
    min_repeats: int = 10
    max_repeats: int = 1000
    max_time_s: float = 10.0
    rel_ci: float = 0.02  # stop when the 95% CI of the median is within +-2% of it


@dataclass(frozen=True)
class Timing:
    median_ms: float
    ci_low_ms: float
    ci_high_ms: float
    repeats: int
    stable: bool  # the confidence bound was reached before the time cap

    @property
    def rel_halfwidth(self) -> float:
        return (self.ci_high_ms - self.ci_low_ms) / 2 / self.median_ms


@dataclass(frozen=True)
class Protocol:
    device: str
    device_name: str
    threads: int
    batch: int
    throughput_batch: int
    input_size: int
    in_chans: int
    dtype: str
    runtime: str  # what ran the model: pytorch-eager (mode), onnxruntime or openvino
    torch: str
    folded: bool | None  # None: the model has no BatchNorm to fold
    rel_ci: float
    max_time_s: float
    runtime_version: str | None = None  # the runtime's own version (torch's for pytorch-eager)

    @classmethod
    def for_device(cls, device: torch.device, *, input_size: int, in_chans: int, runtime: str,
                   threads: int | None = None, batch: int = 1, throughput_batch: int | None = None,
                   dtype: torch.dtype | str = torch.float32, policy: TimingPolicy = TimingPolicy(),
                   folded: bool | None = True, runtime_version: str | None = None) -> Protocol:
        """The protocol on `device`, with the paper's defaults for what is not given (None)."""
        return cls(
            device=str(device), device_name=device_name(device),
            threads=default_threads(device) if threads is None else threads, batch=batch,
            throughput_batch=default_throughput_batch(device) if throughput_batch is None else throughput_batch,
            input_size=input_size, in_chans=in_chans, dtype=str(dtype).removeprefix("torch."), runtime=runtime,
            torch=torch.__version__, folded=folded, rel_ci=policy.rel_ci, max_time_s=policy.max_time_s,
            runtime_version=runtime_version or (torch.__version__ if runtime.startswith("pytorch") else None),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Protocol:
        """A protocol from its `to_dict()`; keys missing from older records are None, unknown keys ignored."""
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line: where and how latency was measured. Fields that are None (older records) are left out."""
        where = self.device_name or self.device or "unknown device"
        parts = [f"{where} ({self.device})" if self.device_name and self.device else where]
        if self.threads is not None:
            parts.append(f"{self.threads} thread" + ("" if self.threads == 1 else "s"))
        if self.batch is not None:
            parts.append(f"batch {self.batch}")
        if self.throughput_batch is not None and self.throughput_batch != self.batch:
            parts.append(f"throughput batch {self.throughput_batch}")
        if self.input_size is not None:
            size = f"{self.input_size}x{self.input_size}"
            parts.append(f"input {self.in_chans}x{size}" if self.in_chans is not None else f"input {size}")
        if self.dtype:
            parts.append(str(self.dtype))
        pytorch = not self.runtime or self.runtime.startswith("pytorch")
        if self.runtime:  # pytorch-eager's version is torch's, shown next
            version = None if pytorch else self.runtime_version
            parts.append(f"{self.runtime} {version}" if version else self.runtime)
        if self.torch:
            parts.append(f"torch {self.torch}" if pytorch else f"exported by torch {self.torch}")
        if self.folded is not None:
            parts.append("BatchNorm folded" if self.folded else "BatchNorm not folded")
        return ", ".join(parts)


def default_threads(device: torch.device) -> int:
    """The paper's protocol: CPU latency on one thread; elsewhere torch's current thread count."""
    return 1 if device.type == "cpu" else torch.get_num_threads()


def default_throughput_batch(device: torch.device) -> int:
    """The paper's protocol: throughput at batch 1 on CPU, at batch 32 on GPU."""
    return 1 if device.type == "cpu" else 32


@dataclass(frozen=True)
class Measurement:
    latency_ms: float
    latency_ci_ms: tuple[float, float]
    repeats: int
    stable: bool
    throughput: float  # images per second at protocol.throughput_batch
    flops_per_s: float  # multiply-adds per second: flops / latency
    protocol: Protocol
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_timing(cls, latency: Timing, throughput: float, flops: int, protocol: Protocol) -> Measurement:
        return cls(latency_ms=latency.median_ms, latency_ci_ms=(latency.ci_low_ms, latency.ci_high_ms),
                   repeats=latency.repeats, stable=latency.stable, throughput=throughput,
                   flops_per_s=flops / (latency.median_ms / 1e3), protocol=protocol)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency_ci_ms"] = list(self.latency_ci_ms)
        data["protocol"] = self.protocol.to_dict()
        return data


def resolve_device(name: str) -> torch.device:
    """'cpu', 'cuda', 'cuda:N' or 'mps' as a torch.device, or DeviceError naming what is allowed."""
    unknown = DeviceError("device", repr(name), "unknown device; allowed: cpu, cuda, cuda:N, mps")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise unknown from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("device", repr(name), "is not available: this machine has no usable CUDA GPU; "
                              "allowed here: cpu")
        index = 0 if device.index is None else device.index
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceError("device", repr(name), f"is not available: {count} CUDA device(s), "
                              f"allowed: cuda:0..cuda:{count - 1}")
        return torch.device("cuda", index)
    if device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise DeviceError("device", repr(name), "is not available on this machine; allowed here: cpu")
        return device
    raise unknown


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (mps)"
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[int]:
    """Sets torch's intra-op thread count for the block and restores it afterwards."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool) -> Iterator[None]:
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def median_ci(samples: list[float]) -> tuple[float, float, float]:
    """Median and a distribution-free 95% confidence interval for it (binomial order statistics)."""
    ordered = sorted(samples)
    n = len(ordered)
    median = statistics.median(ordered)
    half = 1.96 * math.sqrt(n) / 2
    low_rank, high_rank = math.floor(n / 2 - half), math.ceil(1 + n / 2 + half)  # 1-based ranks
    return median, ordered[max(low_rank - 1, 0)], ordered[min(high_rank - 1, n - 1)]


def time_callable(fn: Callable[[], Any], device: torch.device, policy: TimingPolicy = TimingPolicy()) -> Timing:
    """Median wall time of fn() in ms: warm-up, then repeat until the median is stable or time runs out."""
    for _ in range(policy.warmup):
        fn()
    synchronize(device)
    samples: list[float] = []
    use_events = device.type == "cuda"
    start_all = time.perf_counter()
    with torch.cuda.device(device) if use_events else contextlib.nullcontext():  # events on cuda:N's stream
        return _repeat_until_stable(fn, device, policy, samples, use_events, start_all)


def _repeat_until_stable(fn: Callable[[], Any], device: torch.device, policy: TimingPolicy, samples: list[float],
                         use_events: bool, start_all: float) -> Timing:
    while True:
        if use_events:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(begin.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            samples.append((time.perf_counter() - t0) * 1e3)
        n = len(samples)
        if n >= policy.min_repeats:
            median, low, high = median_ci(samples)
            stable = (high - low) / 2 <= policy.rel_ci * median
            out_of_time = time.perf_counter() - start_all >= policy.max_time_s
            if stable or out_of_time or n >= policy.max_repeats:
                return Timing(median, low, high, n, stable)


def measure_model(
    model: nn.Module,
    flops: int,
    *,
    device: str = "cpu",
    input_size: int = 224,
    in_chans: int = 3,
    threads: int | None = None,
    throughput_batch: int | None = None,
    dtype: torch.dtype = torch.float32,
    policy: TimingPolicy = TimingPolicy(),
    folded: bool = True,
    seed: int = 0,
) -> Measurement:
    """Times an inference-ready model (eval mode, BN folded by the caller) at batch 1 and at a throughput batch.

    Defaults follow the paper: CPU latency single-threaded at batch 1; GPU throughput at batch 32.
    `flops` is the model's multiply-add count at batch 1 and `input_size` (exact, from `count`).
    """
    dev = resolve_device(device)
    protocol = Protocol.for_device(dev, threads=threads, throughput_batch=throughput_batch, input_size=input_size,
                                   in_chans=in_chans, dtype=dtype, runtime=_runtime(model), policy=policy,
                                   folded=folded)
    model = model.to(device=dev, dtype=dtype).eval()
    generator = torch.Generator().manual_seed(seed)

    def run_batch(batch: int) -> Callable[[], Any]:
        x = torch.randn(batch, in_chans, input_size, input_size, generator=generator).to(dev, dtype)
        return lambda: model(x)

    with cpu_threads(protocol.threads), cudnn_benchmark(True), torch.inference_mode():
        latency, throughput = time_latency_and_throughput(run_batch, dev, policy, protocol.throughput_batch)
    return Measurement.from_timing(latency, throughput, flops, protocol)


def time_latency_and_throughput(run_batch: Callable[[int], Callable[[], Any]], device: torch.device,
                                policy: TimingPolicy, throughput_batch: int) -> tuple[Timing, float]:
    """Latency at batch 1 and images/s at the throughput batch (derived from the latency when that is 1).
    `run_batch(b)` prepares an input of batch b and returns the call to time."""
    latency = time_callable(run_batch(1), device, policy)
    if throughput_batch == 1:
        return latency, 1e3 / latency.median_ms
    batch_timing = time_callable(run_batch(throughput_batch), device, policy)
    return latency, throughput_batch * 1e3 / batch_timing.median_ms


def _runtime(model: nn.Module) -> str:
    """'pytorch-eager', with the inference form's forward mode where it has one (e.g. onednn, portable)."""
    mode = getattr(model, "mode", None)
    return f"pytorch-eager ({mode})" if isinstance(mode, str) else "pytorch-eager"


def measure_spec(spec, *, fold: bool = True, **kwargs: Any) -> Measurement:
    """Builds the spec's model (inference form by default) and measures it at the spec's input size."""
    from .cost import count
    from .inference import for_inference
    from .model import build_model

    model = build_model(spec).eval()
    if fold:  # for the target device and thread count, so that its forward mode is the one measured fastest there
        dev = resolve_device(kwargs.get("device", "cpu"))
        threads = kwargs.get("threads")
        with cpu_threads(default_threads(dev) if threads is None else threads):
            model = for_inference(model, device=dev)
    kwargs.setdefault("input_size", spec.input_size)
    kwargs.setdefault("in_chans", spec.in_chans)
    flops = count(spec.replace(input_size=kwargs["input_size"])).flops
    return measure_model(model, flops, folded=fold, **kwargs)


def gemm_rate(device: str = "cpu", threads: int | None = 1, size: int = 1024,
              policy: TimingPolicy = TimingPolicy(warmup=3, min_repeats=15, max_time_s=5.0)) -> float:
    """This device's dense fp32 GEMM rate in multiply-adds per second (median of torch.mm on size x size):
    the ceiling that a model's achieved FLOPS is compared with."""
    dev = resolve_device(device)
    with cpu_threads(threads if dev.type == "cpu" else None), torch.inference_mode():
        a = torch.randn(size, size, device=dev)
        b = torch.randn(size, size, device=dev)
        timing = time_callable(lambda: torch.mm(a, b), dev, policy)
    return size**3 / (timing.median_ms / 1e3)
