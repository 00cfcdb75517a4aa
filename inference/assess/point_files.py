"""The sample as files people label with, and the labelled reference file read back.

``sample.csv`` (``id,lon,lat,x,y,stratum,reference``; ``reference`` empty for the interpreter),
``sample.geojson`` (the same as point features, for QGIS and the Code Editor), ``sample.kml``
(Google Earth: one placemark per point, named by id, the stratum hidden in its data so the
interpreter is not led by the map), and ``ceo_plots.csv`` (a Collect Earth Online plot file:
``PLOTID,LON,LAT``; set the project's plot shape to a square of the map's pixel size).

A reference file is a CSV or GeoJSON with ``id`` (or ``PLOTID``), ``lon``/``lat`` (or point
geometries) and a ``reference`` column holding class names or codes.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from gee_export.core.errors import ConfigError, InputDataError
from gee_export.core.storage import atomic_write
from inference.assess.design import Design

SAMPLE_COLUMNS = ("id", "lon", "lat", "x", "y", "stratum", "reference")
CEO_COLUMNS = ("PLOTID", "LON", "LAT")


@dataclass(frozen=True)
class ReferencePoints:
    """Labelled points read back: ids, coordinates, reference class codes."""

    ids: tuple[str, ...]
    lon: np.ndarray
    lat: np.ndarray
    reference: np.ndarray


def point_ids(design: Design) -> list[str]:
    return [f"p{i + 1:05d}" for i in range(design.stratum.size)]


def _rows(design: Design) -> list[dict]:
    names = design.strata.classes
    return [{"id": pid, "lon": f"{lon:.7f}", "lat": f"{lat:.7f}", "x": f"{x:.2f}",
             "y": f"{y:.2f}", "stratum": names[int(s)], "reference": ""}
            for pid, lon, lat, x, y, s in zip(point_ids(design), design.lon, design.lat,
                                              design.x, design.y, design.stratum, strict=True)]


def _text(path: Path, text: str) -> Path:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
    return path


def _csv(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_sample_csv(design: Design, path: Path) -> Path:
    return _text(path, _csv(_rows(design), SAMPLE_COLUMNS))


def sample_geojson(design: Design) -> dict:
    features = [{"type": "Feature", "id": row["id"],
                 "geometry": {"type": "Point",
                              "coordinates": [float(row["lon"]), float(row["lat"])]},
                 "properties": {k: row[k] for k in ("id", "x", "y", "stratum", "reference")}}
                for row in _rows(design)]
    return {"type": "FeatureCollection", "features": features}


def write_sample_geojson(design: Design, path: Path) -> Path:
    return _text(path, json.dumps(sample_geojson(design), indent=1))


def write_kml(design: Design, path: Path, title: str = "isamap reference sample") -> Path:
    marks = [f"""  <Placemark><name>{escape(row['id'])}</name>
   <ExtendedData><Data name="stratum"><value>{escape(row['stratum'])}</value></Data></ExtendedData>
   <Point><coordinates>{row['lon']},{row['lat']},0</coordinates></Point></Placemark>"""
             for row in _rows(design)]
    text = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<kml xmlns="http://www.opengis.net/kml/2.2">\n<Document>\n'
            f"  <name>{escape(title)}</name>\n" + "\n".join(marks) + "\n</Document>\n</kml>\n")
    return _text(path, text)


def write_ceo_plots(design: Design, path: Path) -> Path:
    rows = [{"PLOTID": i + 1, "LON": row["lon"], "LAT": row["lat"]}
            for i, row in enumerate(_rows(design))]
    return _text(path, _csv(rows, CEO_COLUMNS))


def read_reference(path: str | Path, classes: Sequence[str]) -> ReferencePoints:
    """Read a labelled CSV or GeoJSON; class names (any case) or codes become codes."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--reference {path} does not exist")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".geojson", ".json"):
        try:
            features = json.loads(text)["features"]
            records = [{**(f.get("properties") or {}),
                        "lon": f["geometry"]["coordinates"][0],
                        "lat": f["geometry"]["coordinates"][1],
                        "id": (f.get("properties") or {}).get("id", f.get("id"))}
                       for f in features]
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise InputDataError(f"{path}: not a GeoJSON FeatureCollection of points ({exc})"
                                 ) from None
    else:
        records = [{k.strip().lower(): v for k, v in row.items() if k}
                   for row in csv.DictReader(io.StringIO(text))]
    if not records:
        raise InputDataError(f"{path} holds no points")
    missing = [k for k in ("lon", "lat", "reference") if k not in records[0]]
    if missing:
        raise InputDataError(f"{path} lacks the columns {missing}; it needs id, lon, lat and "
                             "reference (the class each point was interpreted as)")
    lookup = {name.lower(): i for i, name in enumerate(classes)}
    ids, codes, unlabelled, unknown = [], [], [], set()
    for i, rec in enumerate(records):
        ids.append(str(rec.get("id") or rec.get("plotid") or f"row{i + 1}"))
        value = str(rec.get("reference") if rec.get("reference") is not None else "").strip()
        if not value:
            unlabelled.append(ids[-1])
            codes.append(-1)
        elif value.lower() in lookup:
            codes.append(lookup[value.lower()])
        elif value.lstrip("-").isdigit() and 0 <= int(value) < len(classes):
            codes.append(int(value))
        else:
            unknown.add(value)
            codes.append(-1)
    if unlabelled:
        raise InputDataError(f"{len(unlabelled)} of {len(records)} points have no reference "
                             f"(first: {unlabelled[0]}); label every point: leaving points out "
                             "biases the estimates")
    if unknown:
        raise InputDataError(f"{path}: references {sorted(unknown)} are not among the classes "
                             f"{list(classes)} (names or codes 0..{len(classes) - 1})")
    try:
        lon = np.array([float(r["lon"]) for r in records])
        lat = np.array([float(r["lat"]) for r in records])
    except (TypeError, ValueError) as exc:
        raise InputDataError(f"{path}: lon/lat must be numbers ({exc})") from None
    if len(set(ids)) != len(ids):
        raise InputDataError(f"{path}: point ids are not unique")
    return ReferencePoints(tuple(ids), lon, lat, np.asarray(codes, dtype=np.int64))


