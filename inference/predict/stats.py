"""ISA area statistics per region or polygon, and change between two dates.

Everything streams over the COG's 512 x 512 blocks, so a national map is summarised with the
memory of a few blocks. Areas are true ground areas, for any CRS and rotated grids
(:mod:`inference.predict.pixel_area`). Polygons (GeoJSON, WGS 84 as the format prescribes, or
any CRS named in a ``crs`` member) are reprojected to the raster's CRS and rasterised block by
block (pixel centres inside the polygon count).

What "impervious" means in every table and map of a date and of a pair of dates, one
definition (:func:`impervious`): a pixel is impervious at a date where that date's class map
holds the impervious class (the argmax of the calibrated probabilities, after any
post-processing), never where it is nodata. The area table counts it (:func:`isa_area`), the
built-up polygons outline it (:mod:`inference.predict.vectors`), and a change map's codes are
made to agree with it (:func:`agreeing_codes`), so a change table's stable impervious area can
never exceed either date's impervious area and, where each flip of the class maps is confirmed,
``isa_from = stable + loss`` and ``isa_to = stable + gain`` hold to the pixel.

A change rule on probabilities (:func:`inference.predict.change.arrays.margin_change`,
:func:`inference.predict.change.arrays.spectral_change`) decides *whether* a pixel changed; the
class maps decide what it is at each date:

- stable impervious (1) where both class maps are impervious;
- gain (2) where the rule calls gain and the class maps go from pervious to impervious, loss
  (3) the other way round;
- stable pervious (0) everywhere else valid: pervious at both dates, a flip of the class maps
  the rule does not confirm (counted in neither date's stable area: the change table's
  ``isa_from_km2``/``isa_to_km2`` show it), or a rule's change the class maps do not make.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from rasterio.features import geometry_mask
from rasterio.warp import transform_geom
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds

from contract.regions import GEOJSON_ADVICE, read_geojson
from core.csv_text import csv_text
from core.errors import InputDataError
from core.jsonsafe import dumps
from core.shareable import shareable_path
from core.storage import atomic_write, files, work_folder
from core.storage.gdal_auth import gdal_env
from inference.cog import maps
from inference.cog.maps import NODATA, PROB_SCALE
from inference.predict.change import arrays as rule
from inference.predict.change.arrays import GAIN, LOSS, STABLE_ISA, STABLE_PERVIOUS
from inference.predict.change.spectral import StackRule
from inference.predict.pixel_area import pixel_area_km2
from inference.predict.zone_names import zone_name as zone_name  # re-exported
from inference.predict.zone_names import zone_names

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

CHANGE_CODES = {"stable_pervious": 0, "stable_isa": 1, "gain": 2, "loss": 3}
IMPERVIOUS_TAG = "class maps"
"""A change COG's ``impervious`` tag: its stable and changed codes agree with the class maps."""

def impervious(classes: np.ndarray, isa_class: int) -> np.ndarray:
    """Where a class map says impervious (the one definition; nodata never is).

    Args:
        classes: class map values (uint8, 255 for nodata).
        isa_class: the impervious class's value.
    """
    if isa_class == NODATA:
        raise ValueError(f"the impervious class cannot be the nodata value {NODATA}")
    return np.asarray(classes) == isa_class


def agreeing_codes(rule: np.ndarray, classes_from: np.ndarray, classes_to: np.ndarray,
                   isa_class: int) -> np.ndarray:
    """A change rule's codes made to agree with the two dates' class maps (module docstring).

    Args:
        rule: the rule's codes (0-3, :data:`NODATA`).
        classes_from: the earlier date's class map on the same pixels.
        classes_to: the later date's.
        isa_class: the impervious class's value.

    Returns:
        uint8 codes; nodata where the rule's code or either class map is nodata.
    """
    rule = np.asarray(rule)
    if not rule.shape == np.shape(classes_from) == np.shape(classes_to):
        raise ValueError(f"the change codes {rule.shape} and class maps {np.shape(classes_from)}"
                         f", {np.shape(classes_to)} differ in shape")
    was, now = impervious(classes_from, isa_class), impervious(classes_to, isa_class)
    code = np.where(was & now, STABLE_ISA, STABLE_PERVIOUS).astype(np.uint8)
    code[(rule == GAIN) & ~was & now] = GAIN
    code[(rule == LOSS) & was & ~now] = LOSS
    code[(rule == NODATA) | (np.asarray(classes_from) == NODATA)
         | (np.asarray(classes_to) == NODATA)] = NODATA
    return code


