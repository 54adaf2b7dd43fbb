"""Strict JSON for every file the pipeline writes: a reader that follows RFC 8259 rejects the
bare ``NaN`` Python's json module writes by default (a missing score, a judge's confidence)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import numpy as np


def finite(value):
    """``value`` with every NaN or infinite float (NumPy's too) as None, which JSON writes as
    ``null``; containers are copied (tuples become lists, as JSON has them)."""
    if isinstance(value, Mapping):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def json_text(value, indent: int | None = None) -> str:
    """Strict JSON (RFC 8259): non-finite floats as ``null``, never a bare ``NaN`` or
    ``Infinity``; anything else JSON cannot hold fails here rather than in a reader."""
    return json.dumps(finite(value), indent=indent, allow_nan=False)
