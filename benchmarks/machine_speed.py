"""Where a CPU's speed goes when it moves: T0 timed in blocks, each read in wall time and in this thread's CPU
time, beside the machine's CPU counters (/proc/stat) over the same block.

If a block's wall time rises while its CPU time rises with it, and the hypervisor's steal and the other
processes' share stay flat, the slowdown is invisible from inside this machine (a neighbour on the host's
core or memory, a clock change): no estimator of a reference's latency read inside the guest can repeat
through it, and only ratios to a reference timed at the same moment do. Prints one line per block and a
summary; asserts nothing.

    python benchmarks/machine_speed.py [--seconds 60] [--calls 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fasternet_space import NAMED_SPECS, build_model  # noqa: E402
from fasternet_space.inference import for_inference  # noqa: E402
from fasternet_space.measure import device_name  # noqa: E402
from fasternet_space.paired import cpu_times, steal_share  # noqa: E402


def block(model, x, calls: int) -> dict[str, float]:
    """One block of `calls` calls: the fastest and median call in wall and in thread CPU time (ms), and the
    machine's steal share and busy share (all cores, this process included) over the block."""
    before = cpu_times()
    wall, cpu = [], []
    for _ in range(calls):
        w, c = time.perf_counter(), time.thread_time()
        model(x)
        cpu.append((time.thread_time() - c) * 1e3)
        wall.append((time.perf_counter() - w) * 1e3)
    after = cpu_times()
    busy = None
    if before and after:
        delta = [b - a for a, b in zip(before, after, strict=True)]
        total = sum(delta[:8])
        busy = (total - delta[3] - delta[4] - delta[7]) / total if total else None
    return {"wall_min": min(wall), "wall_median": statistics.median(wall), "cpu_min": min(cpu),
            "cpu_median": statistics.median(cpu), "steal": steal_share(before, after), "busy": busy}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--calls", type=int, default=20, help="calls per block")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = for_inference(build_model(NAMED_SPECS["t0"]).eval())
    x = torch.randn(1, 3, 224, 224)
    blocks = []
    with torch.inference_mode():
        for _ in range(5):
            model(x)
        end = time.perf_counter() + args.seconds
        while time.perf_counter() < end:
            b = block(model, x, args.calls)
            blocks.append(b)
            print(f"wall min {b['wall_min']:6.2f} median {b['wall_median']:6.2f} ms | thread CPU min "
                  f"{b['cpu_min']:6.2f} median {b['cpu_median']:6.2f} ms | steal {b['steal'] or 0:.3f} "
                  f"busy {b['busy'] or 0:.2f}", flush=True)
    wall_mins, cpu_mins = [b["wall_min"] for b in blocks], [b["cpu_min"] for b in blocks]
    cpu_share = statistics.median(b["cpu_median"] / b["wall_median"] for b in blocks)
    print(f"\n{device_name(torch.device('cpu'))}, T0 at 224 px, 1 thread, {len(blocks)} blocks of {args.calls} calls "
          f"over {args.seconds:g} s")
    print(f"fastest call per block: wall {min(wall_mins):.2f} to {max(wall_mins):.2f} ms "
          f"(spread {100 * (max(wall_mins) / min(wall_mins) - 1):.0f}%), thread CPU {min(cpu_mins):.2f} to "
          f"{max(cpu_mins):.2f} ms (spread {100 * (max(cpu_mins) / min(cpu_mins) - 1):.0f}%)")
    print(f"thread CPU time / wall time per call: median {cpu_share:.3f}; steal: at most "
          f"{max(b['steal'] or 0 for b in blocks):.3f} of the CPU time; busy share: "
          f"{min(b['busy'] or 0 for b in blocks):.2f} to {max(b['busy'] or 0 for b in blocks):.2f}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": device_name(torch.device("cpu")), "argv": sys.argv[1:],
                                         "blocks": blocks}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
