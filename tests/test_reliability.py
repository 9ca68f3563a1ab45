"""Bad input, failing trials, crashes, interrupts, concurrent workers and PostgreSQL storage."""

import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import optuna
import pytest
import torch
import yaml

import cli
from fasternet_space.proxy import ProxyConfig, ProxyDiverged, ProxyRun
from search import SearchConfig, TrialRecord, read_trials, run_search
from search.records.trial import FAILED, TRAINED
from search.run import objective as objective_module
from tests.cli_helpers import assert_one_line_error, run_cli
from tests.conftest import QUICK_TIMING, ROOT, TINY_SPACE


@pytest.fixture
def files(tmp_path):
    def write(name, text):
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    good = yaml.safe_dump(dict(yaml.safe_load((ROOT / "spaces/fasternet_t0.yaml").read_text()), input_size=64))
    return {
        "tmp": tmp_path,
        "good": write("good.yaml", good),
        "malformed": write("malformed.yaml", "embed_dim: [40, 80\nact: gelu\n"),
        "unknown_key": write("unknown.yaml", good + "colour: red\n"),
        "wrong_type": write("wrong_type.yaml", good.replace("embed_dim: 40", "embed_dim: forty")),
        "no_cp": write("no_cp.yaml", good.replace("partial_ratio: 0.25", "partial_ratio: 0.01")),
        "short_depths": write("short.yaml", good + "partial_ratio: [0.25, 0.25]\n"),
        "junk_weights": write("junk.pth", "not a checkpoint"),
        "space": write("tiny.yaml", yaml.safe_dump(TINY_SPACE)),
        "float_space": write("float.yaml", yaml.safe_dump(dict(TINY_SPACE, mlp_ratio={"low": 1.0, "high": 3.0}))),
        "bad_space": write("bad_space.yaml", yaml.safe_dump(dict(TINY_SPACE, act={"choices": ["relu", "mish"]}))),
        "storage": f"sqlite:///{tmp_path / 'ok.db'}",
    }


def search_args(f, *extra):
    return ["search", "--space", f["space"], "--storage", f["storage"], "--n-trials", "1", *extra]


# (arguments, fragments the one-line error must contain)
BAD_INPUTS = [
    (lambda f: ["build", "--spec", str(f["tmp"] / "missing.yaml")], ["missing.yaml", "file not found"]),
    (lambda f: ["build", "--spec", f["malformed"]], ["malformed.yaml", "not valid YAML at line"]),
    (lambda f: ["build", "--spec", f["unknown_key"]], ["field 'colour'", "allowed: name, embed_dim"]),
    (lambda f: ["build", "--spec", f["wrong_type"]], ["field 'embed_dim'", "'forty' is not an integer"]),
    (lambda f: ["build", "--spec", f["no_cp"]], ["field 'partial_ratio'", "c_p = floor(40 * 0.01) = 0"]),
    (lambda f: ["build", "--spec", f["short_depths"]], ["field 'partial_ratio'", "one per stage (4)"]),
    (lambda f: ["build", "--spec", f["good"], "--format", "xml"], ["'xml' is not one of", "text", "json"]),
    (lambda f: ["build", "--spec", f["good"], "--weights", str(f["tmp"] / "none.pth")], ["none.pth", "not found"]),
    (lambda f: ["build", "--spec", f["good"], "--weights", f["junk_weights"]], ["not a PyTorch checkpoint"]),
    (lambda f: ["build", "--spec", f["good"], "--out", "model.bin"], ["--out model.bin", ".pt"]),
    (lambda f: ["build", "--spec", f["good"], "--export", "model.tflite"], ["--export", ".onnx"]),
    (lambda f: ["build", "--spec", f["good"], "--measure", "--device", "tpu"], ["--device 'tpu': unknown device", "cpu, cuda"]),
    (lambda f: ["build", "--spec", f["good"], "--measure", "--threads", "-2"], ["--threads -2", "positive"]),
    (lambda f: ["build", "--spec", f["good"], "--colour"], ["No such option", "--spec"]),
    (lambda f: ["bench", "ops", "--width", "0"], ["--width 0", "positive"]),
    (lambda f: ["bench", "models", str(f["tmp"] / "nope.yaml")], ["nope.yaml", "file not found"]),
    (lambda f: search_args(f, "--latency-budget", "20 parsecs"), ["'20 parsecs'", "ms or s"]),
    (lambda f: search_args(f, "--latency-budget", "-5ms"), ["'-5ms'", "positive number"]),
    (lambda f: search_args(f, "--device", "gpu0"), ["--device 'gpu0': unknown device", "cpu, cuda, cuda:N, mps"]),
    (lambda f: ["search", "--space", f["space"], "--storage", "mongodb://x/y"], ["mongodb://x/y", "sqlite:///"]),
    (lambda f: ["search", "--space", f["space"], "--storage", "sqlite:////no/such/dir/x.db"], ["does not exist"]),
    (lambda f: ["search", "--space", f["space"], "--n-trials", "-1"], ["--n-trials -1", "positive"]),
    (lambda f: ["search", "--space", f["space"], "--workers", "0"], ["--workers 0", "positive"]),
    (lambda f: ["search", "--space", f["space"], "--timeout", "-10"], ["--timeout -10", "positive"]),
    (lambda f: ["search", "--space", str(f["tmp"] / "gone.yaml"), "--storage", f["storage"]], ["file not found"]),
    (lambda f: ["search", "--space", f["malformed"], "--storage", f["storage"]], ["not valid YAML"]),
    (lambda f: ["search", "--space", f["bad_space"], "--storage", f["storage"]], ["field 'act'", "'mish'"]),
    (lambda f: search_args(f, "--data", "svhn"), ["--data 'svhn'", "digits, fashion, fashion-mnist:DIR"]),
    (lambda f: search_args(f, "--data", f"cifar10:{f['tmp'] / 'nodata'}"), ["cifar10", "not found"]),
    (lambda f: search_args(f, "--data", f"cifar10:{f['tmp']}"), ["data_batch_1 not found", "python batches"]),
    (lambda f: ["search", "--space", f["float_space"], "--storage", f["storage"], "--sampler", "grid"],
     ["--sampler grid: needs a finite space"]),
    (lambda f: search_args(f, "--sampler", "cmaes"), ["'cmaes' is not one of", "tpe"]),
    (lambda f: search_args(f, "--proxy-lr", "0"), ["--proxy-lr 0", "positive"]),
]
if not torch.cuda.is_available():
    BAD_INPUTS.append((lambda f: search_args(f, "--device", "cuda"), ["--device 'cuda': is not available", "allowed here: cpu"]))
    BAD_INPUTS.append((lambda f: ["build", "--spec", f["good"], "--measure", "--device", "cuda:1"], ["not available"]))


