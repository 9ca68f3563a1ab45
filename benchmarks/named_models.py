"""T0..L on this device: params, FLOPs, latency and achieved FLOPS, against the GEMM rate measured in the same run.

    python benchmarks/named_models.py [--device cpu] [--threads 1] [--models t0,t1]

Latency follows the paper's protocol (batch 1, one CPU thread by default), on the inference form
(BatchNorm folded), 224x224. Prints a table; asserts nothing (speed is never tested by timing).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fasternet_space import NAMED_SPECS, count  # noqa: E402
from fasternet_space.measure import TimingPolicy, gemm_rate, measure_spec  # noqa: E402
from fasternet_space.report import format_table, human  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default=",".join(NAMED_SPECS))
    args = parser.parse_args()
    policy = TimingPolicy(warmup=5, min_repeats=15, max_time_s=20.0, rel_ci=0.01)
    gemm_before = gemm_rate(args.device, args.threads)
    rows = []
    measurements = []
    for key in args.models.split(","):
        spec = NAMED_SPECS[key]
        m = measure_spec(spec, device=args.device, threads=args.threads, policy=policy)
        measurements.append(m)
        rows.append([key.upper(), human(count(spec).params), human(count(spec).flops), f"{m.latency_ms:.2f}",
                     f"+-{100 * (m.latency_ci_ms[1] - m.latency_ci_ms[0]) / 2 / m.latency_ms:.1f}%",
                     human(m.flops_per_s, "FLOPS"), ""])
    gemm = (gemm_before + gemm_rate(args.device, args.threads)) / 2  # before and after, against drift
    for row, m in zip(rows, measurements, strict=True):
        row[-1] = f"{100 * m.flops_per_s / gemm:.0f}%"
    print(format_table(["model", "params", "FLOPs", "latency ms", "95% CI", "achieved", "of GEMM"], rows))
    p = measurements[0].protocol
    print(f"\nGEMM (torch.mm 1024^3, fp32): {human(gemm, 'FLOPS')} multiply-adds/s; protocol: {p.device_name} "
          f"[{p.device}], {p.threads} thread(s), batch 1, {p.input_size}x{p.input_size}, {p.runtime}, torch {p.torch}, "
          "BatchNorm folded")


if __name__ == "__main__":
    main()
