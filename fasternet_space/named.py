"""The six named configurations of the official release (REFERENCE.md), as fixed points of the space."""

from __future__ import annotations

from .spec import ARCHITECTURE_NEUTRAL_FIELDS, ArchSpec, same_network

_COMMON = dict(partial_ratio=0.25, kernel_size=3, mlp_ratio=2.0, norm="bn", feature_dim=1280,
               patch_size=4, patch_stride=4, merge_size=2, merge_stride=2, in_chans=3,
               num_classes=1000, input_size=224, layer_scale_init_value=0.0, pconv_forward="split_cat")

#: The six official configs by short key (t0, t1, t2, s, m, l); equal to the shipped spaces/fasternet_KEY.yaml.
NAMED_SPECS: dict[str, ArchSpec] = {
    "t0": ArchSpec(name="fasternet_t0", embed_dim=40, depths=(1, 2, 8, 2), act="gelu", drop_path_rate=0.0, **_COMMON),
    "t1": ArchSpec(name="fasternet_t1", embed_dim=64, depths=(1, 2, 8, 2), act="gelu", drop_path_rate=0.02, **_COMMON),
    "t2": ArchSpec(name="fasternet_t2", embed_dim=96, depths=(1, 2, 8, 2), act="relu", drop_path_rate=0.05, **_COMMON),
    "s": ArchSpec(name="fasternet_s", embed_dim=128, depths=(1, 2, 13, 2), act="relu", drop_path_rate=0.1, **_COMMON),
    "m": ArchSpec(name="fasternet_m", embed_dim=144, depths=(3, 4, 18, 3), act="relu", drop_path_rate=0.2, **_COMMON),
    "l": ArchSpec(name="fasternet_l", embed_dim=192, depths=(3, 4, 18, 3), act="relu", drop_path_rate=0.3, **_COMMON),
}

#: Short labels used in tables and plots.
NAMED_LABELS = {spec.name: key.upper() for key, spec in NAMED_SPECS.items()}


def named_names() -> str:
    """The names a named config is asked for by, for messages: 't0, t1, ... (or fasternet_t0 .. fasternet_l)'."""
    keys = list(NAMED_SPECS)
    return f"{', '.join(keys)} (or fasternet_{keys[0]} .. fasternet_{keys[-1]}, any case)"


def find_named(name: str) -> ArchSpec | None:
    """The named config called `name` (`t0`, `T0`, `fasternet_t0`, `fasternet_t0.yaml`), or None."""
    key = name.lower().removesuffix(".yaml").removeprefix("fasternet_")
    return NAMED_SPECS.get(key)


def named_spec(key: str) -> ArchSpec:
    """A named config by short key (`t0`) or full name (`fasternet_t0`); KeyError listing the names otherwise."""
    spec = find_named(key)
    if spec is None:
        raise KeyError(f"unknown named config {key!r}; allowed: {named_names()}")
    return spec


def named_label(spec: ArchSpec) -> str | None:
    """'T0'..'L' when the spec is architecturally one of the named configs (ARCHITECTURE_NEUTRAL_FIELDS ignored)."""
    for key, named in NAMED_SPECS.items():
        if same_network(spec, named, ignoring=ARCHITECTURE_NEUTRAL_FIELDS):
            return key.upper()
    return None
