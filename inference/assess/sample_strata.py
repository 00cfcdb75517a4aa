"""Which strata weight the labelled points: the design's, or those of a raster that drew them.

A stratified estimate weights each point by the stratum that drew it and the strata's sizes.
With ``--design`` both come from the design's own files, joined to the labels by point id
(:func:`design_strata`). Without it they are read from a raster (``--strata``, else the map) at
the points (:func:`raster_strata`), which is right only if that raster drew them, so the
points are checked first: a file beside its design's ``sample.json`` names the strata it was
drawn on, every file an interpreter sends back carries the strata's ``strata_id``
(:func:`check_strata_id`) and the design's ``design_id`` (:func:`check_design_id`: every
design numbers its points ``p00001``..., so ids alone do not tie labels to a design), such a
file's points lie on the centres of the pixels they were drawn at (:func:`check_pixel_centres`:
rounded coordinates are not the sample), and a
stratified sample of a raster's pixels holds each pixel at
most once (:func:`check_distinct_pixels`): two points on one pixel were drawn on another
raster (a finer map) or are one point listed twice. A file labelled away from its design
folder is thus never weighted by the wrong strata without a word.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from core.errors import ConfigError, InputDataError
from inference.assess.design_file import RECORD_FILE, DesignFile
from inference.assess.point_files import ReferencePoints
from inference.assess.strata import (
    Strata,
    centre_offsets,
    check_codes,
    pixels_at,
    read_strata,
    values_at,
)
from inference.cog.maps import NODATA

log = logging.getLogger(__name__)


def raster_strata(points: ReferencePoints, path: str, paths: Sequence[str | Path]
                  ) -> tuple[Strata, np.ndarray]:
    """The strata of raster ``path`` and each point's stratum, the points checked first.

    The checks show the raster drew the points (see module docstring).
    """
    strata = read_strata(path)
    check_points(points, strata, paths)
    check_strata_id(points, strata, paths, f"the strata raster {strata.path}")
    check_distinct_pixels(points, strata, paths)
    check_pixel_centres(points, strata, paths)
    stratum = values_at(strata.path, points.lon, points.lat)
    check_codes(stratum, strata.classes, f"the strata raster {strata.path}", points.ids)
    return strata, stratum


def check_points(points: ReferencePoints, strata: Strata, paths: Sequence[str | Path]) -> None:
    """Refuse points scored on other strata than drew them, or with lon/lat swapped.

    A labelled file beside its design's ``sample.json`` names the strata that drew it; without
    ``--design`` or ``--strata`` a change design would be estimated with the map's classes.
    """
    for path in paths:
        record = Path(path).parent / RECORD_FILE
        try:
            drawn_on = tuple(json.loads(record.read_text()).get("classes") or ())
        except (OSError, ValueError, AttributeError):
            continue
        if drawn_on and drawn_on != tuple(strata.classes):
            raise ConfigError(f"{path} was drawn on the strata {list(drawn_on)} ({record}), not "
                              f"on the classes {list(strata.classes)} of {strata.path}; give "
                              f"--design {Path(path).parent} (or --strata with the raster that "
                              "drew it, e.g. the change COG)")
    inside = values_at(strata.path, points.lon, points.lat) != NODATA
    if inside.all() or (np.abs(points.lon) > 90).any():
        return
    swapped = values_at(strata.path, points.lat, points.lon) != NODATA
    if swapped.sum() > max(inside.sum(), points.lon.size // 2):
        raise ConfigError(f"{', '.join(map(str, paths))}: longitude and latitude look swapped "
                          f"({int(swapped.sum())} of {swapped.size} points fall on the map "
                          f"swapped, {int(inside.sum())} as given); write longitude first "
                          "(GeoJSON [lon, lat], CSV lon and lat columns)")


def check_strata_id(points: ReferencePoints, strata: Strata, paths: Sequence[str | Path],
                    source: str) -> None:
    """Refuse labelled files whose ``strata_id`` names other strata than the scorer's.

    Sample files written since the column exists carry the digest of the strata that drew
    them, so a file labelled away from its design folder (a change design, a map redrawn since)
    is never estimated with another raster's strata; files without it are read as before.
    """
    if not points.strata_ids:
        return
    files = ", ".join(map(str, paths))
    if len(points.strata_ids) > 1:
        raise InputDataError(f"{files}: the points come from {len(points.strata_ids)} sample "
                             f"designs (strata_id {', '.join(sorted(points.strata_ids))}); "
                             "score each design's points on their own")
    if strata.strata_id not in points.strata_ids:
        raise ConfigError(f"{files} was drawn on other strata (strata_id "
                          f"{next(iter(points.strata_ids))}) than {source} holds (strata_id "
                          f"{strata.strata_id}: {', '.join(strata.classes)}), so its points "
                          "would be weighted by the wrong strata; give --design with the "
                          "folder `isamap-assess design` wrote for these points (or --strata "
                          "with the raster that drew them, e.g. the change COG)")


#: how far (in pixel sides) a design's point may lie from its pixel's centre in a file read
#: without ``--design``: the sample files give positions to 1e-7 degrees (about a centimetre)
CENTRE_TOLERANCE = 0.25


def check_pixel_centres(points: ReferencePoints, strata: Strata,
                        paths: Sequence[str | Path]) -> None:
    """Refuse a design's points that lie off the centres of the pixels that drew them.

    A file carrying a design's ids (``design_id``, ``strata_id``) read without ``--design``
    is placed by its own lon/lat; a design draws pixel centres, so points away from them had
    their coordinates rounded (to 1e-4 degrees, about 11 m: the next pixel) or moved, and
    would be scored at other pixels than were drawn. ``--design`` places them by id.
    """
    if not (points.design_ids or points.strata_ids):
        return
    off = centre_offsets(strata.path, points.lon, points.lat)
    far = off > CENTRE_TOLERANCE
    if not far.any():
        return
    first = int(np.flatnonzero(far)[0])
    named = (f"design_id {', '.join(sorted(points.design_ids))}" if points.design_ids
             else f"strata_id {', '.join(sorted(points.strata_ids))}")
    raise ConfigError(
        f"{', '.join(map(str, paths))} holds the points of a sample design ({named}), but "
        f"{int(far.sum())} of {far.size} lie off the centres of the pixels of {strata.path} "
        f"that it draws (first: {points.ids[first]}, {off[first]:.2f} of a pixel off: rounded "
        "coordinates, or another raster's sample?), so they would be scored at other pixels; "
        "give --design with the folder `isamap-assess design` wrote for them")


def check_distinct_pixels(points: ReferencePoints, strata: Strata,
                          paths: Sequence[str | Path]) -> None:
    """Refuse points that share a pixel of the strata raster.

    A design draws each pixel of its strata raster at most once, so two points on one pixel
    were drawn on another raster (a finer map: its strata and inclusion probabilities are not
    this raster's) or are one point listed twice (a copied row, two sittings merged under
    other ids), which would count its label twice.
    """
    rows, cols, inside = pixels_at(strata.path, points.lon, points.lat)
    seen: dict[tuple[int, int], int] = {}
    shared = []
    for i in np.flatnonzero(inside):
        first = seen.setdefault((int(rows[i]), int(cols[i])), int(i))
        if first != i:
            shared.append((first, int(i)))
    if not shared:
        return
    a, b = shared[0]
    raise ConfigError(
        f"{', '.join(map(str, paths))}: {len(shared)} "
        f"{'point falls' if len(shared) == 1 else 'points fall'} on a pixel of the strata "
        f"raster {strata.path} that another point is on too (first: {points.ids[b]} on the "
        f"pixel of {points.ids[a]}); a sample of that raster draws each pixel once, so these "
        "points were drawn on another raster (a finer map) or one point is listed twice: give "
        "--design with the folder `isamap-assess design` wrote for them (or --strata with the "
        "raster that drew them), or keep each point once")


UNKNOWN_PIXEL_M = 100.0
"""How far a file's point may lie from its design's when the design records no pixel size."""


def check_design_positions(given: ReferencePoints, placed: ReferencePoints, strata: Strata,
                           paths: Sequence[str | Path]) -> None:
    """Refuse a labelled file whose own lon/lat put an id away from the design's point.

    The design places each point by its id; a file that also gives positions must agree to
    about a pixel (1.5 of the strata's pixel sides; a CEO plot's samples lie within it). A
    file whose id column was sorted apart from its rows would be scored with each label at
    another point's place. Points without a position in the file are placed by id alone.
    """
    lon, lat = np.asarray(given.lon, float), np.asarray(given.lat, float)
    known = np.isfinite(lon) & np.isfinite(lat)
    if not known.any():
        return
    metres = 1.5 * strata.resolution if strata.resolution > 0 else UNKNOWN_PIXEL_M
    tolerance = metres / 111_320.0  # degrees of latitude
    cos = np.cos(np.deg2rad(np.where(known, lat, 0.0)))
    far = known & ((np.abs(lat - placed.lat) > tolerance)
                   | (np.abs(lon - placed.lon) * np.maximum(cos, 0.01) > tolerance))
    if far.any():
        first = int(np.flatnonzero(far)[0])
        raise InputDataError(
            f"{', '.join(map(str, paths))}: {int(far.sum())} of {int(known.sum())} points lie "
            f"away from where the design drew their ids (first: {given.ids[first]} at "
            f"{lon[first]:.5f}, {lat[first]:.5f}, drawn at {placed.lon[first]:.5f}, "
            f"{placed.lat[first]:.5f}); the ids and positions disagree (a column sorted on "
            "its own?): mend the file, or leave out its lon/lat to score by id alone")


def check_design_id(given: ReferencePoints, drawn: DesignFile, paths: Sequence[str | Path],
                    design: str | Path) -> None:
    """Refuse labels that name another design than ``--design``; warn where nothing ties them.

    Two designs on one map (another seed, another size) share the point ids and the strata;
    their ``design_id`` differs. A file without it (written before the column existed) is
    checked by its positions (:func:`check_design_positions`); one with neither is scored by
    id with a warning that nothing shows which design it labels.
    """
    files = ", ".join(map(str, paths))
    if given.design_ids:
        other = sorted(given.design_ids - {drawn.design_id})
        if other:
            raise ConfigError(f"{files} holds labels of another sample design (design_id "
                              f"{other[0]}) than --design {design} (design_id "
                              f"{drawn.design_id}); every design numbers its points p00001..., "
                              "so they would be scored at this design's points: give --design "
                              "with the folder `isamap-assess design` wrote for these labels")
        return
    if not np.isfinite(np.asarray(given.lon, float)).any():
        log.warning("%s gives neither positions nor a design_id, so nothing shows its labels "
                    "were made on --design %s (every design numbers its points p00001...): "
                    "score it only if it is that design's export", files, design)


def design_strata(drawn: DesignFile, points: ReferencePoints
                   ) -> tuple[Strata, np.ndarray, ReferencePoints]:
    """The design's strata, each labelled point's stratum, the points at the design's positions.

    The design's positions are the pixel centres (a CEO export gives its samples' positions).
    """
    pos = drawn.positions(points.ids, points.no_data)
    record = drawn.record
    strata = Strata(str(record.get("strata_raster", "")), drawn.classes,
                    tuple(int(v) for v in record.get("strata_pixels", [0] * len(drawn.classes))),
                    drawn.strata_km2, str(record.get("crs", "")),
                    float(record.get("resolution", 0.0)))
    return strata, drawn.stratum[pos], replace(points, lon=drawn.lon[pos], lat=drawn.lat[pos])
