"""A non-editable install works away from the checkout: shipped spaces/, named specs, the CLI and its script."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

#: Left out of the copy that is built: VCS data, build leftovers, caches, local results, the tests.
_IGNORE = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                 ".ruff_cache", ".venv*", "runs", "*.db", "*.pt", "*.onnx", "tests")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The project installed with `pip install --target` from a copy (the checkout gets no build/ folder)."""
    base = tmp_path_factory.mktemp("install")
    src, site = base / "src", base / "site"
    shutil.copytree(ROOT, src, ignore=_IGNORE)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
         "--disable-pip-version-check", "--target", str(site), str(src)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return site


def _run(site, cwd, *args):
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(list(args), capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_installed_package_ships_the_spaces_and_loads_named_specs(site, tmp_path):
    code = """
import json, fasternet_space, spaces, cli
from fasternet_space import NAMED_SPECS, count, load_spec
print(json.dumps({
    "files": [fasternet_space.__file__, spaces.__file__, cli.__file__, str(spaces.path(spaces.DEFAULT))],
    "default": spaces.path("fasternet").is_file(),
    "names": spaces.names(),
    "same": all(load_spec(spaces.path(k)) == s for k, s in NAMED_SPECS.items()),
    "t0": [load_spec(n) == NAMED_SPECS["t0"] for n in ("fasternet_t0", "t0", "T0")],
    "params": count(load_spec("fasternet_t0")).params,
}))
"""
    result = _run(site, tmp_path, sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert all(f.startswith(str(site)) for f in data["files"]), data["files"]  # not the checkout
    assert data["files"][3] == str(site / "spaces" / "fasternet.yaml")
    assert data["default"] and data["same"] and data["t0"] == [True, True, True]
    assert data["names"] == ["fasternet", "fasternet_l", "fasternet_m", "fasternet_s", "fasternet_t0",
                             "fasternet_t1", "fasternet_t2"]
    assert data["params"] == 3905500


@pytest.mark.parametrize("how, name", [("cli.py", "t0"), ("script", "T0")])
def test_installed_cli_builds_a_named_spec_from_elsewhere(site, tmp_path, how, name):
    command = [sys.executable, str(site / "cli.py")] if how == "cli.py" else [str(site / "bin" / "fasternet-space")]
    result = _run(site, tmp_path, *command, "build", "--spec", name, "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["name"], data["params"], data["flops"], data["named"]) == ("fasternet_t0", 3905500, 338041280, "T0")


def test_installed_cli_names_the_allowed_specs(site, tmp_path):
    result = _run(site, tmp_path, sys.executable, str(site / "cli.py"), "build", "--spec", "fasternet_xl")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "fasternet_xl: file not found" in lines[0] and "allowed names: t0, t1, t2, s, m, l" in lines[0], lines[0]
