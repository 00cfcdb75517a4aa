"""``getInfo`` of an ``Image.reduceRegion`` answered from a local stack, as the service does.

What :class:`testing.fake_server.StackTransport` answers a scene-normalised model's band
statistics request with (:mod:`gee_export.ee.band_statistics`): the expression is decoded and
must reduce the recipe's image (when given) masked as the statistics request masks it, with mean
and stdDev in one unweighted pass, over a planar rectangle; the stack's pixels under the centres
of the requested scale's pixels (aligned on the CRS's origin, as Earth Engine aligns a scale)
inside the rectangle are reduced, masked ones left out, and a band with none answers null;
anything else is refused with a 400, as the service refuses an invalid request.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window as RioWindow

from gee_export.ee.band_statistics import masked_bands, output_keys, statistics_reducer
from gee_export.ee.pixels import FLOAT_NODATA_BELOW
from testing.ee_graph import Graph, constant
from testing.fake_quota import HttpError

__all__ = ["reduce_region"]


def reduce_region(graph: dict[str, Any], stack_image: str, recipe: Any = None,
                  ) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Mean and population deviation per band of ``stack_image``, and the request's record.

    The record holds the reduced bands, the CRS, the scale and the pixels reduced; the rules
    the request must follow are the module's.
    """
    decoded = Graph(graph)
    args = decoded.resolve(decoded.values[decoded.graph["result"]])[
        "functionInvocationValue"]["arguments"]
    if args.get("reducer") != _resolved(statistics_reducer()):
        raise HttpError(400, "this server reduces with Reducer.mean combined with "
                             "Reducer.stdDev (sharedInputs, unweighted) only")
    bands = _reduced_bands(args["image"], recipe)
    rect = args["geometry"].get("functionInvocationValue", {})
    if rect.get("functionName") != "GeometryConstructors.Rectangle" or constant(
            rect["arguments"].get("geodesic", {"constantValue": True})):
        raise HttpError(400, "this server reduces over a planar rectangle only")
    crs, scale = _projection(args["crs"]), float(constant(args["scale"]))
    if _projection(rect["arguments"]["crs"]) != crs:
        raise HttpError(400, "the rectangle is in another CRS than the reduction")
    if constant(args.get("bestEffort", {"constantValue": False})):
        raise HttpError(400, "this server reduces at the scale asked for (no bestEffort)")
    west, south, east, north = constant(rect["arguments"]["coordinates"])
    xs, ys = _centres(west, south, east, north, scale)
    limit = int(constant(args.get("maxPixels", {"constantValue": 10_000_000})))
    if xs.size * ys.size > limit:
        raise HttpError(400, f"Too many pixels in the region. Found {xs.size * ys.size}, "
                             f"but maxPixels allows only {limit}.")
    answer: dict[str, float | None] = {}
    with rasterio.open(stack_image) as src:
        if src.crs.to_string() != crs:
            raise HttpError(400, f"reduction in {crs}, the stack is in {src.crs}")
        names = list(src.descriptions)
        cols = np.floor((xs - src.transform.c) / src.transform.a).astype(int)
        rows = np.floor((ys - src.transform.f) / src.transform.e).astype(int)
        inside = ((rows >= 0) & (rows < src.height))[:, None] & \
            ((cols >= 0) & (cols < src.width))[None, :]
        rows, cols = rows.clip(0, src.height - 1), cols.clip(0, src.width - 1)
        r0, c0 = (int(rows.min()), int(cols.min())) if inside.size else (0, 0)
        window = RioWindow(c0, r0, int(cols.max(initial=c0)) - c0 + 1,
                           int(rows.max(initial=r0)) - r0 + 1)  # the pixels sampled only
        r, c = np.meshgrid(rows - r0, cols - c0, indexing="ij")
        for band in bands:
            block = src.read(names.index(band) + 1, window=window, out_dtype="float64")
            values = block[r, c][inside]
            if src.nodata is not None and np.isfinite(src.nodata):
                values = values[values != src.nodata]
            values = values[np.isfinite(values) & (values > FLOAT_NODATA_BELOW)]
            mean_key, std_key = output_keys(band)
            answer[mean_key] = float(values.mean()) if values.size else None
            answer[std_key] = float(values.std()) if values.size else None
    return answer, {"bands": tuple(bands), "crs": crs, "scale": scale,
                    "pixels": int(xs.size * ys.size)}

def _reduced_bands(image: dict[str, Any], recipe: Any) -> list[str]:
    """The bands a statistics request reduces, refused unless masked as it masks them."""
    update = image.get("functionInvocationValue", {})
    select = update.get("arguments", {}).get("image", {}).get("functionInvocationValue", {})
    if update.get("functionName") != "Image.updateMask" or \
            select.get("functionName") != "Image.select":
        raise HttpError(400, "the reduced image is not a masked selection of bands")
    bands = [str(b) for b in constant(select["arguments"]["bandSelectors"])]
    if recipe is not None:
        if image != _resolved(masked_bands(recipe, bands)):
            raise HttpError(400, "the reduced image is not the recipe's image")
        return bands
    threshold = {"functionInvocationValue": {"functionName": "Image.constant", "arguments": {
        "value": {"constantValue": FLOAT_NODATA_BELOW}}}}
    if update["arguments"].get("mask") != {"functionInvocationValue": {
            "functionName": "Image.gt", "arguments": {
                "image1": update["arguments"]["image"], "image2": threshold}}}:
        raise HttpError(400, "the reduced bands are not masked where the image holds "
                             "the masked value")
    return bands


def _resolved(obj: Any) -> Any:
    """The expression of an ee object with every value reference inlined."""
    graph = Graph(obj)
    return graph.resolve(graph.values[graph.graph["result"]])


def _projection(node: dict[str, Any]) -> str:
    """The CRS code of a resolved ``Projection`` argument."""
    call = node.get("functionInvocationValue", {})
    if call.get("functionName") != "Projection":
        raise HttpError(400, "this server takes a CRS code as a projection only")
    return str(call["arguments"]["crs"]["constantValue"])


def _centres(west: float, south: float, east: float, north: float,
             scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the ``scale`` pixels (aligned on the origin) inside a rectangle.

    x ascending, y descending (rows north to south); a centre on the west or north edge is
    inside, one on the east or south edge is not.
    """
    xs = (np.arange(np.floor(west / scale), np.ceil(east / scale)) + 0.5) * scale
    ys = (np.arange(np.ceil(north / scale), np.floor(south / scale), -1) - 0.5) * scale
    return xs[(xs >= west) & (xs < east)], ys[(ys <= north) & (ys > south)]
