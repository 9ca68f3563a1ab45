"""build_model(spec): the training-form FasterNet with the official release's state-dict layout."""

from __future__ import annotations

import torch
from torch import nn

from .layers import BasicStage, FasterNetBlock, PatchEmbed, PatchMerging, make_act
from .spec import ArchSpec


class FasterNet(nn.Module):
    """The training-form FasterNet of one ArchSpec, with the official release's state-dict layout.

    forward(x) = forward_head(forward_features(x)), as in timm: (B, in_chans, H, W) -> (B, num_classes).
    """

    def __init__(self, spec: ArchSpec):
        super().__init__()
        self.spec = spec
        #: Width of the pre-logits features (forward_head(..., pre_logits=True)): the spec's feature_dim.
        self.num_features = spec.feature_dim
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
        """The last stage's feature map: (B, stage_widths[-1], h, w), before pooling."""
        return self.stages(self.patch_embed(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, 1x1 conv to feature_dim and activation, then the classifier: (B, num_classes).

        pre_logits=True stops before the classifier and returns the (B, feature_dim) features."""
        x = torch.flatten(self.avgpool_pre_head(x), 1)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights(module: nn.Module) -> None:
    # The official initialisation: truncated normal (std 0.02) for convs and linears, zero biases.
    if isinstance(module, nn.Linear | nn.Conv2d):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_model(spec: ArchSpec) -> FasterNet:
    """A freshly initialised training-form FasterNet for `spec` (official init and state-dict keys)."""
    return FasterNet(spec)
