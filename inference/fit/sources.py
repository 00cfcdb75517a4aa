"""A stack over the points when ``isamap-fit`` is given no stack: local scenes or Earth Engine.

The points decide the area: the grid covers their bounding box and :data:`MARGIN_PX` pixels
around it, in the UTM zone of its centre (or ``--crs``), at 10 m, its pixels on the lattice
every isamap grid of that CRS shares (:meth:`contract.grid.Grid.from_bounds`). The stack is
made by the export's own recipe for ``--month`` (a series stack of the months before it too
with ``--series-months N``, by the same builders as ``isamap-export --series-months N``) and
written beside the model
(``OUT/stack/stack_<month>_image.tif``), so the same command's output maps the area at once
(``isamap-predict --input`` that stack); the model file records the recipe, grid and month
(as a patch dataset's manifest does), from which ``isamap-map`` makes other dates' inputs.

* ``--backend local --scenes DIR``: the local backend's composite of the month
  (:func:`gee_export.local.stack.plan_local_stack`, the export's defaults), its scenes read
  with the export's scene-file options (``--scene-date``, ``--s2-band-names``...).
* ``--backend ee``: Earth Engine's composite of the month (the export's recipe, its composite
  windows and checks: :func:`gee_export.ee.prediction_stack.composite_windows`), fetched tile
  by tile with computePixels; the Satellite Embedding's bands (``--bands aef``) arrive as
  8-bit integers and are stored as their values. The stack must fit in memory once:
  at most :data:`MAX_STACK_BYTES` of float32 values (about 50 x 50 km of ten bands,
  20 x 20 km of the embedding's 64), refused before any request otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contract.bands import series_record
from contract.geotiff import write_geotiff
from contract.grid import Grid, Window
from contract.regions import parse_bbox
from contract.stack import MONTH_TAG
from core.errors import ConfigError
from core.progress import progress_bar
from gee_export.ee.export import fetch_window
from gee_export.ee.prediction_stack import DateRecipe, composite_windows, prediction_image
from gee_export.ee.recipe import EERecipe
from gee_export.ee.request_region import request_geometry
from gee_export.ee.sentinel2 import month_window
from gee_export.local.scenes import SceneCollection
from gee_export.local.stack import LocalRecipe, plan_local_stack, write_local_stack

log = logging.getLogger(__name__)

MARGIN_PX = 32
"""Pixels of stack around the points' bounding box (a map of the area reaches past them)."""
MAX_STACK_BYTES = 1 << 30
"""The most float32 bytes a stack fetched from Earth Engine may hold (it is held in memory)."""
TILE_PX = 512
"""Side of the windows fetched from Earth Engine."""


def points_grid(lon: np.ndarray, lat: np.ndarray, crs: str | None = None) -> Grid:
    """The 10 m grid over the points' bounding box and :data:`MARGIN_PX` around it."""
    inner = Grid.from_lonlat_bounds((float(lon.min()), float(lat.min()), float(lon.max()),
                                     float(lat.max())), crs)
    res = inner.resolution
    return Grid(inner.crs, inner.x0 - MARGIN_PX * res, inner.y0 + MARGIN_PX * res,
                inner.width + 2 * MARGIN_PX, inner.height + 2 * MARGIN_PX, res,
                inner.patch_size, inner.stride)


def record(grid: Grid, backend: str, recipe: dict, bands: Sequence[str], month: str,
           sources: dict | None = None) -> dict:
    """What the model file records of where its stack came from (a dataset manifest's keys)."""
    return {"backend": backend, "region": "points", "months": [month], "bands": list(bands),
            "grid": grid.to_dict(), "recipe": {**recipe, **series_record(bands)},
            "sources": {month: sources or {}}}


def local_stack(scenes: SceneCollection, grid: Grid, month: str, bands: Sequence[str],
                out: Path, recipe: LocalRecipe) -> tuple[str, dict]:
    """The local backend's stack of ``month`` on ``grid``; its path and record.

    ``scenes``: what ``recipe`` read of the scenes' folder (:meth:`LocalRecipe.reading`). No
    label is read: the points are the fit's labels. The recipe records what was asked:
    Level-1C scenes composited with the export's warning (``allow_l1c``), the scenes' date,
    band names, unit or offset given; scenes the input check doubts (``allow_implausible``),
    the record's sources saying why (``input_notes``), as the export's manifest does.
    """
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_local_stack(scenes, grid, month, tuple(bands), speckle=recipe.speckle,
                            out_dir=out, recipe=recipe, labelled=False)
    stack = write_local_stack(plan, progress=False)
    notes = {"input_notes": plan.input_notes} if plan.input_notes else {}
    return stack.image, record(grid, "local", recipe.to_dict(), bands, month, notes)


def ee_stack(session: Any, grid: Grid, month: str, bands: Sequence[str],
             out: Path, progress: bool = True) -> tuple[str, dict]:
    """Earth Engine's stack of ``month`` on ``grid``, fetched and written; its path and record.

    Raises:
        ConfigError: a stack larger than :data:`MAX_STACK_BYTES`.
        EmptyCompositeError: a month without data for the bands (the export's checks).
    """
    size = grid.width * grid.height * len(bands) * 4
    if size > MAX_STACK_BYTES:
        raise ConfigError(f"the points span {grid.width * grid.resolution / 1000:.1f} x "
                          f"{grid.height * grid.resolution / 1000:.1f} km; a stack of "
                          f"{len(bands)} bands over them would hold {size / 2**30:.1f} GiB, "
                          f"beyond the {MAX_STACK_BYTES / 2**30:.0f} GiB isamap-fit fetches: "
                          "fit on the points of a smaller area, or on fewer --bands")
    west, south, east, north = _lonlat_bounds(grid)
    geometry = request_geometry(parse_bbox(f"{west},{south},{east},{north}", "points"))
    recipe = EERecipe(bands=tuple(bands))
    date = composite_windows(session, geometry, "points", DateRecipe(recipe, None,
                                                                   month_window(month)))
    image = prediction_image(grid, date, geometry)
    data = np.full((len(bands), grid.height, grid.width), np.nan, np.float32)
    windows = [Window(row_off=r, col_off=c, height=min(TILE_PX, grid.height - r),
                      width=min(TILE_PX, grid.width - c))
               for r in range(0, grid.height, TILE_PX) for c in range(0, grid.width, TILE_PX)]
    for w in progress_bar(windows, desc="fetching the stack", unit="tile", disable=not progress):
        tile, _ = fetch_window(session, image, grid, w, tuple(bands))
        data[:, w.row_off:w.row_end, w.col_off:w.col_end] = tile
    path = out / f"stack_{month}_image.tif"
    write_geotiff(path, data, grid.transform, grid.crs, np.nan, descriptions=list(bands),
                  tags={MONTH_TAG: month, "BACKEND": "ee"})
    sources = {"s2_window": date.s2_window.to_dict() if date.s2_window else None,
               "s1_window": date.s1_window.to_dict()}
    return str(path), record(grid, "ee", recipe.to_dict(), bands, month, sources)


def _lonlat_bounds(grid: Grid) -> tuple[float, float, float, float]:
    from rasterio.warp import transform_bounds

    west, south, east, north = grid.bounds
    return transform_bounds(grid.crs, "EPSG:4326", west, south, east, north, densify_pts=21)
