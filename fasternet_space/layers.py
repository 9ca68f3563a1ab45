"""Training-form FasterNet layers with the official release's module names (checkpoint layout)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .spec import ArchSpec


def make_act(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "gelu":
        return nn.GELU()
    if name == "silu":
        return nn.SiLU(inplace=True)
    if name == "hardswish":
        return nn.Hardswish(inplace=True)
    raise ValueError(f"unknown activation {name!r}")


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each pixel of an NCHW tensor."""

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)  # static shape: traces and exports
        return x.permute(0, 3, 1, 2)


def make_norm(name: str, channels: int) -> nn.Module:
    if name == "bn":
        return nn.BatchNorm2d(channels)
    if name == "ln":
        return ChannelLayerNorm(channels)
    raise ValueError(f"unknown norm {name!r}")


class DropPath(nn.Module):
    """Stochastic depth on the residual branch, per sample."""

    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class PartialConv(nn.Module):
    """PConv: a k x k conv on the first c_p channels; the other channels pass through untouched."""

    def __init__(self, dim: int, partial: int, kernel_size: int, forward_mode: str):
        super().__init__()
        self.dim_conv = partial
        self.dim_untouched = dim - partial
        self.forward_mode = forward_mode
        # Official name, kept for checkpoint compatibility whatever the kernel size.
        self.partial_conv3 = nn.Conv2d(partial, partial, kernel_size, 1, kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.forward_mode == "slicing":  # inference only in the official code: writes into a copy
            x = x.clone()
            x[:, : self.dim_conv] = self.partial_conv3(x[:, : self.dim_conv])
            return x
        x1, x2 = torch.split(x, [self.dim_conv, self.dim_untouched], dim=1)
        return torch.cat((self.partial_conv3(x1), x2), 1)


class FasterNetBlock(nn.Module):
    """PConv -> Conv1x1 (c -> hidden) -> norm -> act -> Conv1x1 (hidden -> c), plus the shortcut."""

    def __init__(self, dim: int, partial: int, hidden: int, spec: ArchSpec, drop_path: float):
        super().__init__()
        self.spatial_mixing = PartialConv(dim, partial, spec.kernel_size, spec.pconv_forward)
        self.mlp = nn.Sequential(
            nn.Conv2d(dim, hidden, 1, bias=False),
            make_norm(spec.norm, hidden),
            make_act(spec.act),
            nn.Conv2d(hidden, dim, 1, bias=False),
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if spec.layer_scale_init_value > 0:
            self.layer_scale = nn.Parameter(spec.layer_scale_init_value * torch.ones(dim))
        else:
            self.layer_scale = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.mlp(self.spatial_mixing(x))
        if self.layer_scale is not None:
            branch = self.layer_scale.view(1, -1, 1, 1) * branch
        return x + self.drop_path(branch)


class BasicStage(nn.Module):
    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class PatchEmbed(nn.Module):
    def __init__(self, spec: ArchSpec):
        super().__init__()
        width = spec.stage_widths[0]
        self.proj = nn.Conv2d(spec.in_chans, width, spec.patch_size, spec.patch_stride, bias=False)
        self.norm = make_norm(spec.norm, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class PatchMerging(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, spec: ArchSpec):
        super().__init__()
        self.reduction = nn.Conv2d(dim_in, dim_out, spec.merge_size, spec.merge_stride, bias=False)
        self.norm = make_norm(spec.norm, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.reduction(x))
