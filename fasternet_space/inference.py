"""The inference form: BatchNorm and layer scale folded into the convolutions, a fast forward, same outputs.

`for_inference(model)` reads a training-form `FasterNet` (left untouched) and returns a
`FastFasterNet` (fast_layers.py) holding the folded weights once. Its forward mode:

- "onednn" (the default on CPU, float32, when this torch build has the oneDNN fused ops): channels-last
  oneDNN convolutions with the activation and the shortcut fused in; about twice the multiply-add rate
  of the MKL GEMM behind F.conv2d at batch 1 on the CPUs measured (benchmarks/inference_speed.py).
- "portable" (the default elsewhere, e.g. CUDA): plain torch ops over the folded weights; also what
  torch.jit.trace, torch.export, torch.compile and ONNX export capture in either mode.
"""

from __future__ import annotations

import copy
import functools
import statistics
import time

import torch
from torch import nn

from .fast_layers import FastBlock, FastFasterNet, FoldedConv, onednn_available
from .layers import BasicStage, ChannelLayerNorm, FasterNetBlock, PatchMerging

MODES = ("onednn", "portable")


def for_inference(model: nn.Module, device: torch.device | str | None = None, mode: str | None = None) -> nn.Module:
    """The inference form of a training-form FasterNet: same outputs as `model.eval()`, faster.

    device: where the inference form lives (default: the model's device). mode: "onednn", "portable"
    or None for the default: on CPU in float32, where oneDNN runs and agrees with the portable forward,
    whichever of the two measured faster on this CPU (`fastest_cpu_mode`); elsewhere "portable".
    The result keeps `.spec`, shares no storage with `model` and accepts any batch size.
    """
    if mode is not None and mode not in MODES:
        raise ValueError(f"unknown inference mode {mode!r}; allowed: {', '.join(MODES)} or None")
    first = next(model.parameters())
    device = torch.device(device) if device is not None else first.device
    if mode == "onednn" and (device.type != "cpu" or not onednn_available()):
        raise ValueError(f"mode 'onednn' needs a CPU device and a torch build with oneDNN (got {device})")
    with torch.no_grad():
        fast = _build(model, device)
    if mode is None:
        use_cpu_choice = device.type == "cpu" and first.dtype == torch.float32 and _onednn_works(fast)
        mode = fastest_cpu_mode(torch.get_num_threads()) if use_cpu_choice else "portable"
    fast.mode = mode
    return fast.eval()


@functools.cache
def fastest_cpu_mode(threads: int, repeats: int = 5) -> str:
    """The faster CPU forward on this machine at this thread count, timed once per process.

    FasterNet-T0 at 224x224, batch 1, both forwards interleaved after a warm-up; medians compared.
    (Measured on an AMD EPYC with AVX-512: oneDNN about 1.8x the portable forward; another CPU may differ.)"""
    from .model import build_model
    from .named import NAMED_SPECS

    with torch.no_grad():
        fast = _build(build_model(NAMED_SPECS["t0"]).eval(), torch.device("cpu"))
    if not _onednn_works(fast):
        return "portable"
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {"onednn": [], "portable": []}
    forwards = {"onednn": fast.forward_onednn, "portable": fast.forward_portable}
    with torch.inference_mode():
        for _ in range(2):
            for forward in forwards.values():
                forward(x)
        for _ in range(repeats):
            for name, forward in forwards.items():
                start = time.perf_counter()
                forward(x)
                times[name].append(time.perf_counter() - start)
    fast.clear_packed()
    return min(times, key=lambda name: statistics.median(times[name]))


def _onednn_works(fast: FastFasterNet) -> bool:
    """Runs both forwards once on a small input: the oneDNN path must run and agree with the portable one."""
    if not onednn_available():
        return False
    spec = fast.spec
    x = torch.randn(2, spec.in_chans, spec.min_input_size(), spec.min_input_size(),
                    generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            expected = fast.forward_portable(x)
            got = fast.forward_onednn(x)
    except RuntimeError:
        return False
    finally:
        fast.clear_packed()
    scale = expected.abs().max().item() or 1.0
    return bool(torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * scale))


