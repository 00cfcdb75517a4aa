"""The geometry a request graph carries for a region: its bounding box, never its outline.

Every ``computePixels`` request, ``getInfo`` and batch task sends its whole graph, and Earth
Engine refuses a request over 10 MB. A ``--region-file`` outline (a province's border has
hundreds of thousands of vertices) copied into each graph would cost megabytes per request,
or be refused. The pixels are fixed by the grid, which covers the region's bounding box, so
the graphs filter scenes on that box: a scene that meets the box but not the outline only
covers pixels outside the outline, and every pixel inside it gets the same scenes as before.
Where an outline itself must travel (the Code Editor preview), :func:`outline_for_script`
keeps it only while it is small.
"""

from __future__ import annotations

import json
from typing import Any

from contract.regions import Region

MAX_PAYLOAD_BYTES = 10 * 2**20
"""Earth Engine's limit on a request's serialized graph."""

MAX_OUTLINE_BYTES = 1 * 2**20
"""The largest outline a script embeds: a tenth of the payload limit, the rest for the graph."""


def request_geometry(region: Region) -> Any:
    """The region's bounding box as an ``ee.Geometry`` (planar lon/lat rectangle)."""
    import ee

    return ee.Geometry.Rectangle(list(region.bbox), "EPSG:4326", False)


def outline_bytes(region: Region) -> int:
    """Bytes the region's outline takes in a serialized graph (its GeoJSON, compact)."""
    return len(json.dumps(region.to_geojson(), separators=(",", ":")))


def outline_for_script(region: Region) -> tuple[dict[str, Any], str | None]:
    """The GeoJSON a script may embed, and a note when the outline was too large for it."""
    size = outline_bytes(region)
    if size <= MAX_OUTLINE_BYTES:
        return region.to_geojson(), None
    west, south, east, north = region.bbox
    box = {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north],
                                               [west, north], [west, south]]]}
    return box, (f"the region's outline ({size / 2**20:.1f} MB) is too large to travel in "
                 f"every request (limit {MAX_PAYLOAD_BYTES / 2**20:.0f} MB); its bounding box "
                 "is used")
