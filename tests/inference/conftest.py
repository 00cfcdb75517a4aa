"""Small real rasters and plain-torch models for the inference tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.rasters import smooth_stack, write_stack


@pytest.fixture
def stack(tmp_path) -> Path:
    """A 300 x 410 six-band stack with a NaN hole in one band."""
    data = smooth_stack(300, 410)
    data[2, 40:60, 100:130] = np.nan
    return write_stack(tmp_path / "stack.tif", data)
