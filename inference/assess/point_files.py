"""The sample as files people label with, and the labelled reference file read back.

Blind by default: the files an interpreter uses hold each point's id and position only, in a
random order drawn from the seed (:attr:`inference.assess.design.Design.order`), so neither a
column nor the order tells the map's class. ``sample.csv``
(``id,lon,lat,x,y,strata_id,design_id,reference``; ``reference`` empty for the interpreter;
``strata_id`` the same digest on every row, naming the strata that drew the points,
:func:`inference.assess.strata.strata_id`; ``design_id`` naming the design's points,
:func:`inference.assess.design_file.design_id`), ``sample.geojson`` (the same as point features, for
QGIS and the Code Editor), ``sample.kml`` (Google Earth: one placemark per point, its name
the id; the document's description the ``design_id``), Collect Earth Online plot files
(:mod:`inference.assess.ceo`) and the labelling app. The strata, inclusion probabilities and
map classes are in ``design_points.csv`` (:mod:`inference.assess.design_file`), which the
scorer reads. ``show_map_class`` adds a ``map_class`` column to the CSV and GeoJSON for labels
meant for training; the design records it and the report says so.

A reference file is a CSV or GeoJSON with ``id`` (or ``PLOTID``), ``lon``/``lat`` (or point
geometries) and a column (``reference`` unless named otherwise) holding class names or
codes, or a Collect Earth Online sample export (:mod:`inference.assess.ceo`). What is
labelled is the class at the point, the centre of the map's pixel; a plot labelled at several
samples takes the class most of them got.
"""

from __future__ import annotations

import functools
import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import escape

import numpy as np

from core.commands import stops_deferred
from core.csv_text import csv_text
from core.errors import ConfigError, InputDataError
from core.shareable import shareable, shareable_path
from core.storage import atomic_write, files
from inference.assess.ceo import ceo_plot_files, is_ceo_export, plot_records, point_id
from inference.assess.design import Design, design_sample
from inference.assess.design_file import (
    BLIND,
    MAP_CLASS_SHOWN,
    POINTS_FILE,
    RECORD_FILE,
    design_id,
    design_points_csv,
)
from inference.assess.labelling_app import labelling_app_script
from inference.assess.reference_records import (
    check_lon_lat,
    coordinate,
    csv_records,
    geojson_records,
    reference_text,
)
from inference.assess.strata import class_names, values_at

log = logging.getLogger(__name__)

SAMPLE_COLUMNS = ("id", "lon", "lat", "x", "y", "strata_id", "design_id", "reference")
REFERENCE_COLUMN = "reference"
#: the reference of a point that cannot be labelled (cloud, a gap in the imagery): recorded,
#: then left out of the estimates (any case; ``no data`` and ``no_data`` too)
NO_DATA_REFERENCE = "nodata"
NO_DATA_SPELLINGS = frozenset({"nodata", "no data", "no_data", "no-data"})


@dataclass(frozen=True)
class ReferencePoints:
    """Labelled points read back: ids, coordinates, reference class codes."""

    ids: tuple[str, ...]
    lon: np.ndarray
    lat: np.ndarray
    reference: np.ndarray
    unlabelled: int = 0  # points of the file(s) left without a reference (left out)
    unlabelled_ids: tuple[str, ...] = ()  # their ids
    strata_ids: frozenset[str] = frozenset()  # the strata the file(s) say drew the points
    design_ids: frozenset[str] = frozenset()  # the designs the file(s) say drew the points
    map_class_shown: bool = False  # a file carries the map's class (--show-map-class)
    no_data: tuple[str, ...] = ()  # ids of points recorded as "nodata" (left out)


