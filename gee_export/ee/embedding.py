"""The Satellite Embedding bands on the export's grid, fetched as 8-bit integers.

``isamap-export --bands aef`` (or any of ``A00`` ... ``A63``) reads Google's annual Satellite
Embedding (AlphaEarth Foundations) from Earth Engine: 64 values per 10 m pixel summarising
a calendar year of observations around it, which a per-pixel classifier (``isamap-fit``) or
a network (``isamap-train``) reads like any other band.

Facts relied on, and where they are stated:

* Earth Engine catalogue, ``GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL``
  (https://developers.google.com/earth-engine/datasets/catalog/GOOGLE_SATELLITE_EMBEDDING_V1_ANNUAL):
  an ImageCollection of images about 163,840 m a side, each in its local UTM zone; 64
  bands ``A00`` ... ``A63``, 10 m, dimensionless, from -1 to 1, to be used together (one
  point of the 64-dimensional unit sphere: the vectors have length 1); one image per
  calendar year, ``system:time_start`` on 1 January of the year; from 2017; licence CC BY
  4.0, attribution "The AlphaEarth Foundations Satellite Embedding dataset is produced by
  Google and Google DeepMind."
* The same data as Cloud-Optimised GeoTIFFs, "AlphaEarth Foundations GCS data"
  (https://developers.google.com/earth-engine/guides/aef_on_gcs_readme): each value a
  signed 8-bit integer, -128 a masked pixel (in every channel at once); the integers map
  to the native values in [-1, 1] by a power-of-two de-quantisation,
  ``value = sign(q) * (q / 127.5) ** 2``; the inverse is ``q = round(sign(v) * sqrt(|v|) *
  127.5)``, within -127 .. 127. (The README's formula section is quoted the same way by
  readers of those files, e.g. OlmoEarth's evaluation code "matching AlphaEarth" with
  power 2.0 and scale 127.5.)

So the graph asks Earth Engine for exactly the integers the published files hold
(:func:`quantised`: the square root keeps the resolution near 0, where most values are),
one byte per value instead of four as float32: a 64-band request is a quarter of the bytes
(``tests/gee_export/ee/test_embedding.py`` measures the answers). :func:`dequantise` turns
them back into the native values where the pixels are decoded
(:func:`gee_export.ee.pixels.decode`), so stacks, patches and maps hold the embedding's
own values, NaN where masked. The collection's images are mosaicked for the year of the
month asked (the year's calendar layer) and put on the grid with its ``crs`` and
``crsTransform`` (nearest neighbour: on a 10 m UTM grid of the same zone nothing moves).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from contract.grid import Grid
from core.errors import EmptyCompositeError

COLLECTION = "GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL"
BANDS: tuple[str, ...] = tuple(f"A{i:02d}" for i in range(64))
FIRST_YEAR = 2017
SCALE = 127.5  # the de-quantisation's scale (the GCS README)
LARGEST = 127  # |q| at most: -128 is the masked value
MASKED = -128
ATTRIBUTION = ("The AlphaEarth Foundations Satellite Embedding dataset is produced by Google "
               "and Google DeepMind.")


def is_embedding_band(name: str) -> bool:
    """Whether ``name`` is one of the 64 Satellite Embedding bands."""
    return name in BANDS


def dequantise(q: np.ndarray) -> np.ndarray:
    """float32 native values of 8-bit integers (``sign(q) (q / 127.5)^2``), masked -> NaN."""
    q = np.asarray(q)
    v = (q.astype(np.float64) / SCALE) ** 2 * np.sign(q)
    out = v.astype(np.float32)
    out[q == MASKED] = np.nan
    return out


def decode_bands(data: np.ndarray, bands: Sequence[str]) -> np.ndarray:
    """``data`` (bands, h, w, float32) with its embedding bands' integers made values, in place.

    The reader of the published integers wherever they arrive as numbers of another type: a
    batch task's GeoTIFF holds every band as float32 (:func:`one_type`), the embedding's as
    its integers, masked -128. Other bands are left as they are.
    """
    for i, band in enumerate(bands):
        if is_embedding_band(band):
            data[i] = dequantise(data[i])
    return data


def lookup_table(masked: float) -> tuple[tuple[float, float], ...]:
    """:func:`dequantise` as ``(integer, value)`` pairs, :data:`MASKED` -> ``masked``.

    What a GDAL VRT's ``<LUT>`` applies to a band of the published integers, so any reader
    of the VRT (``/vsigs/`` included) gets the embedding's values.
    """
    q = np.arange(-LARGEST, LARGEST + 1)
    return ((float(MASKED), masked),
            *zip(q.astype(float).tolist(), dequantise(q).astype(float).tolist(), strict=True))


def one_type(image: Any):
    """``image`` with every band float32, as a batch task exports it.

    Earth Engine refuses a GeoTIFF export whose bands have incompatible data types ("Exported
    bands must have compatible data types"): the embedding's 8-bit integers beside float32
    reflectance or a float label. Cast, the integers stay the published ones (-128 masked),
    and the tile's readers turn them into values (:func:`decode_bands`, :func:`lookup_table`).
    """
    return image.toFloat()


def collection(region: Any, year: int):
    """The year's embedding images over ``region`` (an Earth Engine geometry)."""
    import ee

    return (ee.ImageCollection(COLLECTION)
            .filterDate(f"{year:04d}-01-01", f"{year + 1:04d}-01-01")
            .filterBounds(region))


def quantised(image: Any):
    """``image``'s native values as the published 8-bit integers, masked -> :data:`MASKED`."""
    q = image.abs().sqrt().multiply(SCALE).round().min(LARGEST).multiply(image.signum())
    return q.toInt8().unmask(MASKED, False)


def embedding_on_grid(grid: Grid, year: int, region: Any, bands: Sequence[str] = BANDS):
    """The year's embedding bands ``bands`` on ``grid``, as 8-bit integers (module docstring).

    Raises:
        EmptyCompositeError: a year before the dataset's first.
    """
    if year < FIRST_YEAR:
        raise EmptyCompositeError(f"the Satellite Embedding starts in {FIRST_YEAR}; "
                                  f"{year} has no layer: choose months from {FIRST_YEAR} on")
    unknown = [b for b in bands if not is_embedding_band(b)]
    if unknown:
        raise ValueError(f"not Satellite Embedding bands: {unknown}")
    mosaic = collection(region, year).mosaic().select(list(bands))
    return quantised(mosaic).reproject(crs=grid.crs, crsTransform=grid.crs_transform)


def require_layer(count: int, year: int, region_name: str) -> int:
    """``count`` (the year's images over the region), or why the year has no layer yet.

    Raises:
        EmptyCompositeError: no image: the year is not produced yet (it appears in the
            course of the following year) or the region is outside the dataset's land cover.
    """
    if count <= 0:
        raise EmptyCompositeError(f"the Satellite Embedding has no {year} layer over region "
                                  f"{region_name!r} (a year's layer appears in the course of "
                                  "the next; the dataset covers land and shallow water): "
                                  "choose months of an earlier year")
    return count
