"""Small GeoTIFF writing helpers shared by the patcher, the synthetic scene and the demo.

Every GeoTIFF isamap writes carries its CRS, transform, nodata, band descriptions and tags, and
is written atomically (encoded in memory or into a temporary file, then moved into place), so a
killed job never leaves a half-written raster under its final name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.io import MemoryFile

from core.storage import atomic_path


def profile_for(array: np.ndarray, transform: Affine, crs: Any, nodata: float | None,
                compress: str | None = "deflate") -> dict[str, Any]:
    """A GTiff profile: tiled where the size allows, with the predictor that suits the dtype."""
    count, height, width = array.shape
    profile: dict[str, Any] = {
        "driver": "GTiff", "dtype": array.dtype.name, "count": count, "height": height,
        "width": width, "crs": crs, "transform": transform, "nodata": nodata,
    }
    if compress:
        profile["compress"] = compress
        profile["predictor"] = 3 if array.dtype.kind == "f" else 2
    block = 256 if min(height, width) >= 256 else 128
    if height >= block and width >= block:
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    return profile


def _fill(dst: Any, array: np.ndarray, descriptions: Sequence[str] | None,
          tags: Mapping[str, Any] | None, band_tags: Sequence[Mapping[str, Any]] | None) -> None:
    dst.write(array)
    for i, text in enumerate(descriptions or (), 1):
        dst.set_band_description(i, text)
    if tags:
        dst.update_tags(**{k: str(v) for k, v in tags.items()})
    for i, btags in enumerate(band_tags or (), 1):
        if btags:
            dst.update_tags(i, **{k: str(v) for k, v in btags.items()})


def _as_3d(array: np.ndarray) -> np.ndarray:
    return array[np.newaxis] if array.ndim == 2 else array


def encode_geotiff(array: np.ndarray, transform: Affine, crs: Any, nodata: float | None, *,
                   descriptions: Sequence[str] | None = None,
                   tags: Mapping[str, Any] | None = None,
                   band_tags: Sequence[Mapping[str, Any]] | None = None,
                   compress: str | None = "deflate") -> bytes:
    """Encode a ``(bands, rows, cols)`` or ``(rows, cols)`` array as GeoTIFF bytes."""
    data = _as_3d(np.asarray(array))
    with MemoryFile() as memfile:
        with memfile.open(**profile_for(data, transform, crs, nodata, compress)) as dst:
            _fill(dst, data, descriptions, tags, band_tags)
        encoded: bytes = memfile.read()
        return encoded


def write_geotiff(path: str | os.PathLike[str], array: np.ndarray, transform: Affine, crs: Any,
                  nodata: float | None, *, descriptions: Sequence[str] | None = None,
                  tags: Mapping[str, Any] | None = None) -> Path:
    """Write a local GeoTIFF atomically (through the one atomic writer, ``atomic_path``)."""
    target = Path(path)
    data = _as_3d(np.asarray(array))
    with atomic_path(target) as tmp, rasterio.open(
            tmp, "w", **profile_for(data, transform, crs, nodata)) as dst:
        _fill(dst, data, descriptions, tags, None)
    return target
