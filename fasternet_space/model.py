"""build_model(spec): the training-form FasterNet with the official release's state-dict layout."""

from __future__ import annotations

import torch
from torch import nn

from .layers import BasicStage, FasterNetBlock, PatchEmbed, PatchMerging, make_act
from .spec import ArchSpec


class FasterNet(nn.Module):
    def __init__(self, spec: ArchSpec):
        super().__init__()
        self.spec = spec
        widths = spec.stage_widths
        self.patch_embed = PatchEmbed(spec)
        total = sum(spec.depths)
        drop_rates = torch.linspace(0, spec.drop_path_rate, total).tolist() if total > 1 else [0.0] * total
        stages: list[nn.Module] = []
        start = 0
        for i, depth in enumerate(spec.depths):
            blocks = [
                FasterNetBlock(widths[i], spec.partial_channels[i], spec.hidden_widths[i], spec, drop_rates[start + j])
                for j in range(depth)
            ]
            start += depth
            stages.append(BasicStage(blocks))
            if i < spec.num_stages - 1:
                stages.append(PatchMerging(widths[i], widths[i + 1], spec))
        self.stages = nn.Sequential(*stages)
        self.avgpool_pre_head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(widths[-1], spec.feature_dim, 1, bias=False),
            make_act(spec.act),
        )
        self.head = nn.Linear(spec.feature_dim, spec.num_classes)
        self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.patch_embed(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool_pre_head(self.forward_features(x))
        return self.head(torch.flatten(x, 1))


def _init_weights(module: nn.Module) -> None:
    # The official initialisation: truncated normal (std 0.02) for convs and linears, zero biases.
    if isinstance(module, nn.Linear | nn.Conv2d):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_model(spec: ArchSpec) -> FasterNet:
    return FasterNet(spec)
