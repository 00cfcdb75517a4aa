"""The area a local export covers when none is named: what the scenes cover in common.

A local run reads the user's own scene files; a named default region (the paper's Wuhan) would
plan and stack an area the scenes do not cover (tens of thousands of km² of nodata for a
59 km² scene). Without ``--bbox``, ``--region-file`` or ``--region`` the area is the
intersection of the footprints of the month's Sentinel-1/2 scenes and the label raster: the
pixels every input can fill. Each footprint is the largest longitude/latitude box inside the
raster (its edges sampled, so a UTM rectangle's box stays inside it). The region is marked
``covered``, so its grid keeps to the whole pixels inside the box (snapped inward,
:meth:`contract.grid.Grid.from_bounds`): in the scenes' CRS it never reaches past them, where
pixels would be partly nodata. Only file headers are read.

``isamap-export`` and ``isamap-map`` both take their default area from :func:`default_region`,
so both say the same sentence in the log and refuse the same non-overlapping folders. A map
needs no label, so its area is the scenes' overlap alone (``with_label=False``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_bounds

from contract.dataset import read_manifest
from contract.dataset_diff import canonical
from contract.grid import Grid
from contract.regions import Region
from core.errors import ConfigError, InputDataError
from core.storage import open_store
from gee_export.local.scenes import SceneCollection, discover_scenes

log = logging.getLogger(__name__)

EDGE_SAMPLES = 21
"""Points sampled along each edge of a raster when its footprint is taken to lon/lat."""

LonLatBox = tuple[float, float, float, float]


def inner_lonlat_box(path: str | Path) -> LonLatBox:
    """The largest (west, south, east, north) box in degrees inside a raster's extent."""
    with rasterio.open(path) as src:
        left, bottom, right, top = src.bounds
        crs = src.crs
    if crs is None:
        raise InputDataError(f"{path} has no CRS; give the area with --bbox or --region-file")
    t = np.linspace(0.0, 1.0, EDGE_SAMPLES)
    xs = {"left": np.full_like(t, left), "right": np.full_like(t, right),
          "bottom": left + t * (right - left), "top": left + t * (right - left)}
    ys = {"left": bottom + t * (top - bottom), "right": bottom + t * (top - bottom),
          "bottom": np.full_like(t, bottom), "top": np.full_like(t, top)}
    edge = {}
    for side in xs:
        lon, lat = warp_transform(crs, "EPSG:4326", xs[side].tolist(), ys[side].tolist())
        edge[side] = (np.asarray(lon), np.asarray(lat))
    return (float(edge["left"][0].max()), float(edge["bottom"][1].max()),
            float(edge["right"][0].min()), float(edge["top"][1].min()))


def _inputs(collection: SceneCollection, months: Sequence[str], with_label: bool = True
            ) -> list[Path]:
    """One raster of every scene acquired in ``months`` (all scenes if none is), the label."""
    scenes = [s for m in months for s in (*collection.in_month(m).s2,
                                          *collection.in_month(m).s1)]
    if not scenes:  # the plan reports the empty months; the area is still the scenes'
        scenes = [*collection.s2, *collection.s1]
    paths = [scene.bands[0][1].path for scene in scenes if scene.bands]
    label = collection.label(1) if with_label else None
    return paths + ([label] if label else [])


def region_name(scenes: str | Path) -> str:
    """A region name from the scenes folder's name (letters, digits, ``-`` and ``_``).

    A glob (``demo/scene*/**/*.tif``) is named by the folder its pattern starts in (``demo``),
    not by its last part (``*.tif`` named every such region ``tif``).
    """
    parts = Path(scenes).parts
    fixed = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), None)
    folder = Path(scenes) if fixed is None else Path(".", *parts[:fixed])
    text = re.sub(r"[^A-Za-z0-9_-]+", "_", folder.resolve().name).strip("_")
    return text or "scenes"


