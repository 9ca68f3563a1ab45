"""Exact, analytic cost of a spec: parameters, FLOPs (multiply-adds) and memory access, per layer.

No forward pass: everything follows from the spec. FLOPs follow fvcore's rules on the eval-mode
training form (conv and linear: multiply-adds; BatchNorm: 2 per element; channel LayerNorm: 5 per
element; global average pool: 1 per input element; activations, adds and copies: 0), so that
`count(spec).flops` equals fvcore's count of `build_model(spec)` exactly.

Memory access (paper eq. 3 and 5) is counted in elements for the deployed form, where BatchNorm is
folded into the preceding convolution: a conv reads its input and weights and writes its output; a
PConv only touches its c_p channels (h * w * 2 * c_p + k^2 * c_p^2); LayerNorm, the pool and the
linear head read and write their tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

from .spec import ArchSpec


@dataclass(frozen=True)
class LayerCost:
    """One layer's params, FLOPs (multiply-adds) and memory access, under its official module name."""

    name: str  # module path in the official layout
    stage: str  # "stem", "stage1".."stageN", "head"
    kind: str
    params: int
    flops: int
    memory_access: int


@dataclass(frozen=True)
class StageCost:
    stage: str
    width: int | None
    depth: int | None
    partial: int | None
    params: int
    flops: int
    memory_access: int


@dataclass(frozen=True)
class CostReport:
    """The per-layer costs of one spec, with totals and per-stage sums."""

    layers: tuple[LayerCost, ...]

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def flops(self) -> int:
        return sum(layer.flops for layer in self.layers)

    @property
    def memory_access(self) -> int:
        return sum(layer.memory_access for layer in self.layers)

    def by_stage(self, spec: ArchSpec) -> list[StageCost]:
        """Stem and merging layers are counted with the stage whose input they produce."""
        groups: dict[str, list[LayerCost]] = {}
        for layer in self.layers:
            key = "stage1" if layer.stage == "stem" else layer.stage
            groups.setdefault(key, []).append(layer)
        rows = []
        for key, layers in groups.items():
            i = int(key.removeprefix("stage")) - 1 if key.startswith("stage") else None
            rows.append(StageCost(
                stage=key,
                width=spec.stage_widths[i] if i is not None else None,
                depth=spec.depths[i] if i is not None else None,
                partial=spec.partial_channels[i] if i is not None else None,
                params=sum(x.params for x in layers),
                flops=sum(x.flops for x in layers),
                memory_access=sum(x.memory_access for x in layers),
            ))
        return rows


def _conv(name: str, stage: str, c_in: int, c_out: int, kernel: int, size_in: int, size_out: int,
          kind: str = "conv") -> LayerCost:
    params = c_in * c_out * kernel * kernel
    memory = c_in * size_in * size_in + c_out * size_out * size_out + params
    return LayerCost(name, stage, kind, params, params * size_out * size_out, memory)


def _norm(name: str, stage: str, spec: ArchSpec, channels: int, size: int) -> LayerCost:
    elements = channels * size * size
    if spec.norm == "bn":  # folded away in the deployed form, so no memory access of its own
        return LayerCost(name, stage, "batchnorm", 2 * channels, 2 * elements, 0)
    return LayerCost(name, stage, "layernorm", 2 * channels, 5 * elements, 2 * elements + 2 * channels)


def count(spec: ArchSpec) -> CostReport:
    """Exact params, FLOPs (multiply-adds) and memory access of `spec` per layer, counted analytically."""
    widths, sizes = spec.stage_widths, spec.feature_sizes
    layers: list[LayerCost] = []
    layers.append(_conv("patch_embed.proj", "stem", spec.in_chans, widths[0], spec.patch_size,
                        spec.input_size, sizes[0]))
    layers.append(_norm("patch_embed.norm", "stem", spec, widths[0], sizes[0]))
    k = spec.kernel_size
    for i, depth in enumerate(spec.depths):
        stage = f"stage{i + 1}"
        c, c_p, hidden, size = widths[i], spec.partial_channels[i], spec.hidden_widths[i], sizes[i]
        if i > 0:
            prefix = f"stages.{2 * i - 1}"
            layers.append(_conv(f"{prefix}.reduction", stage, widths[i - 1], c, spec.merge_size,
                                sizes[i - 1], size))
            layers.append(_norm(f"{prefix}.norm", stage, spec, c, size))
        for j in range(depth):
            prefix = f"stages.{2 * i}.blocks.{j}"
            pconv_params = c_p * c_p * k * k
            layers.append(LayerCost(f"{prefix}.spatial_mixing.partial_conv3", stage, "pconv", pconv_params,
                                    pconv_params * size * size, 2 * c_p * size * size + pconv_params))
            layers.append(_conv(f"{prefix}.mlp.0", stage, c, hidden, 1, size, size))
            layers.append(_norm(f"{prefix}.mlp.1", stage, spec, hidden, size))
            layers.append(_conv(f"{prefix}.mlp.3", stage, hidden, c, 1, size, size))
            if spec.layer_scale_init_value > 0:
                layers.append(LayerCost(f"{prefix}.layer_scale", stage, "layer_scale", c, 0, 0))
    last, size = widths[-1], sizes[-1]
    layers.append(LayerCost("avgpool_pre_head.0", "head", "avgpool", 0, last * size * size,
                            last * size * size + last))
    layers.append(_conv("avgpool_pre_head.1", "head", last, spec.feature_dim, 1, 1, 1))
    head_params = spec.feature_dim * spec.num_classes + spec.num_classes
    layers.append(LayerCost("head", "head", "linear", head_params, spec.feature_dim * spec.num_classes,
                            spec.feature_dim + spec.num_classes + head_params))
    return CostReport(tuple(layers))


def fvcore_count(model, input_size: int, in_chans: int = 3) -> tuple[int, int]:
    """(params, flops) of a built model as fvcore counts them, eval mode, batch 1."""
    import torch
    from fvcore.nn import FlopCountAnalysis, parameter_count

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = FlopCountAnalysis(model, torch.zeros(1, in_chans, input_size, input_size))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            flops = int(analysis.total())
    finally:
        model.train(was_training)
    return int(parameter_count(model)[""]), flops
