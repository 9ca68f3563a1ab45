"""Zero-cost scores: rank candidates at initialisation from one batch, without training.

Each score is a function of a spec (already in its proxy shape: the dataset's channels, classes and
resolution) and one batch, and returns a float where higher means "predicted better":

- `synflow(spec, batch)`: Tanaka et al. 2020, the synaptic flow of the linearised network (data-free).
- `naswot(spec, batch)`: Mellor et al. 2021, log-determinant of the activation-pattern kernel (no labels).
- `grad_norm(spec, batch, labels)`: sum of the L2 norms of the cross-entropy gradients of the weights.
- `snip(spec, batch, labels)`: Lee et al. 2019, connection sensitivity, sum of |theta * dL/dtheta|.
- `params(spec)`, `flops(spec)`: the exact counts of `fasternet_space.count`, as baselines.

`score(name, spec, dataset)` is the uniform entry point (proxy shape, a deterministic training batch, a
seeded model); `scores(names, spec, dataset)` gives several at once, the same values, with one model
initialisation; `vote(...)` combines synflow, naswot and snip by mean rank (Abdelfattah et al. 2021).

Common rules, following the reference implementations (SamsungLabs/zero-cost-nas, and Mellor et al.'s
NASWOT code) unless said otherwise:

- Every score builds a fresh model from the spec with `torch.manual_seed(seed)` inside
  `torch.random.fork_rng`, so it is deterministic for a seed and leaves the caller's RNG untouched;
  nothing is restored because nothing outside the call is modified.
- Stochastic depth is turned off (`drop_path_rate=0`): it is a training-time regulariser, and with it
  a score would depend on which residual branches a random draw dropped.
- "Weights" are the `weight` tensors of every `Conv2d` and `Linear` (PConv, 1x1 convs, stem, merging,
  pre-head conv, classifier), as in the reference's `get_layer_metric_array`; biases, normalisation
  affine parameters and layer scales take part in the forward pass but are not summed.
- The scores that see data (naswot, grad_norm, snip) run the model in training mode, as the proxy
  trains it: BatchNorm normalises with the batch's statistics, channel LayerNorm per pixel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from copy import deepcopy

import torch
import torch.nn.functional as F
from torch import nn

from .cost import count
from .data import Dataset
from .layers import ChannelLayerNorm
from .measure import cpu_threads
from .model import FasterNet, build_model
from .proxy import proxy_spec
from .spec import ArchSpec

#: The activation modules whose inputs give NASWOT's binary codes (every activation `make_act` builds).
ACTIVATIONS = (nn.ReLU, nn.GELU, nn.SiLU, nn.Hardswish)
#: The normalisation layers synflow removes.
NORMS = (nn.BatchNorm2d, ChannelLayerNorm)
#: The scores combined by `vote`.
VOTE_SCORES = ("synflow", "naswot", "snip")


def fresh_model(spec: ArchSpec, seed: int = 0) -> FasterNet:
    """A new model for `spec` initialised under `torch.manual_seed(seed)`, without stochastic depth.

    The global RNG is forked, so the caller's random state is the same after the call."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(spec.replace(drop_path_rate=0.0))


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def _strip_norms(model: nn.Module) -> None:
    """Replaces every BatchNorm2d and ChannelLayerNorm by an identity, in place."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, NORMS):
                setattr(parent, name, nn.Identity())


def synflow(spec: ArchSpec, batch: torch.Tensor, seed: int = 0) -> float:
    """Synaptic flow (Tanaka et al., NeurIPS 2020): sum over weights of |theta * dR/dtheta|.

    The model is linearised: every parameter is replaced by its absolute value, it runs in double
    precision on an all-ones input and R is the sum of its outputs. Only the shape of `batch` is used
    (so the score does not depend on the data): the input is one all-ones sample of the batch's
    (C, H, W), as the reference does (`[1] + input_dim`). No layer mixes samples once normalisation is
    removed, so B all-ones samples would give exactly B times this score: the batch size is not a
    factor either.

    Normalisation, both norms alike: every BatchNorm2d and every ChannelLayerNorm is removed (replaced
    by an identity), as the reference's `synflow` measure does for BatchNorm (`bn=False`, its forward
    made a no-op). Synflow measures how the product of |weights| along the paths scales; a layer that
    divides by statistics of its input undoes that scaling. BatchNorm in training mode divides by the
    batch's statistics; on an all-ones batch every sample is the same, so its variance is zero and its
    output is the bias. Eval-mode BatchNorm at its initial running statistics (mean 0, var 1, weight 1,
    bias 0) is an identity up to a factor 1/sqrt(1 + eps) per layer, so on a fresh model removing it
    and keeping it in eval mode agree to about 1e-5 per BatchNorm on a path (tested). Channel
    LayerNorm normalises each pixel over its channels in either mode: it would cancel the scale of
    every path and turn the all-positive activations into signed ones, so keeping it is not an option
    and removing it is the only treatment consistent with BatchNorm's. Consequences: the bn and ln
    variants of an architecture get the same synflow (their weights are initialised identically), and
    the norms' affine parameters, absent from the flow, are not summed. Stochastic depth is off and the
    model runs in eval mode, so nothing is random.

    With ReLU the linearised network is exactly linear on the positive inputs it sees; GELU, SiLU and
    Hardswish are positive on positive inputs too, but not linear, so the flow is the product of
    |weights| bent by the activations, which is what the score then measures.
    """
    return _synflow(fresh_model(spec, seed), batch)


def _synflow(model: FasterNet, batch: torch.Tensor) -> float:
    _strip_norms(model)
    model.eval().double()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    ones = torch.ones((1, *batch.shape[1:]), dtype=torch.float64)
    model(ones).sum().backward()
    with torch.no_grad():
        total = sum((w * w.grad).abs().sum() for w in _weights(model) if w.grad is not None)
    return float(total)


def naswot_kernel(codes: torch.Tensor) -> torch.Tensor:
    """K = c c^T + (1 - c)(1 - c)^T for a (samples, units) binary code matrix, in float64.

    K[i, j] is the number of units on which samples i and j agree (units minus their Hamming distance).
    Computed with one product: K = 2 c c^T - r_i - r_j + units, with r the per-sample counts of ones.
    The kernel of codes concatenated along units is the sum of the kernels of the parts."""
    c = codes.reshape(codes.shape[0], -1).to(torch.float64)
    ones = c.sum(1)
    return 2.0 * (c @ c.T) - ones[:, None] - ones[None, :] + c.shape[1]


def kernel_logdet(kernel: torch.Tensor) -> float:
    """log det K by `torch.linalg.slogdet`; float('-inf') when K is singular (sign 0) or not positive.

    NASWOT's K is a sum of Gram matrices, so det K >= 0: a sign that is not +1 can only mean a singular
    kernel (two samples with identical codes, for instance) or rounding on a nearly singular one."""
    sign, logabsdet = torch.linalg.slogdet(kernel.to(torch.float64))
    if sign.item() <= 0 or not math.isfinite(logabsdet.item()):
        return float("-inf")
    return float(logabsdet)


def naswot(spec: ArchSpec, batch: torch.Tensor, seed: int = 0) -> float:
    """NASWOT (Mellor et al., ICML 2021): log det of the binary activation-pattern kernel over the batch.

    The codes are `x > 0` of the input x of every activation module (ReLU, GELU, SiLU, Hardswish: the
    block MLPs' and the one before the head), flattened and concatenated per sample; K is
    `naswot_kernel(codes)`, accumulated layer by layer (the kernel of a concatenation is the sum of
    the parts' kernels), and the score is its log-determinant. The reference hooks ReLU inputs; for
    these activations `x > 0` of the input is also `f(x) > 0` of the output, and reading the input in a
    forward pre-hook sees it before an in-place activation overwrites it. Training mode (BatchNorm on
    the batch's statistics, as the reference and the proxy's training run it), no gradients, no
    labels. A singular kernel (e.g. two identical samples in the batch, which have identical codes)
    gives float('-inf'), not a finite sentinel: `vote` ranks it last.
    """
    return _naswot(fresh_model(spec, seed), batch)


def _naswot(model: FasterNet, batch: torch.Tensor) -> float:
    model.train()
    kernel = torch.zeros(batch.shape[0], batch.shape[0], dtype=torch.float64)

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        nonlocal kernel
        kernel = kernel + naswot_kernel(inputs[0].reshape(inputs[0].shape[0], -1) > 0)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, ACTIVATIONS)]
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return kernel_logdet(kernel)


def _loss_gradients(model: FasterNet, batch: torch.Tensor,
                    labels: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    model.train()
    loss = F.cross_entropy(model(batch), labels)
    weights = _weights(model)
    grads = torch.autograd.grad(loss, weights, allow_unused=True)
    return [(w.detach(), g) for w, g in zip(weights, grads, strict=True) if g is not None]


def grad_norm(spec: ArchSpec, batch: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> float:
    """Sum over weights of the L2 norm of d(cross-entropy)/d(weight) on the batch, training mode."""
    return _grad_norm(fresh_model(spec, seed), batch, labels)


def _grad_norm(model: FasterNet, batch: torch.Tensor, labels: torch.Tensor) -> float:
    return float(sum(g.norm() for _, g in _loss_gradients(model, batch, labels)))


def snip(spec: ArchSpec, batch: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> float:
    """SNIP connection sensitivity (Lee et al., ICLR 2019): sum over weights of |theta * dL/dtheta|.

    L is the mean cross-entropy of the batch, training mode. |theta * dL/dtheta| equals the reference's
    |dL/dmask| for a multiplicative mask of ones on each weight."""
    return _snip(fresh_model(spec, seed), batch, labels)


def _snip(model: FasterNet, batch: torch.Tensor, labels: torch.Tensor) -> float:
    return float(sum((w * g).abs().sum() for w, g in _loss_gradients(model, batch, labels)))


def params(spec: ArchSpec) -> float:
    """The exact parameter count of `spec` (pass the proxy-shaped spec: channels and classes matter)."""
    return float(count(spec).params)


def flops(spec: ArchSpec) -> float:
    """The exact multiply-adds of `spec` at its `input_size` (the proxy resolution for a proxy spec)."""
    return float(count(spec).flops)


#: Every score by name. Their arguments differ: see `NEEDS` (what `score` passes to each).
SCORES: dict[str, Callable[..., float]] = {
    "synflow": synflow, "naswot": naswot, "grad_norm": grad_norm, "snip": snip, "params": params, "flops": flops,
}
#: What each score needs beyond the spec: "batch" (images), "labels" (images and labels), or nothing.
NEEDS: dict[str, str | None] = {
    "synflow": "batch", "naswot": "batch", "grad_norm": "labels", "snip": "labels", "params": None, "flops": None,
}
# The model-based scores on a given fresh model (which they modify: synflow strips norms, takes |params|).
_ON_MODEL: dict[str, Callable[..., float]] = {"synflow": _synflow, "naswot": _naswot, "grad_norm": _grad_norm,
                                               "snip": _snip}


def training_batch(dataset: Dataset, batch_size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic batch of the training split: the first `batch_size` of a permutation seeded by `seed`."""
    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size} is not allowed; allowed: >= 1")
    order = torch.randperm(len(dataset.train_y), generator=torch.Generator().manual_seed(seed))
    index = order[:batch_size]
    return dataset.train_x[index], dataset.train_y[index]


def score(name: str, spec: ArchSpec, dataset: Dataset, batch_size: int = 64, seed: int = 0,
          threads: int | None = None) -> float:
    """The score `name` of the candidate `spec` trained on `dataset`: the spec in its proxy shape
    (`proxy_spec`), a training batch chosen by `seed`, a model initialised with `seed` (the same
    initial weights `train_proxy` starts from for that seed). Deterministic for a seed and a thread
    count. `threads`: torch's intra-op threads for the call, as `ProxyConfig.threads` (None: torch's)."""
    return scores([name], spec, dataset, batch_size, seed, threads)[name]


def scores(names: Iterable[str], spec: ArchSpec, dataset: Dataset, batch_size: int = 64, seed: int = 0,
           threads: int | None = None) -> dict[str, float]:
    """Several scores of one candidate, each equal to `score(name, ...)` with the same arguments, but
    with the model initialised once (each score gets its own copy) and the batch drawn once: the vote's
    three scores cost two initialisations less."""
    names = list(dict.fromkeys(names))  # each once: a score may modify the model it is given
    unknown = [name for name in names if name not in SCORES]
    if unknown:
        raise KeyError(f"unknown zero-cost score {unknown[0]!r}; allowed: {', '.join(SCORES)}")
    shaped = proxy_spec(spec, dataset)
    results: dict[str, float] = {}
    on_model = [name for name in names if name in _ON_MODEL]
    with cpu_threads(threads):
        if on_model:
            batch, labels = training_batch(dataset, batch_size, seed)
            model = fresh_model(shaped, seed)
            for i, name in enumerate(on_model):
                copy = model if i == len(on_model) - 1 else deepcopy(model)
                args = (batch,) if NEEDS[name] == "batch" else (batch, labels)
                results[name] = _ON_MODEL[name](copy, *args)
        for name in names:
            if name not in _ON_MODEL:
                results[name] = SCORES[name](shaped)
    return {name: results[name] for name in names}


def _ranks(values: list[float]) -> list[float]:
    """Ranks 1..n in ascending order (1 = lowest), ties sharing their mean rank; NaN counts as -inf."""
    clean = [float("-inf") if math.isnan(v) else v for v in values]
    order = sorted(range(len(clean)), key=lambda i: clean[i])
    ranks = [0.0] * len(clean)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and clean[order[end + 1]] == clean[order[start]]:
            end += 1
        for i in order[start:end + 1]:
            ranks[i] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def vote(scores_by_candidate: Mapping[Hashable, Mapping[str, float]]) -> dict[Hashable, float]:
    """Mean rank over synflow, naswot and snip per candidate (Abdelfattah et al., ICLR 2021), higher = better.

    For each of the three scores the candidates are ranked 1 (lowest) to n (highest), ties sharing
    their mean rank; -inf (a degenerate naswot) and NaN rank lowest. Each candidate's vote is the mean of
    its three ranks, in the input's order of candidates. Every candidate needs the three scores."""
    keys = list(scores_by_candidate)
    totals = dict.fromkeys(keys, 0.0)
    for name in VOTE_SCORES:
        missing = [k for k in keys if name not in scores_by_candidate[k]]
        if missing:
            raise KeyError(f"candidate {missing[0]!r} has no {name!r} score; vote needs {', '.join(VOTE_SCORES)}")
        for key, rank in zip(keys, _ranks([float(scores_by_candidate[k][name]) for k in keys]), strict=True):
            totals[key] += rank
    return {key: total / len(VOTE_SCORES) for key, total in totals.items()}
