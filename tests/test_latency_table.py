import json
import math

import numpy as np
import pytest
import torch
import yaml

from fasternet_space import ArchSpec
from fasternet_space import model as model_module
from fasternet_space.latency_table import (
    SAMPLED_PER_NETWORK,
    BlockPolicy,
    LatencyTable,
    TableError,
    decompose,
    distinct_specs,
    enumerate_shapes,
    fit_correction,
    plan_parts,
    profile,
    refit,
    spec_signature,
    split_networks,
    time_block_ratio,
)
from fasternet_space.latency_table.parts import block_repeats
from fasternet_space.latency_table.profile import correct, part_policy
from fasternet_space.measure import device_name
from fasternet_space.paired import PairPolicy
from fasternet_space.report import format_predictions, format_profiled
from fasternet_space.runtimes import measure_spec_in
from search import SearchSpace
from tests.cli_helpers import assert_one_line_error, run_cli
from tests.conftest import QUICK_TIMING

# Small networks whose sizes differ clearly: embed 8 or 32, stage 2 one to three blocks deep.
LAT_SPACE = {
    "name": "lat", "embed_dim": {"choices": [8, 32]}, "depths": [1, {"low": 1, "high": 3}, 1, 1],
    "partial_ratio": 0.5, "mlp_ratio": 2.0, "act": {"choices": ["relu", "gelu"]}, "norm": "bn",
    "feature_dim": 32, "input_size": 64, "num_classes": 10,
}
SMALL = dict(LAT_SPACE, name="small", embed_dim=8, depths=[1, 1, 1, 1], act="relu")
BIG = dict(LAT_SPACE, name="big", embed_dim=32, depths=[1, 3, 1, 1], act="gelu")
PARTS = BlockPolicy(warmup=2, min_rounds=5, max_time_s=0.05, rel_ci=0.05)
NETWORKS = PairPolicy(warmup=1, min_pairs=3, max_time_s=0.3, rel_ci=0.1)


def _spec(fields) -> ArchSpec:
    return ArchSpec.from_dict({k: v for k, v in fields.items() if k != "name"} | {"name": fields["name"]})


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lat") / "lat.yaml"
    path.write_text(yaml.safe_dump(LAT_SPACE))
    return path


@pytest.fixture(scope="module")
def table(space_file):
    space = SearchSpace.from_yaml(space_file)
    fit, held_out = split_networks(space.sample_specs(SAMPLED_PER_NETWORK * 6, seed=0), 4, 2)
    return profile(space, "torch", fit_specs=fit, held_out_specs=held_out, part_timing=PARTS,
                   model_timing=NETWORKS, calibration_window_s=0.2)


def test_parts_are_factorised_and_cover_every_spec_of_the_space():
    space = SearchSpace.from_dict(LAT_SPACE)
    shapes = enumerate_shapes(space)
    assert len(shapes) == 4  # embed x act; the free depth at its largest
    todo, reference = plan_parts(shapes)
    assert reference["act"] in ("relu", "gelu") and reference["norm"] == "bn"
    kinds = [s[0] for s in todo]
    assert kinds.count("stem") == 2 and kinds.count("merge") == 6 and kinds.count("head") == 4
    # (embed, stage) at the reference act; the other act on the narrowest and widest shape of each side
    assert kinds.count("block") == 2 * 4 + 2 * 4
    assert len(reference["delta_shapes"]) == 8 and len(reference["pairs"]) == 1
    repeats = block_repeats(shapes)  # stage 2 repeats up to 3 times: timed longer, to a tighter interval
    assert sorted(set(repeats.values())) == [1, 3] and part_policy(PARTS, 1) == PARTS
    assert part_policy(PARTS, 16) == BlockPolicy(warmup=2, min_rounds=5, max_rounds=1600, max_time_s=0.2, rel_ci=0.025)
    assert decompose(_spec(BIG))[3] == (("block", 64, 8, 3, 32, 128, "gelu", "bn"), 3)


