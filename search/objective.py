"""The search objective: spec -> metrics, cheapest first (count, then latency, then the proxy).

Objectives: maximise proxy_acc, minimise latency_ms. The latency budget is an Optuna constraint
(`trial.set_constraint`); a candidate over budget is recorded as infeasible with its measured latency
and is never trained (its accuracy objective is 0.0 and its `proxy_acc` attribute is null).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch

from fasternet_space import count, dump_spec, named_label
from fasternet_space.data import Dataset
from fasternet_space.measure import TimingPolicy, measure_spec
from fasternet_space.proxy import ProxyConfig, ProxyDiverged, train_proxy
from fasternet_space.spec import SpecError

from .pruning import CurvePruner
from .space import SearchSpace

CONSTRAINT = "latency_over_budget_ms"

# Search timing: a stable median within +-3% of it, or at most 4 s per candidate.
SEARCH_TIMING = TimingPolicy(warmup=3, min_repeats=7, max_time_s=4.0, rel_ci=0.03)


@dataclass
class ObjectiveConfig:
    device: str = "cpu"
    budget_ms: float = 20.0
    threads: int | None = None  # latency threads (None: the paper's protocol, 1 on CPU)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    seed: int = 0
    lock_dir: Path | None = None  # None: no lock; else one lock file per device, shared by local workers
    timing: TimingPolicy = SEARCH_TIMING


@contextlib.contextmanager
def device_lock(config: ObjectiveConfig, exclusive: bool) -> Iterator[None]:
    """A readers-writer lock per device, shared by the workers on this machine: timing takes it
    exclusively (a latency measured while another worker trains is not a measurement); training takes
    it shared, so trainings overlap with each other but never with a timing."""
    if config.lock_dir is None:
        yield
        return
    config.lock_dir.mkdir(parents=True, exist_ok=True)
    path = config.lock_dir / f"device-{config.device.replace(':', '_')}.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def default_lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / "fasternet-space-locks"


class Objective:
    def __init__(self, space: SearchSpace, dataset: Dataset, config: ObjectiveConfig,
                 pruner: CurvePruner | None = None, stop: threading.Event | None = None):
        self.space = space
        self.dataset = dataset
        self.config = config
        self.pruner = pruner
        self.stop = stop or threading.Event()

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        """Any failure marks this trial failed with its reason stored on it; the study goes on."""
        try:
            return self._evaluate(trial)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted by the user (Ctrl-C); the same command resumes")
            raise
        except Exception as exc:
            if "fail_reason" not in trial.user_attrs:
                first_line = (str(exc).splitlines() or [""])[0][:300]
                trial.set_user_attr("fail_reason", f"{exc.__class__.__name__}: {first_line}")
            raise

    def _evaluate(self, trial: optuna.Trial) -> tuple[float, float]:
        try:
            spec = self.space.suggest(trial, name=trial.user_attrs.get("spec_name"))
        except SpecError as exc:
            trial.set_user_attr("fail_reason", f"invalid spec: {exc}")
            raise optuna.TrialPruned(f"invalid spec: {exc}") from None
        cost = count(spec)
        trial.set_user_attr("spec_yaml", dump_spec(spec))
        trial.set_user_attr("named", trial.user_attrs.get("named") or named_label(spec))
        trial.set_user_attr("params", cost.params)
        trial.set_user_attr("flops", cost.flops)

        with device_lock(self.config, exclusive=True):
            measurement = measure_spec(spec, device=self.config.device, threads=self.config.threads,
                                       policy=self.config.timing)
        latency = measurement.latency_ms
        trial.set_user_attr("latency_ms", latency)
        trial.set_user_attr("latency_ci_ms", list(measurement.latency_ci_ms))
        trial.set_user_attr("throughput", measurement.throughput)
        trial.set_user_attr("flops_per_s", measurement.flops_per_s)
        trial.set_user_attr("protocol", measurement.protocol.to_dict())
        trial.set_constraint(CONSTRAINT, latency - self.config.budget_ms)
        feasible = latency <= self.config.budget_ms
        trial.set_user_attr("feasible", feasible)
        if not feasible:
            trial.set_user_attr("proxy_acc", None)
            return 0.0, latency

        curve: list[float] = []

        def on_epoch(epoch: int, acc: float) -> None:
            curve.append(acc)
            trial.set_user_attr("proxy_curve", list(curve))
            last_epoch = epoch + 1 == self.config.proxy.epochs  # a fully trained candidate is complete, never pruned
            if self.pruner is not None and not last_epoch and self.pruner.should_prune(trial.study, trial.number, curve):
                trial.set_user_attr("fail_reason", f"pruned after epoch {epoch + 1}: top-1 {acc:.3f} below the "
                                                   f"{self.pruner.describe()} of earlier trials")
                raise optuna.TrialPruned(f"epoch {epoch + 1}: top-1 {acc:.3f}")

        try:
            with device_lock(self.config, exclusive=False):
                final = train_proxy(spec, self.dataset, self.config.proxy, seed=self.config.seed, on_epoch=on_epoch,
                            should_stop=self.stop.is_set)
        except ProxyDiverged as exc:
            trial.set_user_attr("fail_reason", f"proxy training diverged: {exc}")
            raise
        except (torch.OutOfMemoryError, MemoryError) as exc:
            trial.set_user_attr("fail_reason", f"out of memory while training: {(str(exc).splitlines() or [''])[0]}")
            raise
        acc = final[-1]
        if not math.isfinite(acc):
            raise ProxyDiverged(f"held-out accuracy is {acc}")
        trial.set_user_attr("proxy_acc", acc)
        return acc, latency
