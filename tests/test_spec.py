import json
import random

import pytest
import yaml

import spaces
from fasternet_space import NAMED_SPECS, ArchSpec, SpecError, dump_spec, load_spec, named_spec, save_spec
from tests.conftest import ROOT, random_spec


@pytest.mark.parametrize("key", list(NAMED_SPECS))
def test_named_spec_files_are_the_named_configs(key):
    # load_spec("t0") answers from NAMED_SPECS, the shipped YAML is what users read: the two must not drift.
    path = spaces.path(f"fasternet_{key}")
    assert path == ROOT / "spaces" / f"fasternet_{key}.yaml"
    assert load_spec(path) == NAMED_SPECS[key]
    assert path.read_text() == dump_spec(NAMED_SPECS[key])


def test_shipped_files_are_the_default_space_and_the_named_configs():
    assert spaces.names() == sorted(["fasternet"] + [f"fasternet_{key}" for key in NAMED_SPECS])
    assert sorted(p.name for p in (ROOT / "spaces").glob("*.yaml")) == [f"{n}.yaml" for n in spaces.names()]
    for name in ("fasternet", "fasternet.yaml", "FASTERNET"):
        assert spaces.path(name) == ROOT / "spaces" / "fasternet.yaml"
    for name in ("fasternet_t0", "fasternet_t0.yaml", "t0", "T0"):
        assert spaces.path(name) == ROOT / "spaces" / "fasternet_t0.yaml"
    with pytest.raises(FileNotFoundError, match="shipped: fasternet, fasternet_l, .*fasternet_t2$"):
        spaces.path("fasternet_xl")


