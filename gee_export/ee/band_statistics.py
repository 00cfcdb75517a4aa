"""A date image's band statistics on Earth Engine: one ``reduceRegion`` over the map's grid.

A scene-normalised model (``isamap-train --norm scene``) normalises each map by its input's
own per-band mean and deviation, from a decimated sample of the whole input. A map whose
tiles are fetched one by one holds no whole input to sample, so Earth Engine computes them,
in one ``reduceRegion`` of the very image the tiles are fetched from
(:func:`band_statistics`):

- the model's bands, masked again where the image carries the masked value (it is unmasked
  to ``FLOAT_NODATA`` for computePixels; anything below ``FLOAT_NODATA_BELOW`` is masked,
  the rule the pixel decoder applies), so masked pixels count nowhere;
- mean and population standard deviation in one pass (``Reducer.combine`` with
  ``sharedInputs``), unweighted: every pixel whose centre lies in the grid counts once, as
  in a local sample;
- over the grid's extent, in the grid's CRS, at the grid's resolution times the decimation
  step of a local sample (:func:`sample_scale`): at most ``max_side`` pixels a side;
- ``maxPixels`` just above that many pixels (only a mistake could pass it) and
  ``bestEffort`` off, so the service never picks another scale and the statistics depend on
  the pixels and this scale alone.

The image is on the map's grid (reprojected onto it), so the service computes it at the
grid's resolution and samples it at the coarser pixels' centres, nearest neighbour, as a
local decimated read samples a stack file; the request costs about as much compute as
fetching the grid's pixels once.

Graph building only (no server call): the mapping run sends the request through its
session's ``getInfo`` (:mod:`inference.mapping.ee_statistics`), and the fake pixel server
decodes and computes it (:mod:`testing.fake_server`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contract.grid import Grid
from gee_export.ee.pixels import FLOAT_NODATA_BELOW


def sample_scale(grid: Grid, max_side: int) -> float:
    """Metres per pixel of the statistics' sample: at most ``max_side`` pixels a side.

    The grid's resolution times the step a local decimated read of the same grid takes
    (:func:`inference.predict.sources.decimated_read`): the grid's own pixels for a region
    up to ``max_side`` pixels a side, every ``step``-th pixel's size beyond.
    """
    step = max(1, -(-max(grid.width, grid.height) // max_side))
    return grid.resolution * step


def max_pixels(max_side: int) -> int:
    """``maxPixels`` of the request: a ``max_side`` sample whose lattice straddles the edges.

    Earth Engine aligns the sample's pixels on the CRS's origin, not the grid's, so a side
    may hold one pixel more than ``max_side``.
    """
    return (max_side + 2) ** 2


def output_keys(band: str) -> tuple[str, str]:
    """The keys of ``band``'s mean and deviation in the request's answer."""
    return f"{band}_mean", f"{band}_stdDev"


def masked_bands(image: Any, bands: Sequence[str]) -> Any:
    """``bands`` of ``image`` with the masked value masked again (each band its own mask)."""
    selected = image.select(list(bands))
    return selected.updateMask(selected.gt(FLOAT_NODATA_BELOW))


def statistics_reducer() -> Any:
    """Mean and population standard deviation in one pass, every pixel counted once."""
    import ee

    return ee.Reducer.mean().combine(ee.Reducer.stdDev(), sharedInputs=True).unweighted()


def band_statistics(image: Any, grid: Grid, bands: Sequence[str], max_side: int) -> Any:
    """The ``ee.Dictionary`` of ``bands``' mean and deviation over ``grid`` (see module doc).

    Its ``getInfo`` answers ``{"<band>_mean": float | None, "<band>_stdDev": ...}``; None
    where a band has no unmasked pixel.
    """
    import ee

    west, south, east, north = grid.bounds
    region = ee.Geometry.Rectangle([west, south, east, north], grid.crs, False)
    return masked_bands(image, bands).reduceRegion(
        reducer=statistics_reducer(), geometry=region, scale=sample_scale(grid, max_side),
        crs=grid.crs, maxPixels=max_pixels(max_side), bestEffort=False)