def _build(model: nn.Module, device: torch.device) -> FastFasterNet:
    spec = model.spec
    stem = _folded_conv(model.patch_embed.proj, model.patch_embed.norm, device)
    stages: list[list[FastBlock]] = []
    merges: list[FoldedConv] = []
    for module in model.stages:
        if isinstance(module, BasicStage):
            stages.append([_fast_block(block, spec.act, device) for block in module.blocks])
        elif isinstance(module, PatchMerging):
            merges.append(_folded_conv(module.reduction, module.norm, device))
        else:
            raise TypeError(f"unexpected stage module {type(module).__name__}")
    feature = model.avgpool_pre_head[1].weight
    head = model.head
    head_bias = head.bias if head.bias is not None else torch.zeros_like(head.weight[:, 0])
    return FastFasterNet(spec, stem, stages, merges, _own(feature.flatten(1), device), _own(head.weight, device),
                         _own(head_bias, device), mode="portable")


def _fold(conv: nn.Conv2d, norm: nn.Module, device: torch.device
          ) -> tuple[torch.Tensor, torch.Tensor | None, ChannelLayerNorm | None]:
    """Fresh weight and bias on device of conv followed by norm, the norm folded when it is a BatchNorm."""
    if isinstance(norm, nn.BatchNorm2d):
        if norm.running_mean is None or norm.running_var is None:
            raise ValueError("cannot fold a BatchNorm2d without running statistics")
        scale = torch.rsqrt(norm.running_var.double() + norm.eps)  # per-channel terms in float64
        if norm.weight is not None:
            scale = scale * norm.weight.double()
        shift = -norm.running_mean.double() * scale
        if norm.bias is not None:
            shift = shift + norm.bias.double()
        if conv.bias is not None:
            shift = shift + conv.bias.double() * scale
        dtype = conv.weight.dtype
        weight = conv.weight.detach().to(device) * scale.to(device, dtype).view(-1, 1, 1, 1)
        return weight, shift.to(device, dtype), None
    if isinstance(norm, ChannelLayerNorm | nn.Identity):
        ln = norm if isinstance(norm, ChannelLayerNorm) else None
        return _own(conv.weight, device), _own(conv.bias, device), ln
    raise TypeError(f"cannot fold norm {type(norm).__name__}")


def _folded_conv(conv: nn.Conv2d, norm: nn.Module, device: torch.device) -> FoldedConv:
    if conv.stride[0] != conv.stride[1] or conv.padding[0] != conv.padding[1] or conv.groups != 1:
        raise ValueError("only square strides and paddings and ungrouped convolutions are supported")
    weight, bias, ln = _fold(conv, norm, device)
    return FoldedConv(weight, bias, conv.stride[0], conv.padding[0], _ln_to(ln, device))


def _fast_block(block: FasterNetBlock, act: str, device: torch.device) -> FastBlock:
    conv1, norm, _, conv2 = block.mlp
    if conv2.bias is not None or block.spatial_mixing.partial_conv3.bias is not None:
        raise ValueError("the PConv and the second pointwise convolution have no bias in FasterNet")
    w1, b1, ln = _fold(conv1, norm, device)
    if block.layer_scale is not None:
        w2 = conv2.weight.detach().to(device) * block.layer_scale.detach().to(device).view(-1, 1, 1, 1)
    else:
        w2 = _own(conv2.weight, device)
    return FastBlock(_own(block.spatial_mixing.partial_conv3.weight, device), w1, b1, w2, act, _ln_to(ln, device))


def _own(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """A fresh copy of t on device (the inference form never shares storage with its source)."""
    return t.detach().to(device, copy=True) if t is not None else None


def _ln_to(norm: ChannelLayerNorm | None, device: torch.device) -> ChannelLayerNorm | None:
    return copy.deepcopy(norm).to(device) if norm is not None else None
