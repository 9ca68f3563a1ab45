"""FasterNet generator: specs, models, exact costs, inference form and on-device measurement.

`load_spec("t0")` (or a YAML path) -> ArchSpec; `build_model(spec)` -> FasterNet (training form, official
state-dict layout); `count(spec)` -> exact params/FLOPs/memory access; `for_inference(model)` -> the
BatchNorm-folded fast form. `NAMED_SPECS` holds the six official configs T0..L.
"""

from .cost import CostReport, LayerCost, count
from .inference import for_inference
from .model import FasterNet, build_model
from .named import NAMED_SPECS, named_label, named_spec
from .spec import ArchSpec, SpecError
from .spec_io import dump_spec, load_spec, save_spec

__all__ = [
    "ArchSpec", "CostReport", "FasterNet", "LayerCost", "NAMED_SPECS", "SpecError", "build_model", "count",
    "dump_spec", "for_inference", "load_spec", "named_label", "named_spec", "save_spec",
]