def _rows(design: Design, map_class: Sequence[str]) -> list[dict]:
    """One row per point in the interpreter's order, with what the scorer alone reads.

    Linear in the points: what is the same on every row (the strata's id, the inclusion
    probabilities) is computed once, and every value is a Python string before the loop
    (a signal that lands in numpy's string scalars was lost there).
    """
    names, order = design.strata.classes, design.order
    ids = [point_id(i + 1) for i in range(design.stratum.size)]  # p00001: the first shown
    drawn = design_id(ids, design.lon[order], design.lat[order])
    strata, inclusion = design.strata.strata_id, design.inclusion
    return [{"id": pid, "lon": f"{lon:.7f}", "lat": f"{lat:.7f}", "x": f"{x:.2f}",
             "y": f"{y:.2f}", "strata_id": strata, "design_id": drawn, "reference": "",
             "stratum": names[stratum], "inclusion_probability": f"{p:.6g}",
             "map_class": map_class[i]}
            for pid, i, lon, lat, x, y, stratum, p in zip(
                ids, order.tolist(), design.lon[order].tolist(), design.lat[order].tolist(),
                design.x[order].tolist(), design.y[order].tolist(),
                design.stratum[order].tolist(), inclusion[order].tolist(), strict=True)]


def _text(path: Path, text: str) -> Path:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
    return path


def _csv(rows: Sequence[dict], columns: Sequence[str]) -> str:
    return csv_text(rows, columns, lineterminator="\n")


def _columns(show_map_class: bool) -> tuple[str, ...]:
    return (*SAMPLE_COLUMNS[:-1], "map_class", "reference") if show_map_class \
        else SAMPLE_COLUMNS


def sample_geojson(rows: Sequence[dict], show_map_class: bool = False) -> dict:
    keep = [k for k in _columns(show_map_class) if k not in ("lon", "lat")]
    features = [{"type": "Feature", "id": row["id"],
                 "geometry": {"type": "Point",
                              "coordinates": [float(row["lon"]), float(row["lat"])]},
                 "properties": {k: row[k] for k in keep}}
                for row in rows]
    return {"type": "FeatureCollection", "features": features}


def kml_text(rows: Sequence[dict], title: str = "isamap reference sample") -> str:
    """Placemarks named by id at their position: nothing else, so no balloon shows a class.

    The Document alone names the design: ``design_id`` in its description and ExtendedData.
    """
    drawn = escape(str(rows[0].get("design_id", ""))) if rows else ""
    marks = [f"  <Placemark><name>{escape(row['id'])}</name>"
             f"<Point><coordinates>{row['lon']},{row['lat']},0</coordinates></Point>"
             "</Placemark>" for row in rows]
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<kml xmlns="http://www.opengis.net/kml/2.2">\n<Document>\n'
            f"  <name>{escape(title)}</name>\n"
            f"  <description>sample design_id {drawn}</description>\n  <ExtendedData>"
            f'<Data name="design_id"><value>{drawn}</value></Data></ExtendedData>\n'
            + "\n".join(marks) + "\n</Document>\n</kml>\n")


#: what points are read for: an accuracy assessment's estimates, or a fit's training
PointUse = Literal["assess", "fit"]


def read_references(paths: Sequence[str | Path], classes: Sequence[str],
                    column: str = REFERENCE_COLUMN, *, positions: bool = True,
                    use: PointUse = "assess") -> ReferencePoints:
    """Read one or several labelled files as one set of points.

    Several files: the CEO exports of a design split in several projects, or sittings. A point
    labelled in two files is refused; one left unlabelled in a file and labelled in another is
    labelled (a sitting's export lists every point, labelling its own).
    """
    parts = [read_reference(p, classes, column, positions=positions, use=use,
                            warn=len(paths) == 1) for p in paths]
    if len(parts) == 1:
        return parts[0]
    ids = tuple(i for part in parts for i in part.ids)
    twice = [i for i, count in Counter(ids + tuple(i for p in parts for i in p.no_data)).items()
             if count > 1]
    if twice:
        raise InputDataError(f"{len(twice)} points (first: {twice[0]}) are in more than one "
                             "--reference file; give each point's label once")
    no_data = tuple(dict.fromkeys(i for p in parts for i in p.no_data))
    left = tuple(dict.fromkeys(i for p in parts for i in p.unlabelled_ids
                               if i not in set(ids) | set(no_data)))
    every = set(ids) | set(no_data) | set(left)
    _warn_left_out(_Labels(list(ids), np.zeros(0), list(left) if positions else [],
                           list(no_data), set()), len(every), use)
    return ReferencePoints(ids, np.concatenate([p.lon for p in parts]),
                           np.concatenate([p.lat for p in parts]),
                           np.concatenate([p.reference for p in parts]),
                           unlabelled=len(left), unlabelled_ids=left,
                           strata_ids=frozenset().union(*(p.strata_ids for p in parts)),
                           design_ids=frozenset().union(*(p.design_ids for p in parts)),
                           map_class_shown=any(p.map_class_shown for p in parts),
                           no_data=no_data)


