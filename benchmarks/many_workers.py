"""Many workers, one PostgreSQL: a census of N candidates run by W worker processes, measured.

Each worker is the product's own command, the one a user starts on each machine:

    python cli.py search --proxy none --latency predicted --latency-table T --sampler random
        --n-trials N --storage URL --study-name S --seed I --quiet

(counted and predicted, nothing timed or trained: the database is the bottleneck; `--proxy zero-cost:vote`
shows the CPU-bound case). Prints per W: trials per minute, storage time per finished trial measured in the
workers while they run trials (ask + tell + attribute writes, and the reads around each trial;
FASTERNET_STORAGE_TIMING; opening the study and reading it for the closing summary are given apart, per worker),
the counts below, the peak of database connections (pg_stat_activity), and where the machine's CPU went: how
busy its cores were, and CPU ms per trial in the workers (their rusage) and in the rest (the database, mostly).

- complete: finished trials (COMPLETE, or PRUNED: a point of the space that is no valid network)
- failed: FAIL trials; retried: trials that retry a failed one
- lost: a failed trial with no finished retry, or a trial left RUNNING or WAITING
- duplicated: one trial's work done twice: a finished retry whose original also finished (or whose original
  had stored its result before it was failed), or an enqueued point (a named config) finished twice
- repeats (counted apart): a sampler drawing a point that another finished trial already has
- surplus: finished trials beyond N (workers that started one more while the last ones ran)
- not run: trials a worker made when N trials made before them had filled the study (it stood down: FAIL,
  with the reason "not run: ...", nothing measured)

--chaos (8 workers): kills a random worker with SIGKILL every ~20 s and starts a replacement (the same
command), restarts PostgreSQL once mid-run, then reruns the same command once and checks the census.

    python benchmarks/many_workers.py --workers-list 1,4,8,16 --candidates 2000
    python benchmarks/many_workers.py --chaos --candidates 2000
    python benchmarks/many_workers.py --proxy zero-cost:vote --workers-list 1,4 --candidates 200
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from fasternet_space.measure import device_name  # noqa: E402

START_POSTGRES = ROOT / ".ci" / "start-postgres"
PG_DIR, PG_PORT = "/tmp/fasternet-pg-many-workers", "55439"


def cpu_tag(name: str) -> str:
    lowered = name.lower()
    for key, tag in (("xeon", "intel_xeon"), ("epyc", "amd_epyc"), ("apple", "apple")):
        if key in lowered:
            return tag
    return "".join(c if c.isalnum() else "_" for c in lowered)[:24]


def postgres(action: str) -> str:
    env = dict(os.environ, PGTEST_DIR=PG_DIR, PGTEST_PORT=PG_PORT)
    done = subprocess.run([str(START_POSTGRES), action], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def ensure_table(path: Path) -> Path:
    """A small latency table for the default space (35 s on a 2-core VM), made once and kept."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"profiling a small latency table into {path} ...", flush=True)
        subprocess.run([sys.executable, str(ROOT / "cli.py"), "profile", "--out", str(path), "--part-time", "0.01",
                        "--network-time", "0.05", "--fit-specs", "4", "--held-out-specs", "4"], check=True,
                       stdout=subprocess.DEVNULL)
    return path.resolve()  # the workers run in their log directory


def worker_command(args, study: str, seed: int) -> list[str]:
    command = [sys.executable, str(ROOT / "cli.py"), "search", "--proxy", args.proxy, "--sampler", "random",
               "--n-trials", str(args.candidates), "--study-name", study, "--seed", str(seed), "--quiet",
               "--heartbeat", str(args.heartbeat)]
    if args.proxy == "none":
        command += ["--latency", "predicted", "--latency-table", str(args.latency_table)]
    else:
        command += ["--latency", "predicted", "--latency-table", str(args.latency_table), "--no-zero-cost"]
    return command


