"""Latency tables: every part a space can produce and whole networks timed as ratios to a reference network
interleaved with them, a correction fitted on the networks, and predictions from a spec's numbers alone."""

from .parts import enumerate_shapes, fit_deltas, plan_parts
from .profile import (
    MODEL_TIMING,
    NETWORKS,
    PART_TIMING,
    SAMPLED_PER_NETWORK,
    check_profilable,
    distinct_specs,
    fit_correction,
    network_ratio,
    part_ratio,
    profile,
    refit,
    split_networks,
)
from .table import LatencyTable, Prediction, TableError, decompose, key, spec_signature
from .timing import BlockPolicy, BlockRatio, time_block_ratio

__all__ = ["MODEL_TIMING", "NETWORKS", "PART_TIMING", "check_profilable", "SAMPLED_PER_NETWORK", "BlockPolicy",
           "BlockRatio", "LatencyTable", "Prediction", "TableError", "decompose", "distinct_specs",
           "enumerate_shapes", "fit_correction", "fit_deltas", "key", "network_ratio", "part_ratio", "plan_parts",
           "profile", "refit", "spec_signature", "split_networks", "time_block_ratio"]