def read_reference(path: str | Path, classes: Sequence[str],
                   column: str = REFERENCE_COLUMN, *,
                   positions: bool = True, use: PointUse = "assess",
                   warn: bool = True) -> ReferencePoints:
    """Read a labelled CSV, GeoJSON or CEO sample export.

    Class names (any case) or codes become codes. ``column`` names the labels' column (a CEO
    question's text), in any case. Points left without a reference, or recorded as
    :data:`NO_DATA_REFERENCE` (they could not be labelled), are dropped with a warning (the
    estimates then assume they are missing at random within their stratum); a file with none
    labelled is refused. ``positions=False`` (the design gives them) reads a file of ids and
    labels alone, such as the labelling app's export. ``use``: what the points are read for
    (``fit``: training points, whose messages name no design nor strata). ``warn=False``: the
    points left out are not told (the caller tells them for several files at once).
    """
    path = Path(path)
    column = column.strip().lower()
    records = _records(path, column, positions, use)
    if is_ceo_export(list(records[0])):
        records, column = plot_records(records, column, str(path)), "reference"
    labels = _labels(records, column, classes)
    if len(labels.unlabelled) + len(labels.no_data) == len(records):
        raise InputDataError(f"the {len(records)} points of {path} have no reference yet "
                             f"({len(labels.no_data)} of them {NO_DATA_REFERENCE}); label them "
                             "(the reference column) first")
    if labels.unknown:
        raise InputDataError(f"{path}: references {sorted(labels.unknown)} are not among the "
                             f"classes {list(classes)} (names or codes 0..{len(classes) - 1}); "
                             f"a point that could not be labelled (cloud, a gap in the "
                             f"imagery) is marked {NO_DATA_REFERENCE}, which leaves it out")
    lon = np.array([coordinate(path, r, "lon") for r in records])
    lat = np.array([coordinate(path, r, "lat") for r in records])
    if "lon" in records[0]:
        check_lon_lat(path, labels.ids, lon, lat)
    if len(set(labels.ids)) != len(labels.ids):
        twice = next(i for i, n in Counter(labels.ids).items() if n > 1)
        raise InputDataError(f"{path}: point id {twice} names more than one point; give each "
                             "point its own id")
    # with a design (no positions) an unlabelled point is refused by the design, not left out
    if warn:
        _warn_left_out(labels if positions else replace(labels, unlabelled=[]),
                       len(records), use)
    keep = labels.codes >= 0
    return ReferencePoints(tuple(i for i, k in zip(labels.ids, keep, strict=True) if k),
                           lon[keep], lat[keep], labels.codes[keep],
                           unlabelled=len(labels.unlabelled),
                           unlabelled_ids=tuple(labels.unlabelled),
                           strata_ids=_column_values(records, "strata_id"),
                           design_ids=_column_values(records, "design_id"),
                           map_class_shown="map_class" in records[0],
                           no_data=tuple(labels.no_data))


def _column_values(records: Sequence[dict], column: str) -> frozenset[str]:
    """The distinct non-empty values of ``column`` in ``records``."""
    return frozenset(str(r.get(column) or "").strip() for r in records) - {""}


