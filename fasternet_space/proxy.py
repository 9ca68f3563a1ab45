"""Short-proxy accuracy: train a candidate briefly on a small dataset and report held-out top-1 (and
held-out cross-entropy) per epoch."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

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
    """The short proxy's recipe (the defaults were compared by benchmarks/proxy_recipes.py)."""

    epochs: int = 1  # passes over the training subset (one pass over 8,000 images ranks most stably: see benchmarks/proxy_recipes.py)
    resolution: int = 32  # square input side; 32 is the least a 4-stage patch-4 FasterNet takes
    batch_size: int = 64
    lr: float = 2e-3  # AdamW peak learning rate of the one-cycle schedule
    weight_decay: float = 0.05
    grad_clip: float | None = 1.0  # largest gradient norm a step applies (None: none; without it 4x longer runs collapse)
    label_smoothing: float = 0.0  # of the cross-entropy loss
    threads: int | None = None  # None: torch's default (all cores)


def proxy_spec(spec: ArchSpec, dataset: Dataset) -> ArchSpec:
    """The candidate with the dataset's channels and classes at the proxy resolution."""
    return spec.replace(in_chans=dataset.channels, num_classes=dataset.classes, input_size=dataset.resolution)


@dataclass(frozen=True)
class HeldOut:
    """A model's score on the held-out split."""

    top1: float  # fraction classified right
    loss: float  # mean cross-entropy, nats per image
    loss_sd: float | None = None  # standard deviation of the per-image cross-entropies (the mean's noise: sd / sqrt(n))


@dataclass(frozen=True)
class ProxyRun:
    """One training's scores after each epoch."""

    top1: list[float]  # held-out top-1
    loss: list[float]  # held-out cross-entropy (eval mode, no label smoothing)
    # the training objective (train mode, label smoothing if on) averaged over the epoch's steps; NaN: no step
    train_loss: list[float] = field(default_factory=list)
    loss_sd: list[float] = field(default_factory=list)  # per-image standard deviation of each held-out loss

    @property
    def final(self) -> HeldOut:
        """The held-out scores after the last epoch."""
        return HeldOut(self.top1[-1], self.loss[-1], self.loss_sd[-1] if self.loss_sd else None)


def held_out(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> HeldOut:
    model.eval()
    device = next(model.parameters()).device
    correct, losses = 0, []
    with torch.inference_mode():
        for start in range(0, len(y), batch_size):
            logits = model(x[start:start + batch_size].to(device)).float().cpu()
            labels = y[start:start + batch_size]
            correct += int((logits.argmax(1) == labels).sum())
            losses.append(F.cross_entropy(logits, labels, reduction="none").double())
    per_image = torch.cat(losses)
    sd = float(per_image.std()) if len(per_image) > 1 else 0.0
    return HeldOut(correct / len(y), float(per_image.mean()), sd)


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """CUDA convolutions and matmuls in true fp32 (torch lets cuDNN use TF32 by default), so that a
    recipe trains the same on a GPU as on a CPU up to summation order; restores the settings after."""
    previous = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = previous


class ThreadChooser:
    """Chooses the training's thread count by measuring its first steps: N threads against one.

    On a machine where another process holds a core, N OpenMP threads wait on the descheduled one at
    every barrier and a training can run many times slower than on one thread (seen here: a 20 s
    training took 4 minutes). Steps 2..5 alternate N and 1 threads (step 1 warms up); the rest of the
    training keeps the faster. Results are deterministic for a seed and a thread count."""

    def __init__(self, threads: int, margin: float = 0.8):
        self.threads = threads
        self.margin = margin  # one thread must be clearly faster to be chosen
        self.times: dict[int, list[float]] = {threads: [], 1: []}
        self.step = 0
        self.chosen: int | None = None

    @property
    def deciding(self) -> bool:
        return self.chosen is None

    def after_step(self, seconds: float) -> int:
        """Records the step just run; returns the thread count for the next one."""
        self.step += 1
        if self.step == 1:
            return self.threads  # warm-up, not counted
        self.times[self.threads if self.step % 2 == 0 else 1].append(seconds)
        if self.step < 5:
            return 1 if self.step % 2 == 0 else self.threads
        many, one = sum(self.times[self.threads]), sum(self.times[1])
        self.chosen = 1 if one < self.margin * many else self.threads
        return self.chosen


def train_proxy(spec: ArchSpec, dataset: Dataset, config: ProxyConfig = ProxyConfig(), seed: int = 0,
                on_epoch: Callable[[int, HeldOut], None] | None = None,
                should_stop: Callable[[], bool] | None = None, device: str = "cpu") -> ProxyRun:
    """Trains from scratch; returns held-out top-1 and cross-entropy (and the mean training loss) after each
    epoch. `on_epoch(epoch, held_out_scores)` may raise to stop; `should_stop()` is polled every step and raises
    KeyboardInterrupt when it answers True (a user's Ctrl-C). `device` is where the training runs (cpu, cuda,
    cuda:N, mps); the initial weights and the batch order are drawn on the CPU, so they are the same for a
    seed on every device."""
    on_cpu = torch.device(device).type == "cpu"
    with cpu_threads(config.threads) as threads, exact_fp32():
        chooser = ThreadChooser(threads) if on_cpu and config.threads is None and threads > 1 else None
        torch.manual_seed(seed)
        model = build_model(proxy_spec(spec, dataset)).to(device)
        train_x, train_y = dataset.train_x.to(device), dataset.train_y.to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps_per_epoch = math.ceil(len(dataset.train_y) / config.batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, pct_start=0.15,
                                                       total_steps=config.epochs * steps_per_epoch)
        generator = torch.Generator().manual_seed(seed)
        run = ProxyRun([], [])
        for epoch in range(config.epochs):
            model.train()
            loss_sum, steps = torch.zeros((), device=device), 0
            order = torch.randperm(len(dataset.train_y), generator=generator)
            for start in range(0, len(order), config.batch_size):
                index = order[start:start + config.batch_size]
                if should_stop is not None and should_stop():
                    raise KeyboardInterrupt("stop requested")
                if len(index) < 2:  # BatchNorm needs more than one sample
                    continue
                started = time.perf_counter()
                if not on_cpu:
                    index = index.to(device)
                loss = F.cross_entropy(model(train_x[index]), train_y[index], label_smoothing=config.label_smoothing)
                if not torch.isfinite(loss):
                    raise ProxyDiverged(f"training loss is {loss.item()} at epoch {epoch + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                schedule.step()
                loss_sum += loss.detach()
                steps += 1
                if chooser is not None and chooser.deciding:
                    torch.set_num_threads(chooser.after_step(time.perf_counter() - started))
            scores = held_out(model, dataset.test_x, dataset.test_y)
            run.top1.append(scores.top1)
            run.loss.append(scores.loss)
            run.loss_sd.append(scores.loss_sd)
            run.train_loss.append(float(loss_sum) / steps if steps else math.nan)
            if on_epoch is not None:
                on_epoch(epoch, scores)
        return run
