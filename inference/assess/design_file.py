"""The design kept apart from the interpreter, read back by the scorer.

Each point's stratum, inclusion probability and map class (``design_points.csv``) lie beside
the design's record (``sample.json``, which records the points' ``design_id``: a folder whose
points were edited afterwards is refused when read back).

The files an interpreter labels with hold only ids and positions, so the reference is made
blind to the map. The scorer reads the strata from here, joined to the labels by point id:
``id,lon,lat,x,y,stratum,inclusion_probability,map_class``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.csv_text import csv_text, unquoted
from core.digest import json_digest
from core.errors import ConfigError, InputDataError

POINTS_FILE = "design_points.csv"
RECORD_FILE = "sample.json"
DESIGN_COLUMNS = ("id", "lon", "lat", "x", "y", "stratum", "inclusion_probability",
                  "map_class")
BLIND = "blind"
MAP_CLASS_SHOWN = ("map class shown to the interpreter (--show-map-class): labels for "
                   "training, not an independent accuracy assessment")


@dataclass(frozen=True)
class DesignFile:
    """A written design read back: the strata and every point's stratum, by point id."""

    record: dict
    ids: tuple[str, ...]
    stratum: np.ndarray  # stratum code of each point
    lon: np.ndarray
    lat: np.ndarray

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.record["classes"])

    @property
    def strata_km2(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.record["strata_km2"])

    @property
    def interpretation(self) -> str:
        return str(self.record.get("interpretation", BLIND))

    @property
    def design_id(self) -> str:
        """What identifies this design's points in the files people label (:func:`design_id`)."""
        return design_id(self.ids, self.lon, self.lat)

    def positions(self, ids: tuple[str, ...], no_data: tuple[str, ...] = ()) -> np.ndarray:
        """Where each of ``ids`` is in the design; every design point must be among them.

        ``no_data``: points recorded as not labellable (``nodata``), which count as labelled.
        """
        index = {pid: i for i, pid in enumerate(self.ids)}
        unknown = [pid for pid in (*ids, *no_data) if pid not in index]
        if unknown:
            raise InputDataError(f"{len(unknown)} labelled points are not in the design "
                                 f"(first: {unknown[0]}); is --design the sample they were "
                                 "drawn from?")
        missing = sorted(set(self.ids) - set(ids) - set(no_data))
        if missing:
            raise InputDataError(f"{len(missing)} of the design's {len(self.ids)} points have "
                                 f"no label (first: {missing[0]}): label every point, leaving "
                                 "points out biases the estimates; a point that cannot be "
                                 "labelled (cloud, a gap in the imagery) is labelled nodata")
        return np.asarray([index[pid] for pid in ids], dtype=np.int64)


def design_id(ids: Sequence[str], lon: Sequence[float] | np.ndarray,
              lat: Sequence[float] | np.ndarray) -> str:
    """A 12-hex digest of a design's points: each id with its position, in the interpreter's order.

    Every design numbers its points ``p00001``...; two designs on one map (another seed, another
    size) share the ids and the strata (``strata_id``) but not this. Every file an interpreter
    labels carries it (``design_id``), so labels made on one design are never scored as another
    design's points; it tells nothing of a point's class. Positions as the sample files write
    them (7 decimals), so the design read back from ``design_points.csv`` gives the same digest.
    """
    return json_digest([[str(i), f"{float(x):.7f}", f"{float(y):.7f}"]
                        for i, x, y in zip(ids, lon, lat, strict=True)], 12)


def design_points_csv(rows: list[dict]) -> str:
    return csv_text(rows, DESIGN_COLUMNS, lineterminator="\n")


def read_design(path: str | Path) -> DesignFile:
    """Read a design folder (or its ``sample.json``) written by ``isamap-assess design``.

    ``sample.json`` records the ``design_id`` of the points it was written with (an earlier
    isamap's does not, and is read as it is); points that give another are refused.

    Raises:
        ConfigError: the files are missing, or the recorded ``design_id`` is not the points'.
        InputDataError: the files are not a design isamap wrote.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    record_path, points_path = folder / RECORD_FILE, folder / POINTS_FILE
    if not record_path.is_file() or not points_path.is_file():
        raise ConfigError(f"--design {path}: needs {RECORD_FILE} and {POINTS_FILE}, the files "
                          "`isamap-assess design` wrote in its --out")
    try:
        record = json.loads(record_path.read_text())
        classes = list(record["classes"])
        rows = list(csv.DictReader(io.StringIO(points_path.read_text(encoding="utf-8"))))
        lookup = {name: i for i, name in enumerate(classes)}
        stratum = np.asarray([lookup[r["stratum"]] for r in rows], dtype=np.int64)
        lon = np.asarray([float(unquoted(r["lon"])) for r in rows])
        lat = np.asarray([float(unquoted(r["lat"])) for r in rows])
        ids = tuple(r["id"] for r in rows)
        if len(record["strata_km2"]) != len(classes):
            raise ValueError("strata_km2 and classes differ in length")
    except (ValueError, KeyError, TypeError) as exc:
        raise InputDataError(f"--design {folder}: {RECORD_FILE} or {POINTS_FILE} is not a "
                             f"design isamap wrote ({type(exc).__name__}: {exc})") from None
    drawn = DesignFile(record, ids, stratum, lon, lat)
    recorded = record.get("design_id")  # absent in the record of an earlier isamap
    if recorded is not None and recorded != drawn.design_id:
        raise ConfigError(f"--design {folder}: {RECORD_FILE} records design_id {recorded} but "
                          f"the points of {POINTS_FILE} are design_id {drawn.design_id}: the "
                          "design folder was edited (points, positions or their order); draw "
                          "it again with isamap-assess design into a new --out (the same map "
                          "and options draw the same points)")
    return drawn