def _records(path: Path, column: str, positions: bool, use: PointUse = "assess") -> list[dict]:
    """The file's records, refused when it holds none or lacks a column it needs."""
    files.require("--reference", path, "the labelled CSV or GeoJSON file", error=ConfigError)
    text = reference_text(path)
    if path.suffix.lower() in (".geojson", ".json"):
        records = geojson_records(path, text)
    else:
        records = csv_records(text)
    if not records:
        raise InputDataError(f"{path} holds no points")
    needed = ("lon", "lat", column) if positions or "id" not in records[0] else ("id", column)
    missing = [k for k in needed if k not in records[0]]
    if missing:
        raise InputDataError(f"{path} lacks the columns {missing}; it needs id, lon, lat and "
                             f"{column!r} (the class each point was interpreted as; name "
                             "another column, such as a CEO question, with --reference-column)"
                             + ("; a file of ids and labels alone (the labelling app's "
                                "export) is scored with --design" if positions
                                and use == "assess" else ""))
    return records


@dataclass(frozen=True)
class _Labels:
    """Each record's id and class code (-1: left out), and why points are left out."""

    ids: list[str]
    codes: np.ndarray
    unlabelled: list[str]
    no_data: list[str]
    unknown: set[str]


def _labels(records: Sequence[dict], column: str, classes: Sequence[str]) -> _Labels:
    """The records' labels as class codes: names (any case) or codes; empty and no-data out."""
    lookup = {name.lower(): i for i, name in enumerate(classes)}
    ids, codes, unlabelled, unknown, no_data = [], [], [], set(), []
    for i, rec in enumerate(records):
        plot = str(rec.get("plotid") or "").strip()
        ids.append(str(rec.get("id") or (point_id(int(plot)) if plot.isdigit() else plot)
                       or f"row{i + 1}"))
        value = str(rec.get(column) if rec.get(column) is not None else "").strip()
        if not value:
            unlabelled.append(ids[-1])
            codes.append(-1)
        elif value.lower() in NO_DATA_SPELLINGS:
            no_data.append(ids[-1])
            codes.append(-1)
        elif value.lower() in lookup:
            codes.append(lookup[value.lower()])
        elif value.lstrip("-").isdigit() and 0 <= int(value) < len(classes):
            codes.append(int(value))
        else:
            unknown.add(value)
            codes.append(-1)
    return _Labels(ids, np.asarray(codes, dtype=np.int64), unlabelled, no_data, unknown)


def _warn_left_out(labels: _Labels, total: int, use: PointUse = "assess") -> None:
    """Say which points are left out of the estimates (or the fit), and what that assumes."""
    if use == "fit":
        left = [*labels.unlabelled, *labels.no_data]
        if left:
            log.warning("%d of %d points have no class (no reference, or %s; first: %s) and "
                        "are left out of the fit", len(left), total, NO_DATA_REFERENCE, left[0])
        return
    if labels.unlabelled:
        log.warning("%d of %d points have no reference (first: %s) and are left out: the "
                    "estimates assume they are missing at random within their stratum; label "
                    "them for estimates without that assumption", len(labels.unlabelled),
                    total, labels.unlabelled[0])
    if labels.no_data:
        log.warning("%d of %d points are %s (first: %s): they could not be labelled and are "
                    "left out; the estimates assume their classes are as those of the "
                    "labelled points of their stratum", len(labels.no_data), total,
                    NO_DATA_REFERENCE, labels.no_data[0])


@dataclass(frozen=True)
class WrittenDesign:
    design: Design
    files: dict[str, Path]


