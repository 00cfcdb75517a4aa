"""An Earth Engine transport that samples local rasters at points, as accuracy assessments ask.

:class:`PointTransport` answers ``getInfo`` of ``Image.reduceRegions`` with ``Reducer.first``
over point features from local rasters standing for the images' assets; everything else is
refused with a 400, as the service refuses an invalid request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import rasterio

from testing.fake_quota import HttpError


class PointTransport:
    """Answers ``getInfo`` of ``Image.reduceRegions`` over points from local rasters.

    The service samples an image at points the way accuracy assessments ask it to: the
    request's serialized expression is decoded, it must be ``Image.reduceRegions`` with
    ``Reducer.first`` over a collection of point features; the image's asset (``Image.load``)
    or collection (``ImageCollection.load``) id picks the local raster standing for it, whose
    pixel under each point (reprojected to the raster's CRS) answers as the feature's
    ``first`` property (null outside the raster or on nodata, as a masked pixel answers).
    ``requests`` keeps each decoded expression for tests to check what was asked.
    """

    def __init__(self, rasters: Mapping[str, str]) -> None:
        self.rasters = dict(rasters)
        self.requests: list[dict[str, Any]] = []

    def compute_pixels(self, request: dict[str, Any]) -> Any:
        raise HttpError(400, "this fake answers point samples only")

    def start_task(self, task: Any) -> str:
        raise HttpError(400, "this fake answers point samples only")

    def task_status(self, task_ids: list[str]) -> list[dict[str, Any]]:
        return []

    def get_info(self, obj: Any) -> Any:
        from ee.serializer import encode

        graph = encode(obj)
        values = graph["values"]
        root = values[graph["result"]]["functionInvocationValue"]
        if root["functionName"] != "Image.reduceRegions" or _function(
                root["arguments"]["reducer"], values) != "Reducer.first":
            raise HttpError(400, f"unexpected expression {root['functionName']}")
        loads = [a for a in _walk(root["arguments"]["image"], values)
                 if a.get("functionName") in ("Image.load", "ImageCollection.load")]
        asset = loads[0]["arguments"]["id"]["constantValue"]
        if asset not in self.rasters:
            raise HttpError(404, f"asset {asset} not found")
        points = [(f["arguments"]["geometry"]["functionInvocationValue"]["arguments"]
                   ["coordinates"]["constantValue"],
                   f["arguments"]["metadata"]["constantValue"])
                  for f in _walk(root["arguments"]["collection"], values)
                  if f.get("functionName") == "Feature"]
        self.requests.append({"asset": asset, "graph": graph, "points": len(points)})
        return {"type": "FeatureCollection",
                "features": [{"type": "Feature", "geometry": {"type": "Point",
                                                               "coordinates": xy},
                              "properties": {**meta, "first": value}}
                             for (xy, meta), value in zip(
                                 points, _values_at(self.rasters[asset], points), strict=True)]}


def _function(node: Any, values: Mapping[str, Any]) -> str | None:
    found = list(_walk(node, values))
    return found[0].get("functionName") if found else None


def _walk(node: Any, values: Mapping[str, Any]):
    """Every function invocation under ``node`` (value references followed), outermost first."""
    if isinstance(node, dict):
        if "valueReference" in node:
            yield from _walk(values[node["valueReference"]], values)
            return
        if "functionInvocationValue" in node:
            yield node["functionInvocationValue"]
        for value in node.values():
            yield from _walk(value, values)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value, values)


def _values_at(path: str, points: Sequence[tuple[Any, Any]]) -> list[float | None]:
    from rasterio.warp import transform as warp_transform

    with rasterio.open(path) as src:
        xs, ys = warp_transform("EPSG:4326", src.crs, [p[0][0] for p in points],
                                [p[0][1] for p in points])
        data = src.read(1)
        out: list[float | None] = []
        for x, y in zip(xs, ys, strict=True):
            row, col = src.index(x, y)
            inside = 0 <= row < src.height and 0 <= col < src.width
            value = data[row, col] if inside else None
            out.append(None if value is None or value == src.nodata else float(value))
    return out