@dataclass(frozen=True)
class WrittenDesign:
    design: Design
    files: dict[str, Path]


def write_design(raster: str, out: Path, *, n: int | None = None,
                 target_se: float | None = None, target_class: str | None = None,
                 expected_ua: tuple[float, ...] | None = None, seed: int = 0,
                 minimum: int = 50, asset_id: str | None = None) -> WrittenDesign:
    """Draw the sample of ``raster`` and write every file of it under ``out``.

    ``sample.json`` records the design. A folder that holds another design is refused (its
    points may be labelled already); the same design again rewrites nothing that exists, so a
    ``sample.csv`` labelled in place keeps its labels.
    """
    from inference.assess.design import design_sample
    from inference.assess.labelling_app import labelling_app_script

    design = design_sample(raster, n=n, target_se=target_se, target_class=target_class,
                           expected_ua=expected_ua, seed=seed, minimum=minimum)
    record = design.record()
    record_path = out / "sample.json"
    if record_path.exists():
        try:
            previous = json.loads(record_path.read_text())
        except ValueError:
            previous = None
        if previous != json.loads(json.dumps(record)):
            raise ConfigError(f"{out} holds another sample design ({record_path}); its points "
                              "may be labelled already: choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    writers = {
        "csv": (out / "sample.csv", lambda p: write_sample_csv(design, p)),
        "geojson": (out / "sample.geojson", lambda p: write_sample_geojson(design, p)),
        "kml": (out / "sample.kml", lambda p: write_kml(design, p)),
        "ceo": (out / "ceo_plots.csv", lambda p: write_ceo_plots(design, p)),
        "app": (out / "labelling_app.js", lambda p: _text(p, labelling_app_script(
            sample_geojson(design), design.strata.classes, pixel_size=design.strata.resolution,
            asset_id=asset_id))),
    }
    for path, write in writers.values():
        if not path.exists():
            write(path)
    if not record_path.exists():
        _text(record_path, json.dumps(record, indent=1))
    return WrittenDesign(design, {k: v[0] for k, v in writers.items()} | {"json": record_path})