#: the table columns a zone without a valid pixel leaves empty: printed "no data"
NO_DATA_CELLS = ("isa_fraction", "stable_isa_km2", "gain_km2", "loss_km2", "net_change_km2")


@dataclass(frozen=True)
class Zone:
    name: str
    geometry: dict[str, Any] | None  # in the raster CRS; None = the whole raster


@dataclass(frozen=True)
class AreaRow:
    """ISA area of one zone (km²)."""

    zone: str
    isa_km2: float
    isa_probability_km2: float | None
    valid_km2: float
    nodata_km2: float
    isa_fraction: float | None  # None: no valid pixel in the zone ("no data", not 0 %)
    class_map: str = ""  # the class map counted: its file name (a series: relative to --out)


@dataclass(frozen=True)
class ChangeRow:
    """ISA change of one zone between two dates (km²).

    ``isa_from_km2``/``isa_to_km2``: each date's impervious area exactly as its area table
    counts it (None: the class maps were not given); where every flip of the class maps is a
    confirmed gain or loss and both dates have the same valid pixels, ``isa_from = stable +
    loss`` and ``isa_to = stable + gain`` (module docstring).
    """

    zone: str
    stable_isa_km2: float | None  # None: no valid pixel in the zone ("no data", not 0 km²)
    gain_km2: float | None
    loss_km2: float | None
    net_change_km2: float | None
    valid_km2: float
    isa_from_km2: float | None = None
    isa_to_km2: float | None = None


def load_zones(geojson: str | os.PathLike | dict | None, crs: Any,
               name_field: str | None = None, flag: str = "--zones") -> list[Zone]:
    """Zones from a GeoJSON file/dict (features or a bare geometry), reprojected to ``crs``.

    A zone's name is its ``name_field`` property (``--zones-name``), else ``name``, ``NAME``
    or the highest-numbered ``NAME_<n>`` (:mod:`inference.predict.zone_names`). Errors name
    the file as ``flag`` (the option the user typed) followed by its path.

    Raises:
        InputDataError: a feature is no polygon, cannot be reprojected, or has no name where
            ``name_field`` is given or other features have one.
    """
    if geojson is None:
        return [Zone("all", None)]
    if isinstance(geojson, dict):
        data, given = geojson, flag
    else:
        data, given = read_geojson(geojson, flag), f"{flag} {geojson}"
    src_crs = ((data.get("crs") or {}).get("properties") or {}).get("name", "EPSG:4326")
    if data.get("type") == "FeatureCollection":
        features = data.get("features") or []
    elif data.get("type") == "Feature":
        features = [data]
    else:
        features = [{"type": "Feature", "properties": {}, "geometry": data}]
    zones: list[Zone] = []
    for i, feature in enumerate(features):
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if not isinstance(geometry, dict) or geometry.get("type") not in (
                "Polygon", "MultiPolygon"):
            raise InputDataError(f"feature {i} of {given} is not a (Multi)Polygon; area "
                                 f"statistics need polygons: {GEOJSON_ADVICE}")
        if src_crs in ("EPSG:4326", "urn:ogc:def:crs:OGC:1.3:CRS84") and not _lonlat(geometry):
            raise InputDataError(
                f"feature {i} of {given} has coordinates outside longitude/latitude, so the "
                "file is in a projected CRS without saying so; add a 'crs' member naming it "
                "or reproject it to longitude/latitude (EPSG:4326) in your GIS")
        try:
            zones.append(Zone("", transform_geom(src_crs, crs, geometry)))
        except Exception as exc:  # GDAL/PROJ raise several types for a bad CRS or geometry
            raise InputDataError(f"feature {i} of {given} cannot be put in the map's CRS "
                                 f"({exc}); give polygons in longitude/latitude (GeoJSON's "
                                 "EPSG:4326) or name their CRS in a 'crs' member") from None
    if not zones:
        raise InputDataError(f"{given} has no features; {GEOJSON_ADVICE}")
    names = zone_names([f.get("properties") or {} for f in features], name_field, given)
    return [Zone(name, zone.geometry) for name, zone in zip(names, zones, strict=True)]