class Worker:
    """One worker process, its log and how it ended."""

    def __init__(self, args, study: str, seed: int, env: dict[str, str], logs: Path):
        self.seed = seed
        self.log = logs / f"worker-{seed}.log"
        self.handle = open(self.log, "w")  # noqa: SIM115 (closed in wait)
        self.process = subprocess.Popen(worker_command(args, study, seed), cwd=logs, env=env, stdout=self.handle,
                                        stderr=subprocess.STDOUT)
        self.killed = False

    def wait(self) -> int:
        code = self.process.wait()
        self.handle.close()
        return code

    def last_line(self) -> str:
        lines = [line for line in self.log.read_text().splitlines() if line.strip()]
        return lines[-1] if lines else ""


class Monitor(threading.Thread):
    """Polls the database every 0.5 s: connections to it (peak) and the study's finished trials."""

    def __init__(self, url: str, study: str):
        super().__init__(daemon=True)
        self.url, self.study = url, study
        self.peak_connections = 0
        self.finished = 0
        self.stop = threading.Event()

    def run(self) -> None:
        import psycopg

        while not self.stop.is_set():
            try:
                with psycopg.connect(self.url, connect_timeout=2) as db:
                    while not self.stop.is_set():
                        connections = db.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                                 "current_database() AND pid <> pg_backend_pid()").fetchone()[0]
                        self.peak_connections = max(self.peak_connections, connections)
                        self.finished = db.execute(
                            "SELECT count(*) FROM trials t JOIN studies s ON s.study_id = t.study_id WHERE "
                            "s.study_name = %s AND t.state IN ('COMPLETE', 'PRUNED')", (self.study,)).fetchone()[0]
                        db.commit()
                        self.stop.wait(0.5)
            except Exception:  # the database restarting (chaos) or the tables not there yet
                self.stop.wait(0.5)


