"""Fixtures of the Earth Engine recipe tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def region(ee_offline):
    """A small box near Wuhan, as an Earth Engine geometry built offline."""
    return ee_offline.Geometry.Rectangle([114.2, 30.4, 114.3, 30.5])
