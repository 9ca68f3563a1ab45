"""Inference form vs reference form: latency, ratio and achieved multiply-adds per second, T0..L.

Protocol (the paper's CPU protocol): one thread, batch 1, 224x224, float32, torch.inference_mode().
The reference form is the official structure: eval-mode `build_model(spec)` with split-and-concatenate
PConv and unfolded BatchNorm. Repetitions are interleaved (reference, inference form, reference, ...)
after a warm-up, so that both see the same machine state; medians are reported. The GEMM rate
(torch.mm on 1024x1024 float32, which runs on MKL) is timed in the same run, before and after the
models; so is oneDNN's rate on a 1024 -> 1024 pointwise convolution over 32x32 pixels (the same
multiply-add count), the kernel family the "onednn" mode runs on. Prints a table, asserts nothing.

    python benchmarks/inference_speed.py [--models t0,t1] [--repeats N] [--modes auto,portable]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interleaved import interleaved_medians_ms  # noqa: E402  (this folder: sys.path[0] when run as a script)

from fasternet_space import NAMED_SPECS, build_model, count  # noqa: E402
from fasternet_space.fast_layers import onednn_available  # noqa: E402
from fasternet_space.inference import for_inference  # noqa: E402
from fasternet_space.measure import gemm_rate  # noqa: E402

# Targets from the issue: (minimum speed-up over the reference, minimum % of the GEMM rate).
TARGETS = {"t0": (1.3, 75), "t1": (1.2, 80), "t2": (1.1, 80), "s": (1.0, 90), "m": (1.0, 90), "l": (1.0, 90)}


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def onednn_rate(channels: int = 1024, side: int = 32, repeats: int = 15) -> float | None:
    """Multiply-adds per second of a oneDNN pointwise convolution (reordered weights, channels-last)."""
    if not onednn_available():
        return None
    x = torch.randn(1, channels, side, side).contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, channels, 1, 1)
    packed = torch._C._nn.mkldnn_reorder_conv2d_weight(w.to_mkldnn(), [0, 0], [1, 1], [1, 1], 1, list(x.shape))
    conv = torch.ops.mkldnn._convolution_pointwise.default

    def run():
        return conv(x, packed, None, [0, 0], [1, 1], [1, 1], 1, "none", [], "")

    for _ in range(3):
        run()
    return channels * channels * side * side / _median_time(run, repeats)


def bench_model(key: str, modes: list[str], repeats: int | None, budget_s: float) -> dict:
    spec = NAMED_SPECS[key]
    reference = build_model(spec).eval()
    forms = {"reference": reference}
    for mode in modes:
        forms[mode] = for_inference(reference, mode=None if mode == "auto" else mode)
    x = torch.randn(1, spec.in_chans, spec.input_size, spec.input_size)
    with torch.inference_mode():
        expected = reference(x)
        for form in forms.values():  # warm-up: caches, oneDNN kernels and reordered weights
            form(x)
            form(x)
        # reference, inference form, reference, inference form, ...
        repeats, ms = interleaved_medians_ms({name: (lambda form=form: form(x)) for name, form in forms.items()},
                                             budget_s, repeats)
        errors = {}
        for name, form in forms.items():
            out = form(x)
            errors[name] = ((out - expected).abs().max() / expected.abs().max()).item()
    return {
        "spec": spec, "flops": count(spec).flops, "repeats": repeats, "errors": errors,
        "mode": {name: getattr(form, "mode", "-") for name, form in forms.items()},
        "ms": ms,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(NAMED_SPECS), help="comma list of t0,t1,t2,s,m,l")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repetitions per form (default: as many as fit in --budget seconds)")
    parser.add_argument("--budget", type=float, default=12.0, help="seconds of timing per model when --repeats is unset")
    parser.add_argument("--modes", default="auto",
                        help="inference modes to time: auto (the default for_inference picks), onednn, portable")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    keys = [k.strip().lower() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in NAMED_SPECS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; allowed: {', '.join(NAMED_SPECS)}")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads {torch.get_num_threads()}, "
          "batch 1, 224x224, float32, inference_mode; medians of interleaved repetitions")
    gemm = [gemm_rate(threads=torch.get_num_threads())]
    dnn = [onednn_rate()]
    rows = [bench_model(key, modes, args.repeats, args.budget) for key in keys]
    gemm.append(gemm_rate(threads=torch.get_num_threads()))
    dnn.append(onednn_rate())
    g = statistics.mean(gemm)
    d = statistics.mean(dnn) if None not in dnn else None
    print(f"GEMM rate (torch.mm 1024, MKL): {g / 1e9:.1f} G MAC/s (before {gemm[0] / 1e9:.1f}, after {gemm[1] / 1e9:.1f})")
    if d is not None:
        print(f"oneDNN 1x1 conv rate (1024 ch, 32x32): {d / 1e9:.1f} G MAC/s "
              f"(before {dnn[0] / 1e9:.1f}, after {dnn[1] / 1e9:.1f})")
    print()
    header = (f"{'model':<5} {'mode':<9} {'reps':>4} {'ref ms':>8} {'inf ms':>8} {'ratio':>6} {'target':>6} "
              f"{'G MAC/s':>8} {'%GEMM':>6} {'target':>6} {'%oneDNN':>7} {'ref %GEMM':>9} {'max rel err':>11}")
    print(header)
    print("-" * len(header))
    for key, row in zip(keys, rows, strict=True):
        ref_ms = row["ms"]["reference"]
        ratio_target, pct_target = TARGETS[key]
        for name in modes:
            ms = row["ms"][name]
            rate = row["flops"] / (ms / 1e3)
            dnn_pct = f"{rate / d * 100:7.0f}" if d is not None else f"{'-':>7}"
            print(f"{key.upper():<5} {row['mode'][name]:<9} {row['repeats']:>4} {ref_ms:>8.2f} {ms:>8.2f} "
                  f"{ref_ms / ms:>6.2f} {ratio_target:>6.2f} {rate / 1e9:>8.1f} {rate / g * 100:>6.0f} "
                  f"{pct_target:>6} {dnn_pct} {row['flops'] / (ref_ms / 1e3) / g * 100:>9.0f} "
                  f"{row['errors'][name]:>11.1e}")


if __name__ == "__main__":
    main()