def scenes_region(scenes: str | Path | SceneCollection, months: Sequence[str], *,
                  reading: Mapping[str, Any] | None = None, with_label: bool = True) -> Region:
    """The region every scene of ``months`` and the label cover (their footprints' overlap).

    Args:
        scenes: the ``--scenes`` folder (or what ``discover_scenes`` found in it).
        months: the months to export; their scenes decide the area.
        reading: ``discover_scenes`` arguments (``LocalRecipe.reading()``).
        with_label: the label raster narrows the area too (an export's patches need labels;
            a map does not).

    Raises:
        InputDataError: no raster found, or the footprints do not overlap.
    """
    collection = (scenes if isinstance(scenes, SceneCollection)
                  else discover_scenes(scenes, **(reading or {})))
    paths = _inputs(collection, months, with_label)
    if not paths:
        raise InputDataError(f"no Sentinel-1/2 scene found in {scenes} to take the area from; "
                             "add scenes or give the area with --bbox or --region-file")
    boxes = [inner_lonlat_box(p) for p in paths]
    west, south = max(b[0] for b in boxes), max(b[1] for b in boxes)
    east, north = min(b[2] for b in boxes), min(b[3] for b in boxes)
    if not (east > west and north > south):
        raise InputDataError(
            f"the {len(paths)} rasters of {', '.join(months)} in {scenes} do not overlap (no "
            f"area is covered by every scene{' and the label' if with_label else ''}); give "
            "the area with --bbox or --region-file, or leave out scenes of other places")
    label = region_name(scenes) if not isinstance(scenes, SceneCollection) else "scenes"
    what = "scene and label" if with_label else "scene"
    return Region(label, (west, south, east, north), covered=True,
                  description=f"the area {len(paths)} {what} rasters cover in common")


def scenes_extent(collection: SceneCollection, months: Sequence[str]
                  ) -> tuple[float, float, float, float] | None:
    """The lon/lat box around every scene of ``months`` (their footprints' union).

    ``collection``: the scenes as the stack over the box reads them (``discover_scenes``
    with the same reading options). None where it cannot say: no scene of those months (the
    stack's own refusal names the month), or a footprint across the 180th meridian
    (west > east).
    """
    found = [s for m in months for s in (*collection.in_month(m).s2, *collection.in_month(m).s1)]
    boxes = []
    for path in (scene.bands[0][1].path for scene in found if scene.bands):
        with rasterio.open(path) as src:
            if src.crs is not None:  # the outer box: a point on any corner is inside
                boxes.append(transform_bounds(src.crs, "EPSG:4326", *src.bounds,
                                              densify_pts=EDGE_SAMPLES))
    if not boxes or any(b[0] > b[2] for b in boxes):
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
            max(b[3] for b in boxes))


def default_region(scenes: str | Path, months: Sequence[str], *,
                   reading: Mapping[str, Any] | None = None, with_label: bool = True) -> Region:
    """The area of a local run given no ``--bbox``, ``--region-file`` or ``--region``, logged.

    The log line states the area as a ``--bbox`` the user can pass (or narrow) next time.

    Raises:
        InputDataError: as :func:`scenes_region` (no raster, or no common area).
    """
    region = scenes_region(scenes, months, reading=reading, with_label=with_label)
    log.info("no --bbox, --region-file or --region: the area is what the scenes in %s cover "
             "in common, --bbox %s", scenes, ",".join(f"{v:.5f}" for v in region.bbox))
    return region


def check_earlier_grid(region: Region, grid: Grid, out: str) -> None:
    """Refuse a dataset at ``out`` on the grid an earlier isamap took from the same scenes.

    Earlier versions snapped the scenes' extent outward; this one keeps the pixels whose
    centres the scenes cover (``inside``), so a rerun into such a dataset (adding a month)
    makes another grid. When a ``--bbox`` of that extent (snapped outward, as an area asked
    for is) gives the dataset's grid exactly, the refusal says so and names it; otherwise
    :func:`contract.dataset.check_compatible` refuses as for any other grid. A ``gs://``
    out is not read here (the run's own check refuses it).

    Raises:
        ConfigError: ``out`` holds a dataset on the grid that ``--bbox`` would keep.
    """
    if not region.covered or out.startswith("gs://"):
        return
    held = read_manifest(open_store(out), missing_ok=True).get("grid")
    if not held or canonical(held) == canonical(grid.to_dict()):
        return
    kept = Grid.from_lonlat_bounds(region.bbox, grid.crs, grid.resolution, grid.patch_size,
                                   grid.stride)
    if canonical(kept.to_dict()) != canonical(held):
        return
    bbox = ",".join(repr(v) for v in region.bbox)  # exact: --bbox parses it back to the same
    raise ConfigError(
        f"{out} holds a dataset whose grid an earlier isamap took from the scenes' extent "
        f"({held['width']} x {held['height']} px from x {held['x0']:g}, y {held['y0']:g}), "
        f"snapped outward; this version keeps the pixels whose centres the scenes cover "
        f"({grid.width} x {grid.height} px from x {grid.x0:g}, y {grid.y0:g}): pass --bbox "
        f"{bbox} to keep the dataset's grid (that extent, snapped outward as before), or write "
        "to another --out for the new grid")
