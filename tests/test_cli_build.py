import json

import pytest
import torch
import yaml

from fasternet_space import NAMED_SPECS, build_model
from fasternet_space.checkpoint import CheckpointError, load_model
from tests.cli_helpers import assert_one_line_error, run_cli


def test_build_prints_a_per_stage_table():
    result = run_cli("build", "--spec", "spaces/fasternet_l.yaml")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("fasternet_l (L)")
    for stage in ("stage1", "stage2", "stage3", "stage4", "head"):
        assert stage in out
    assert "93,465,192" in out and "15,520,500,224" in out
    assert "  192      3   48  56x56" in out  # width, depth, c_p, map of stage 1


def test_build_json():
    result = run_cli("build", "--spec", "spaces/fasternet_t0.yaml", "--format", "json")
    data = json.loads(result.stdout)
    assert (data["name"], data["params"], data["flops"], data["named"]) == ("fasternet_t0", 3905500, 338041280, "T0")
    assert abs(sum(s["memory_access_share"] for s in data["stages"]) - 1) < 1e-9


def test_build_saves_and_loads_weights(tmp_path):
    spec_path = tmp_path / "small.yaml"
    spec = NAMED_SPECS["t0"].replace(name="small", input_size=64, num_classes=10)
    spec_path.write_text(yaml.safe_dump(spec.to_dict()))
    out = tmp_path / "small.pt"
    assert run_cli("build", "--spec", str(spec_path), "--out", str(out)).returncode == 0
    saved = torch.load(out, weights_only=True)
    assert saved["spec"]["name"] == "small"
    loaded = load_model(out)  # the library reads back what build --out wrote: same spec, same weights
    assert loaded.spec == spec
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in saved["state_dict"].items())
    with pytest.raises(CheckpointError, match="not a model saved by save_model"):
        torch.save({"weights": 1}, tmp_path / "other.pt")
        load_model(tmp_path / "other.pt")
    result = run_cli("build", "--spec", str(spec_path), "--weights", str(out))
    assert result.returncode == 0, result.stderr
    assert "loaded official-format weights" in result.stdout
    torch.save(build_model(NAMED_SPECS["t0"]).state_dict(), tmp_path / "t0.pth")
    assert_one_line_error(run_cli("build", "--spec", str(spec_path), "--weights", str(tmp_path / "t0.pth")),
                          "wrong shape: head.weight (1000, 1280) != (10, 1280)")


def test_build_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("embed_dim: 40\nact: mish\n")
    assert_one_line_error(run_cli("build", "--spec", str(bad)), str(bad), "field 'act'", "relu, gelu")
    assert_one_line_error(run_cli("build", "--spec", str(tmp_path / "none.yaml")), "file not found")
    assert_one_line_error(run_cli("build", "--spec", "spaces/fasternet_t0.yaml", "--out", "x.onnx"), ".pt")
    assert_one_line_error(run_cli("build", "--spec", "spaces/fasternet_t0.yaml", "--colour"), "--spec")
