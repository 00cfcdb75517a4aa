"""STAC metadata of a map series: an Item beside every COG, a Collection for the series.

STAC tools and catalogues (stac-browser, pystac, QGIS's STAC plugin) find the maps through
these files: every output COG (class, probability, change) gets ``<cog stem>.stac.json`` beside
it, and the series a ``collection.json`` at the COG root linking every item by a relative
path, with the model, recipe, dates and metrics as properties. The grid is described with the
projection extension (``proj:code``, ``proj:shape``, ``proj:transform``, ``proj:bbox``), as
STAC clients expect; a CRS without an authority code is written as ``proj:wkt2`` instead.

The catalogue is self-contained: every link and asset href is relative to the file that holds
it, so the folder copied elsewhere or uploaded to a bucket reads the same; no property names a
local path other than relative to the file's folder or by its file name
(:mod:`core.shareable`). Each Item records
the inputs its date was built from (``isamap:inputs``: the composite windows of an Earth Engine
date, the scene files of a local one).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pystac
from pystac.extensions.projection import ProjectionExtension
from rasterio.warp import transform_bounds

from core.months import month_range
from core.shareable import shareable
from core.storage import files

MEDIA_COG = pystac.MediaType.COG
ITEM_SUFFIX = ".stac.json"


def _time(month: str) -> tuple[datetime, datetime]:
    start, end = month_range(month)
    return (datetime.fromisoformat(start.replace("Z", "+00:00")),
            datetime.fromisoformat(end.replace("Z", "+00:00")))


def cog_item(cog_path: str, kind: str, months: Sequence[str],
             properties: Mapping[str, Any]) -> pystac.Item:
    """The STAC Item of one COG.

    Args:
        cog_path: the COG (local or gs://).
        kind: ``class``, ``probability`` or ``change``.
        months: the date it maps (a change map: its two dates).
        properties: ``isamap:`` properties (model, recipe, metrics ...).
    """
    with files.open_raster(cog_path) as ds:
        west, south, east, north = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds,
                                                    densify_pts=21)
        code = ds.crs.to_authority()
        wkt = None if code else ds.crs.to_wkt(version="WKT2_2019")
        shape, transform = [ds.height, ds.width], list(ds.transform)[:6]
        native_bbox = list(ds.bounds)
        res = abs(ds.transform.a)
    start, _ = _time(months[0])
    _, end = _time(months[-1])
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    name = cog_path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".tif")
    item = pystac.Item(
        id=name, geometry={"type": "Polygon", "coordinates": [ring]},
        bbox=[west, south, east, north], datetime=None,
        start_datetime=start, end_datetime=end,
        properties={"isamap:kind": kind, "isamap:months": list(months), "gsd": res,
                    **{f"isamap:{k}": v for k, v in properties.items()}})
    projection = ProjectionExtension.ext(item, add_if_missing=True)
    projection.apply(code=":".join(code) if code else None, wkt2=wkt, shape=shape,
                     transform=transform, bbox=native_bbox)
    item.add_asset("data", pystac.Asset(
        href=f"./{name}.tif", media_type=MEDIA_COG, roles=["data"],
        title=f"ISA {kind} ({', '.join(months)})"))
    item.set_self_href(cog_path.removesuffix(".tif") + ITEM_SUFFIX)  # beside the COG
    return item


def series_collection(items: Sequence[pystac.Item], months: Sequence[str], root: str,
                      properties: Mapping[str, Any], title: str) -> pystac.Collection:
    """The series' Collection at ``<root>/collection.json`` linking ``items``."""
    boxes = [item.bbox for item in items if item.bbox]
    bbox: list[float | int] = ([min(b[0] for b in boxes), min(b[1] for b in boxes),
                                max(b[2] for b in boxes), max(b[3] for b in boxes)]
                               if boxes else [-180, -90, 180, 90])
    start, _ = _time(months[0]) if months else (datetime.now(UTC), None)
    end = _time(months[-1])[1] if months else None
    collection = pystac.Collection(
        id=title.lower().replace(" ", "-"), title=title,
        description="Impervious surface (ISA) maps by isamap: class, probability and change "
                    "COGs for every date of the series.",
        extent=pystac.Extent(pystac.SpatialExtent([bbox]),
                             pystac.TemporalExtent([[start, end]])),
        license="other",
        extra_fields={"isamap:months": list(months),
                      **{f"isamap:{k}": v for k, v in properties.items()}})
    collection.catalog_type = pystac.CatalogType.SELF_CONTAINED  # relative hrefs only
    collection.set_self_href(f"{root.rstrip('/')}/collection.json")
    for item in items:
        path = item.get_self_href()
        collection.add_item(item)  # moves the item to pystac's layout: put it back beside its COG
        item.set_self_href(path)
    return collection


def write_series_stac(collection: pystac.Collection) -> list[str]:
    """Write the Collection and every Item (atomically, local or gs://); returns the paths."""
    written = []
    targets = [(collection.get_self_href(), collection)] + [
        (item.get_self_href(), item) for item in collection.get_items()]
    for path, obj in targets:
        assert path is not None  # the collection and its items were given their paths
        data = obj.to_dict(include_self_link=False, transform_hrefs=True)
        data = shareable(data, path.rsplit("/", 1)[0])
        store, name = files.store_of(path)
        store.write_bytes(name, json.dumps(data, indent=1, default=str).encode())
        written.append(path)
    return written
