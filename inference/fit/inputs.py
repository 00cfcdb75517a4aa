"""What ``isamap-fit`` reads: labelled points (never an assessment's) and the stacks under them.

Points come in the files people label with, read by the readers of the accuracy assessment
(:func:`inference.assess.point_files.read_references`: a CSV or GeoJSON with ``lon``, ``lat``
and a class column, the labelling app's export, a Collect Earth Online sample export).

Training points and assessment points are kept apart: a map scored on the points it was
fitted on scores what it remembers. A blind sample design (``isamap-assess design``) marks
its files: its folder holds ``sample.json`` and ``design_points.csv``, and every file an
interpreter labels carries the design's ``strata_id`` (:mod:`inference.assess.design_file`).
:func:`design_reason` refuses a design folder or record, a file carrying a ``strata_id``
without the ``map_class`` column, and a file lying beside a blind design's ``sample.json``;
a Collect Earth Online export is judged by the same rule, on its plots as the readers take
them (its plot file's columns come back as ``pl_strata_id``, ``pl_map_class``).
A design drawn with ``--show-map-class`` says its labels are for training (its files carry
``map_class``) and is accepted. Points copied into a file without those columns carry
nothing of their design and cannot be told apart: docs/points.md says to keep training and
assessment points in separate projects.

Each point is found in the first input stack whose pixels cover it (:func:`locate`), and
its bands read there (:func:`values_at`); a point outside every input is refused.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window

from contract.stack import recorded_month
from core.digest import text_sha256
from core.errors import ConfigError, InputDataError
from core.storage import files
from inference.assess.ceo import is_ceo_export, plot_records
from inference.assess.design_file import BLIND, POINTS_FILE, RECORD_FILE
from inference.assess.point_files import ReferencePoints, read_references
from inference.assess.reference_records import csv_records, geojson_records, reference_text
from inference.predict.sources import masked_read, select_bands

log = logging.getLogger(__name__)

STRATA_COLUMN = "strata_id"
MAP_CLASS_COLUMN = "map_class"


def design_reason(path: str | Path) -> str | None:
    """Why ``path`` holds an accuracy assessment's points, or None (module docstring)."""
    path = Path(path)
    if path.is_dir():
        return (f"is a folder{' holding a sample design' if (path / RECORD_FILE).exists() else ''}"
                "; give the labelled file")
    if path.name in (RECORD_FILE, POINTS_FILE):
        return f"is a sample design's {path.name} (isamap-assess design)"
    beside = path.parent / RECORD_FILE
    if beside.is_file():
        try:
            interpretation = json.loads(beside.read_text()).get("interpretation", BLIND)
        except (ValueError, AttributeError):
            interpretation = BLIND
        if interpretation == BLIND:
            return (f"lies beside the blind sample design {beside} (isamap-assess design): "
                    "its points are for the accuracy assessment")
    if not path.is_file():
        return None
    text = reference_text(path)
    records = (geojson_records(path, text) if path.suffix.lower() in (".geojson", ".json")
               else csv_records(text))
    if records and is_ceo_export(list(records[0])):  # its design's columns as pl_<name>
        records = plot_records(records, "", str(path))
    columns = set(records[0]) if records else set()
    if STRATA_COLUMN in columns and MAP_CLASS_COLUMN not in columns and any(
            str(r.get(STRATA_COLUMN) or "").strip() for r in records):
        return ("carries the strata_id of a blind sample design (isamap-assess design): its "
                "points are for the accuracy assessment")
    return None


def read_training_points(paths: Sequence[str], classes: Sequence[str],
                         column: str = "reference") -> ReferencePoints:
    """The labelled points of ``paths``, refusing an assessment design's.

    Raises:
        ConfigError: a file that does not exist, or holds an assessment design's points.
        InputDataError: what the readers refuse (no label column, unknown classes ...).
    """
    for path in paths:
        problem = None if (Path(path) / RECORD_FILE).is_file() else files.file_problem(
            "--points", path, "the labelled CSV, GeoJSON or Collect Earth Online export")
        if problem:  # a folder holding a design is told apart below
            raise ConfigError(problem)
        reason = design_reason(path)
        if reason:
            raise ConfigError(f"--points {path} {reason}. Training points and assessment "
                              "points are kept apart: fit on points labelled for training "
                              "(or on a design drawn with the map class shown), and score "
                              "the map on the design's points with isamap-assess score")
    return joined_points(paths, [read_references([p], classes, column, positions=True,
                                                 use="fit") for p in paths])


