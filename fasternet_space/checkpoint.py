"""Loading official-format and timm-format FasterNet checkpoints into the built model (strict)."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not match the model; the message names the keys."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({exc.__class__.__name__})") from None
    if isinstance(data, nn.Module):
        data = data.state_dict()
    for wrapper in ("state_dict", "model", "state_dict_ema", "model_ema"):
        if isinstance(data, dict) and isinstance(data.get(wrapper), dict):
            data = data[wrapper]
            break
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in data.items()}


def is_timm_format(state_dict: dict[str, torch.Tensor]) -> bool:
    return "conv_head.weight" in state_dict or any(".downsample." in k for k in state_dict)


def timm_to_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's fasternet keys -> the official release's keys (the inverse of timm's renaming)."""
    out = {}
    for key, value in state_dict.items():
        key = re.sub(r"^stages\.(\d+)\.downsample\.", lambda m: f"stages.{2 * int(m[1]) - 1}.", key)
        key = re.sub(r"^stages\.(\d+)\.blocks\.", lambda m: f"stages.{2 * int(m[1])}.blocks.", key)
        key = key.replace("conv_head.", "avgpool_pre_head.1.", 1) if key.startswith("conv_head.") else key
        key = "head." + key.removeprefix("classifier.") if key.startswith("classifier.") else key
        out[key] = value
    return out


def load_checkpoint(model: nn.Module, path: str | Path) -> str:
    """Loads a checkpoint strictly; returns its format ('official' or 'timm')."""
    state = read_state_dict(path)
    fmt = "timm" if is_timm_format(state) else "official"
    if fmt == "timm":
        state = timm_to_official(state)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
                   for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if keys:
            shown = ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise CheckpointError(f"{path}: {fmt}-format checkpoint does not match the spec; " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    return fmt


def check_model_path(path: str | Path) -> Path:
    """A path for `save_model`: it must end in .pt."""
    path = Path(path)
    if path.suffix != ".pt":
        raise CheckpointError(f"{path}: allowed: a path ending in .pt")
    return path


def save_model(model: nn.Module, path: str | Path) -> Path:
    """Writes a built FasterNet as {"spec": its spec's fields, "state_dict": official layout} to a .pt file."""
    path = check_model_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"spec": model.spec.to_dict(), "state_dict": model.state_dict()}, path)
    return path


def load_model(path: str | Path) -> nn.Module:
    """Reads a file written by `save_model`: the model rebuilt from its spec, weights loaded strictly."""
    from .model import build_model
    from .spec import ArchSpec, SpecError

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        spec = ArchSpec.from_dict(data["spec"])
    except (SpecError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a model saved by save_model ({exc.__class__.__name__})") from None
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({exc.__class__.__name__})") from None
    model = build_model(spec)
    load_checkpoint(model, path)
    return model