def test_table_round_trip_and_predictions_without_building(table, tmp_path, monkeypatch):
    path = table.save(tmp_path / "t.json")
    loaded = LatencyTable.load(path)
    assert loaded.to_dict() == json.loads(json.dumps(table.to_dict()))
    protocol = loaded.protocol
    assert protocol["device_name"] == device_name(__import__("torch").device("cpu"))
    assert protocol["runtime_name"] == "torch" and protocol["runtime_version"] and protocol["threads"] == 1
    assert loaded.space["name"] == "lat" and loaded.error["n"] == 2 and loaded.error_bound >= 0
    monkeypatch.setattr(model_module, "build_model", lambda *a, **k: pytest.fail("a prediction built a network"))
    small, big = loaded.predict(_spec(SMALL)), loaded.predict(_spec(BIG))
    assert small == table.predict(_spec(SMALL)) and 0 < small.latency_ms < big.latency_ms


def test_predicted_against_measured_on_a_tiny_space(table):
    # Tolerance: parts are timed for 50 ms each and the networks for at most 0.5 s on a shared 2-core machine
    # whose timings move by tens of percent, and a small network runs up to ~1.6x its parts' sum (measured: parts
    # timed alone keep their weights in cache); a factor of 3 either way still fails a table that sums the wrong
    # parts or mixes up units (off by many times). The ranking of a network with about 10x the multiply-adds of
    # another must be right; by how much is not asked: at these sizes fixed per-call costs dominate (on an AVX2
    # EPYC, ~65 us per oneDNN convolution call, the big network was predicted at only 1.48x the small one).
    small, big = _spec(SMALL), _spec(BIG)
    measured = {s.name: measure_spec_in(s, "torch", policy=QUICK_TIMING).latency_ms for s in (small, big)}
    predicted = {s.name: table.predict(s).latency_ms for s in (small, big)}
    for name in measured:
        assert 1 / 3 < predicted[name] / measured[name] < 3.0, (predicted, measured)
    assert predicted["big"] > predicted["small"] and measured["big"] > measured["small"]


def test_refusals(table, space_file):
    outside = _spec(dict(SMALL, embed_dim=16))
    with pytest.raises(TableError) as caught:
        table.predict(outside)
    assert caught.value.parameter == "spec" and "is not a point of the table's space 'lat'" in str(caught.value)
    table.check_target("cpu", "torch")
    with pytest.raises(TableError, match="not on .* with openvino; allowed: a table profiled here"):
        table.check_target("cpu", "openvino")
    other = LatencyTable(**{**table.__dict__, "protocol": dict(table.protocol, device_name="Some Other CPU")})
    with pytest.raises(TableError, match="was profiled on Some Other CPU with torch"):
        other.check_target("cpu", "torch")
    other.check_target("cpu", "torch", allow_other_device=True)
    with pytest.raises(TableError, match="unreadable"):
        LatencyTable.load(space_file)  # YAML is not a table
    wrong = space_file.parent / "wrong.json"
    wrong.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(TableError, match="is not a latency table"):
        LatencyTable.load(wrong)
    wrong.write_text(json.dumps(dict(table.to_dict(), version=3)))
    with pytest.raises(TableError, match=r"is a version-3 table; allowed: versions 1, 2 \(re-profile with"):
        LatencyTable.load(wrong)


def test_networks_to_profile_are_distinct_and_the_fit_keeps_at_least_half(space_file):
    space = SearchSpace.from_yaml(space_file)
    sampled = space.sample_specs(40, seed=0)
    fit, held_out = split_networks(sampled, 4, 2)
    assert (len(fit), len(held_out)) == (4, 2)
    everything = distinct_specs(sampled, len(sampled))
    assert [spec_signature(s) for s in fit + held_out] == [spec_signature(s) for s in everything[:6]]
    fit, held_out = split_networks(sampled, 30, 30)  # more than the space holds: half of what there is held out
    assert len(fit) + len(held_out) == len(everything) and len(held_out) == len(everything) // 2
    with pytest.raises(TableError, match="fit_specs: is empty"):
        profile(space, "torch", held_out_specs=held_out)


