"""Whether ``--zones`` touch the map at all, checked before the first expensive step.

Zones that lie beside the map (shifted a degree, or in a CRS of the wrong hemisphere) made a
run that mapped every date and then rewrote the area and change tables with zeros, one
warning per zone. :func:`check_zones_touch` refuses such zones first, naming both extents in
longitude/latitude; a zone beside the map among others on it stays a "no data" row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rasterio.features import bounds as geometry_bounds
from rasterio.warp import transform_bounds

from core.errors import InputDataError
from inference.predict.stats import boxes_overlap

Box = tuple[float, float, float, float]  # west, south, east, north


def check_zones_touch(geometries: Sequence[dict[str, Any] | None], bounds: Box, crs: Any,
                      given: str) -> None:
    """Refuse zones none of which reaches into the map's ``bounds``.

    Args:
        geometries: the zones' polygons in ``crs`` (None: the whole map, which touches it).
        bounds: the map grid's ``(west, south, east, north)`` in ``crs``.
        crs: the map's CRS.
        given: the zones file as the user gave it (``--zones zones.geojson``).

    Raises:
        InputDataError: no zone's bounding box overlaps the map's.
    """
    boxes = [geometry_bounds(g) if g is not None else bounds for g in geometries]
    if not boxes or any(boxes_overlap(box, bounds) for box in boxes):
        return
    zones = (min(b[0] for b in boxes), min(b[1] for b in boxes),
             max(b[2] for b in boxes), max(b[3] for b in boxes))
    raise InputDataError(
        f"no zone of {given} touches the map: the zones lie in {_lonlat(zones, crs)}, the map "
        f"in {_lonlat(bounds, crs)}; give zones over the mapped area (a file in a projected "
        "CRS names it in a 'crs' member, the right hemisphere's UTM zone included)")


def _lonlat(box: Box, crs: Any) -> str:
    """``box`` (in ``crs``) as longitudes and latitudes, west to east and south to north."""
    west, south, east, north = transform_bounds(crs, "EPSG:4326", *box, densify_pts=21)
    return f"lon {west:.4f} to {east:.4f}, lat {south:.4f} to {north:.4f}"
