"""An independent, functional reading of the paper's Fig. 4 straight from an official-layout state dict.

It shares no code with fasternet_space.layers: if the module tree or the key layout drifted from the
official release, the two would disagree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _bn(x, sd, prefix):
    return F.batch_norm(x, sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"],
                        sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], False, 0.0, 1e-5)


_ACTS = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "hardswish": F.hardswish}


def reference_forward(sd: dict[str, torch.Tensor], depths, act: str, x: torch.Tensor,
                      patch_stride=4, merge_stride=2) -> torch.Tensor:
    act_fn = _ACTS[act]
    x = _bn(F.conv2d(x, sd["patch_embed.proj.weight"], stride=patch_stride), sd, "patch_embed.norm")
    for i, depth in enumerate(depths):
        if i > 0:
            k = 2 * i - 1
            x = _bn(F.conv2d(x, sd[f"stages.{k}.reduction.weight"], stride=merge_stride), sd, f"stages.{k}.norm")
        for j in range(depth):
            p = f"stages.{2 * i}.blocks.{j}"
            w = sd[f"{p}.spatial_mixing.partial_conv3.weight"]
            c_p = w.shape[0]
            mixed = torch.cat([F.conv2d(x[:, :c_p], w, padding=w.shape[-1] // 2), x[:, c_p:]], 1)
            h = act_fn(_bn(F.conv2d(mixed, sd[f"{p}.mlp.0.weight"]), sd, f"{p}.mlp.1"))
            x = x + F.conv2d(h, sd[f"{p}.mlp.3.weight"])
    x = act_fn(F.conv2d(x.mean((2, 3), keepdim=True), sd["avgpool_pre_head.1.weight"])).flatten(1)
    return F.linear(x, sd["head.weight"], sd["head.bias"])
