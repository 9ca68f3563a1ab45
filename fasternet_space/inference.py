"""The inference form: eval mode, BatchNorm folded into the adjacent convolutions, same outputs."""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Folds every Conv2d directly followed by a BatchNorm2d (in a Sequential or a conv/norm pair) in place."""
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for (name_a, a), (name_b, b) in zip(children, children[1:], strict=False):
                if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                    setattr(module, name_a, fuse_conv_bn_eval(a, b))
                    setattr(module, name_b, nn.Identity())
        for conv_name, norm_name in (("proj", "norm"), ("reduction", "norm")):
            conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, norm))
                setattr(module, norm_name, nn.Identity())
    return model


def for_inference(model: nn.Module) -> nn.Module:
    """A copy of the model in eval mode with BatchNorm folded; the original is left untouched."""
    folded = copy.deepcopy(model).eval()
    for p in folded.parameters():
        p.requires_grad_(False)
    return fold_batchnorm(folded)