def _lonlat(geometry: dict[str, Any]) -> bool:
    """Whether every coordinate of a (Multi)Polygon is a longitude/latitude pair."""
    points = np.asarray([pt[:2] for ring in _rings(geometry) for pt in ring], dtype=float)
    return bool(points.size == 0 or (np.abs(points[:, 0]).max() <= 180
                                     and np.abs(points[:, 1]).max() <= 90))


def _rings(geometry: dict[str, Any]) -> list[list[list[float]]]:
    if geometry["type"] == "Polygon":
        return list(geometry["coordinates"])
    return [ring for polygon in geometry["coordinates"] for ring in polygon]


def _zonal(path: str, zones: Sequence[Zone], codes: Sequence[int],
           weights_path: str | None = None) -> dict[str, dict[str, float]]:
    """Per zone: km² of each code, of valid pixels, of nodata, and of ``weights`` / PROB_SCALE."""
    totals = {z.name: {**{str(c): 0.0 for c in codes}, "valid": 0.0, "nodata": 0.0,
                       "weighted": 0.0} for z in zones}
    with gdal_env(path, weights_path), rasterio.open(files.gdal_path(path)) as ds:
        weights_ds = rasterio.open(files.gdal_path(weights_path)) if weights_path else None
        try:
            if weights_ds and (weights_ds.shape, weights_ds.transform) != (ds.shape,
                                                                          ds.transform):
                raise InputDataError(f"{weights_path} is not on the grid of {path}")
            for _, window in ds.block_windows(1):
                _block(ds, weights_ds, window, zones, codes, totals)
        finally:
            if weights_ds:
                weights_ds.close()
    return totals


def _block(ds, weights_ds, window: Window, zones, codes, totals) -> None:
    data = ds.read(1, window=window)
    area = np.broadcast_to(pixel_area_km2(ds.transform, ds.crs, int(window.row_off),
                                          int(window.height), int(window.col_off),
                                          int(window.width)), data.shape)
    weights = weights_ds.read(1, window=window) if weights_ds else None
    block_box = window_bounds(window, ds.transform)
    transform = ds.window_transform(window)
    for zone in zones:
        if zone.geometry is None:
            inside = np.ones(data.shape, dtype=bool)
        else:
            if not boxes_overlap(block_box, rasterio.features.bounds(zone.geometry)):
                continue
            inside = geometry_mask([zone.geometry], data.shape, transform, invert=True)
            if not inside.any():
                continue
        t = totals[zone.name]
        valid = inside & (data != NODATA)
        t["nodata"] += float(area[inside & (data == NODATA)].sum())
        t["valid"] += float(area[valid].sum())
        for code in codes:
            t[str(code)] += float(area[valid & (data == code)].sum())
        if weights is not None:
            ok = valid & (weights != NODATA)
            t["weighted"] += float((area[ok] * weights[ok] / float(PROB_SCALE)).sum())


