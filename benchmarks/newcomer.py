"""The newcomer check: what a new user gets from a fresh clone, timed, with every output kept for reading.

A fresh clone of this repository's committed HEAD and a fresh venv, then, each step timed:
  1. the README's first command (Quick start), parsed from README.md and run exactly as written
     (its install and the main job; the time the search's first line appeared splits the two);
  2. `pareto --out` .html, .png and .csv on the study the search printed;
  3. with the PNG refused (no kaleido in the base install): `pip install -e '.[image]'`, then the PNG again;
  4. `analyze --out` .html (the text report is the step's log);
  5. `build --spec runs/STUDY/best.yaml --measure`, the path the search printed.
Every step's output is in OUT/logs/STEP.log (each line with the seconds since the step started), the files in
OUT/outputs, the clone (runs/, the study's storage) in OUT/clone; a table of times is printed and kept in
OUT/times.md.

    python benchmarks/newcomer.py [--out DIR] [--keep-venv]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def quick_start_command(readme: str) -> str:
    """The first command of the README's Quick start: the first line of its first ```bash block."""
    section = readme.split("## Quick start", 1)
    if len(section) < 2:
        raise SystemExit("error: README.md has no '## Quick start' section; allowed: a README with one")
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section[1], re.S)
    if block is None:
        raise SystemExit("error: README.md's Quick start has no code block; allowed: one with the first command")
    lines = [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]
    return lines[0]


class Step:
    def __init__(self, name: str, seconds: float, rc: int, note: str):
        self.name, self.seconds, self.rc, self.note = name, seconds, rc, note


def run_step(name: str, command: str, cwd: Path, env: dict[str, str], logs: Path) -> tuple[Step, list[tuple[float, str]]]:
    """Runs `command` in bash, its output (both streams) logged line by line with the seconds since its start."""
    lines: list[tuple[float, str]] = []
    start = time.perf_counter()
    with subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, bufsize=1) as proc, \
            (logs / f"{name}.log").open("w") as log:
        log.write(f"$ {command}\n")
        for line in proc.stdout:
            at = time.perf_counter() - start
            lines.append((at, line.rstrip("\n")))
            log.write(f"{at:8.1f}s  {line}")
            log.flush()
        rc = proc.wait()
    seconds = time.perf_counter() - start
    last = next((text for _, text in reversed(lines) if text.strip()), "")
    print(f"[{name}] {seconds:.1f} s, rc {rc}: {last[:160]}", flush=True)
    return Step(name, seconds, rc, "" if rc == 0 else last[:160]), lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp") / f"newcomer-{time.strftime('%Y%m%d-%H%M%S')}",
                        help="where the clone, the logs and the outputs are kept (must not exist)")
    parser.add_argument("--keep-venv", action="store_true", help="keep OUT/venv (about 1 GB) after the run")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    if out.exists():
        raise SystemExit(f"error: --out {out} exists; allowed: a path that does not exist yet")
    logs, outputs, clone, venv = out / "logs", out / "outputs", out / "clone", out / "venv"
    logs.mkdir(parents=True)
    outputs.mkdir()
    print(f"newcomer check in {out}", flush=True)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTERNET_", "VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["PYTHONUNBUFFERED"] = "1"  # each line as it is printed: the times of the search's lines are the data
    steps: list[Step] = []

    def step(name: str, command: str) -> list[tuple[float, str]]:
        done, lines = run_step(name, command, clone, env, logs)
        steps.append(done)
        return lines

    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    steps.append(Step("venv", time.perf_counter() - start, 0, ""))
    command = quick_start_command((clone / "README.md").read_text())
    lines = step("quick-start", command)
    first = next((at for at, text in lines if text.startswith("study '")), None)
    if first is not None:  # split the install from the main job
        total = steps[-1]
        steps[-1:] = [Step("  install (pip)", first, 0, ""), Step("  main job (search)", total.seconds - first,
                                                                      total.rc, total.note)]
    text = "\n".join(t for _, t in lines)
    study = re.search(r"^study '([^']+)'", text, re.M)
    spec = re.search(r"-> (\S+best\.yaml)", text)
    estimates = [(at, float(m.group(1))) for at, t in lines for m in [re.search(r"~([\d.]+) min left", t)] if m]
    if study is None:
        print("the search printed no study name; stopping", file=sys.stderr)
        return summarise(out, steps, estimates, first, lines)
    name = study.group(1)
    pareto = f"python cli.py pareto --study {name} --out {outputs}/pareto"
    step("pareto-html", f"{pareto}.html")
    step("pareto-png", f"{pareto}.png")
    if steps[-1].rc != 0:
        step("install-image-extra", "pip install -e '.[image]'")
        step("pareto-png-again", f"{pareto}.png")
    step("pareto-csv", f"{pareto}.csv")
    step("analyze", f"python cli.py analyze --study {name} --out {outputs}/analysis.html")
    if spec is not None:
        step("build-measure", f"python cli.py build --spec {spec.group(1)} --measure")
        shutil.copy(clone / spec.group(1), outputs / "best.yaml")
    if not args.keep_venv:
        shutil.rmtree(venv, ignore_errors=True)
    return summarise(out, steps, estimates, first, lines)


def summarise(out: Path, steps: list[Step], estimates: list[tuple[float, float]], first: float | None,
              lines: list[tuple[float, str]]) -> int:
    """Prints (and keeps in OUT/times.md) the table of times and the search's time estimates against the truth."""
    table = ["| step | seconds | minutes | rc | note |", "| --- | ---: | ---: | ---: | --- |"]
    table += [f"| {s.name} | {s.seconds:.1f} | {s.seconds / 60:.2f} | {s.rc} | {s.note} |" for s in steps]
    if estimates and first is not None:
        end = lines[-1][0]
        table.append("")
        table.append("| search time at estimate (min) | estimated left (min) | really left (min) | error |")
        table.append("| ---: | ---: | ---: | ---: |")
        for at, left in estimates[:3] + estimates[-2:]:
            real = (end - at) / 60
            table.append(f"| {(at - first) / 60:.2f} | {left:.1f} | {real:.1f} | "
                         f"{(left - real) / real:+.0%} |" if real > 0 else f"| {(at - first) / 60:.2f} | {left:.1f} | 0 | |")
    text = "\n".join(table)
    (out / "times.md").write_text(text + "\n")
    print("\n" + text)
    return 0 if all(s.rc == 0 for s in steps if "png" not in s.name) else 1


if __name__ == "__main__":
    sys.exit(main())
