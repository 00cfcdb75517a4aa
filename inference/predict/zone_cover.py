"""Whether ``--zones`` touch the map at all, checked before the first expensive step.

Zones that lie beside the map (shifted a degree, or in a CRS of the wrong hemisphere) made a
run that mapped every date and then rewrote the area and change tables with zeros, one
warning per zone. :func:`check_zones_touch` refuses such zones first, naming both extents in
longitude/latitude; a zone beside the map among others on it stays a "no data" row.

A zone's bounding box may overlap the map while the zone itself does not (a ring of districts
around a city map, islands of one multi-polygon on either side of it): the zones are therefore
also drawn, every touched cell counted, on a coarse lattice over the map (:data:`LATTICE` cells
a side at most). A coarse cell holds every fine pixel it covers, so a zone that reaches one of
the map's pixels always touches a cell: the check never refuses zones on the map.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from rasterio.features import bounds as geometry_bounds
from rasterio.features import rasterize
from rasterio.transform import from_bounds
from rasterio.warp import transform_bounds

from core.errors import InputDataError
from inference.predict.stats import Zone, boxes_overlap

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]  # west, south, east, north

LATTICE = 256
"""Cells a side of the coarse lattice the zones are drawn on (fewer where the map is smaller)."""
#: the share of a zone outside the map from which its rows are said to count the map's part
BEYOND = 0.01


def check_zones(zones: Sequence[Zone], bounds: Box, crs: Any, given: str, *,
                tell: bool = True) -> None:
    """Refuse zones that miss the map (:func:`check_zones_touch`); tell those that reach past it.

    A zone partly outside the map (a district cut by the map's edge) keeps its row, whose km²
    count the mapped part only (``nodata_km2`` is the map's no-data inside it, not the part
    outside): one warning names how many zones reach past the map and the largest share
    (``tell=False``: the caller, a series, told it once for all its dates).
    """
    check_zones_touch([z.geometry for z in zones], bounds, crs, given)
    if not tell:
        return
    beyond = [(z.name, share) for z in zones if z.geometry is not None
              and (share := share_outside(z.geometry, bounds)) > BEYOND]
    if beyond:
        name, share = max(beyond, key=lambda b: b[1])
        log.warning("%d of the %d zones of %s reach past the map (most: %s, %.0f %% of it "
                    "outside): their rows count the mapped part only", len(beyond), len(zones),
                    given, name, 100 * share)


def share_outside(geometry: dict[str, Any], bounds: Box) -> float:
    """The share of a zone's area outside ``bounds``, on a lattice over the zone's own box."""
    west, south, east, north = geometry_bounds(geometry)
    if east <= west or north <= south:
        return 0.0
    side = max(east - west, north - south) / LATTICE
    width = max(1, min(LATTICE, int(np.ceil((east - west) / side))))
    height = max(1, min(LATTICE, int(np.ceil((north - south) / side))))
    transform = from_bounds(west, south, east, north, width, height)
    drawn = rasterize([geometry], out_shape=(height, width), fill=0, default_value=1,
                      transform=transform, dtype="uint8").astype(bool)
    if not drawn.any():
        return 0.0
    x = west + (np.arange(width) + 0.5) * (east - west) / width
    y = north - (np.arange(height) + 0.5) * (north - south) / height
    inside = ((y >= bounds[1]) & (y <= bounds[3]))[:, None] & \
        ((x >= bounds[0]) & (x <= bounds[2]))[None, :]
    return float((drawn & ~inside).sum() / drawn.sum())


def check_zones_touch(geometries: Sequence[dict[str, Any] | None], bounds: Box, crs: Any,
                      given: str) -> None:
    """Refuse zones none of which reaches into the map's ``bounds``.

    Args:
        geometries: the zones' polygons in ``crs`` (None: the whole map, which touches it).
        bounds: the map grid's ``(west, south, east, north)`` in ``crs``.
        crs: the map's CRS.
        given: the zones file as the user gave it (``--zones zones.geojson``).

    Raises:
        InputDataError: no zone reaches into the map (its box or, where the boxes overlap, its
            outline: :func:`zones_reach`).
    """
    drawn = [g for g in geometries if g is not None]
    if len(drawn) < len(geometries):
        return
    boxes = [geometry_bounds(g) for g in drawn]
    near = [g for g, box in zip(drawn, boxes, strict=True) if boxes_overlap(box, bounds)]
    if not boxes or (near and zones_reach(near, bounds)):
        return
    zones = (min(b[0] for b in boxes), min(b[1] for b in boxes),
             max(b[2] for b in boxes), max(b[3] for b in boxes))
    raise InputDataError(
        f"no zone of {given} touches the map: the zones lie in {_lonlat(zones, crs)}, the map "
        f"in {_lonlat(bounds, crs)}; give zones over the mapped area (a file in a projected "
        "CRS names it in a 'crs' member, the right hemisphere's UTM zone included)")


def zones_reach(geometries: Sequence[dict[str, Any]], bounds: Box) -> bool:
    """Whether a zone touches a cell of a coarse lattice over ``bounds`` (every touched cell)."""
    west, south, east, north = bounds
    if east <= west or north <= south:
        return False
    side = max(east - west, north - south) / LATTICE
    width = max(1, min(LATTICE, int(np.ceil((east - west) / side))))
    height = max(1, min(LATTICE, int(np.ceil((north - south) / side))))
    drawn = rasterize(list(geometries), out_shape=(height, width), fill=0, default_value=1,
                      transform=from_bounds(west, south, east, north, width, height),
                      all_touched=True, dtype="uint8")
    return bool(drawn.any())


def _lonlat(box: Box, crs: Any) -> str:
    """``box`` (in ``crs``) as longitudes and latitudes, west to east and south to north."""
    west, south, east, north = transform_bounds(crs, "EPSG:4326", *box, densify_pts=21)
    return f"lon {west:.4f} to {east:.4f}, lat {south:.4f} to {north:.4f}"
