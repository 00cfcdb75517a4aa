"""Small real GeoTIFF scenes written into tmp_path for the local backend's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contract.grid import Grid
from tests.support.rasters import CRS, write_band

X0, Y0 = 500_000.0, 5_000_000.0




@pytest.fixture
def write_s2(tmp_path):
    """Write an L2A product as one file per band + SCL; returns its folder."""

    def make(date: str, scl_value: int = 4, dn: int = 1500, name_extra: str = "N0213",
             bands: tuple[str, ...] = ("B02", "B04", "B08"), size: int = 32) -> Path:
        product = f"S2A_MSIL2A_{date}T101031_{name_extra}_R022_T33TUM"
        folder = tmp_path / "scenes" / "S2" / product
        for band in bands:
            write_band(folder / f"{product}_{band}.tif", np.full((size, size), dn, np.uint16))
        write_band(folder / f"{product}_SCL.tif",
                   np.full((size // 2, size // 2), scl_value, np.uint8), res=20.0)
        return folder

    return make


@pytest.fixture
def small_grid() -> Grid:
    return Grid(CRS, X0, Y0, 32, 32, 10.0, patch_size=16, stride=16)
