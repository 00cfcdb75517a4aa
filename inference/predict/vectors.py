"""Built-up polygons of a class map: GeoPackage (and GeoParquet where pyarrow is installed).

A map's impervious pixels become one polygon per 4-connected patch (the connectivity the area
tables and GDAL's polygoniser share), with its ground area (the pixels' area as
:func:`inference.predict.pixel_area.pixel_area_km2` counts it, so the polygons add up to the area
table), its mean impervious probability and its pixel count.

The class map is read in strips of :data:`inference.cog.maps.BLOCK` rows (one row of COG
tiles). Each strip is labelled and polygonised in pixel coordinates, where the edges two
strips share have the same integer coordinates; a patch that reaches the strip's last row
stays open and is merged with the patches of the next strip it touches (union-find on the two
rows either side of the cut), so a patch cut by the tiling comes out as one polygon. A patch
is written as soon as no part of it reaches the current strip's last row: memory holds one
strip and the outlines of the patches still open, never the map. Polygons are simplified
(Douglas-Peucker with topology kept, default half a pixel) after merging, then those below
the minimum area are dropped.

Needs the ``vectors`` extra (pyogrio writes the GeoPackage through its own GDAL, shapely
merges and simplifies); GeoParquet is written with pyarrow, where installed. Every file is
written to a temporary beside it and renamed when complete.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from core.errors import ConfigError, ExtraNotInstalledError, InputDataError
from core.storage import files
from core.storage.local import atomic_path
from inference.cog.maps import BLOCK, NODATA, PROB_SCALE
from inference.predict.pixel_area import pixel_area_km2

log = logging.getLogger(__name__)

LAYER = "builtup"
DEFAULT_MIN_AREA_M2 = 500.0
"""Smallest polygon kept by default: five 10 m pixels."""
FIELDS = ("area_m2", "mean_probability", "pixels")
_BATCH = 2000  # polygons per write


@dataclass(frozen=True)
class VectorOptions:
    """How built-up polygons are made.

    Attributes:
        min_area_m2: polygons of a smaller ground area are dropped (0 keeps every one).
        simplify_m: Douglas-Peucker tolerance in map units (topology kept); None: half a
            pixel; 0: the pixel outlines as they are.
        geoparquet: also write GeoParquet; None: where pyarrow is installed.
    """

    min_area_m2: float = DEFAULT_MIN_AREA_M2
    simplify_m: float | None = None
    geoparquet: bool | None = None

    def __post_init__(self) -> None:
        if not self.min_area_m2 >= 0:
            raise InputDataError(f"--vector-min-area must be >= 0 m², got {self.min_area_m2}")
        if self.simplify_m is not None and not self.simplify_m >= 0:
            raise InputDataError(f"--vector-simplify must be >= 0, got {self.simplify_m}")

    def writes_parquet(self) -> bool:
        """Whether GeoParquet is written (asked for, or pyarrow found when not said)."""
        if self.geoparquet is None:
            return importlib.util.find_spec("pyarrow") is not None
        return self.geoparquet


def add_vector_arguments(parser: argparse.ArgumentParser) -> None:
    """``--vectors`` and its settings (isamap-predict, isamap-map)."""
    g = parser.add_argument_group("built-up polygons")
    g.add_argument("--vectors", action="store_true",
                   help="also write the impervious patches as polygons (area_m2, "
                        "mean_probability, pixels) to <name>_builtup.gpkg, and "
                        "<name>_builtup.parquet (GeoParquet) where pyarrow is installed; needs "
                        "the extra isamap[vectors]")
    g.add_argument("--vector-min-area", type=float, default=DEFAULT_MIN_AREA_M2, metavar="M2",
                   help="with --vectors: drop polygons smaller than this ground area in m² "
                        "(default %(default)g; 0 keeps every one)")
    g.add_argument("--vector-simplify", type=float, default=None, metavar="TOL",
                   help="with --vectors: simplification tolerance in map units, topology kept "
                        "(default: half a pixel; 0: the pixel outlines)")


def vector_options(args: argparse.Namespace) -> VectorOptions | None:
    """The :class:`VectorOptions` of a parsed command line, None without ``--vectors``.

    Raises:
        ConfigError: a ``--vector-*`` setting without ``--vectors``.
    """
    if not args.vectors:
        if (args.vector_min_area != DEFAULT_MIN_AREA_M2
                or args.vector_simplify is not None):
            raise ConfigError("--vector-min-area and --vector-simplify shape the polygons of "
                              "--vectors: add --vectors")
        return None
    return VectorOptions(args.vector_min_area, args.vector_simplify)


def check_vector_extra(options: VectorOptions | None) -> None:
    """Refuse ``--vectors`` before any work where its packages are missing.

    Raises:
        ExtraNotInstalledError: pyogrio or shapely (or pyarrow, when GeoParquet is asked
            for) cannot be imported.
    """
    if options is None:
        return
    needed = ["pyogrio", "shapely"] + (["pyarrow"] if options.geoparquet else [])
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise ExtraNotInstalledError(
            f"--vectors needs {', '.join(missing)}, which is not installed; install the "
            "extra: pip install 'isamap[vectors]'")


@dataclass
class _Piece:
    """A patch's part inside one strip (pixel coordinates: x = column, y = row)."""

    geometry: Any
    pixels: int
    area_km2: float
    prob_sum: float
    prob_pixels: int
    open_below: bool


