"""Inference-form FasterNet layers: BatchNorm and layer scale folded, two forwards over the same weights.

Every layer stores its folded weights once, as ordinary dense tensors (OIHW convolution weights), so
that the module moves between devices, saves, traces and exports like any other. Two forwards use
them:

- "portable": plain torch ops (conv2d, cat, add) in whatever memory format the input has. Runs on any
  device and dtype and is what torch.jit.trace, torch.export, torch.compile and ONNX export see.
- "onednn": CPU float32 only. Channels-last activations and oneDNN convolutions
  (`torch.ops.mkldnn._convolution_pointwise`) with the activation fused into the first pointwise
  convolution and the shortcut accumulated in place by the second one, over weights reordered once
  into oneDNN's blocked layout. Those reordered weights are a cache, not state: they are rebuilt when
  a weight changes (its version counter moves), never saved, copied or exported.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ChannelLayerNorm
from .spec import ArchSpec

# oneDNN post-op names (attr, algorithm) for the spec's activations.
ONEDNN_ACTS = {"relu": ("relu", ""), "gelu": ("gelu", "none"), "silu": ("swish", ""), "hardswish": ("hardswish", "")}


def apply_act(x: torch.Tensor, act: str) -> torch.Tensor:
    """The activation, in place where torch has an in-place form and no gradient needs the input."""
    inplace = not (x.requires_grad and torch.is_grad_enabled())
    if act == "relu":
        return F.relu(x, inplace=inplace)
    if act == "gelu":
        return F.gelu(x)
    if act == "silu":
        return F.silu(x, inplace=inplace)
    if act == "hardswish":
        return F.hardswish(x, inplace=inplace)
    raise ValueError(f"unknown activation {act!r}")


def onednn_available() -> bool:
    """True when this torch build has the oneDNN fused convolution ops the CPU fast path needs."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        torch.ops.mkldnn._convolution_pointwise.default  # noqa: B018
        torch.ops.mkldnn._convolution_pointwise_.binary  # noqa: B018
        torch._C._nn.mkldnn_reorder_conv2d_weight  # noqa: B018
    except (AttributeError, RuntimeError):
        return False
    return True


def in_graph_capture() -> bool:
    """True while tracing, scripting, exporting or compiling: only the portable forward is captured."""
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return True
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling():
        return True
    onnx = getattr(torch, "onnx", None)
    return bool(onnx is not None and hasattr(onnx, "is_in_onnx_export") and onnx.is_in_onnx_export())


class _PackedCache:
    """oneDNN-reordered copies of dense weights, per input shape (oneDNN picks the blocked layout for
    the shape); the few most recent shapes are kept. Dropped, not copied, by deepcopy and pickling."""

    max_shapes = 2

    def __init__(self) -> None:
        self.entries: dict[tuple, torch.Tensor] = {}

    def get(self, name: str, weight: torch.Tensor, padding: int, stride: int, input_shape: list[int]) -> torch.Tensor:
        key = (name, tuple(input_shape), weight.data_ptr(), weight._version)
        packed = self.entries.get(key)
        if packed is not None:
            return packed
        stale = [k for k in self.entries if k[0] == name]
        for k in stale[: max(0, len(stale) - self.max_shapes + 1)]:
            del self.entries[k]
        packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
            weight.detach().contiguous().to_mkldnn(), [padding, padding], [stride, stride], [1, 1], 1, input_shape)
        self.entries[key] = packed
        return packed

    def clear(self) -> None:
        self.entries.clear()

    def __deepcopy__(self, memo: dict) -> _PackedCache:
        return _PackedCache()

    def __getstate__(self) -> dict:
        return {"entries": {}}


def _frozen(t: torch.Tensor) -> nn.Parameter:
    """A constant parameter over t (callers pass tensors they own: nothing is copied here)."""
    return nn.Parameter(t.detach().contiguous(), requires_grad=False)


def _frozen_norm(norm: ChannelLayerNorm | None) -> ChannelLayerNorm | None:
    if norm is None:
        return None
    norm = copy.deepcopy(norm)
    for p in norm.parameters():
        p.requires_grad_(False)
    return norm