@pytest.mark.slow
def test_cli_profile_and_predict(space_file, tmp_path):
    out = tmp_path / "table.json"
    result = run_cli("profile", "--space", str(space_file), "--out", str(out), "--fit-specs", "3",
                     "--held-out-specs", "2", "--part-time", "0.02", "--network-time", "0.2")
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "held-out error on 2 networks" in result.stdout
    small, outside = tmp_path / "small.yaml", tmp_path / "outside.yaml"
    small.write_text(yaml.safe_dump(_spec(SMALL).to_dict()))
    outside.write_text(yaml.safe_dump(_spec(dict(SMALL, embed_dim=16)).to_dict()))
    result = run_cli("predict", "--table", str(out), str(small), "--format", "json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    (row,) = answer["predictions"]
    assert row["name"] == "small" and row["latency_ms"] > 0 and row["source"] == "predicted"
    assert row["reference"] == "T0" and row["latency_ms"] == pytest.approx(row["ratio"] * answer["calibration"]["ms"])
    result = run_cli("predict", "--table", str(out), str(small))
    assert result.returncode == 0 and f"{row['ratio']:.3f} x T0" in result.stdout, result.stderr
    assert_one_line_error(run_cli("predict", "--table", str(out), str(outside)), "is not a point of the table's space")
    assert_one_line_error(run_cli("profile", "--space", str(space_file), "--out", "t.csv"), "--out", ".json")


class DriftingMachine:
    """A fake clock and calls whose cost is stretched by a speed that swings 2x over `period_s` (sine), as a
    busy host's neighbours come and go: only a timing that sees both calls at the same moment cancels it."""

    def __init__(self, period_s: float = 0.5):
        self.now, self.period_s, self.calls = 0.0, period_s, []

    def clock(self) -> float:
        return self.now

    def call(self, name: str, cost_s: float):
        def run():
            self.calls.append(name)
            self.now += cost_s * (1.5 + 0.5 * math.sin(2 * math.pi * self.now / self.period_s))
        return run


def test_block_ratio_cancels_a_drifting_speed():
    machine = DriftingMachine()
    part, reference = machine.call("part", 1e-4), machine.call("reference", 2e-3)  # true ratio 0.05
    timing = time_block_ratio(part, reference, torch.device("cpu"), BlockPolicy(max_time_s=5.0, rel_ci=0.005),
                              clock=machine.clock)
    assert timing.ratio == pytest.approx(0.05, rel=0.01) and timing.stable
    assert 14 <= timing.calls_per_block <= 27 and timing.rounds >= 7  # a block costs about one reference call
    assert timing.ratio_ci[0] <= timing.ratio <= timing.ratio_ci[1]
    rounds = [machine.calls[i:i + timing.calls_per_block + 1] for i in range(6, len(machine.calls),
                                                                               timing.calls_per_block + 1)]
    firsts = {r[0] for r in rounds if len(r) == timing.calls_per_block + 1}
    assert firsts == {"part", "reference"}  # the order within a round is random
    # the same calls timed as blocks apart (the part over the slow half-period, then the reference over the
    # fast one) see different speeds: their ratio is off by half
    apart = DriftingMachine()
    part, reference = apart.call("part", 1e-4), apart.call("reference", 2e-3)
    part_calls = reference_calls = 0
    while apart.clock() < 0.25:
        part()
        part_calls += 1
    part_s, start = apart.clock() / part_calls, apart.clock()
    while apart.clock() < 0.5:
        reference()
        reference_calls += 1
    assert part_s / ((apart.clock() - start) / reference_calls) / 0.05 > 1.3


def test_block_ratio_stops_at_the_cap():
    machine = DriftingMachine()
    timing = time_block_ratio(machine.call("part", 1e-3), machine.call("reference", 1e-3), torch.device("cpu"),
                              BlockPolicy(warmup=1, min_rounds=3, max_rounds=4, rel_ci=1e-9), clock=machine.clock)
    assert timing.rounds == 4 and not timing.stable and timing.calls_per_block == 1


def test_the_table_is_in_reference_units_with_its_calibration(table, tmp_path):
    assert table.to_dict()["version"] == 2 and table.reference_name == "T0"
    calibration = table.to_dict()["calibration"]
    assert calibration["reference"] == "T0" and calibration["ms"] > 0 and calibration["samples"] >= 1
    assert all(0 < value < 1 for value in table.parts.values())  # every part of this space is smaller than T0
    prediction = table.predict(_spec(BIG))
    _, deltas, _ = table.sums(_spec(BIG))
    assert prediction.ratio == pytest.approx(correct(table.correction, prediction.parts_sum, prediction.parts, deltas))
    assert prediction.latency_ms == pytest.approx(prediction.ratio * calibration["ms"])
    fit = table.profile["fit"]
    assert len(fit["measured_ratio"]) == len(fit["flops"]) == 6 and all(r > 0 for r in fit["measured_ratio"])
    row = table.prediction_row("big.yaml", _spec(BIG))
    assert (row["ratio"], row["reference"], row["calibration_ms"]) == (prediction.ratio, "T0", calibration["ms"])
    text = format_predictions([row], table.describe())
    assert f"{row['latency_ms']:.2f} ms = {row['ratio']:.3f} x T0" in text
    assert f"T0 calibrated at {calibration['ms']:.2f} ms" in text
    assert "timed as ratios to T0" in format_profiled(table)


def test_a_version_1_table_in_ms_is_still_read(table, tmp_path):
    old = {k: v for k, v in table.to_dict().items() if k != "calibration"} | {"version": 1}
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(old))
    loaded = LatencyTable.load(path)
    assert loaded.calibration is None and loaded.version == 1
    prediction = loaded.predict(_spec(BIG))
    assert prediction.ratio is None and prediction.latency_ms == pytest.approx(table.predict(_spec(BIG)).ratio)
    assert "version 1, in ms" in loaded.describe()
    assert "x T0" not in format_predictions([loaded.prediction_row("big", _spec(BIG))], loaded.describe())
    assert LatencyTable.load(loaded.save(tmp_path / "again.json")).to_dict() == loaded.to_dict()
    broken = dict(table.to_dict(), calibration={"ms": 0})
    path.write_text(json.dumps(broken))
    with pytest.raises(TableError, match="misses fields"):
        LatencyTable.load(path)