@dataclass
class _Groups:
    """Union-find over pieces (ids unique over the whole map)."""

    parent: dict[int, int] = field(default_factory=dict)

    def find(self, i: int) -> int:
        root = i
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while i != root:
            self.parent[i], i = root, self.parent.get(i, i)
        return root

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


@dataclass(frozen=True)
class Polygons:
    """A batch of finished polygons in map coordinates."""

    wkb: list[bytes]
    area_m2: np.ndarray
    mean_probability: np.ndarray
    pixels: np.ndarray


def _strip_pieces(isa: np.ndarray, prob: np.ndarray, area: np.ndarray, row0: int,
                  first_id: int, last: bool) -> tuple[dict[int, _Piece], np.ndarray]:
    """Label one strip and polygonise its patches; returns the pieces and the label array."""
    import shapely
    from affine import Affine
    from rasterio.features import shapes

    labels, count = ndimage.label(isa)
    if count == 0:
        return {}, labels
    flat = labels.ravel()
    pixels = np.bincount(flat, minlength=count + 1)
    area_sum = np.bincount(flat, weights=np.broadcast_to(area, isa.shape).ravel(),
                           minlength=count + 1)
    has_prob = (prob != NODATA).ravel()
    prob_sum = np.bincount(flat[has_prob], weights=prob.ravel()[has_prob].astype(np.float64),
                           minlength=count + 1)
    prob_pixels = np.bincount(flat[has_prob], minlength=count + 1)
    below = np.zeros(count + 1, dtype=bool)
    if not last:
        below[np.unique(labels[-1])] = True
    pieces: dict[int, _Piece] = {}
    for geom, value in shapes(labels.astype(np.int32), mask=isa, connectivity=4,
                              transform=Affine.translation(0, row0)):
        k = int(value)
        pieces[first_id + k] = _Piece(shapely.geometry.shape(geom), int(pixels[k]),
                                      float(area_sum[k]), float(prob_sum[k]),
                                      int(prob_pixels[k]), bool(below[k]))
    return pieces, labels


def _link(groups: _Groups, above: np.ndarray, above_first: int, below: np.ndarray,
          below_first: int) -> None:
    """Join the pieces either side of a cut that share a pixel edge (same column)."""
    touching = (above > 0) & (below > 0)
    for a, b in set(zip(above[touching].tolist(), below[touching].tolist(), strict=True)):
        groups.union(above_first + a, below_first + b)