class FoldedConv(nn.Module):
    """Conv (BatchNorm folded into weight and bias) optionally followed by an unfoldable channel LayerNorm."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, padding: int,
                 norm: ChannelLayerNorm | None = None):
        super().__init__()
        self.weight = _frozen(weight)
        self.bias = _frozen(bias) if bias is not None else None
        self.stride = stride
        self.padding = padding
        self.norm = _frozen_norm(norm)
        self._packed = _PackedCache()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding)
        return self.norm(x) if self.norm is not None else x

    def forward_onednn(self, x: torch.Tensor) -> torch.Tensor:
        w = self._packed.get("w", self.weight, self.padding, self.stride, list(x.shape))
        p, s = [self.padding, self.padding], [self.stride, self.stride]
        x = torch.ops.mkldnn._convolution_pointwise.default(x, w, self.bias, p, s, [1, 1], 1, "none", [], "")
        return self.norm(x) if self.norm is not None else x


class FastBlock(nn.Module):
    """PConv -> Conv1x1 (+ folded BN) -> act -> Conv1x1 (layer scale folded) + shortcut."""

    def __init__(self, pconv: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor | None, w2: torch.Tensor,
                 act: str, norm: ChannelLayerNorm | None = None):
        super().__init__()
        self.pconv_weight = _frozen(pconv)
        self.w1 = _frozen(w1)
        self.b1 = _frozen(b1) if b1 is not None else None
        self.w2 = _frozen(w2)
        self.norm = _frozen_norm(norm)
        self.act = act
        self.dim = w2.shape[0]
        self.dim_conv = pconv.shape[0]
        self.dim_untouched = self.dim - self.dim_conv
        self.pad = pconv.shape[-1] // 2
        self._packed = _PackedCache()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.split(x, [self.dim_conv, self.dim_untouched], dim=1)
        z = torch.cat((F.conv2d(x1, self.pconv_weight, None, 1, self.pad), x2), 1)
        h = F.conv2d(z, self.w1, self.b1)
        if self.norm is not None:
            h = self.norm(h)
        return F.conv2d(apply_act(h, self.act), self.w2).add_(x)

    def forward_onednn(self, x: torch.Tensor) -> torch.Tensor:
        """x: channels-last, owned by the caller's forward (the shortcut is accumulated into it)."""
        shape = list(x.shape)
        conv = torch.ops.mkldnn._convolution_pointwise.default
        cache = self._packed
        cp = self.dim_conv
        shape_p = [shape[0], cp, shape[2], shape[3]]
        shape_h = [shape[0], self.w1.shape[0], shape[2], shape[3]]
        wp = cache.get("pconv", self.pconv_weight, self.pad, 1, shape_p)
        w1 = cache.get("w1", self.w1, 0, 1, shape)
        w2 = cache.get("w2", self.w2, 0, 1, shape_h)
        pad = [self.pad, self.pad]
        y1 = conv(x[:, :cp], wp, None, pad, [1, 1], [1, 1], 1, "none", [], "")
        z = torch.cat((y1, x[:, cp:]), 1) if self.dim_untouched else y1
        if self.norm is None:
            attr, algorithm = ONEDNN_ACTS[self.act]
            h = conv(z, w1, self.b1, [0, 0], [1, 1], [1, 1], 1, attr, [], algorithm)
        else:
            h = conv(z, w1, self.b1, [0, 0], [1, 1], [1, 1], 1, "none", [], "")
            h = apply_act(self.norm(h), self.act)
        return torch.ops.mkldnn._convolution_pointwise_.binary(
            x, h, w2, None, [0, 0], [1, 1], [1, 1], 1, "add", None, None, [], None)


class FastFasterNet(nn.Module):
    """The inference form of one spec: stem, stages of FastBlock with merging convs between, head."""

    def __init__(self, spec: ArchSpec, stem: FoldedConv, stages: list[list[FastBlock]], merges: list[FoldedConv],
                 feature_weight: torch.Tensor, head_weight: torch.Tensor, head_bias: torch.Tensor, mode: str):
        super().__init__()
        self.spec = spec
        self.act = spec.act
        self.mode = mode
        self.stem = stem
        self.stages = nn.ModuleList(nn.ModuleList(blocks) for blocks in stages)
        self.merges = nn.ModuleList(merges)
        self.feature_weight = _frozen(feature_weight)
        self.head_weight = _frozen(head_weight)
        self.head_bias = _frozen(head_bias)

    def clear_packed(self) -> None:
        """Drops the oneDNN-reordered weights (rebuilt on the next oneDNN forward)."""
        for module in self.modules():
            cache = getattr(module, "_packed", None)
            if isinstance(cache, _PackedCache):
                cache.clear()

    def uses_onednn(self, x: torch.Tensor) -> bool:
        """Whether forward(x) takes the oneDNN path (CPU float32, no autograd, not being captured)."""
        return (self.mode == "onednn" and x.device.type == "cpu" and x.dtype == torch.float32
                and not (torch.is_grad_enabled() and x.requires_grad) and not in_graph_capture())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.uses_onednn(x):
            return self.forward_onednn(x)
        return self.forward_portable(x)

    def forward_portable(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i, blocks in enumerate(self.stages):
            if i > 0:
                x = self.merges[i - 1](x)
            for block in blocks:
                x = block(x)
        return self.head(x)

    def forward_onednn(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem.forward_onednn(x)
        for i, blocks in enumerate(self.stages):
            if i > 0:
                x = self.merges[i - 1].forward_onednn(x)
            for block in blocks:
                x = block.forward_onednn(x)
        return self.head(x)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        x = apply_act(F.linear(x.mean((2, 3)), self.feature_weight), self.act)
        return F.linear(x, self.head_weight, self.head_bias)
