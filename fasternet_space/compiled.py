"""The inference form compiled whole by torch.compile: the fastest PyTorch path measured on CPU.

TorchInductor with the weights frozen into the graph (constant-folded and pre-packed for oneDNN) and, on
CPU, the C++ wrapper (the graph's calls made from generated C++, not Python). On an AMD EPYC (AVX2) it
ran the named models 5-15% faster than the eager inference form, 1.32-1.45x the official structure
(benchmarks/engine_speed.py --compiled; benchmarks/results/engine_speed_amd_epyc_avx2_2026-11-30.json), at
the cost of 10-25 s of compilation per model and input shape; so it is a runtime a user picks
(`--runtime torch-compile`), not the default. Shapes are static: each batch size compiles once.
"""

from __future__ import annotations

import os
import shutil

import torch
from torch import nn

# C++ compilers Inductor's CPU backend looks for when $CXX is unset.
_CPU_COMPILERS = ("g++", "clang++", "c++")


def cpu_compiler() -> str | None:
    """The C++ compiler Inductor would use on CPU, or None when there is none on PATH."""
    wanted = os.environ.get("CXX")
    candidates = (wanted,) if wanted else _CPU_COMPILERS
    return next((found for name in candidates if (found := shutil.which(name))), None)


def inductor_options(device: torch.device) -> dict[str, bool]:
    """Inductor settings for an inference graph on `device`: frozen weights; the C++ wrapper on CPU."""
    return {"freezing": True, "cpp_wrapper": device.type == "cpu"}


def describe(device: torch.device) -> str:
    """The runtime's name in a protocol."""
    extras = ", C++ wrapper" if inductor_options(device)["cpp_wrapper"] else ""
    return f"pytorch-inductor (frozen weights{extras})"


def compile_for_inference(module: nn.Module, device: torch.device) -> CompiledInference:
    """`module` compiled by TorchInductor for inference on `device` (see CompiledInference).

    torch.compile's caches are cleared first: they are keyed by the forward's code, which every network of
    the project shares, and past torch's recompile limit (8) a further network would silently run eager.
    A module compiled earlier in the process still works; it compiles again on its next call."""
    torch.compiler.reset()
    return CompiledInference(module, device)


class CompiledInference:
    """Calls `module` through torch.compile, with the Inductor settings applied while each new kind of input
    (shape, dtype, device, grad mode) is traced and compiled, i.e. on its first call: Dynamo reads the
    freezing setting when it traces, so passing it as torch.compile's `options` (seen by the compiler
    only) left the weights unfrozen and the network no faster than eager. Shapes are static."""

    def __init__(self, module: nn.Module, device: torch.device):
        self.module = module.eval()
        self.options = inductor_options(device)
        self._compiled = torch.compile(self.module, dynamic=False)
        self._compiled_for: set[tuple] = set()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        kind = (tuple(x.shape), x.dtype, x.device, torch.is_grad_enabled(), torch.is_inference_mode_enabled())
        if kind in self._compiled_for:
            return self._compiled(x)
        import torch._inductor.config as inductor_config

        with inductor_config.patch(self.options):
            out = self._compiled(x)
        self._compiled_for.add(kind)
        return out
