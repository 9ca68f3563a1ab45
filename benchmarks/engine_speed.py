"""The project's PyTorch inference form against the engines a user deploys with, on the named models.

Paths, per model, all on the same weights, batch 1, 224x224, float32, one thread by default:
- reference: the official structure (eval-mode `build_model(spec)`: split-and-concatenate PConv, BatchNorm
  unfolded), in torch.inference_mode();
- project: `for_inference(model)` with its default mode, chosen by measurement on this machine;
- onnxruntime / openvino: the project's ONNX export of the inference form (what `build --export` writes),
  with the CPU settings of `runtimes.ort_session` and `runtimes.openvino_request`;
- compiled (with --compiled): torch.compile of the inference form with freezing and the C++ wrapper, the
  whole-graph route torch offers (tens of seconds of compilation per model).

Repetitions are interleaved (reference, project, onnxruntime, openvino, reference, ...) after a warm-up so
that every path sees the same machine state; medians are compared. Every path's output is checked against
the reference (max |difference| / max |reference|). `--breakdown` times where each path spends its time
by layer kind (torch profiler for the project, ONNX Runtime's profiler for the engine). Prints tables,
asserts nothing.

    python benchmarks/engine_speed.py [--models t0,t1] [--budget 12] [--breakdown] [--compiled] [--json OUT]
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interleaved import interleaved_medians_ms  # noqa: E402  (this folder: sys.path[0] when run as a script)

from fasternet_space import NAMED_SPECS, build_model  # noqa: E402
from fasternet_space.compiled import compile_for_inference  # noqa: E402
from fasternet_space.export import export_module_onnx  # noqa: E402
from fasternet_space.inference import for_inference  # noqa: E402
from fasternet_space.runtimes import RuntimeUnavailable, load, openvino_request, ort_session, version  # noqa: E402

ENGINES = ("onnxruntime", "openvino")
# The issue's targets: the project at >= 1.0x the faster engine on every model; T0 >= 1.3x the reference.
ENGINE_TARGET = 1.0
REFERENCE_TARGETS = {"t0": 1.3}
# Layer kinds of a breakdown, in the order they are printed.
KINDS = ("stem", "pconv", "split/concat", "expand 1x1", "activation", "project 1x1", "merge", "layout", "head",
         "other")


def engine_runner(engine: str, onnx_path: Path, x: torch.Tensor, threads: int):
    array = x.numpy()
    if engine == "onnxruntime":
        session = ort_session(onnx_path, threads)
        return lambda: session.run(None, {"input": array})[0]
    request = openvino_request(onnx_path, threads)
    return lambda: request.infer({0: array})[0]


def compiled_runner(fast: torch.nn.Module, x: torch.Tensor):
    """The `--runtime torch-compile` path: compiled.compile_for_inference, compiled here under inference_mode
    (the grad mode it is timed in)."""
    compiled = compile_for_inference(fast, torch.device("cpu"))
    with torch.inference_mode():
        compiled(x)
    return lambda: compiled(x)


def bench_model(key: str, engines: list[str], threads: int, budget_s: float, compiled: bool, folder: Path) -> dict:
    spec = NAMED_SPECS[key]
    torch.manual_seed(0)
    reference = build_model(spec).eval()
    fast = for_inference(reference)
    x = torch.randn(1, spec.in_chans, spec.input_size, spec.input_size, generator=torch.Generator().manual_seed(0))
    onnx_path = export_module_onnx(fast, folder / f"{key}.onnx", (spec.in_chans, spec.input_size, spec.input_size))
    paths = {"reference": lambda: reference(x), "project": lambda: fast(x)}
    for engine in engines:
        paths[engine] = engine_runner(engine, onnx_path, x, threads)
    compile_s = None
    if compiled:
        start = time.perf_counter()
        paths["compiled"] = compiled_runner(fast, x)
        compile_s = time.perf_counter() - start
    with torch.inference_mode():
        expected = reference(x)
        scale = expected.abs().max().item()
        errors = {name: (torch.as_tensor(run()) - expected).abs().max().item() / scale for name, run in paths.items()}
        for run in paths.values():  # warm-up: caches, kernels, reordered weights
            run()
        repeats, ms = interleaved_medians_ms(paths, budget_s)
    return {"model": key, "mode": fast.mode, "repeats": repeats, "compile_s": compile_s, "onnx": onnx_path,
            "ms": ms, "max_rel_err": errors}


def _conv_kind(weight_shape: list[int]) -> str:
    out_ch, in_ch, kh = weight_shape[0], weight_shape[1], weight_shape[2]
    if kh == 3:
        return "pconv"
    if kh == 1:
        return "expand 1x1" if out_ch > in_ch else "project 1x1"
    return "stem" if in_ch <= 4 else "merge"


# Operators other than convolutions, by layer kind: torch's (profiler names) and ONNX Runtime's (op types).
TORCH_OPS = {"aten::cat": "split/concat", "aten::split_with_sizes": "split/concat", "aten::split": "split/concat",
             "aten::gelu": "activation", "aten::relu_": "activation", "aten::relu": "activation",
             "aten::silu_": "activation", "aten::hardswish_": "activation",
             "aten::addmm": "head", "aten::mm": "head", "aten::mean": "head", "aten::linear": "head",
             "aten::sum": "head", "aten::contiguous": "layout", "aten::clone": "layout", "aten::copy_": "layout"}
ORT_OPS = {"Split": "split/concat", "Concat": "split/concat", "Slice": "split/concat",
           "Gelu": "activation", "Relu": "activation", "Sigmoid": "activation", "HardSwish": "activation",
           "Mul": "activation", "Erf": "activation", "Add": "activation", "Div": "activation",
           "Gemm": "head", "MatMul": "head", "ReduceMean": "head", "GlobalAveragePool": "head", "Flatten": "head",
           "ReorderInput": "layout", "ReorderOutput": "layout", "Transpose": "layout"}


def torch_breakdown(key: str, repeats: int = 10) -> dict[str, float]:
    """Milliseconds per forward of the project path by layer kind (torch profiler, self CPU time)."""
    from torch.profiler import ProfilerActivity, profile

    reference = build_model(NAMED_SPECS[key]).eval()
    fast = for_inference(reference)
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        for _ in range(3):
            fast(x)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(repeats):
                fast(x)
    totals: collections.Counter[str] = collections.Counter()
    for event in prof.key_averages(group_by_input_shape=True):
        name, shapes = event.key, event.input_shapes
        if "convolution" in name or name == "aten::conv2d":
            index = 2 if name.endswith("_convolution_pointwise_") else 1  # (out, other, weight, ...) when binary
            weight = shapes[index] if len(shapes) > index and len(shapes[index]) == 4 else None
            kind = _conv_kind(weight) if weight else "other"
        else:
            kind = TORCH_OPS.get(name, "other")
            if kind == "activation" and shapes and len(shapes[0]) == 2:
                kind = "head"  # the activation after the head's feature layer
        totals[kind] += event.self_cpu_time_total / 1e3 / repeats
    return dict(totals)


def ort_breakdown(onnx_path: Path, threads: int, repeats: int = 10, warmup: int = 3) -> dict[str, float]:
    """Milliseconds per run of ONNX Runtime by layer kind (its own per-node profiler), after `warmup` runs."""
    session = ort_session(onnx_path, threads, profile_prefix=str(onnx_path.with_suffix("")))
    x = torch.randn(1, 3, 224, 224).numpy()
    for _ in range(warmup + repeats):
        session.run(None, {"input": x})
    events = json.loads(Path(session.end_profiling()).read_text())
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    warm_from = runs[warmup - 1]["ts"] + runs[warmup - 1]["dur"]
    totals: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time") or event["ts"] < warm_from:
            continue
        op = event["args"]["op_name"]
        if op == "Conv":
            kind = _conv_kind(list(event["args"]["input_type_shape"][1].values())[0])
        else:
            kind = ORT_OPS.get(op, "other")
        totals[kind] += event["dur"] / 1e3 / repeats
    return dict(totals)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(NAMED_SPECS), help="comma list of t0,t1,t2,s,m,l")
    parser.add_argument("--budget", type=float, default=12.0, help="seconds of timing per model (11 to 201 rounds)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--breakdown", action="store_true", help="also time each layer kind: project vs ONNX Runtime")
    parser.add_argument("--compiled", action="store_true",
                        help="also time torch.compile (freezing, C++ wrapper) of the inference form")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    args = parser.parse_args(argv)
    keys = [k.strip().lower() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in NAMED_SPECS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; allowed: {', '.join(NAMED_SPECS)}")
    engines = []
    for engine in ENGINES:
        try:
            load(engine)
            engines.append(engine)
        except RuntimeUnavailable as exc:
            print(f"skipping {engine}: {exc.message('engine')}")
    torch.set_num_threads(args.threads)
    versions = ", ".join(f"{e} {version(e)}" for e in engines)
    print(f"torch {torch.__version__}, {versions}; {platform.processor() or platform.machine()}, "
          f"{torch.backends.cpu.get_cpu_capability()}, threads {args.threads}, batch 1, 224x224, float32; "
          "medians of interleaved repetitions")
    with tempfile.TemporaryDirectory(prefix="fasternet-engines-") as tmp:
        rows = [bench_model(k, engines, args.threads, args.budget, args.compiled, Path(tmp)) for k in keys]
        breakdowns = {}
        if args.breakdown and "onnxruntime" in engines:
            breakdowns = {row["model"]: {"project": torch_breakdown(row["model"]),
                                         "onnxruntime": ort_breakdown(row["onnx"], args.threads)} for row in rows}
    print_table(rows, engines, args.compiled)
    for key, parts in breakdowns.items():
        print_breakdown(key, parts)
    if args.json:
        payload = {"torch": torch.__version__, "engines": {e: version(e) for e in engines},
                   "cpu": platform.processor() or platform.machine(), "isa": torch.backends.cpu.get_cpu_capability(),
                   "threads": args.threads,
                   "models": [{k: v for k, v in row.items() if k != "onnx"} for row in rows],
                   "breakdown_ms": breakdowns}
        args.json.write_text(json.dumps(payload, indent=1))
        print(f"wrote {args.json}")


def print_table(rows: list[dict], engines: list[str], compiled: bool) -> None:
    torch_paths = ["project"] + (["compiled"] if compiled else [])
    paths = ["reference", *torch_paths, *engines]
    header = (f"{'model':<5} {'mode':<8} {'reps':>4} " + " ".join(f"{p + ' ms':>15}" for p in paths)
              + f" {'fastest torch':>13} {'torch/ref':>9} {'target':>6} {'torch/engine':>12} {'target':>6} "
              f"{'max rel err':>11}")
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        ms = row["ms"]
        fastest = min(torch_paths, key=lambda p: ms[p])
        best_engine = min(ms[e] for e in engines) if engines else float("nan")
        ref_target = REFERENCE_TARGETS.get(row["model"])
        print(f"{row['model'].upper():<5} {row['mode']:<8} {row['repeats']:>4} "
              + " ".join(f"{ms[p]:>15.2f}" for p in paths)
              + f" {fastest:>13} {ms['reference'] / ms[fastest]:>8.2f}x {f'{ref_target:.1f}' if ref_target else '-':>6} "
              f"{best_engine / ms[fastest]:>11.2f}x {ENGINE_TARGET:>6.1f} {max(row['max_rel_err'].values()):>11.1e}")
    if compiled:
        print("compilation: " + ", ".join(f"{r['model'].upper()} {r['compile_s']:.0f} s" for r in rows))
    print("torch/ref, torch/engine: the reference's and the faster engine's median over the fastest torch path's "
          "(>= 1.0 means that path is as fast)")


def print_breakdown(key: str, parts: dict[str, dict[str, float]]) -> None:
    print(f"\n{key.upper()} by layer kind, ms per forward (profilers add overhead; compare within a column's share)")
    names = list(parts)
    print(f"{'kind':<14} " + " ".join(f"{n:>12}" for n in names))
    for kind in KINDS:
        values = [parts[n].get(kind, 0.0) for n in names]
        if any(values):
            print(f"{kind:<14} " + " ".join(f"{v:>12.2f}" for v in values))
    print(f"{'total':<14} " + " ".join(f"{sum(parts[n].values()):>12.2f}" for n in names))


if __name__ == "__main__":
    main()
