"""FasterNet generator: specs, models, exact costs, inference form and on-device measurement."""

from .cost import CostReport, LayerCost, count
from .inference import for_inference
from .model import FasterNet, build_model
from .named import NAMED_SPECS, named_label, named_spec
from .spec import ArchSpec, SpecError, dump_spec, load_spec, save_spec

__all__ = [
    "ArchSpec", "CostReport", "FasterNet", "LayerCost", "NAMED_SPECS", "SpecError", "build_model", "count",
    "dump_spec", "for_inference", "load_spec", "named_label", "named_spec", "save_spec",
]