@pytest.mark.parametrize("case", range(len(BAD_INPUTS)))
def test_bad_input_is_one_line_exit_2(files, capsys, case):
    make_args, fragments = BAD_INPUTS[case]
    args = make_args(files)
    rc = cli.main(args)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert rc == 2, (args, captured.err)
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_a_resume_with_another_setting_is_refused_and_loses_nothing(files, capsys, monkeypatch):
    monkeypatch.chdir(files["tmp"])  # the summary writes runs/STUDY/best.yaml
    base = search_args(files, "--study-name", "keep", "--proxy-epochs", "1", "--max-train-samples", "64",
                       "--latency-budget", "1s", "--quiet")
    assert cli.main(base) == 0
    capsys.readouterr()
    assert cli.main([*base[:-3], "--latency-budget", "5ms", "--quiet"]) == 2
    assert "made with budget_ms 1000.0" in capsys.readouterr().err
    study = optuna.load_study(study_name="keep", storage=files["storage"])
    assert [t.state.name for t in study.trials] == ["COMPLETE"]


def test_failing_trials_are_marked_failed_with_their_reason_and_the_study_goes_on(files, monkeypatch):
    real = objective_module.train_proxy
    failures = [RuntimeError("boom in trial"), ProxyDiverged("training loss is nan at epoch 1"),
                torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")]

    def flaky(*args, **kwargs):
        if failures:
            raise failures.pop(0)
        return real(*args, **kwargs)

    monkeypatch.setattr(objective_module, "train_proxy", flaky)
    config = SearchConfig(space=files["space"], budget_ms=1000.0, n_trials=2, storage=files["storage"],
                          study_name="flaky", max_train_samples=64, proxy=ProxyConfig(epochs=1), timing=QUICK_TIMING,
                          confirm=1)
    records = read_trials(run_search(config).study)
    reasons = [r.reason for r in records if r.status == FAILED]
    assert reasons == ["RuntimeError: boom in trial", "proxy training diverged: training loss is nan at epoch 1",
                       "out of memory while training: CUDA out of memory. Tried to allocate 2 GiB"]
    assert sum(r.status == TRAINED for r in records) == 2


def _search_command(space, storage, n_trials, *extra):
    return [sys.executable, str(ROOT / "cli.py"), "search", "--space", space, "--storage", storage,
            "--study-name", "crash", "--n-trials", str(n_trials), "--latency-budget", "1s",
            "--proxy-epochs", "4", "--max-train-samples", "1000", "--pruner", "none", "--confirm", "1",
            "--no-zero-cost", "--data", "digits", *extra]


def _states(storage, name="crash"):
    try:
        return [t.state.name for t in optuna.load_study(study_name=name, storage=storage).trials]
    except (KeyError, Exception):
        return []


def _wait_for(predicate, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def test_kill_9_then_rerun_keeps_every_trial_and_finishes(files):
    storage = files["storage"]
    command = _search_command(files["space"], storage, 6, "--heartbeat", "1")
    process = subprocess.Popen(command, cwd=files["tmp"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # Trials take seconds each (4 epochs on 1000 images), so one is running when two have completed.
        caught = _wait_for(lambda: process.poll() is not None or (
            _states(storage).count("COMPLETE") >= 2 and "RUNNING" in _states(storage)), 240)
        assert caught and process.poll() is None, "the search ended before it could be killed mid-trial"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    before = optuna.load_study(study_name="crash", storage=storage).trials
    completed_before = {t.number: t.values for t in before if t.state.name == "COMPLETE"}
    killed = [t.number for t in before if t.state.name == "RUNNING"]
    assert len(killed) == 1
    # A rerun that has nothing left to run (the study already holds 2 finished trials) still fails the
    # killed trial, at once: its process on this host is gone (no need to wait for its heartbeat to age).
    nothing_to_do = subprocess.run(_search_command(files["space"], storage, 2, "--heartbeat", "1"),
                                   cwd=files["tmp"], capture_output=True, text=True, timeout=600)
    assert nothing_to_do.returncode == 0, nothing_to_do.stderr
    assert f"left running by a stopped worker: #{killed[0]}" in nothing_to_do.stdout
    assert _states(storage)[killed[0]] == "FAIL" and "RUNNING" not in _states(storage)
    rerun = subprocess.run(command, cwd=files["tmp"], capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    after = optuna.load_study(study_name="crash", storage=storage).trials
    by_number = {t.number: t for t in after}
    assert all(by_number[n].values == v for n, v in completed_before.items())
    assert by_number[killed[0]].state.name == "FAIL"
    retried = [t for t in after if t.system_attrs.get("failed_trial") == killed[0]]
    # A trial killed while its parameters were being suggested holds only those suggested so far; its retry
    # keeps them and samples the rest.
    assert retried and by_number[killed[0]].params.items() <= retried[0].params.items()
    for trial in retried:  # a retry measures afresh: its constraint is its own latency, not the dead attempt's
        record = TrialRecord.from_trial(trial)
        if record.state == "COMPLETE":
            assert record.over_budget_ms == pytest.approx(record.latency_ms - 1000)
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in after) == 6


def test_ctrl_c_stops_cleanly_with_the_summary_so_far(files):
    storage = files["storage"]
    command = _search_command(files["space"], storage, 50)
    process = subprocess.Popen(command, cwd=files["tmp"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: _states(storage).count("COMPLETE") >= 1, 240)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "stopping: the running trial ends now" in err
    assert "interrupted: the study keeps every finished trial" in out
    assert "Pareto front" in out or "no trial met" in out
    assert "RUNNING" not in _states(storage)


def test_a_stop_sent_to_the_first_process_alone_reaches_its_workers(files):
    storage = files["storage"]
    command = [*_search_command(files["space"], storage, 200), "--workers", "2"]
    # its own session: the SIGINT below reaches the first process only, as from a process manager
    process = subprocess.Popen(command, cwd=files["tmp"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    assert _wait_for(lambda: _states(storage).count("COMPLETE") >= 2, 240)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=180)  # before the fix: the worker ran on through all 200 trials
    assert process.returncode == 130, err
    assert "interrupted: the study keeps every finished trial" in out and "Traceback" not in err
    assert "RUNNING" not in _states(storage) and _states(storage).count("COMPLETE") < 200


def test_a_worker_stopped_before_its_handler_is_not_counted_as_failed():
    import threading

    from search.run.workers import wait_for_workers

    stop = threading.Event()
    stop.set()
    importing = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # no handler yet
    broken = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    broken.wait()
    assert wait_for_workers([importing, broken], stop) == 1  # the stopped one is no error, the crashed one is
    assert importing.returncode == -signal.SIGUSR1


def _run_workers(storage, space, count, n_trials, cwd, study="shared"):
    command = [sys.executable, str(ROOT / "cli.py"), "search", "--space", space, "--storage", storage,
               "--study-name", study, "--n-trials", str(n_trials), "--latency-budget", "1s", "--proxy-epochs", "1",
               "--max-train-samples", "64", "--quiet", "--confirm", "1", "--data", "digits"]
    processes = [subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(count)]
    results = [p.communicate(timeout=600) for p in processes]
    return processes, results


def _check_shared_study(storage, study, n_trials, workers, processes, results):
    for p, (_out, err) in zip(processes, results, strict=True):
        assert p.returncode == 0, err
        assert "locked" not in err.lower() and "Traceback" not in err
    trials = optuna.load_study(study_name=study, storage=storage).trials
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) == max(numbers) + 1  # nothing lost, nothing duplicated
    finished = sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    assert n_trials <= finished <= n_trials + workers - 1  # workers may each start one as the count is reached
    assert not any(t.state.name == "FAIL" for t in trials)


def test_three_processes_share_one_sqlite_study(files):
    storage = files["storage"]
    processes, results = _run_workers(storage, files["space"], 3, 9, files["tmp"])
    _check_shared_study(storage, "shared", 9, 3, processes, results)


def test_workers_flag_runs_several_processes(files):
    result = run_cli("search", "--space", files["space"], "--storage", files["storage"], "--study-name", "w",
                     "--n-trials", "4", "--latency-budget", "1s", "--proxy-epochs", "1", "--max-train-samples", "64",
                     "--workers", "2", cwd=files["tmp"])
    assert result.returncode == 0, result.stderr
    trials = optuna.load_study(study_name="w", storage=files["storage"]).trials
    assert 4 <= sum(t.state.name == "COMPLETE" for t in trials) <= 5


@pytest.mark.skipif(not os.environ.get("FASTERNET_TEST_POSTGRES_URL"),
                    reason="no PostgreSQL server: set FASTERNET_TEST_POSTGRES_URL (.ci/run starts one)")
def test_two_workers_on_postgresql(files):
    url = os.environ["FASTERNET_TEST_POSTGRES_URL"]
    study = f"pg-{os.getpid()}-{int(time.time())}"
    processes, results = _run_workers(url, files["space"], 2, 4, files["tmp"], study=study)
    _check_shared_study(url, study, 4, 2, processes, results)
    optuna.delete_study(study_name=study, storage=url)
    assert_one_line_error(run_cli("search", "--space", files["space"], "--storage",
                                  "postgresql://nobody@127.0.0.1:1/none", "--n-trials", "1", cwd=files["tmp"]),
                          "cannot open")


def test_timing_excludes_training_and_trainings_overlap(tmp_path, monkeypatch):
    """Device lock shared by the workers of one machine: timing alone, trainings together."""
    import fcntl

    from search.run.objective import Objective
    from search.space import SearchSpace

    lock_file = tmp_path / "device-cpu.lock"
    seen = []

    def try_lock(mode):
        with open(lock_file, "a") as other:  # another worker's handle on the same device
            try:
                fcntl.flock(other, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(other, fcntl.LOCK_UN)
            return True

    real_measure = objective_module.measure_candidate

    def measuring(*args, **kwargs):
        seen.append(("timing: another may train", try_lock(fcntl.LOCK_SH)))
        return real_measure(*args, **kwargs)

    def training(*args, **kwargs):
        seen.append(("training: another may time", try_lock(fcntl.LOCK_EX)))
        seen.append(("training: another may train", try_lock(fcntl.LOCK_SH)))
        return ProxyRun([0.5], [1.0])

    monkeypatch.setattr(objective_module, "measure_candidate", measuring)
    monkeypatch.setattr(objective_module, "train_proxy", training)
    config = SearchConfig(lock_dir=str(tmp_path), budget_ms=1e6, timing=QUICK_TIMING, zero_cost_scores=False)
    held_out = SimpleNamespace(test_y=[0] * 10, classes=10)  # training is replaced: only its sizes are read
    objective = Objective(SearchSpace.from_dict(TINY_SPACE), dataset=held_out, config=config)
    optuna.create_study(directions=["maximize", "minimize"]).optimize(objective, n_trials=1)
    assert seen == [("timing: another may train", False), ("training: another may time", False),
                    ("training: another may train", True)]
    assert try_lock(fcntl.LOCK_EX)  # released afterwards