def joined_points(paths: Sequence[str], parts: Sequence[ReferencePoints]) -> ReferencePoints:
    """One or several files' training points as one set: a point is its place, not its id.

    Two labellers number their points alike: ids that recur in another file are named by
    their file (``b.csv:1``). A place labelled twice (in two files, or under two ids of one)
    is one point when both give it the same class (kept once) and refused when they disagree.

    Raises:
        InputDataError: one place labelled with two classes.
    """
    seen: dict[tuple[float, float], tuple[str, int, str]] = {}
    ids: list[str] = []
    keep: list[int] = []
    taken: set[str] = set()
    for path, part in zip(paths, parts, strict=True):
        for k, pid in enumerate(part.ids):
            place = (round(float(part.lon[k]), 7), round(float(part.lat[k]), 7))
            label = int(part.reference[k])
            if place in seen:
                other, code, where = seen[place]
                if code != label:
                    raise InputDataError(f"point {pid} of {path} lies where point {other} of "
                                         f"{where} lies, with another class; give each place "
                                         "one label")
                keep.append(-1)
                continue
            name, n = pid, 1
            while name in taken:  # an id an earlier file has: named by its file (and a count)
                name = f"{Path(path).name}:{pid}" + (f" ({n})" if n > 1 else "")
                n += 1
            seen[place] = (name, label, path)
            taken.add(name)
            ids.append(name)
            keep.append(len(ids) - 1)
    rows = np.array([i for i, k in enumerate(keep) if k >= 0], dtype=int)
    lon = np.concatenate([p.lon for p in parts])[rows]
    lat = np.concatenate([p.lat for p in parts])[rows]
    reference = np.concatenate([p.reference for p in parts])[rows]
    return ReferencePoints(tuple(ids), lon, lat, reference,
                           unlabelled=sum(p.unlabelled for p in parts),
                           strata_ids=frozenset().union(*(p.strata_ids for p in parts)),
                           no_data=tuple(i for p in parts for i in p.no_data))


@dataclass(frozen=True)
class StackInput:
    """One input stack: where, its grid and the model's bands in it."""

    path: str
    crs: str
    transform: rasterio.Affine
    width: int
    height: int
    indexes: tuple[int, ...]  # 1-based, the model's bands in its order
    month: str | None  # the stack's MONTH tag

    def __post_init__(self) -> None:
        if not self.indexes:
            raise InputDataError(f"--input {self.path} holds none of the bands asked for")


def open_input(path: str, bands: Sequence[str], from_where: str = "that --bands names",
               remedy: str | None = None) -> StackInput:
    """The grid of stack ``path`` and where ``bands`` are in it (found by name).

    ``from_where``: where ``bands`` came from, as a refusal of a band missing names it
    (``--bands``, the first ``--input``'s bands, or a ``--from`` model's); ``remedy``: what
    that refusal tells to do (None: give other ``--bands`` or another stack).
    """
    with open_stack(path) as src:
        if src.crs is None:
            raise InputDataError(f"--input {path} has no CRS; give the stack isamap-export "
                                 "wrote (stacks/stack_<month>_image.tif)")
        # a fit: no model exists yet to be "trained on these", nor a recipe to map by
        indexes = select_bands(
            src.descriptions, bands, subject=f"--input {path}", needed_by=from_where,
            remedy=remedy or "Give --bands naming bands every --input has, or a stack that "
                             "has these.",
            series_remedy=lambda months: (
                f"The fit reads the same bands from every --input, a series of {months} "
                f"months (bands _m1.._m{months - 1}: the months before each stack's own): "
                f"export every --input with the same isamap-export --series-months {months}, "
                "or give --bands naming bands every --input has"))
        return StackInput(path, src.crs.to_string(), src.transform, src.width, src.height,
                          tuple(indexes), recorded_month(src.tags()))


