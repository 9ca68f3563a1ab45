"""Latency tables: every part a space can produce timed alone, a correction fitted on whole networks, and
predictions from a spec's numbers alone."""

from .parts import enumerate_shapes, fit_deltas, plan_parts
from .profile import (
    MODEL_TIMING,
    NETWORKS,
    PART_TIMING,
    SAMPLED_PER_NETWORK,
    check_profilable,
    distinct_specs,
    profile,
    split_networks,
)
from .table import LatencyTable, Prediction, TableError, decompose, key, spec_signature

__all__ = ["MODEL_TIMING", "NETWORKS", "PART_TIMING", "check_profilable", "SAMPLED_PER_NETWORK", "LatencyTable", "Prediction", "TableError",
           "decompose", "distinct_specs", "enumerate_shapes", "fit_deltas", "key", "plan_parts", "profile",
           "spec_signature", "split_networks"]