def _finished(pending: dict[int, _Piece], groups: _Groups, transform: Any,
              options: VectorOptions, pixel_size: float) -> list[tuple[Any, _Piece]]:
    """Remove and merge the groups none of whose pieces reaches the current strip's end."""
    import shapely

    members: dict[int, list[int]] = {}
    for i in pending:
        members.setdefault(groups.find(i), []).append(i)
    done = []
    tolerance = pixel_size / 2 if options.simplify_m is None else options.simplify_m
    coefficients = [transform.a, transform.b, transform.d, transform.e, transform.c,
                    transform.f]
    for ids in members.values():
        if any(pending[i].open_below for i in ids):
            continue
        parts = [pending.pop(i) for i in ids]
        for i in ids:  # a finished group is never looked up again
            groups.parent.pop(i, None)
        area = sum(p.area_km2 for p in parts)
        if area * 1e6 < options.min_area_m2:
            continue
        geometry = parts[0].geometry if len(parts) == 1 else shapely.union_all(
            [p.geometry for p in parts])
        geometry = shapely.affinity.affine_transform(geometry, coefficients)
        if tolerance > 0:
            geometry = shapely.simplify(geometry, tolerance, preserve_topology=True)
        done.append((geometry, _Piece(geometry, sum(p.pixels for p in parts), area,
                                      sum(p.prob_sum for p in parts),
                                      sum(p.prob_pixels for p in parts), False)))
    return done


def built_up_polygons(class_path: str, prob_path: str | None, isa_class: int,
                      options: VectorOptions, *, rows: int = BLOCK) -> Iterator[Polygons]:
    """Stream the built-up polygons of a class map, in batches, strip by strip.

    Args:
        class_path: class COG (local or gs://).
        prob_path: its probability COG on the same grid (None: mean probability is NaN).
        isa_class: the impervious class's value.
        options: minimum area, simplification.
        rows: strip height in pixels (a multiple of the COG's block height reads whole tiles).
    """
    import shapely
    from rasterio.windows import Window

    with contextlib.ExitStack() as stack:
        ds = stack.enter_context(files.open_raster(class_path))
        pds = stack.enter_context(files.open_raster(prob_path)) if prob_path else None
        if pds is not None and (pds.shape, pds.transform) != (ds.shape, ds.transform):
            raise InputDataError(f"{prob_path} is not on the grid of {class_path}")
        pixel_size = float(np.sqrt(abs(ds.transform.a * ds.transform.e
                                       - ds.transform.b * ds.transform.d)))
        groups = _Groups()
        pending: dict[int, _Piece] = {}
        previous: np.ndarray | None = None
        previous_first = next_id = 0
        batch: list[tuple[Any, _Piece]] = []
        for row0 in range(0, ds.height, rows):
            window = Window(0, row0, ds.width, min(rows, ds.height - row0))
            cls = ds.read(1, window=window)
            prob = (pds.read(1, window=window) if pds is not None
                    else np.full(cls.shape, NODATA, np.uint8))
            area = pixel_area_km2(ds.transform, ds.crs, row0, cls.shape[0], 0, ds.width)
            last = row0 + cls.shape[0] >= ds.height
            pieces, labels = _strip_pieces(cls == isa_class, prob, area, row0, next_id, last)
            if previous is not None and pieces:
                _link(groups, previous[-1], previous_first, labels[0], next_id)
            for piece in pending.values():  # linked above: only this strip's ends stay open
                piece.open_below = False
            pending.update(pieces)
            batch += _finished(pending, groups, ds.transform, options, pixel_size)
            previous, previous_first = labels, next_id
            next_id += int(labels.max()) + 1
            if len(batch) >= _BATCH or (last and batch):
                yield _batch(batch, shapely)
                batch = []


