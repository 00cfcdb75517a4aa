"""True ground area of a raster's pixels, in any CRS and on rotated grids.

A pixel's area in the map plane is ``|a·e - b·d|`` (the geotransform's determinant: a rotated
grid keeps its pixels' area, where ``|a·e|`` alone loses cos²θ). On the ground it is that
divided by the projection's areal scale factor at the pixel:

- geographic CRSs: on the sphere of radius :data:`EARTH_RADIUS_KM` (the area of a band of
  latitude, exact per row for north-up grids; ``cos(lat)`` at each pixel centre for rotated
  ones);
- projected CRSs: the areal scale of the projection (``pyproj``'s ``get_factors``) at the pixel
  centres. Web Mercator (EPSG:3857) inflates areas by ``1 / cos²(lat)`` (+33 % at 30°); a
  projection whose areal scale stays within :data:`TRUE_AREA_TOLERANCE` of 1 over the block
  (UTM within its zone, national grids) is taken as true, so their areas are ``|a·e - b·d|``.

The scale is computed on a grid of at most :data:`FACTOR_STEP` pixels' spacing and held
constant between its nodes (the factor changes by far less than the tolerance over it).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

EARTH_RADIUS_KM = 6371.0088
TRUE_AREA_TOLERANCE = 0.005  # UTM's areal scale stays within 0.9992-1.002 inside its zone
FACTOR_STEP = 16


@lru_cache(maxsize=16)
def _proj(wkt: str) -> Any:
    from pyproj import Proj

    return Proj(wkt)


def _centres(transform: Any, row0: int, rows: int, col0: int, cols: int,
             step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    r = np.arange(row0, row0 + rows, step) + 0.5
    c = np.arange(col0, col0 + cols, step) + 0.5
    cc, rr = np.meshgrid(c, r)
    x = transform.c + transform.a * cc + transform.b * rr
    y = transform.f + transform.d * cc + transform.e * rr
    return x, y


def _areal_scale(transform: Any, crs: Any, row0: int, rows: int, col0: int,
                 cols: int) -> np.ndarray | None:
    """The projection's areal scale at the pixels ``(rows, cols)``; None where it is ~1."""
    step = min(FACTOR_STEP, max(rows, cols))
    x, y = _centres(transform, row0, rows, col0, cols, step)
    proj = _proj(crs.to_wkt())  # in the CRS's own units (pyproj preserves them)
    lon, lat = proj(x, y, inverse=True)
    with np.errstate(all="ignore"):
        scale = np.asarray(proj.get_factors(lon, lat).areal_scale, dtype=np.float64)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    if np.abs(scale - 1.0).max() <= TRUE_AREA_TOLERANCE:
        return None
    full = np.repeat(np.repeat(scale, step, axis=0), step, axis=1)
    return full[:rows, :cols]


def pixel_area_km2(transform: Any, crs: Any, row0: int, rows: int, col0: int = 0,
                   cols: int = 1) -> np.ndarray:
    """Ground area (km²) of the pixels of rows ``row0..row0+rows`` and columns ``col0..``.

    Returns ``(rows, 1)`` where the area is the same along a row (north-up geographic grids,
    true-area projections), else ``(rows, cols)``; either broadcasts onto the block.
    """
    det = abs(transform.a * transform.e - transform.b * transform.d)
    rotated = transform.b != 0 or transform.d != 0
    if crs is not None and crs.is_geographic:
        if not rotated:
            top = transform.f + transform.e * np.arange(row0, row0 + rows + 1)
            lat = np.radians(np.clip(top, -90, 90))
            band = np.abs(np.sin(lat[:-1]) - np.sin(lat[1:]))
            return (EARTH_RADIUS_KM**2 * math.radians(abs(transform.a)) * band)[:, None]
        _, lat = _centres(transform, row0, rows, col0, cols)
        cos = np.cos(np.radians(np.clip(lat, -90, 90)))
        return EARTH_RADIUS_KM**2 * math.radians(1) ** 2 * det * cos
    factor = crs.linear_units_factor[1] if crs is not None and crs.linear_units_factor else 1.0
    plane = det * factor**2 / 1e6
    scale = (_areal_scale(transform, crs, row0, rows, col0, max(cols, 1))
             if crs is not None else None)
    if scale is None:
        return np.full((rows, 1), plane)
    return plane / scale


def raster_area_km2(transform, crs, width: int, height: int) -> float:
    """Ground area of a whole raster (km²), as :func:`pixel_area_km2` computes it."""
    total = 0.0
    for row0 in range(0, height, 1024):
        rows = min(1024, height - row0)
        area = pixel_area_km2(transform, crs, row0, rows, 0, width)
        total += float(np.broadcast_to(area, (rows, width)).sum())
    return total