def boxes_overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two ``(west, south, east, north)`` boxes share more than an edge."""
    return not (a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1])


def isa_area(class_path: str, zones: Sequence[Zone], prob_path: str | None = None,
             isa_class: int = 1) -> list[AreaRow]:
    """ISA area (class map), probability-weighted ISA area (when given), valid area; the map."""
    totals = _zonal(class_path, zones, [isa_class], prob_path)
    rows = []
    for name, t in totals.items():
        isa = t[str(isa_class)]
        rows.append(AreaRow(name, round(isa, 6),
                            round(t["weighted"], 6) if prob_path else None,
                            round(t["valid"], 6), round(t["nodata"], 6),
                            round(isa / t["valid"], 6) if t["valid"] else None,
                            Path(class_path).name))
    return rows


def change_map(class_a: str, class_b: str, out_path: str, *, isa_class: int = 1,
               tags: dict[str, str] | None = None, margin: float | None = None,
               spectral: StackRule | None = None,
               classes: tuple[str, str] | None = None,
               work_dir: Path | None = None) -> str:
    """Write the ISA change COG from date A to date B (codes in ``CHANGE_CODES``).

    ``tags`` are added to the COG's metadata (a series records its inputs' run hashes there);
    the two maps are named relative to the change map's folder, or by file name
    (:mod:`core.shareable`): the COG is shared and published.

    With ``margin``, ``class_a`` and ``class_b`` are the dates' *probability* COGs and change
    is decided on both probabilities with that margin
    (:func:`inference.predict.change.arrays.margin_change`); the margin is recorded in the tags
    (``change_margin``, ``change_rule``). With ``spectral`` (both dates' stacks on this grid,
    :mod:`inference.predict.change.spectral`, or the encoder rule's on them,
    :mod:`inference.predict.change.encoder`), they are the probability COGs too and the stacks
    decide whether a pixel changed, the probabilities which way
    (:func:`inference.predict.change.arrays.spectral_change`); the fit (made here when ``spectral``
    has none) is made once for the whole map, so a map cut into blocks equals the whole. A
    pixel that is nodata in a band of either stack is 255. Without either, the class maps are
    differenced. ``classes`` (the two dates' class COGs, with ``margin`` or ``spectral``) makes
    the rule's codes agree with what the class maps call impervious
    (:func:`agreeing_codes`: the one definition of the area
    tables); the products always pass them. ``work_dir``: where the unfinished map is
    written (:func:`core.storage.work_folder`: default the output's folder, the system's
    temporary folder for gs://); it is removed on any exit, and a killed run's is a temporary
    (:meth:`core.storage.LocalStore.remove_temporaries`).

    Raises:
        InputDataError: the maps (or stacks) are not on one grid.
    """
    if spectral is not None and margin is not None:
        raise ValueError("a change map is decided by one rule: a margin or the spectral rule")
    if spectral is not None:
        spectral = spectral.fitted()
    with files.open_raster(class_a) as a, files.open_raster(class_b) as b, \
            contextlib.ExitStack() as opened:
        stacks, class_maps = _on_one_grid(a, b, class_a, class_b, spectral, classes, opened)
        profile = {"driver": "GTiff", "width": a.width, "height": a.height, "count": 1,
                   "dtype": "uint8", "crs": a.crs, "transform": a.transform,
                   "nodata": NODATA, "tiled": True, "blockxsize": maps.BLOCK,
                   "blockysize": maps.BLOCK, "compress": "ZSTD"}
        work = work_folder("change", out_path, work_dir)
        try:
            tmp = work / "change.tif"
            with rasterio.open(tmp, "w", **profile) as dst:
                for _, window in a.block_windows(1):
                    va, vb = a.read(1, window=window), b.read(1, window=window)
                    code = _codes(va, vb, isa_class, margin, spectral, stacks, window)
                    if class_maps and (spectral is not None or margin is not None):
                        code = agreeing_codes(code, class_maps[0].read(1, window=window),
                                              class_maps[1].read(1, window=window), isa_class)
                    dst.write(code, 1, window=window)
            here = out_path.rsplit("/", 1)[0] if "/" in out_path else "."
            tags = {"from": shareable_path(class_a, here), "to": shareable_path(class_b, here),
                    "codes": json.dumps(CHANGE_CODES),
                    "version": a.tags().get("version", ""),
                    **_rule_tags(spectral, margin, here),
                    **({"impervious": IMPERVIOUS_TAG} if class_maps or (spectral is None
                                                                       and margin is None)
                       else {}),
                    **(tags or {})}
            files.put_output(lambda local: maps.write_cog(tmp, local, "change", tags), out_path,
                             work)
        finally:  # an interrupt included
            shutil.rmtree(work, ignore_errors=True)
    return out_path


def _rule_tags(spectral: StackRule | None, margin: float | None, here: str) -> dict[str, str]:
    """The change COG's tags naming the rule that decided it."""
    if spectral is not None:
        return spectral.tags(here)
    if margin is not None:
        return {"change_margin": f"{margin:g}", "change_rule": rule.RULE}
    return {"change_rule": "class maps differenced"}


def _on_one_grid(a: Any, b: Any, class_a: str, class_b: str, spectral: StackRule | None,
                 classes: tuple[str, str] | None, opened: contextlib.ExitStack
                 ) -> tuple[list[Any], list[Any]]:
    """The stacks and class maps a change rule reads, opened, each on the grid of ``a``.

    Raises:
        InputDataError: ``a`` and ``b`` (or a stack, or a class map) are on other grids.
    """
    if (a.shape, a.transform, a.crs) != (b.shape, b.transform, b.crs):
        raise InputDataError(
            f"{class_a} and {class_b} are not on the same grid (shape, transform, CRS); "
            "predict both dates from stacks on one grid")
    paths = (spectral.earlier, spectral.later) if spectral else ()
    stacks = [opened.enter_context(files.open_raster(p)) for p in paths]
    class_maps = [opened.enter_context(files.open_raster(p)) for p in classes or ()]
    for path, ds in zip(classes or (), class_maps, strict=True):
        if (ds.shape, ds.transform, ds.crs) != (a.shape, a.transform, a.crs):
            raise InputDataError(f"the class map {path} is not on the grid of {class_a}")
    for path, ds in zip(paths, stacks, strict=True):
        if (ds.shape, ds.transform, ds.crs) != (a.shape, a.transform, a.crs):
            raise InputDataError(f"the stack {path} is not on the grid of {class_a} (shape, "
                                 "transform, CRS); the spectral change rule needs both "
                                 "dates' stacks on the probability maps' grid")
    return stacks, class_maps


def _codes(va: np.ndarray, vb: np.ndarray, isa_class: int, margin: float | None,
           spectral: StackRule | None, stacks: Sequence[Any], window: Window
           ) -> np.ndarray:
    """One block's change codes: by the spectral rule, the margin, or the class maps."""
    if spectral is not None:
        code = spectral.codes(stacks[0], stacks[1], window, _probability(va), _probability(vb))
    elif margin is not None:
        code = rule.margin_change(_probability(va), _probability(vb), margin)
    else:
        isa_a, isa_b = impervious(va, isa_class), impervious(vb, isa_class)
        code = np.where(isa_a, np.where(isa_b, 1, 3), np.where(isa_b, 2, 0)).astype(np.uint8)
    code[(va == NODATA) | (vb == NODATA)] = NODATA
    return code


def _probability(stored: np.ndarray) -> np.ndarray:
    """A probability COG's values as probabilities (NaN where nodata)."""
    return np.where(stored == NODATA, np.nan, stored / PROB_SCALE)


def change_area(change_path: str, zones: Sequence[Zone],
                classes: tuple[str, str] | None = None, isa_class: int = 1) -> list[ChangeRow]:
    """Stable, gained and lost ISA per zone (km²) from a change COG.

    With ``classes`` (the two dates' class COGs) each row also holds each date's ISA area as
    :func:`isa_area` counts it, so the change and area tables can be checked against each other.
    A zone without a valid pixel gets None for its stable, gained and lost km² (no data, as its
    area row's ``isa_fraction``), not 0.
    """
    totals = _zonal(change_path, zones, list(CHANGE_CODES.values()))
    dates = [{r.zone: r.isa_km2 for r in isa_area(path, zones, isa_class=isa_class)}
             for path in classes or ()]
    rows = []
    for name, t in totals.items():
        gain, loss = t[str(CHANGE_CODES["gain"])], t[str(CHANGE_CODES["loss"])]
        stable, net = t[str(CHANGE_CODES["stable_isa"])], gain - loss
        km2 = [round(a, 6) if t["valid"] > 0 else None  # None: no valid pixel, no data
               for a in (stable, gain, loss, net)]
        rows.append(ChangeRow(name, km2[0], km2[1], km2[2], km2[3], round(t["valid"], 6),
                              *([dates[0][name], dates[1][name]] if dates else [])))
    return rows


def write_table(rows: Sequence[DataclassInstance], json_path: str | os.PathLike | None = None,
                csv_path: str | os.PathLike | None = None) -> str:
    """Save rows as JSON and/or CSV (atomically) and return a readable table."""
    records = [asdict(r) for r in rows]
    if json_path:
        atomic_write(Path(json_path), lambda fh: fh.write(dumps(records, indent=1).encode()))
    if csv_path and records:
        table = csv_text(records, list(records[0])).encode()
        atomic_write(Path(csv_path), lambda fh: fh.write(table))
    if not records:
        return "(no zones)"
    keys = list(records[0])
    cells = [[str(k) for k in keys]] + [[_cell(r[k], k) for k in keys] for r in records]
    widths = [max(len(row[i]) for row in cells) for i in range(len(keys))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True))
                     for row in cells)


def _cell(value: Any, key: str) -> str:
    if value is None:
        return "no data" if key in NO_DATA_CELLS else ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)