def machine_cpu_s() -> tuple[float, float]:
    """(busy, all) CPU seconds of this machine since boot, all cores together (/proc/stat; steal counts busy:
    a core the host gave to another guest did no work here either)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


def children_cpu_s() -> float:
    """CPU seconds of the worker processes this process started and waited for (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def census_counts(url: str, study_name: str, n: int, killed_pids: frozenset[int] = frozenset()) -> dict:
    import optuna
    from optuna.trial import TrialState

    from search.records.trial import FAILED_TRIAL, RETRY_HISTORY, WORKER, Key

    study = optuna.load_study(study_name=study_name, storage=url)
    trials = study.get_trials(deepcopy=False)
    finished_states = (TrialState.COMPLETE, TrialState.PRUNED)
    by_number = {t.number: t for t in trials}
    finished = [t for t in trials if t.state in finished_states]
    not_run = [t for t in trials if t.state == TrialState.FAIL and  # stood down: the study was full
               str(t.user_attrs.get(Key.REASON, "")).startswith("not run: ")]
    failed = [t for t in trials if t.state == TrialState.FAIL and t not in not_run]
    retries = [t for t in trials if FAILED_TRIAL in t.system_attrs]
    # A failed attempt is made good when a finished trial lists it in its retry history.
    made_good = {n for t in finished for n in t.system_attrs.get(RETRY_HISTORY, [])}
    lost = [t.number for t in failed if t.number not in made_good]
    left = [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]

    def did_the_work(t) -> bool:  # finished, or its result stored and then failed while its worker still ran
        stored = bool(t.user_attrs.get(Key.MEASURED_ONLY)) or Key.SCORE in t.user_attrs
        killed = (t.system_attrs.get(WORKER) or {}).get("pid") in killed_pids  # died before telling: not twice
        return t.state in finished_states or (stored and not killed)

    duplicated = [t.number for t in finished if t.system_attrs.get(RETRY_HISTORY)
                  and any(did_the_work(by_number[o]) for o in t.system_attrs[RETRY_HISTORY] if o in by_number)]
    named = Counter(t.user_attrs.get(Key.NAMED) for t in finished if t.user_attrs.get(Key.NAMED)
                    and FAILED_TRIAL not in t.system_attrs)
    duplicated += [f"named {label} x{count}" for label, count in named.items() if count > 1]
    points = Counter(json.dumps(t.params, sort_keys=True) for t in finished)
    repeats = sum(count - 1 for count in points.values())
    return {"complete": len(finished), "failed": len(failed), "not_run": len(not_run), "retried": len(retries), "lost": len(lost) + len(left),
            "lost_trials": lost + left, "duplicated": len(duplicated), "duplicated_trials": duplicated,
            "running": sum(t.state == TrialState.RUNNING for t in trials),
            "waiting": sum(t.state == TrialState.WAITING for t in trials), "trials": len(trials),
            "distinct_candidates": len(points), "sampler_repeats": repeats, "surplus": max(len(finished) - n, 0)}


def storage_times(directory: Path) -> dict:
    """Storage time per finished trial, from the workers' own timing files (killed workers: up to their
    last finished trial): the calls made while the workers ran trials (ask, tell, attributes, the reads around
    each trial, heartbeats apart); what each worker spent opening the study and reading it for its closing
    summary is given apart, per worker."""
    from search.run.storage import _HEARTBEAT, _WRITES

    finished, retries, waited, workers = 0, 0, 0.0, 0
    phases: dict[str, Counter] = {"start": Counter(), "trials": Counter(), "end": Counter()}
    for path in directory.glob("storage-*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        workers += 1
        finished += record["finished"]
        retries += record["retries"]
        waited += record["waited_s"]
        for phase, calls in record.get("by_phase", {"trials": record["calls"]}).items():
            for name, (_count, seconds) in calls.items():
                phases.setdefault(phase, Counter())[name] += seconds
    trials = phases["trials"]
    heartbeat = sum(v for k, v in trials.items() if k in _HEARTBEAT)
    writes = sum(v for k, v in trials.items() if k in _WRITES)
    reads = sum(v for k, v in trials.items() if k not in _HEARTBEAT and k not in _WRITES)
    per, each = max(finished, 1), max(workers, 1)
    return {"storage_ms_per_trial": 1000 * (writes + reads) / per, "writes_ms_per_trial": 1000 * writes / per,
            "reads_ms_per_trial": 1000 * reads / per, "heartbeat_ms_per_trial": 1000 * heartbeat / per,
            "start_s_per_worker": sum(phases["start"].values()) / each,
            "end_s_per_worker": sum(phases["end"].values()) / each,
            "told": finished, "reconnect_retries": retries, "reconnect_wait_s": round(waited, 2),
            "ms_per_trial_by_call": {k: round(1000 * v / per, 3) for k, v in trials.most_common()},
            "end_ms_per_worker_by_call": {k: round(1000 * v / each, 1) for k, v in phases["end"].most_common()}}


def run(args, url: str, workers: int, chaos: bool) -> dict:
    stamp = time.strftime("%H%M%S")
    tag = args.proxy.replace(":", "-")
    study = f"census-{tag}-w{workers}{'-chaos' if chaos else ''}-{stamp}"
    logs = Path(tempfile.mkdtemp(prefix=f"{study}-", dir=args.work_dir))
    timing = logs / "timing"
    timing.mkdir()
    env = dict(os.environ, FASTERNET_STORAGE=url, FASTERNET_STORAGE_TIMING=str(timing), PYTHONPATH=str(ROOT))
    proxy = None
    if args.grpc:  # the workers talk to Optuna's storage proxy, the proxy to the database
        proxy_log = open(logs / "grpc-proxy.log", "w")  # noqa: SIM115 (closed below)
        proxy = subprocess.Popen([sys.executable, "-m", "search.run.grpc_proxy", "--port", str(args.grpc_port)],
                                 cwd=ROOT, env=dict(env, FASTERNET_STORAGE_TIMING=""), stdout=proxy_log,
                                 stderr=subprocess.STDOUT)
        env["FASTERNET_STORAGE"] = f"grpc://localhost:{args.grpc_port}"
    monitor = Monitor(url, study)
    monitor.start()
    rng = random.Random(workers)
    seeds = iter(range(1, 1_000_000))
    busy_before, all_before = machine_cpu_s()
    workers_before = children_cpu_s()
    start = time.perf_counter()
    running = [Worker(args, study, next(seeds), env, logs) for _ in range(workers)]
    ended: list[tuple[Worker, int]] = []
    kills, restarted, next_kill = 0, False, start + args.kill_every_s * rng.uniform(0.75, 1.25)
    while running:
        time.sleep(0.2)
        for worker in [w for w in running if w.process.poll() is not None]:
            running.remove(worker)
            ended.append((worker, worker.wait()))
        if not chaos or not running:
            continue
        now = time.perf_counter()
        if now >= next_kill and monitor.finished < args.candidates:
            victim = rng.choice(running)
            victim.process.send_signal(signal.SIGKILL)
            victim.killed = True
            kills += 1
            running.append(Worker(args, study, next(seeds), env, logs))  # the replacement, the same command
            next_kill = now + args.kill_every_s * rng.uniform(0.75, 1.25)
            print(f"  chaos: killed worker seed {victim.seed} at {now - start:.0f} s "
                  f"({monitor.finished} finished), started a replacement", flush=True)
        if not restarted and monitor.finished >= args.candidates // 2:
            print(f"  chaos: restarting PostgreSQL at {now - start:.0f} s ({monitor.finished} finished)", flush=True)
            t0 = time.perf_counter()
            postgres("restart")
            restarted = time.perf_counter() - t0
    elapsed = time.perf_counter() - start
    busy_after, all_after = machine_cpu_s()
    busy, worker_cpu = busy_after - busy_before, children_cpu_s() - workers_before
    if proxy is not None:
        proxy.terminate()
        proxy.wait()
        proxy_log.close()
    told = storage_times(timing)
    exits = [{"seed": w.seed, "code": code, "killed": w.killed, "last_line": w.last_line()}
             for w, code in ended if code != 0 and not w.killed]
    rerun = None
    if chaos:  # rerunning the same command finishes the census (fails the dead workers' trials, retries them)
        print("  chaos: rerunning the same command once", flush=True)
        last = Worker(args, study, next(seeds), env, logs)
        code = last.wait()
        rerun = {"code": code, "last_line": last.last_line()}
    monitor.stop.set()
    killed_pids = frozenset(w.process.pid for w, _ in ended if w.killed)
    if not monitor.finished and exits:
        raise SystemExit(f"error: no worker finished a trial; worker seed {exits[0]['seed']} said: "
                         f"{exits[0]['last_line']}")
    counts = census_counts(url, study, args.candidates, killed_pids)
    tracebacks = [p.name for p in logs.glob("worker-*.log") if "Traceback" in p.read_text()]
    finished_here = told["told"]
    return {"workers": workers, "chaos": chaos, "grpc_proxy": args.grpc, "study": study, "candidates": args.candidates, "proxy": args.proxy,
            "elapsed_s": round(elapsed, 1), "trials_per_min": round(60 * counts["complete"] / elapsed, 1),
            **{k: round(v, 2) if isinstance(v, float) else v for k, v in told.items()},
            "cpu_busy_share": round(busy / max(all_after - all_before, 1e-9), 3),
            "worker_cpu_ms_per_trial": round(1000 * worker_cpu / max(counts["complete"], 1), 1),
            "other_cpu_ms_per_trial": round(1000 * (busy - worker_cpu) / max(counts["complete"], 1), 1),
            "told_by_workers": finished_here, "peak_connections": monitor.peak_connections, **counts,
            "kills": kills if chaos else None, "postgres_restart_s": round(restarted, 1) if chaos and restarted else None,
            "worker_errors": exits, "workers_with_traceback": tracebacks, "rerun": rerun, "logs": str(logs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", help="a PostgreSQL URL (default: a throwaway server started here)")
    parser.add_argument("--workers-list", default="1,4,8,16")
    parser.add_argument("--candidates", type=int, default=2000)
    parser.add_argument("--proxy", default="none", choices=["none", "zero-cost:vote"])
    parser.add_argument("--chaos", action="store_true", help="8 workers, kill -9 one every ~20 s, restart the DB")
    parser.add_argument("--chaos-workers", type=int, default=8)
    parser.add_argument("--kill-every-s", type=float, default=20.0)
    parser.add_argument("--heartbeat", type=int, default=10)
    parser.add_argument("--grpc", action="store_true", help="workers use Optuna's GrpcStorageProxy in front of it")
    parser.add_argument("--grpc-port", type=int, default=13039)
    parser.add_argument("--latency-table", type=Path, default=ROOT / "runs" / "many_workers" / "table.json")
    parser.add_argument("--work-dir", default=None, help="where worker logs go (default: a temporary directory)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    try:
        widths = [int(w) for w in args.workers_list.split(",")]
    except ValueError:
        print(f"error: --workers-list {args.workers_list}: allowed: counts separated by commas, e.g. 1,4,8,16",
              file=sys.stderr)
        return 2
    if args.chaos and args.grpc:
        print("error: --chaos --grpc: the proxy has no heartbeat, a killed worker's trial stays RUNNING; allowed: "
              "one of them", file=sys.stderr)
        return 2
    if args.chaos and args.storage:
        print("error: --chaos restarts the database, so it needs the throwaway one; allowed: --chaos without "
              "--storage", file=sys.stderr)
        return 2
    args.latency_table = ensure_table(args.latency_table)
    url = args.storage or postgres("start")
    cpu = device_name(torch.device("cpu"))
    print(f"CPU: {cpu} ({os.cpu_count()} cores); storage: PostgreSQL "
          f"{'given' if args.storage else 'throwaway, ' + PG_DIR}; census of {args.candidates}, --proxy {args.proxy}")
    results = []
    for workers, chaos in ([(args.chaos_workers, True)] if args.chaos else [(w, False) for w in widths]):
        result = run(args, url, workers, chaos)
        results.append(result)
        print(f"W={workers:>2}{' chaos' if chaos else ''}: {result['trials_per_min']:.0f} trials/min, storage "
              f"{result['storage_ms_per_trial']:.1f} ms/trial (writes {result['writes_ms_per_trial']:.1f}, reads "
              f"{result['reads_ms_per_trial']:.1f}; heartbeats {result['heartbeat_ms_per_trial']:.1f}; per worker: start "
              f"{result['start_s_per_worker']:.2f} s, closing summary {result['end_s_per_worker']:.2f} s), "
              f"complete {result['complete']}, failed {result['failed']}, retried {result['retried']}, "
              f"not run {result['not_run']}, "
              f"lost {result['lost']}, duplicated {result['duplicated']}, running {result['running']}, "
              f"distinct {result['distinct_candidates']} (sampler repeats {result['sampler_repeats']}, surplus "
              f"{result['surplus']}), peak connections {result['peak_connections']}, {result['elapsed_s']:.0f} s; "
              f"cores {100 * result['cpu_busy_share']:.0f}% busy, CPU per trial: workers "
              f"{result['worker_cpu_ms_per_trial']:.0f} ms, database and the rest {result['other_cpu_ms_per_trial']:.0f} ms",
              flush=True)
        if chaos:
            print(f"  chaos: {result['kills']} kills, PostgreSQL restart ({result['postgres_restart_s']} s) "
                  f"survived: {not result['worker_errors']}; reconnect retries {result['reconnect_retries']} "
                  f"({result['reconnect_wait_s']} s waited); rerun: exit {result['rerun']['code']}", flush=True)
        for error in result["worker_errors"]:
            print(f"  worker seed {error['seed']} exited {error['code']}: {error['last_line']}", flush=True)
        if result["workers_with_traceback"]:
            print(f"  tracebacks in {result['workers_with_traceback']} ({result['logs']})", flush=True)
    day = datetime.date.today().isoformat()
    kind = "chaos" if args.chaos else args.proxy.replace(":", "-").replace("none", "census")
    kind += "_grpc" if args.grpc else ""
    out = args.out or ROOT / "benchmarks" / "results" / f"many_workers_{kind}_{cpu_tag(cpu)}_{day}.json"
    out.write_text(json.dumps({"cpu": cpu, "cores": os.cpu_count(), "command": " ".join(sys.argv),
                               "worker_command": " ".join(worker_command(args, "STUDY", 1)[1:]),
                               "results": results}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
