"""Short-proxy accuracy: train a candidate briefly on a small dataset and report held-out top-1 per epoch."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data import Dataset
from .measure import cpu_threads
from .model import build_model
from .spec import ArchSpec


class ProxyDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class ProxyConfig:
    epochs: int = 5
    resolution: int = 32
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    threads: int | None = None  # None: torch's default (all cores)


def proxy_spec(spec: ArchSpec, dataset: Dataset) -> ArchSpec:
    """The candidate with the dataset's channels and classes at the proxy resolution."""
    return spec.replace(in_chans=dataset.channels, num_classes=dataset.classes, input_size=dataset.resolution)


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(y), batch_size):
            logits = model(x[start:start + batch_size])
            correct += int((logits.argmax(1) == y[start:start + batch_size]).sum())
    return correct / len(y)


def train_proxy(spec: ArchSpec, dataset: Dataset, config: ProxyConfig = ProxyConfig(), seed: int = 0,
                on_epoch: Callable[[int, float], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> list[float]:
    """Trains from scratch; returns held-out top-1 after each epoch. `on_epoch(epoch, acc)` may raise to stop;
    `should_stop()` is polled every step and raises KeyboardInterrupt when it answers True (a user's Ctrl-C)."""
    with cpu_threads(config.threads):
        torch.manual_seed(seed)
        model = build_model(proxy_spec(spec, dataset))
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps_per_epoch = math.ceil(len(dataset.train_y) / config.batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, pct_start=0.15,
                                                       total_steps=config.epochs * steps_per_epoch)
        generator = torch.Generator().manual_seed(seed)
        curve = []
        for epoch in range(config.epochs):
            model.train()
            order = torch.randperm(len(dataset.train_y), generator=generator)
            for start in range(0, len(order), config.batch_size):
                index = order[start:start + config.batch_size]
                if should_stop is not None and should_stop():
                    raise KeyboardInterrupt("stop requested")
                if len(index) < 2:  # BatchNorm needs more than one sample
                    continue
                loss = F.cross_entropy(model(dataset.train_x[index]), dataset.train_y[index])
                if not torch.isfinite(loss):
                    raise ProxyDiverged(f"training loss is {loss.item()} at epoch {epoch + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
            acc = evaluate(model, dataset.test_x, dataset.test_y)
            curve.append(acc)
            if on_epoch is not None:
                on_epoch(epoch, acc)
        return curve