@contextlib.contextmanager
def open_stack(path: str) -> Iterator[Any]:
    """The stack ``path`` open; one that cannot be opened refused naming ``--input``."""
    try:
        with files.open_raster(path) as src:
            yield src
    except rasterio.errors.RasterioIOError as exc:
        raise InputDataError(files.raster_refusal(
            "--input", path, exc, "the stack isamap-export wrote "
            "(stacks/stack_<month>_image.tif)")) from None


def stack_bands(path: str) -> tuple[str, ...]:
    """The named bands of a stack, in file order (its descriptions)."""
    with open_stack(path) as src:
        names = tuple(d or "" for d in src.descriptions)
    if not all(names):
        raise InputDataError(f"--input {path} has unnamed bands; name them (isamap-export "
                             "writes the names) or give --bands")
    return names


@dataclass(frozen=True)
class Located:
    """Where each point is: its input, pixel and projected position."""

    group: np.ndarray  # index of the input
    row: np.ndarray
    col: np.ndarray
    x: np.ndarray  # projected, in its input's CRS (metres)
    y: np.ndarray


def locate(points: ReferencePoints, inputs: Sequence[StackInput]) -> Located:
    """The first input covering each point; refuses a point outside every input."""
    n = len(points.ids)
    group = np.full(n, -1, np.int64)
    row, col = np.zeros(n, np.int64), np.zeros(n, np.int64)
    x, y = np.zeros(n), np.zeros(n)
    for g, stack in enumerate(inputs):
        xs, ys = warp_transform("EPSG:4326", stack.crs, list(points.lon), list(points.lat))
        xs, ys = np.asarray(xs), np.asarray(ys)
        c, r = ~stack.transform @ (xs, ys)
        c, r = np.floor(np.asarray(c)).astype(np.int64), np.floor(np.asarray(r)).astype(np.int64)
        inside = (group < 0) & (r >= 0) & (r < stack.height) & (c >= 0) & (c < stack.width)
        group[inside], row[inside], col[inside] = g, r[inside], c[inside]
        x[inside], y[inside] = xs[inside], ys[inside]
    outside = np.flatnonzero(group < 0)
    if outside.size:
        i = int(outside[0])
        raise InputDataError(f"{outside.size} of {n} points lie outside the input stack(s) "
                             f"(first: {points.ids[i]} at {points.lon[i]:.6f}, "
                             f"{points.lat[i]:.6f}); give --input stacks that cover every "
                             "point, or leave those points out of --points")
    return Located(group, row, col, x, y)


def values_at(inputs: Sequence[StackInput], where: Located) -> np.ndarray:
    """``(n, C)`` float32 band values at the points, nodata as NaN."""
    out = np.full((where.group.size, len(inputs[0].indexes)), np.nan, np.float32)
    for g, stack in enumerate(inputs):
        members = np.flatnonzero(where.group == g)
        if not members.size:
            continue
        with files.open_raster(stack.path) as src:
            for i in members:
                window = Window(int(where.col[i]), int(where.row[i]), 1, 1)
                out[i] = masked_read(src, stack.indexes, window)[:, 0, 0]
    return out


def points_record(paths: Sequence[str], points: ReferencePoints, kept: np.ndarray,
                  drawn: dict | None = None) -> dict:
    """What the model file records of its points: files, counts, and a digest of positions.

    The digest (SHA-256 of the kept points' positions to 1e-7 degrees, sorted) lets a later
    step tell whether a set of points is the one a model was fitted on; no path is kept.
    ``drawn``: points drawn from a label raster, how (:mod:`inference.fit.drawn`), recorded
    instead of the files.
    """
    positions = sorted(f"{lon:.7f},{lat:.7f}" for lon, lat in
                       zip(points.lon[kept], points.lat[kept], strict=True))
    source = {"drawn": drawn} if drawn else {"files": [Path(p).name for p in paths]}
    return {**source, "read": len(points.ids),
            "used": int(kept.sum()), "positions_sha256": text_sha256("\n".join(positions))}
