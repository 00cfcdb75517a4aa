"""Small real GeoTIFF scenes written into tmp_path for the local backend's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from gee_export.grid import Grid

CRS = "EPSG:32633"
X0, Y0 = 500_000.0, 5_000_000.0


def write_band(path: Path, array: np.ndarray, *, res: float = 10.0, crs: str | None = CRS,
               nodata: float | None = 0, tags: dict[str, str] | None = None,
               descriptions: tuple[str, ...] | None = None) -> Path:
    data = array[np.newaxis] if array.ndim == 2 else array
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
               "count": data.shape[0], "dtype": data.dtype.name, "nodata": nodata,
               "transform": Affine(res, 0, X0, 0, -res, Y0)}
    if crs:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if tags:
            dst.update_tags(**tags)
        if descriptions:
            dst.descriptions = descriptions
    return path


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