def write_design(raster: str, out: Path, *, n: int | None = None,
                 target_se: float | None = None, target_class: str | None = None,
                 expected_ua: tuple[float, ...] | None = None, seed: int = 0,
                 minimum: int = 50, asset_id: str | None = None,
                 map_path: str | None = None, show_map_class: bool = False) -> WrittenDesign:
    """Draw the sample of ``raster`` and write every file of it under ``out``.

    ``sample.json`` records the design (with its ``design_id``) and is written first,
    ``design_points.csv`` each point's stratum, inclusion probability and the class of
    ``map_path`` (default: the strata raster) at it. A folder that holds another design is
    refused (its points may be labelled already), and so is one holding sample files without
    a ``sample.json`` (of unknown origin). The same design again (an earlier isamap's record
    lacks ``design_id``) writes only what is missing (a killed run's rest): a labelled
    ``sample.csv`` keeps its labels; the labelling app (no labels) follows ``asset_id``.
    Every file is made before the first is written, and the writing is not cut by Ctrl-C or
    SIGTERM (:func:`core.commands.stops_deferred`): a stopped run leaves the whole design or
    nothing of it.
    """
    design = design_sample(raster, n=n, target_se=target_se, target_class=target_class,
                           expected_ua=expected_ua, seed=seed, minimum=minimum)
    rows = _rows(design, _map_classes(design, map_path))
    record = shareable(design.record() | {  # shared with the interpreters: no local path
        "map": shareable_path(map_path or raster, out), "points_file": POINTS_FILE,
        "design_id": rows[0]["design_id"],
        "interpretation": MAP_CLASS_SHOWN if show_map_class else BLIND,
        "order": "random, drawn from the seed (ids p00001... in the interpreter's order)"}, out)
    record_path = out / RECORD_FILE
    if record_path.exists():
        try:
            previous = json.loads(record_path.read_text())
        except ValueError:
            previous = None
        if isinstance(previous, dict) and "design_id" not in previous:  # an earlier isamap's
            previous["design_id"] = record["design_id"]
        if previous != json.loads(json.dumps(record)):
            raise ConfigError(f"{out} holds another sample design ({record_path}); its points "
                              "may be labelled already: choose another --out")
    texts: dict[str, tuple[Path, Callable[[], str]]] = {
        "csv": (out / "sample.csv", lambda: _csv(rows, _columns(show_map_class))),
        "geojson": (out / "sample.geojson",
                    lambda: json.dumps(sample_geojson(rows, show_map_class), indent=1)),
        "kml": (out / "sample.kml", lambda: kml_text(rows)),
        "app": (out / "labelling_app.js", lambda: labelling_app_script(
            sample_geojson(rows), design.strata.classes, pixel_size=design.strata.resolution,
            asset_id=asset_id)),
        "design_points": (out / POINTS_FILE, lambda: design_points_csv(rows)),
    }
    for key, (path, text) in ceo_plot_files(rows, out, show_map_class).items():
        texts[key] = (path, functools.partial(str, text))
    if not record_path.exists():
        stray = [p.name for p, _ in texts.values() if p.exists()]
        if stray:
            raise ConfigError(f"{out} holds {', '.join(stray)} but no {RECORD_FILE}, so whose "
                              "points they are is unknown; delete them or choose another --out")
    # every file is made before the first is written, then all are written at once: a stop
    # (Ctrl-C, SIGTERM) leaves the whole design or none of it; a killed run leaves the record
    # first, and the same command writes the rest
    app_path, make_app = texts["app"]  # it holds no labels: rewritten to follow --asset
    ready = {path: make() for path, make in texts.values() if not path.exists()}
    if app_path.exists() and app_path.read_text("utf-8") != (app := make_app()):
        ready[app_path] = app
    if not record_path.exists():
        ready = {record_path: json.dumps(record, indent=1), **ready}
    with stops_deferred():
        out.mkdir(parents=True, exist_ok=True)
        for path, text in ready.items():
            _text(path, text)
    return WrittenDesign(design, {k: v[0] for k, v in texts.items()} | {"json": record_path})


def _map_classes(design: Design, map_path: str | None) -> list[str]:
    """The map's class name at each point: the stratum, or ``map_path``'s class there."""
    names = design.strata.classes
    if map_path is None or map_path == design.strata.path:
        return [names[s] for s in design.stratum.tolist()]
    classes = class_names(map_path)
    values = values_at(map_path, design.lon, design.lat)
    return [classes[v] if 0 <= v < len(classes) else "nodata" for v in values.tolist()]