@pytest.mark.parametrize("name", ["fasternet_t0", "t0", "T0", "FasterNet_T0", "fasternet_t0.yaml"])
def test_named_configs_load_by_name_from_any_directory(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_spec(name) is NAMED_SPECS["t0"]
    assert named_spec(name) is NAMED_SPECS["t0"]


def test_an_existing_path_wins_over_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_spec(NAMED_SPECS["s"].replace(name="local"), tmp_path / "t0")
    assert load_spec("t0").name == "local"
    assert load_spec(tmp_path / "t0").name == "local"
    assert load_spec("t1") == NAMED_SPECS["t1"]


@pytest.mark.parametrize("name", ["fasternet_xl", "t3", "fasternet", "missing.yaml", "sub/t0", "./t0"])
def test_unknown_name_says_not_found_and_lists_the_names(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as info:
        load_spec(name)
    message = str(info.value)
    assert message.startswith(f"{name}: file not found"), message
    assert "allowed names: t0, t1, t2, s, m, l (or fasternet_t0 .. fasternet_l" in message, message
    assert "\n" not in message
    with pytest.raises(KeyError, match="allowed: t0, t1, t2, s, m, l"):
        named_spec("t3")


def test_named_configs_follow_reference_md():
    t0, l_ = NAMED_SPECS["t0"], NAMED_SPECS["l"]
    assert (t0.embed_dim, t0.depths, t0.act, t0.stage_widths) == (40, (1, 2, 8, 2), "gelu", (40, 80, 160, 320))
    assert t0.partial_channels == (10, 20, 40, 80)
    assert (l_.embed_dim, l_.depths, l_.act, l_.drop_path_rate) == (192, (3, 4, 18, 3), "relu", 0.3)


def test_yaml_round_trips_exactly(tmp_path):
    rng = random.Random(7)
    specs = list(NAMED_SPECS.values()) + [random_spec(rng) for _ in range(40)]
    for i, spec in enumerate(specs):
        path = save_spec(spec, tmp_path / f"s{i}.yaml")
        assert load_spec(path) == spec
        assert dump_spec(load_spec(path)) == path.read_text()


def _write(tmp_path, **changes):
    data = NAMED_SPECS["t0"].to_dict()
    for key, value in changes.items():
        if value is _DROP:
            data.pop(key)
        else:
            data[key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


_DROP = object()


@pytest.mark.parametrize("changes, field, allowed", [
    ({"colour": "red"}, "colour", "allowed: name, embed_dim"),
    ({"act": "mish"}, "act", "relu, gelu, silu, hardswish"),
    ({"norm": "gn"}, "norm", "bn, ln"),
    ({"embed_dim": "wide"}, "embed_dim", "an integer"),
    ({"embed_dim": 40.5}, "embed_dim", "an integer"),
    ({"mlp_ratio": -1}, "mlp_ratio", "> 0"),
    ({"depths": [1, 2, -8, 2]}, "depths[2]", ">= 0"),
    ({"depths": [1, 2, 8]}, "partial_ratio", None),  # a 3-stage spec is fine; check the next one instead
    ({"partial_ratio": [0.25, 0.25]}, "partial_ratio", "one per stage (4)"),
    ({"partial_ratio": 0.02}, "partial_ratio", "c_p = floor(40 * 0.02) = 0"),
    ({"partial_ratio": 1.5}, "partial_ratio", "<= 1"),
    ({"kernel_size": 4}, "kernel_size", "odd"),
    ({"pconv_forward": "fast"}, "pconv_forward", "split_cat, slicing"),
    ({"widths": [40, 80, 160]}, "widths", "one per stage (4)"),
    ({"widths": [48, 80, 160, 320]}, "embed_dim", "equal to widths[0]"),
    ({"input_size": 16}, "input_size", ">= 32"),
    ({"act": {"choices": ["relu", "gelu"]}}, "act", "search it"),
])
def test_invalid_specs_name_file_field_and_what_is_allowed(tmp_path, changes, field, allowed):
    path = _write(tmp_path, **changes)
    if allowed is None:
        assert load_spec(path).num_stages == 3
        return
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert f"field '{field}'" in message, message
    assert allowed in message, message
    assert "\n" not in message


def test_bad_files(tmp_path):
    with pytest.raises(SpecError, match="file not found"):
        load_spec(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("embed_dim: [1, 2\n")
    with pytest.raises(SpecError, match="not valid YAML at line"):
        load_spec(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(tmp_path / "list.yaml")


def test_spec_is_frozen_and_widths_default_to_doubling():
    spec = ArchSpec(embed_dim=8, depths=(1, 1))
    assert spec.stage_widths == (8, 16)
    with pytest.raises(AttributeError):
        spec.embed_dim = 9  # type: ignore[misc]
    assert spec.replace(embed_dim=16).stage_widths == (16, 32)


def test_partial_channels_floor_without_float_surprises():
    spec = ArchSpec(embed_dim=96, depths=(1,), partial_ratio=1 / 3)
    assert spec.partial_channels == (32,)


def test_the_same_network_by_field_groups():
    from fasternet_space.named import named_label
    from fasternet_space.spec import (
        ARCHITECTURE_NEUTRAL_FIELDS,
        IDENTITY_FIELDS,
        LATENCY_NEUTRAL_FIELDS,
        network_key,
        same_network,
    )

    t0 = NAMED_SPECS["t0"]
    other_task = t0.replace(name="x", drop_path_rate=0.5, pconv_forward="slicing", num_classes=10, in_chans=1,
                            input_size=64)
    assert same_network(t0, other_task, ignoring=ARCHITECTURE_NEUTRAL_FIELDS) and named_label(other_task) == "T0"
    assert not same_network(t0, other_task, ignoring=LATENCY_NEUTRAL_FIELDS)
    layer_scale = t0.replace(layer_scale_init_value=0.1)
    assert named_label(layer_scale) is None
    assert network_key(layer_scale, LATENCY_NEUTRAL_FIELDS) == network_key(t0, LATENCY_NEUTRAL_FIELDS)
    # widths written out are the default doubling for same_network; a key keeps them as written
    written = t0.replace(widths=(40, 80, 160, 320))
    assert same_network(t0, written) and named_label(written) == "T0"
    assert network_key(t0) != network_key(written)
    # a stored spec dict gives the same key as the spec
    assert network_key(t0.to_dict()) == network_key(t0) == network_key(t0.replace(name="y"), IDENTITY_FIELDS)
    assert network_key(t0) == json.dumps({k: v for k, v in t0.to_dict().items() if k != "name"}, sort_keys=True)


def test_spec_does_not_import_named_or_files():
    import ast

    source = (ROOT / "fasternet_space" / "spec.py").read_text()
    imported = {n.module for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import) for a in n.names}
    assert not imported & {"named", "spec_io", "yaml"}, imported
