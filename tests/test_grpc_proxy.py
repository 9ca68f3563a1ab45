"""Optuna's gRPC storage proxy in front of the database (`python -m search.run.grpc_proxy`): two workers of
the product's own command share a census through it, and a proxy that does not answer is one line."""

import os
import socket
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from search.errors import SearchError
from search.run.grpc_client import open_grpc_proxy
from search.run.storage import STORAGE_ENV
from tests.conftest import ROOT
from tests.test_latency_search import _table_file

pytest.importorskip("grpc", reason="the [grpc] extra (in [test]) is not installed")

CANDIDATES = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_workers_share_a_census_through_the_proxy(tmp_path, quiet_optuna):
    _table_file(tmp_path, part_ms=1.0)
    database, port = f"sqlite:///{tmp_path / 'behind.db'}", _free_port()
    proxy = subprocess.Popen([sys.executable, "-m", "search.run.grpc_proxy", "--port", str(port)], cwd=ROOT,
                             env=dict(os.environ, **{STORAGE_ENV: database}), stderr=subprocess.PIPE, text=True)
    try:
        env = dict(os.environ, **{STORAGE_ENV: f"grpc://localhost:{port}"})
        command = [sys.executable, str(ROOT / "cli.py"), "search", "--space", str(tmp_path / "lat.yaml"), "--data",
                   "digits", "--proxy", "none", "--latency", "predicted", "--latency-table",
                   str(tmp_path / "table.json"), "--sampler", "random", "--n-trials", str(CANDIDATES), "--study-name",
                   "through-proxy", "--latency-budget", "1s", "--quiet"]
        workers = [subprocess.Popen([*command, "--seed", str(seed)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
        outputs = [w.communicate(timeout=300) for w in workers]
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)
    assert [w.returncode for w in workers] == [0, 0], [err[-500:] for _, err in outputs]
    assert all("Traceback" not in err for _, err in outputs)
    trials = optuna.load_study(study_name="through-proxy", storage=database).get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == CANDIDATES  # in the database behind the proxy, none beyond the census
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert {t.system_attrs["worker"]["pid"] for t in finished} <= {w.pid for w in workers}  # claimed by them


def test_a_proxy_that_does_not_answer_is_one_line():
    url = f"grpc://localhost:{_free_port()}"
    with pytest.raises(SearchError) as exc:
        open_grpc_proxy(url, lambda: None, wait_s=0.5)
    text = str(exc.value)
    assert "\n" not in text and url in text and "no storage proxy answered" in text and "allowed:" in text
