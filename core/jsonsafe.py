"""Strict JSON for every file isamap writes: one conversion of NaN/inf, tuples and numpy scalars.

Strict JSON has no NaN or Infinity, and an undefined metric or an unknown count must read the
same (``null``) in a manifest, a metrics file, a model file and a comparison report. Writers
convert with :func:`json_safe` and dump with ``allow_nan=False`` (:func:`dumps`), so a value
that slipped through fails loudly instead of producing a file other tools cannot read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None, tuples/sets as lists, numpy scalars as Python.

    Mapping keys become strings (JSON object keys are strings). Sets are sorted so the output
    does not depend on hash order.
    """
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [json_safe(v) for v in sorted(value)]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()  # numpy scalar -> Python scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`json_safe` ``(value)`` in strict mode (``allow_nan=False``)."""
    return json.dumps(json_safe(value), allow_nan=False, **kwargs)
