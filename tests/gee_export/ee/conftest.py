"""Fixtures of the Earth Engine recipe tests."""

from __future__ import annotations

import pytest

from tests.support.export_dataset import synthetic_stack
from tests.support.killed_export import build_recipe_images


@pytest.fixture
def region(ee_offline):
    """A small box near Wuhan, as an Earth Engine geometry built offline."""
    return ee_offline.Geometry.Rectangle([114.2, 30.4, 114.3, 30.5])


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory):
    """The synthetic month stack the export tests fetch from (one per module)."""
    return synthetic_stack(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture
def recipe_images(ee_offline, local_stack):
    """The recipe's image and fine label, built offline on the stack's grid."""
    return build_recipe_images(ee_offline, local_stack.grid)
