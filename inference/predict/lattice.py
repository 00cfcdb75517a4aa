"""The tile lattice: where a map's tiles are cut on its grid and how their outputs combine.

A model whose output depends on context (CroFuseNet pools over the whole tile) gives a pixel a
value that depends on the tile it was predicted in. Two maps of the same inputs cut into other
tiles differ, and between two dates of a series that difference reads as change. So a map
names its lattice, and everything that must agree pixel for pixel uses the same one:

- the tiles are :func:`inference.predict.blending.tile_starts` along each axis of the grid,
  anchored at the grid's upper-left corner (``origin``, in the grid's CRS);
- with the ``core`` blend each output pixel comes from the one tile that owns it
  (:func:`inference.predict.blending.tile_cores`), so the streaming predictor and the tile units
  of a distributed runner (:mod:`inference.mapping.tiles`) give the same map for any model;
  ``cosine`` and ``uniform`` blend the overlaps (one process only).

The lattice is recorded in every COG's tags and in a series' ``map.json``; a date mapped on
another lattice than its series is refused (:func:`check_same`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from gee_export.contract.grid import Window
from gee_export.core.errors import ConfigError
from inference.predict.blending import Blend, check_tiling, tile_cores, tile_starts


@dataclass(frozen=True)
class LatticeTile:
    """One tile: the window its model input covers and the output pixels it owns (input grid)."""

    row: int
    col: int
    window: Window  # tile x tile from the tile's start (may pass the edge of a small grid)
    core: Window  # the pixels this tile's prediction gives the map (``core`` blend)

    @property
    def name(self) -> str:
        return f"tile_r{self.row:04d}_c{self.col:04d}"


@dataclass(frozen=True)
class Lattice:
    """Tile size, overlap and blend of a map (its anchor is the grid's upper-left corner).

    Attributes:
        tile: tile side, input pixels.
        overlap: minimum overlap of neighbouring tiles, input pixels.
        blend: how overlapping tiles combine (``core``: each pixel from its owner tile).
    """

    tile: int = 512
    overlap: int = 64
    blend: Blend = "cosine"

    def __post_init__(self) -> None:
        check_tiling(self.tile, self.overlap)
        if self.blend not in get_args(Blend):
            raise ConfigError(f"blend must be one of {', '.join(get_args(Blend))}, "
                              f"got {self.blend!r}")

    def tiles(self, height: int, width: int) -> list[LatticeTile]:
        """Every tile of a ``height x width`` grid, row by row; the cores partition the grid."""
        ys, xs = tile_starts(height, self.tile, self.overlap), tile_starts(width, self.tile,
                                                                            self.overlap)
        cy, cx = tile_cores(height, self.tile, self.overlap), tile_cores(width, self.tile,
                                                                         self.overlap)
        return [LatticeTile(i, j, Window(row_off=y, col_off=x, height=self.tile, width=self.tile),
                            Window(row_off=r0, col_off=c0, height=r1 - r0, width=c1 - c0))
                for i, (y, (r0, r1)) in enumerate(zip(ys, cy, strict=True))
                for j, (x, (c0, c1)) in enumerate(zip(xs, cx, strict=True))]

    def record(self, origin: tuple[float, float]) -> dict[str, Any]:
        """What ``map.json`` and the COG tags keep: tile, overlap, blend and the grid's corner."""
        return {"tile": self.tile, "overlap": self.overlap, "blend": self.blend,
                "origin": [float(origin[0]), float(origin[1])]}

    def tags(self, origin: tuple[float, float]) -> dict[str, str]:
        """The record as GeoTIFF tags (``tile``, ``overlap``, ``blend``, ``lattice_origin``)."""
        return {"tile": str(self.tile), "overlap": str(self.overlap), "blend": self.blend,
                "lattice_origin": f"{float(origin[0])!r},{float(origin[1])!r}"}

    def describe(self) -> str:
        return f"--tile {self.tile} --overlap {self.overlap} ({self.blend} blend)"


def batches(tiles: Sequence[LatticeTile], size: int) -> list[tuple[LatticeTile, ...]]:
    """``tiles`` (row-major) in the streaming predictor's batches: runs of ``size`` per row.

    Each tile row of :meth:`Lattice.tiles` is cut into runs of ``size`` tiles from its first
    column, as :class:`inference.predict.sliding_window.SlidingWindowJob` batches it.

    A forward pass over a batch may round its last float bit differently from one over the
    same tile in a batch of another size; a runner that predicts these very batches gives the
    streaming predictor's map bit for bit.
    """
    if size < 1:
        raise ConfigError(f"batch size must be >= 1, got {size}")
    out: list[tuple[LatticeTile, ...]] = []
    for tile in tiles:
        if out and out[-1][-1].row == tile.row and len(out[-1]) < size:
            out[-1] = (*out[-1], tile)
        else:
            out.append((tile,))
    return out


def from_record(record: Mapping[str, Any]) -> tuple[Lattice, tuple[float, float] | None]:
    """The lattice and origin of a :meth:`Lattice.record` or of COG tags (strings)."""
    origin = record.get("origin", record.get("lattice_origin"))
    if isinstance(origin, str):
        origin = [float(v) for v in origin.split(",")]
    return (Lattice(int(record["tile"]), int(record["overlap"]),
                    record.get("blend", "cosine")),
            (float(origin[0]), float(origin[1])) if origin else None)


def check_same(lattice: Lattice, origin: tuple[float, float],
               recorded: Mapping[str, Any], where: str) -> None:
    """Refuse to add to ``where`` (a series, a date) a map cut on another lattice than its own.

    Raises:
        ConfigError: the tile, overlap, blend or anchor differs from ``recorded``.
    """
    theirs, their_origin = from_record(recorded)
    same_origin = their_origin is None or all(
        abs(a - b) < 1e-6 for a, b in zip(origin, their_origin, strict=True))
    if theirs == lattice and same_origin:
        return
    anchor = "" if same_origin else f" anchored at {their_origin}"
    raise ConfigError(
        f"{where} was mapped on the tile lattice {theirs.describe()}{anchor}; this run would "
        f"cut tiles on {lattice.describe()}, and a context-dependent model then shows false "
        f"change between dates: map with {theirs.describe().split(' (')[0]} on the same grid, "
        "or into another --out")