def test_the_correction_scales_the_activation_norm_deltas_apart_when_that_predicts_better():
    # 16 synthetic networks whose blocks' act/norm deltas cost only half what the parts said, with a cost per part
    rng = np.random.default_rng(0)
    sums, counts = rng.uniform(0.5, 20, 16), rng.integers(10, 30, 16)
    deltas = rng.uniform(0, 0.3, 16) * sums
    measured = 0.95 * sums + 0.01 * counts + 0.05 - 0.5 * deltas
    a, b, c, d = fit_correction(list(sums), list(counts), list(measured), 0.001, list(deltas))
    assert (a, b, c, d) == pytest.approx((0.95, 0.01, 0.05, -0.5), abs=1e-6)
    assert correct([a, b, c, d], sums[0], counts[0], deltas[0]) == pytest.approx(measured[0])
    # too few networks for the free form: a scale of the sum less one call overhead per part
    a, b, c, d = fit_correction(list(sums[:4]), list(counts[:4]), list(measured[:4]), 0.001, list(deltas[:4]))
    assert b == pytest.approx(-a * 0.001) and (c, d) == (0.0, 0.0)
    assert correct([1.0, 0.0, 0.5], 2.0, 10, 7.0) == 2.5  # a version-1 table's three coefficients: no deltas term


def test_refit_fits_the_stored_networks_again_without_timing(table, monkeypatch):
    import sys

    monkeypatch.setattr(sys.modules["fasternet_space.latency_table.profile"], "network_ratio", lambda *a, **k: pytest.fail("timed"))
    again = refit(LatencyTable(**{**table.__dict__, "profile": json.loads(json.dumps(table.profile)),
                                  "correction": [9.0, 0.0, 0.0]}))
    assert again.correction == pytest.approx(table.correction) and again.error == table.error
