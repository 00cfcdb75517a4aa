"""The records of a labelled reference file: its text decoded, its rows, its positions.

A CSV (UTF-8 with or without BOM, or Excel's UTF-16 "Unicode text"; commas, tabs or
semicolons) or a GeoJSON of points (its ``crs`` member honoured) becomes a list of records
with lower-case keys; positions must be lon/lat degrees. The records are read as labelled
points by :func:`inference.assess.point_files.read_reference`.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform as warp_transform

from core.csv_text import unquoted
from core.errors import InputDataError


def coordinate(path: str | Path, record: Mapping[str, Any], key: str) -> float:
    """A point's ``lon`` or ``lat`` as a number.

    A decimal comma (``114,2892``, as the spreadsheets of many countries write it) is read as
    the decimal point it is.

    Raises:
        InputDataError: not a number, naming the point.
    """
    value = record.get(key, "nan")
    text = unquoted(str(value))
    if text.count(",") == 1 and "." not in text:
        text = text.replace(",", ".")
    try:
        return float(text)
    except (TypeError, ValueError):
        raise InputDataError(f"{path}: the {key} of point {record.get('id', '?')} is "
                             f"{value!r}, not a number; give decimal degrees (114.2892)") from None


def reference_text(path: Path) -> str:
    """The file's text: UTF-8 (with or without BOM) or UTF-16 with its byte-order mark."""
    if path.suffix.lower() in (".kml", ".kmz"):  # the design writes one; it holds no labels
        raise InputDataError(f"--reference {path} is KML, which is not read as labelled points: "
                             "give the labelled sample.csv or sample.geojson, or the "
                             "labelling app's CSV export")
    raw = path.read_bytes()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16")  # Excel's "Unicode text"
    if b"\x00" in raw[:4096]:
        raise InputDataError(f"--reference {path} holds NUL bytes (UTF-16 without a byte-order "
                             "mark?); save it as 'CSV UTF-8'")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputDataError(f"--reference {path} is not UTF-8 text (byte {exc.start} is "
                             f"{raw[exc.start]:#04x}); save it as 'CSV UTF-8' or UTF-16") from None


def csv_records(text: str) -> list[dict]:
    header = text.splitlines()[0] if text.strip() else ""
    delimiter = max(",\t;", key=header.count)  # Excel writes tabs (UTF-16) or semicolons
    return [{k.strip().lower(): v for k, v in row.items() if k}
            for row in csv.DictReader(io.StringIO(text), delimiter=delimiter)
            if any(isinstance(v, str) and v.strip() for v in row.values())]  # not ';;;;'


def geojson_records(path: Path, text: str) -> list[dict]:
    """Point features as records in lon/lat: a ``crs`` member (GeoJSON 2008) is honoured."""
    try:
        doc = json.loads(text)
        features = doc["features"]
        _points_only(path, features)
        records = [{**{str(k).lower(): v for k, v in (f.get("properties") or {}).items()},
                    "lon": float(f["geometry"]["coordinates"][0]),
                    "lat": float(f["geometry"]["coordinates"][1]),
                    "id": (f.get("properties") or {}).get("id", f.get("id"))}
                   for f in features]
    except InputDataError:
        raise  # a feature of another geometry, named
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise InputDataError(f"{path}: not a GeoJSON FeatureCollection of points ({exc})"
                             ) from None
    named = doc.get("crs") if isinstance(doc, dict) else None
    if not named or not records:
        return records
    props = named.get("properties") or {} if isinstance(named, dict) else {}
    name = props.get("name") or (f"EPSG:{props['code']}" if "code" in props else None)
    try:
        crs = CRS.from_user_input(name)
    except (CRSError, TypeError, ValueError):
        raise InputDataError(f"{path} names the CRS {name!r}, which is not known; save it "
                             "in lon/lat (EPSG:4326, e.g. QGIS: Export > Save Features As)"
                             ) from None
    if crs.is_geographic:
        return records  # degrees; the order is checked by range
    lon, lat = warp_transform(crs, "EPSG:4326", [r["lon"] for r in records],
                              [r["lat"] for r in records])
    return [r | {"lon": x, "lat": y} for r, x, y in zip(records, lon, lat, strict=True)]


def _points_only(path: Path, features: Sequence[Any]) -> None:
    """Refuse a feature that is not a Point with [lon, lat] (a polygon, a line, none) by name."""
    for i, f in enumerate(features):
        geometry = f.get("geometry") if isinstance(f, dict) else None
        kind = geometry.get("type") if isinstance(geometry, dict) else None
        coords = geometry.get("coordinates") if isinstance(geometry, dict) else None
        if kind == "Point" and isinstance(coords, list) and len(coords) >= 2:
            continue
        props = (f.get("properties") or {}) if isinstance(f, dict) else {}
        name = props.get("id", f.get("id")) if isinstance(f, dict) else None
        which = f"{path}: feature {i + 1}" + (f" (id {name})" if name is not None else "")
        if kind == "Point":
            raise InputDataError(f"{which} is a Point with coordinates {coords!r}, not "
                                 "[lon, lat]; give it its position, or drop the feature")
        if not kind:
            raise InputDataError(f"{which} has no geometry; give each feature a Point "
                                 "geometry ([lon, lat]), or drop the features without one")
        raise InputDataError(
            f"{which} is a {kind}; only Point features are read, one class per point. "
            "Sample points inside the polygons and label those (e.g. QGIS: Vector > Research "
            "Tools > Random Points Inside Polygons, then Join Attributes by Location for "
            "the class)")


def check_lon_lat(path: Path, ids: Sequence[str], lon: np.ndarray, lat: np.ndarray) -> None:
    """Refuse coordinates that are not lon/lat degrees: swapped, or projected without a CRS."""
    bad = ~(np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90))
    if not bad.any():
        return
    i = int(np.flatnonzero(bad)[0])
    where = f"point {ids[i]} at ({lon[i]:.6g}, {lat[i]:.6g})"
    if np.all((np.abs(lat) <= 180) & (np.abs(lon) <= 90)):
        raise InputDataError(f"{path}: longitude and latitude are swapped ({where}: latitude "
                             "beyond ±90°); write longitude first (GeoJSON [lon, lat], CSV "
                             "lon and lat columns)")
    raise InputDataError(f"{path}: coordinates are not lon/lat degrees ({where}), and the file "
                         "names no CRS; save it in lon/lat (EPSG:4326, e.g. QGIS: Export > "
                         "Save Features As), or name its CRS in a GeoJSON \"crs\" member")
