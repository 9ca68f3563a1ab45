"""One configuration of a search: every setting with its default and what it means (pycls style).

The CLI fills a `SearchConfig` from its flags; the study, the objective and the extra worker processes
all read this one object (workers receive it whole, as JSON, not as rebuilt command lines).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from fasternet_space.measure import TimingPolicy
from fasternet_space.named import NAMED_SPECS
from fasternet_space.paired import PairPolicy
from fasternet_space.proxy import ProxyConfig
from fasternet_space.relative import DEFAULT_REFERENCE, relative_timing_applies
from fasternet_space.runtimes import RUNTIMES
from search.errors import SearchError
from search.records.front import DEFAULT_PICK
from search.records.study_attrs import PICK_RULES, RANK_SCORES
from search.run.pruning import PRUNERS
from search.run.storage import DEFAULT_STORAGE

SAMPLERS = ("tpe", "nsga2", "random", "gp", "grid")
ZERO_COST_CHOICES = ("synflow", "naswot", "grad_norm", "snip", "params", "flops", "vote")
LATENCY_MODES = ("measured", "predicted", "auto")

# Search timing: a stable median within +-3% of it, or at most 4 s per candidate.
SEARCH_TIMING = TimingPolicy(warmup=3, min_repeats=7, max_time_s=4.0, rel_ci=0.03)
# Paired search timing (CPU): the median ratio to the reference within +-3%, or at most 4 s per candidate;
# it stops sooner once the ratio's interval lies wholly over or under the budget.
SEARCH_PAIRS = PairPolicy(warmup=3, min_pairs=5, max_time_s=4.0, rel_ci=0.03)


def default_space() -> str:
    """The shipped default space (it contains all six named configs)."""
    import spaces

    return str(spaces.path("fasternet"))


@dataclass(frozen=True)
class SearchConfig:
    """Every setting of a search; `validate()` checks them, `setting()` is what a resume must match."""

    # --- the question
    budget_ms: float | None = 20.0  # hard latency limit, milliseconds (an Optuna constraint)
    budget_ratio: float | None = None  # or in units of the reference's latency (1.2: 1.2xT0); then budget_ms
    # is that ratio times the study's calibration of the reference, and the verdicts need no calibration
    device: str = "cpu"  # where latency is measured: cpu, cuda, cuda:N, mps
    space: str = field(default_factory=default_space)  # the space YAML file
    # --- latency protocol
    threads: int | None = None  # CPU threads while timing (None: the paper's protocol, 1 on CPU)
    timing: TimingPolicy = SEARCH_TIMING  # repeats and confidence bound of each latency timed on its own (GPU)
    latency_reference: str | None = DEFAULT_REFERENCE  # CPU: time candidates in pairs with this named config
    pairing: PairPolicy = SEARCH_PAIRS  # pairs and confidence bound of each ratio to the reference
    recalibrate: bool = False  # time the reference's latency anew instead of the study's stored calibration
    calibration_s: float | None = None  # seconds of reference calls per calibration (None: paired.CALIBRATION_WINDOW_S)
    runtime: str = "torch"  # what runs each candidate while timing: torch, torch-compile, onnxruntime or openvino
    latency: str = "measured"  # measured, predicted (from latency_table, nothing timed) or auto (screen, then time)
    latency_table: str | None = None  # a table from `cli.py profile` (needed by predicted and auto)
    allow_other_device: bool = False  # use a table profiled on another device or runtime than this search's
    # --- short-proxy accuracy
    data: str = "fashion"  # fashion, digits, fashion-mnist:DIR, mnist:DIR, cifar10:DIR, imagefolder:DIR
    proxy: ProxyConfig = field(default_factory=ProxyConfig)  # epochs, resolution, batch, learning rate
    max_train_samples: int | None = 8000  # training images the proxy sees (its budget)
    max_test_samples: int | None = 2000  # held-out images its top-1 is measured on
    accuracy: str = "train"  # train (the short proxy), zero-cost:NAME (a score, or vote), none (a census: latency only)
    rank_by: str | None = None  # what ranks trained candidates: loss (held-out cross-entropy) or top1; None: loss
    # for a new study, the study's own on resume (studies made before it was stored rank by top1)
    pick: str = DEFAULT_PICK  # which candidate tied with the best within the noise best.yaml holds (PICK_RULES)
    zero_cost_scores: bool = True  # store every feasible candidate's zero-cost scores before training
    screen: int = 0  # two-stage: first score this many candidates without training (0: off)
    keep: float = 0.1  # then train this fraction of the feasible ones, the best by the zero-cost vote
    # --- the sampler and the run
    n_trials: int = 40  # finished trials the study should hold (a resumed study runs only the rest)
    timeout_s: float | None = None  # start no new trial after this many seconds
    seed: int = 0  # sampler, data split and proxy initialisation
    sampler: str = "tpe"  # one of SAMPLERS
    pruner: str = "percentile"  # one of search.run.pruning.PRUNERS
    named: bool = True  # enqueue the named configs T0..L first where they are points of the space
    confirm: int = 3  # seeds per front candidate and named config at the end (1: no confirmation)
    # --- storage and workers
    storage: str = DEFAULT_STORAGE  # Optuna storage URL (sqlite or PostgreSQL/MySQL through SQLAlchemy)
    study_name: str | None = None  # None: SPACE-DEVICE-BUDGET-DATA
    heartbeat_s: int = 10  # a running trial silent for 3x this long is failed and retried
    workers: int = 1  # processes on this machine sharing the study
    worker_index: int = 0  # 0 for the process that was started; extra workers sample with other seeds
    lock_dir: str | None = None  # a readers-writer lock file per device here, shared by local workers

    def validate(self) -> SearchConfig:
        """Raises SearchError naming the first setting that is not allowed; returns self."""
        positive_ints = ("n_trials", "workers", "heartbeat_s", "max_train_samples", "max_test_samples", "threads",
                         "confirm")
        for name in positive_ints:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise SearchError(name, value, "allowed: a positive integer")
        if self.budget_ms is None and self.budget_ratio is None:
            raise SearchError("budget_ms", None, "a latency budget is needed; allowed: ms, or a ratio to the reference")
        if self.budget_ratio is not None and self.reference() is None:
            raise SearchError("budget", self.budget_text(), "is in units of the reference's latency, which needs "
                              "paired timing; allowed: a budget in ms, or a CPU search with a latency reference")
        for name, value in (("budget_ms", self.budget_ms), ("budget_ratio", self.budget_ratio),
                            ("timeout_s", self.timeout_s), ("proxy_lr", self.proxy.lr),
                            ("calibration_s", self.calibration_s)):
            if value is not None and not value > 0:
                raise SearchError(name, f"{value:g}", "allowed: a positive number")
        if self.proxy.grad_clip is not None and not self.proxy.grad_clip > 0:
            raise SearchError("proxy_grad_clip", f"{self.proxy.grad_clip:g}", "allowed: a positive gradient norm, "
                              "or none (0 on the command line) for no clipping")
        for name, value in (("proxy_epochs", self.proxy.epochs), ("proxy_resolution", self.proxy.resolution)):
            if value < 1:
                raise SearchError(name, value, "allowed: a positive integer")
        if self.proxy.batch_size < 2:
            raise SearchError("proxy_batch_size", self.proxy.batch_size,
                              "allowed: at least 2 (BatchNorm needs more than one sample)")
        if self.sampler not in SAMPLERS:
            raise SearchError("sampler", repr(self.sampler), f"not known; allowed: {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise SearchError("pruner", repr(self.pruner), f"not known; allowed: {', '.join(PRUNERS)}")
        allowed_accuracy = ["train", *(f"zero-cost:{n}" for n in ZERO_COST_CHOICES), "none"]
        if self.accuracy not in allowed_accuracy:
            raise SearchError("accuracy", repr(self.accuracy), f"not known; allowed: {', '.join(allowed_accuracy)}")
        if self.rank_by is not None and self.rank_by not in RANK_SCORES:
            raise SearchError("rank_by", repr(self.rank_by), f"not known; allowed: {', '.join(RANK_SCORES)}")
        if self.rank_by is not None and self.accuracy != "train":
            raise SearchError("rank_by", self.rank_by, f"ranks trained candidates, and --proxy is {self.accuracy}; "
                              "allowed: --rank-by with --proxy train")
        if self.pick not in PICK_RULES:
            raise SearchError("pick", repr(self.pick), f"not known; allowed: {', '.join(PICK_RULES)}")
        if self.screen < 0 or isinstance(self.screen, bool):
            raise SearchError("screen", self.screen, "allowed: 0 (off) or a positive number of candidates")
        if not 0 < self.keep <= 1:
            raise SearchError("keep", f"{self.keep:g}", "allowed: a fraction in (0, 1]")
        if self.screen and self.accuracy != "train":
            raise SearchError("screen", self.screen, "screens for a trained search; allowed: with accuracy 'train'")
        if self.runtime not in RUNTIMES:
            raise SearchError("runtime", repr(self.runtime), f"not known; allowed: {', '.join(RUNTIMES)}")
        if self.latency not in LATENCY_MODES:
            raise SearchError("latency", repr(self.latency), f"not known; allowed: {', '.join(LATENCY_MODES)}")
        if self.latency != "measured" and not self.latency_table:
            raise SearchError("latency", self.latency, "needs a latency table; allowed: with a table written by "
                              "`cli.py profile`, or measured")
        if self.latency_table and not Path(self.latency_table).is_file():
            raise SearchError("latency_table", self.latency_table, "file not found; allowed: a table JSON file "
                              "written by `cli.py profile`")
        if not Path(self.space).is_file():
            raise SearchError("space", self.space, "file not found; allowed: a space YAML file")
        if self.latency_reference is not None and self.latency_reference not in NAMED_SPECS:
            raise SearchError("latency_reference", repr(self.latency_reference), "not a named config; allowed: "
                              f"{', '.join(NAMED_SPECS)}, or none (each candidate timed on its own)")
        return self

    def setting(self) -> dict[str, Any]:
        """What makes two trials' numbers comparable; a study resumes only with the same setting."""
        proxy = self.proxy
        budget = {"budget_ms": self.budget_ms} if self.budget_ratio is None else {"budget": self.budget_text()}
        return {**budget, "device": self.device, "data": self.data,
                "threads": self.threads, "proxy_epochs": proxy.epochs,
                "proxy_resolution": proxy.resolution, "proxy_batch_size": proxy.batch_size, "proxy_lr": proxy.lr,
                "max_train_samples": self.max_train_samples, "space": str(self.space),
                "space_sha256": hashlib.sha256(Path(self.space).read_bytes()).hexdigest(),
                # absent when off, as in the studies written before these existed
                **({"proxy_grad_clip": proxy.grad_clip} if proxy.grad_clip is not None else {}),
                **({"proxy_label_smoothing": proxy.label_smoothing} if proxy.label_smoothing else {}),
                **({"accuracy": self.accuracy} if self.accuracy != "train" else {}),
                **({"runtime": self.runtime} if self.runtime != "torch" else {}),
                **({"latency_reference": self.reference()} if self.reference() else {}),
                **({"latency": self.latency, "latency_table_sha256": hashlib.sha256(
                    Path(self.latency_table).read_bytes()).hexdigest()} if self.latency != "measured" else {})}

    def budget_text(self) -> str:
        """'20ms', or '1.2xT0' for a budget in units of the reference's latency."""
        if self.budget_ratio is not None:
            return f"{self.budget_ratio:g}x{(self.latency_reference or DEFAULT_REFERENCE).upper()}"
        return f"{self.budget_ms:g}ms"

    def reference(self) -> str | None:
        """The reference network candidates are timed against (None: each is timed on its own, as on a GPU,
        or nothing is timed)."""
        if self.latency_reference is None or self.latency == "predicted" or not relative_timing_applies(self.device):
            return None
        return self.latency_reference

    def proxy_setup(self) -> dict[str, Any]:
        """What else the proxy's numbers depend on (stored with the study; retrainings read it back)."""
        return {"seed": self.seed, "max_test_samples": self.max_test_samples}

    def resolved_study_name(self, space_name: str) -> str:
        if self.study_name:
            return self.study_name
        data = re.sub(r"[^A-Za-z0-9]+", "-", self.data.split(":")[0])
        runtime = f"-{self.runtime}" if self.runtime != "torch" else ""
        return f"{space_name}-{self.device.replace(':', '')}{runtime}-{self.budget_text()}-{data}"

    def for_worker(self, index: int, study_name: str) -> SearchConfig:
        """The setting of extra worker `index` (1..): the same study, nothing enqueued, its own seeds."""
        return replace(self, worker_index=index, study_name=study_name, named=False, workers=1, screen=0,
                       recalibrate=False)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SearchConfig:
        data = json.loads(text)
        data["proxy"] = ProxyConfig(**data["proxy"])
        data["timing"] = TimingPolicy(**data["timing"])
        data["pairing"] = PairPolicy(**data["pairing"])
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def reference_budget(text: str) -> tuple[float, str] | None:
    """'1.2xT0' -> (1.2, 't0'): a budget in units of a named config's latency; None for anything else."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*[xX]\s*([A-Za-z0-9_]+)\s*", str(text))
    if not match:
        return None
    name = match[2].lower().removeprefix("fasternet_")
    if name not in NAMED_SPECS or not float(match[1]) > 0:
        raise SearchError("budget", repr(text), "not a budget in reference units; allowed: a positive ratio and a "
                          f"named config, e.g. 1.2xT0 ({', '.join(k.upper() for k in NAMED_SPECS)})")
    return float(match[1]), name


def parse_budget(text: str) -> float:
    """'20ms', '0.02s' or '20' (milliseconds) -> 20.0."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s)?\s*", str(text))
    if not match or float(match[1]) <= 0:
        raise SearchError("budget", repr(text), "not a latency; allowed: a positive number with unit ms or s "
                          "(20ms, 0.02s), a plain number of ms (20), or a ratio to a named config's latency "
                          "(1.2xT0, on CPU)")
    value = float(match[1])
    return value * 1e3 if match[2] == "s" else value