def _batch(batch: list[tuple[Any, _Piece]], shapely: Any) -> Polygons:
    mean = [p.prob_sum / p.prob_pixels / PROB_SCALE if p.prob_pixels else np.nan
            for _, p in batch]
    return Polygons(list(shapely.to_wkb([g for g, _ in batch])),
                    np.array([p.area_km2 * 1e6 for _, p in batch], dtype=np.float64),
                    np.array(mean, dtype=np.float64),
                    np.array([p.pixels for _, p in batch], dtype=np.int64))


@dataclass(frozen=True)
class VectorResult:
    """What :func:`write_vectors` wrote."""

    paths: tuple[Path, ...]
    polygons: int
    area_m2: float


def write_vectors(class_path: str, prob_path: str | None, isa_class: int,
                  out_stem: str | os.PathLike, options: VectorOptions) -> VectorResult:
    """Write ``<out_stem>.gpkg`` (layer ``builtup``) and, where asked, ``<out_stem>.parquet``.

    Both files are complete or absent: each is written to a temporary and renamed at the end.
    """
    check_vector_extra(options)
    import pyogrio.raw

    with files.open_raster(class_path) as ds:
        crs = ds.crs.to_wkt() if ds.crs else None
    gpkg = Path(f"{out_stem}.gpkg")
    parquet = Path(f"{out_stem}.parquet") if options.writes_parquet() else None
    count, total = 0, 0.0
    with contextlib.ExitStack() as stack:
        gpkg_tmp = stack.enter_context(atomic_path(gpkg))
        sink = stack.enter_context(_ParquetSink(parquet, crs)) if parquet else None
        for polygons in built_up_polygons(class_path, prob_path, isa_class, options):
            pyogrio.raw.write(str(gpkg_tmp), np.array(polygons.wkb, dtype=object),
                              [polygons.area_m2, polygons.mean_probability, polygons.pixels],
                              list(FIELDS), driver="GPKG", layer=LAYER, crs=crs,
                              geometry_type="Polygon", append=count > 0)
            if sink is not None:
                sink.write(polygons)
            count += len(polygons.wkb)
            total += float(polygons.area_m2.sum())
        if count == 0:  # an empty layer still says what was looked for
            pyogrio.raw.write(str(gpkg_tmp), np.array([], dtype=object),
                              [np.array([], np.float64), np.array([], np.float64),
                               np.array([], np.int64)], list(FIELDS), driver="GPKG",
                              layer=LAYER, crs=crs, geometry_type="Polygon")
    log.info("%d built-up polygons, %.0f m², in %s", count, total, gpkg)
    return VectorResult((gpkg,) + ((parquet,) if parquet else ()), count, total)


class _ParquetSink:
    """GeoParquet 1.1 (WKB geometry, ``geo`` metadata) written a row group per batch."""

    def __init__(self, path: Path, crs_wkt: str | None) -> None:
        self.path, self.crs_wkt = path, crs_wkt
        self._paths: Any = None
        self._writer: Any = None

    def __enter__(self) -> _ParquetSink:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._paths = atomic_path(self.path)
        tmp = self._paths.__enter__()
        column: dict[str, Any] = {"encoding": "WKB", "geometry_types": ["Polygon"]}
        if self.crs_wkt:
            from pyproj import CRS

            column["crs"] = CRS.from_wkt(self.crs_wkt).to_json_dict()
        geo = {"version": "1.1.0", "primary_column": "geometry",
               "columns": {"geometry": column}}
        self.schema = pa.schema([("geometry", pa.binary()), ("area_m2", pa.float64()),
                                 ("mean_probability", pa.float64()), ("pixels", pa.int64())],
                                metadata={"geo": json.dumps(geo)})
        self._writer = pq.ParquetWriter(str(tmp), self.schema)
        return self

    def write(self, polygons: Polygons) -> None:
        import pyarrow as pa

        self._writer.write_table(pa.table(
            [pa.array(polygons.wkb, pa.binary()), polygons.area_m2,
             polygons.mean_probability, polygons.pixels], schema=self.schema))

    def __exit__(self, *exc: Any) -> None:
        self._writer.close()
        self._paths.__exit__(*exc)
