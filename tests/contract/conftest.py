"""Fixtures for the data contract's tests: small real GeoTIFF stacks on a known grid."""

from __future__ import annotations

import numpy as np
import pytest

from contract.stack import StackPaths
from tests.support.rasters import make_stack


@pytest.fixture
def small_stack(tmp_path) -> tuple[StackPaths, dict[str, np.ndarray]]:
    return make_stack(tmp_path / "stack")
