"""Put one source band onto one window of the grid: read what is needed, prepare, warp once.

The local backend never resamples a source twice: for a grid window it reads the source
window that covers it (plus a halo for the resampling kernel and for any neighbourhood
filter applied in source geometry, such as a speckle filter), applies that preparation in
the source's own pixels, and warps the result once with GDAL (``rasterio.warp.reproject``)
onto the window's transform. Bands are bilinear; labels and class rasters nearest or mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.warp import Resampling, reproject, transform_bounds
from rasterio.windows import Window as RioWindow
from rasterio.windows import from_bounds

from contract.grid import Grid, Window
from core.errors import InputDataError
from gee_export.local.scenes import BandRef

ResamplingName = str  # "bilinear" | "nearest" | "mode"
_RESAMPLING = {"bilinear": Resampling.bilinear, "nearest": Resampling.nearest,
               "mode": Resampling.mode}
_KERNEL_MARGIN = 2  # source pixels beyond the footprint that bilinear (and mode) may touch


def source_window(src: rasterio.DatasetReader, grid: Grid, window: Window,
                  halo: int) -> RioWindow | None:
    """The source window covering a grid window (plus ``halo`` pixels), or None if disjoint."""
    bounds = grid.window_bounds(window)
    if src.crs is None:
        raise InputDataError(f"{src.name} has no CRS; assign one with: rio edit-info --crs "
                             f"EPSG:xxxx {src.name}")
    try:
        west, south, east, north = transform_bounds(grid.crs, src.crs, *bounds, densify_pts=21)
    except Exception as exc:  # pyproj/GDAL raise several types for impossible transforms
        raise InputDataError(f"cannot transform the grid ({grid.crs}) to the CRS of {src.name} "
                             f"({src.crs}): {exc}; is the file's CRS right?") from exc
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        return None
    win = from_bounds(west, south, east, north, transform=src.transform)
    pad = halo + _KERNEL_MARGIN
    r0 = max(math.floor(win.row_off) - pad, 0)
    c0 = max(math.floor(win.col_off) - pad, 0)
    r1 = min(math.ceil(win.row_off + win.height) + pad, src.height)
    c1 = min(math.ceil(win.col_off + win.width) + pad, src.width)
    if r1 <= r0 or c1 <= c0:
        return None
    return RioWindow(c0, r0, c1 - c0, r1 - r0)


def read_to_grid(ref: BandRef, grid: Grid, window: Window, resampling: ResamplingName, *,
                 prepare: Callable[[np.ndarray], np.ndarray] | None = None, halo: int = 0,
                 categorical_nodata: int | None = None) -> np.ndarray:
    """One band of ``ref`` on ``window`` of ``grid``.

    Continuous bands (``categorical_nodata is None``) come back float32 with NaN where the
    source has nodata or no coverage; ``prepare`` runs on the float source window (NaN =
    nodata) before the warp. Categorical bands come back in their integer values with
    ``categorical_nodata`` outside the data; ``prepare`` maps the source classes first.
    """
    method = _RESAMPLING.get(resampling)
    if method is None:
        raise InputDataError(f"unknown resampling {resampling!r}; use one of {list(_RESAMPLING)}")
    categorical = categorical_nodata is not None
    shape = (window.height, window.width)
    try:
        with rasterio.open(ref.path) as src:
            if not 1 <= ref.index <= src.count:
                raise InputDataError(f"{ref.path} has {src.count} bands, band {ref.index} asked")
            win = source_window(src, grid, window, halo)
            if win is None:
                return np.full(shape, categorical_nodata if categorical else np.nan,
                               dtype=np.int32 if categorical else np.float32)
            data = src.read(ref.index, window=win)
            src_nodata = src.nodata
            src_transform = src.window_transform(win)
            src_crs = src.crs
    except RasterioError as exc:
        raise InputDataError(f"{ref.path} cannot be read ({exc}); is it corrupt or truncated? "
                             "Re-download or remove it.") from exc
    if categorical_nodata is not None:
        values = data.astype(np.int32)
        if src_nodata is not None and math.isfinite(src_nodata):
            values = np.where(data == src_nodata, categorical_nodata, values)
        if prepare is not None:
            values = prepare(values).astype(np.int32)
        dest = np.full(shape, categorical_nodata, dtype=np.int32)
        nodata_value: float = float(categorical_nodata)
    else:
        values = data.astype(np.float32)
        if src_nodata is not None and not math.isnan(src_nodata):
            values[data == src_nodata] = np.nan
        if prepare is not None:
            values = np.asarray(prepare(values), dtype=np.float32)
        dest = np.full(shape, np.nan, dtype=np.float32)
        nodata_value = np.nan
    reproject(source=values, destination=dest, src_transform=src_transform, src_crs=src_crs,
              src_nodata=nodata_value, dst_transform=grid.window_transform(window),
              dst_crs=grid.crs, dst_nodata=nodata_value, resampling=method)
    return dest


def source_resolution(ref: BandRef, grid: Grid) -> float:
    """Approximate pixel size of a source in grid units (to choose nearest or mode)."""
    with rasterio.open(ref.path) as src:
        west, south, east, north = transform_bounds(src.crs, grid.crs, *src.bounds)
        return math.sqrt((east - west) * (north - south) / (src.width * src.height))


def overlaps(ref: BandRef, grid: Grid) -> bool:
    """Whether a source touches the grid at all (a wrong CRS usually makes it miss)."""
    with rasterio.open(ref.path) as src:
        return source_window(src, grid, grid.full_window(), 0) is not None
