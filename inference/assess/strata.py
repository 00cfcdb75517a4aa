"""A class or change COG read as the strata of a sample: its classes, sizes and point values.

Class COGs name their classes in the ``classes`` tag; change COGs are recognised by their
``band_id`` and carry the change codes (:data:`inference.predict.stats.CHANGE_CODES`). Sizes
are areas in km² (per row, so a geographic raster is measured right), counted block by block.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.warp import transform as warp_transform

from core.digest import json_digest
from core.errors import ConfigError, InputDataError
from core.storage import files
from inference.cog.maps import BAND_IDS, NODATA, extra_codes_problem, map_kind_problem
from inference.predict.pixel_area import pixel_area_km2
from inference.predict.stats import CHANGE_CODES

CHANGE_NAMES = tuple(name for name, _ in sorted(CHANGE_CODES.items(), key=lambda kv: kv[1]))


@dataclass(frozen=True)
class Strata:
    """What a raster holds as strata: class names by code, pixels and km² per class."""

    path: str
    classes: tuple[str, ...]
    pixels: tuple[int, ...]
    area_km2: tuple[float, ...]
    crs: str
    resolution: float  # metres: the square root of the ground area of the central pixel

    @property
    def weights(self) -> np.ndarray:
        area = np.asarray(self.area_km2)
        return area / area.sum()

    @property
    def strata_id(self) -> str:
        """What identifies these strata in the files people label (:func:`strata_id`)."""
        return strata_id(self.classes, self.pixels, self.crs, self.resolution)


def strata_id(classes: Sequence[str], pixels: Sequence[int], crs: str,
              resolution: float) -> str:
    """A 12-hex digest of a raster's strata: its classes, pixels per class, CRS and pixel size.

    Every file an interpreter labels carries it (``strata_id``): it tells the scorer whether
    the raster it reads the strata from is the one that drew the points, and reveals nothing
    of a point's class (the files stay blind).
    """
    return json_digest({"classes": list(classes), "pixels": [int(p) for p in pixels],
                        "crs": str(crs), "resolution": round(float(resolution), 6)}, 12)


MAP_GIVE = "a class or change COG written by isamap"


def class_names(path: str, flag: str = "--map") -> tuple[str, ...]:
    """The class names a COG records (change COGs: the change codes' names; none: ISA's two).

    Raises:
        InputDataError: ``path`` (given as ``flag``) is missing or no raster.
    """
    try:
        with rasterio.open(files.gdal_path(path)) as ds:
            tags = ds.tags()
    except rasterio.errors.RasterioError as exc:
        raise InputDataError(files.raster_refusal(flag, path, exc, MAP_GIVE)) from None
    problem = map_kind_problem(path, tags, ("class", "change"),
                               "the map's _class.tif, or a change COG")
    if problem:
        raise InputDataError(problem)
    if tags.get("band_id") == BAND_IDS["change"] or "codes" in tags:
        return CHANGE_NAMES
    names = tuple(n for n in tags.get("classes", "").split(",") if n)
    return names or ("pervious", "impervious")


def read_strata(path: str, classes: Sequence[str] | None = None, flag: str = "--map") -> Strata:
    """Count every class of ``path`` (pixels and km²); codes beyond the names are refused."""
    names = tuple(classes) if classes else class_names(path, flag=flag)
    k = len(names)
    pixels = np.zeros(256, dtype=np.int64)
    area = np.zeros(256)
    try:
        ds = rasterio.open(files.gdal_path(path))
    except rasterio.errors.RasterioError as exc:
        raise InputDataError(files.raster_refusal(flag, path, exc, MAP_GIVE)) from None
    with ds:
        if ds.count != 1 or ds.dtypes[0] != "uint8" or ds.crs is None:
            raise InputDataError(f"{path}: expected one uint8 band with a CRS (a class or "
                                 "change COG written by isamap)")
        for _, window in ds.block_windows(1):
            data = ds.read(1, window=window)
            weights = np.broadcast_to(pixel_area_km2(
                ds.transform, ds.crs, int(window.row_off), int(window.height),
                int(window.col_off), int(window.width)), data.shape)
            pixels += np.bincount(data.ravel(), minlength=256)
            area += np.bincount(data.ravel(), weights=weights.ravel(), minlength=256)
        crs = ds.crs.to_string()
        # metres on the ground (a geographic map's pixel too): the labelling app outlines it
        centre = pixel_area_km2(ds.transform, ds.crs, ds.height // 2, 1, ds.width // 2, 1)
        res = round(math.sqrt(float(np.ravel(centre)[0]) * 1e6), 3)
    pixels[NODATA] = 0
    problem = extra_codes_problem(path, pixels, names, MAP_GIVE)
    if problem:
        raise InputDataError(problem)
    if pixels[:k].sum() == 0:
        raise InputDataError(f"{path} has no valid pixel to sample")
    return Strata(path, names, tuple(int(v) for v in pixels[:k]),
                  tuple(float(v) for v in area[:k]), crs, res)


def pixels_at(path: str, lon: np.ndarray, lat: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The raster's row and column under each lon/lat point, and whether it lies inside."""
    with rasterio.open(files.gdal_path(path)) as ds:
        return _pixels(ds, lon, lat)


def _pixels(ds: rasterio.io.DatasetReader, lon: np.ndarray, lat: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, ys = warp_transform("EPSG:4326", ds.crs, list(map(float, lon)), list(map(float, lat)))
    rows, cols = rasterio.transform.rowcol(ds.transform, xs, ys)
    rows, cols = np.asarray(rows), np.asarray(cols)
    return rows, cols, (rows >= 0) & (rows < ds.height) & (cols >= 0) & (cols < ds.width)


def centre_offsets(path: str, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """How far each lon/lat point lies from its pixel's centre, in pixel sides (0 to 0.5).

    The larger of the column's and the row's distance.
    """
    with rasterio.open(files.gdal_path(path)) as ds:
        xs, ys = warp_transform("EPSG:4326", ds.crs, list(map(float, lon)),
                                list(map(float, lat)))
        cols, rows = ~ds.transform @ (np.asarray(xs), np.asarray(ys))
    off = np.abs(np.stack([cols, rows]) % 1.0 - 0.5)
    return np.asarray(off.max(axis=0))


def values_at(path: str, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """The raster's values at lon/lat points (its nearest pixel; NODATA outside it)."""
    with rasterio.open(files.gdal_path(path)) as ds:
        rows, cols, inside = _pixels(ds, lon, lat)
        out = np.full(rows.size, NODATA, dtype=np.int64)
        if inside.any():
            nodata = ds.nodata
            for i in np.flatnonzero(inside):  # one pixel each: a few hundred points
                value = ds.read(1, window=((rows[i], rows[i] + 1), (cols[i], cols[i] + 1)))
                v = value[0, 0]  # a float product may hold NaN (or inf) where it has no data
                out[i] = NODATA if not np.isfinite(v) or v == nodata else int(v)
    return out


def check_codes(values: np.ndarray, names: Sequence[str], what: str,
                ids: Sequence[str] = ()) -> None:
    """Refuse points on nodata or outside the raster, naming the first by its id (``ids``)."""
    bad = np.flatnonzero((values < 0) | (values >= len(names)))
    if bad.size:
        first = ids[int(bad[0])] if ids else f"number {int(bad[0]) + 1}"
        raise ConfigError(f"{bad.size} points fall on nodata or outside {what} (first: point "
                          f"{first}); every sample point must lie on a mapped pixel")
