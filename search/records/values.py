"""Stored values read back: what an Optuna storage returns (JSON) turned into typed Python, or None."""

from __future__ import annotations

import math
from typing import Any


def finite_number(value: Any) -> float | None:
    """A stored number as a float; None for anything else (bools, NaN, infinities, text)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)
