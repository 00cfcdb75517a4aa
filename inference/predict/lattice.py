"""The tile lattice: where a map's tiles are cut, anchored to the CRS grid, not to the raster.

A model whose output depends on context (zero padding at a tile's edge, CroFuseNet's pooling
over the whole tile) gives a pixel a value that depends on the tile it was predicted in. So the
tiles are not placed relative to the raster being mapped (which would cut the same pixels
differently when a user maps a city and then the province around it) but on one lattice of the
grid's CRS: along each axis, tile ``k`` covers the pixels ``[k * stride, k * stride + tile)``,
counted from the pixel whose corner lies at the CRS origin (x = 0, y = 0), where ``stride =
tile - overlap``. Tile corners are therefore at world coordinates that are multiples of
``stride * pixel size``, whatever the raster's extent, so any two maps over the same pixels
predict the same tiles (:func:`grid_offset` places a raster on that lattice).

A map predicts every lattice tile its pixels need (:func:`axis_tiles`): with the ``cosine``
and ``uniform`` blends every tile that covers one of its pixels, each tapered on all four
sides (every tile of the lattice has its neighbours, predicted whenever a pixel they share is
mapped, so the tapers form a partition of unity everywhere); with the ``core`` blend only the
tiles that own one (each pixel from the one tile whose core holds it: neighbours split their
overlap in the middle). Tiles hang over the raster's edges; what they see there is the input's
own pixels where the source has them (a window of a larger stack, Earth Engine's pixels around
a region), else nodata, which the model sees as each band's mean, as Earth Engine returns the
pixels around its image (:func:`inference.predict.sources.read_padded`).

The lattice is recorded in every COG's tags and in a series' ``map.json`` (``lattice``:
``grid``, and ``lattice_anchor``: the CRS coordinates of the lattice's origin). A record
without them is a map cut on the earlier placement (``even``: tiles spread evenly over each
raster, anchored at its corner); it is still read, and a series of such maps is refused a date
cut on the grid lattice (:func:`check_same`) rather than shown false change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from affine import Affine

from contract.grid import Window
from core.commands import check_range
from core.errors import ConfigError, OptionError

Blend = Literal["cosine", "uniform", "core"]
#: ``grid``: tiles at multiples of the stride from the CRS origin; ``even``: the earlier
#: placement (tiles spread over each raster), read from old maps' records only
Placement = Literal["grid", "even"]
#: CRS coordinates of the grid lattice's origin (every map's tiles are cut from it)
ANCHOR = (0.0, 0.0)
#: the overlap of the default 512 px tiles (:func:`default_overlap` for other tiles)
DEFAULT_OVERLAP = 64


def default_overlap(tile: int) -> int:
    """The overlap a map gets when none is given: 64 px, or half ``tile`` where that is less.

    Every tile that took the 64 px default before (128 px and up) keeps it, so a series
    continued with the same ``--tile`` is cut on the same lattice; a smaller tile gets the
    largest overlap :func:`check_tiling` allows.
    """
    return min(DEFAULT_OVERLAP, max(tile, 0) // 2)


def check_tiling(tile: int, overlap: int) -> None:
    """Raise OptionError unless ``tile`` and ``overlap`` describe a usable tiling."""
    if tile < 8:
        raise OptionError("tile", f"must be at least 8 pixels, got {tile}")
    if not 0 <= overlap <= tile // 2:
        raise OptionError(
            "overlap", f"must be between 0 and half of --tile ({tile // 2}), got {overlap}; "
            "larger overlaps waste compute without improving the blend (leave --overlap out "
            f"on the command line, or give overlap={default_overlap(tile)} from Python, to get "
            f"{default_overlap(tile)})"
        )


def grid_offset(transform: Affine) -> tuple[int, int]:
    """``(row, col)`` of a raster's upper-left pixel on the lattice's pixel grid.

    Counted in pixels from the CRS origin (:data:`ANCHOR`): ``col = x0 / pixel width``,
    ``row = y0 / pixel height`` (negative for a north-up grid north of the equator), rounded.
    Two rasters on the same pixel grid differ by whole pixels, so their offsets differ by
    exactly that many: the same pixels fall in the same tiles.
    """
    if transform.b or transform.d:
        raise ConfigError("a rotated or sheared raster has no tile lattice: warp it onto a "
                          "north-up grid first (isamap-export does)")
    return round(transform.f / transform.e), round(transform.c / transform.a)


@dataclass(frozen=True)
class AxisTile:
    """One lattice tile along one axis, in the raster's pixels (start may be negative).

    Attributes:
        index: the tile's index on the lattice (the same in every map of these pixels).
        start: first pixel of the tile (``start + tile`` may pass the raster's end).
        core: ``(first, stop)`` of the raster's pixels this tile owns (``core`` blend).
    """

    index: int
    start: int
    core: tuple[int, int]


def axis_tiles(offset: int, extent: int, tile: int, overlap: int,
               blend: Blend = "cosine") -> list[AxisTile]:
    """The lattice tiles a map of pixels ``[offset, offset + extent)`` needs along one axis.

    Args:
        offset: the raster's first pixel on the lattice (:func:`grid_offset`).
        extent: the raster's size along the axis.
        tile: the lattice's tile side.
        overlap: the overlap of neighbouring tiles.
        blend: ``core``: the tiles owning a pixel of the raster; otherwise every tile that
            covers one.

    Returns:
        Tiles in increasing order; their cores partition ``[0, extent)``.
    """
    if extent <= 0:
        raise ConfigError(f"raster extent must be positive, got {extent}")
    check_tiling(tile, overlap)
    stride, half = tile - overlap, overlap // 2
    core = blend == "core"
    first = (offset - half) // stride if core else (offset - tile) // stride + 1
    last = (offset + extent - 1 - (half if core else 0)) // stride
    out = []
    for k in range(first, last + 1):
        c0 = max(k * stride + half - offset, 0)
        c1 = min((k + 1) * stride + half - offset, extent)
        out.append(AxisTile(k, k * stride - offset, (c0, max(c0, c1))))
    return out


@dataclass(frozen=True)
class LatticeTile:
    """One tile: the window its model input covers and the output pixels it owns (input grid)."""

    row: int
    col: int
    window: Window  # tile x tile from the tile's start (may hang over the grid's edges)
    core: Window  # the pixels this tile's prediction gives the map (``core`` blend)

    @property
    def name(self) -> str:
        return f"tile_r{self.row:04d}_c{self.col:04d}"


@dataclass(frozen=True)
class Lattice:
    """Tile size, overlap and blend of a map, its tiles anchored at the CRS origin.

    Attributes:
        tile: tile side, input pixels.
        overlap: overlap of neighbouring tiles, input pixels (the stride is ``tile -
            overlap``).
        blend: how overlapping tiles combine (``core``: each pixel from its owner tile).
        placement: ``grid`` (this lattice); ``even`` only describes an old map's record.
    """

    tile: int = 512
    overlap: int = DEFAULT_OVERLAP
    blend: Blend = "cosine"
    placement: Placement = "grid"

    def __post_init__(self) -> None:
        check_tiling(self.tile, self.overlap)
        if self.blend not in get_args(Blend):
            raise ConfigError(f"blend must be one of {', '.join(get_args(Blend))}, "
                              f"got {self.blend!r}")

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    def axes(self, height: int, width: int, offset: tuple[int, int] = (0, 0)
             ) -> tuple[list[AxisTile], list[AxisTile]]:
        """The tiles along the rows and the columns of a ``height x width`` raster.

        ``offset``: the raster's ``(row, col)`` on the lattice (:func:`grid_offset`).
        """
        if self.placement != "grid":
            raise ConfigError("maps are cut on the grid lattice only; the even placement is "
                              "read from old maps' records")
        return (axis_tiles(offset[0], height, self.tile, self.overlap, self.blend),
                axis_tiles(offset[1], width, self.tile, self.overlap, self.blend))

    def reach(self, height: int, width: int,
              offset: tuple[int, int] = (0, 0)) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)``: pixels past each edge the map's tiles cover."""
        ys, xs = self.axes(height, width, offset)
        return (-ys[0].start, -xs[0].start, ys[-1].start + self.tile - height,
                xs[-1].start + self.tile - width)

    def tiles(self, height: int, width: int,
              offset: tuple[int, int] = (0, 0)) -> list[LatticeTile]:
        """Every tile of a ``height x width`` grid, row by row; the cores partition the grid."""
        ys, xs = self.axes(height, width, offset)
        return [LatticeTile(i, j, Window(row_off=y.start, col_off=x.start, height=self.tile,
                                         width=self.tile),
                            Window(row_off=y.core[0], col_off=x.core[0],
                                   height=y.core[1] - y.core[0], width=x.core[1] - x.core[0]))
                for i, y in enumerate(ys) for j, x in enumerate(xs)]

    def record(self, origin: tuple[float, float]) -> dict[str, Any]:
        """What ``map.json`` keeps: tile, overlap, blend, placement, anchor, the grid's corner."""
        return {"tile": self.tile, "overlap": self.overlap, "blend": self.blend,
                "lattice": self.placement, "anchor": list(ANCHOR),
                "origin": [float(origin[0]), float(origin[1])]}

    def tags(self, origin: tuple[float, float]) -> dict[str, str]:
        """The record as GeoTIFF tags.

        ``tile``, ``overlap``, ``blend``, ``lattice``, ``lattice_anchor`` and
        ``lattice_origin`` (the map's upper-left corner).
        """
        return {"tile": str(self.tile), "overlap": str(self.overlap), "blend": self.blend,
                "lattice": self.placement,
                "lattice_anchor": f"{ANCHOR[0]!r},{ANCHOR[1]!r}",
                "lattice_origin": f"{float(origin[0])!r},{float(origin[1])!r}"}

    def describe(self) -> str:
        where = ("anchored to the CRS grid" if self.placement == "grid"
                 else "spread evenly over the raster, an earlier isamap's placement")
        return f"--tile {self.tile} --overlap {self.overlap} ({self.blend} blend, {where})"


def batches(tiles: Sequence[LatticeTile], size: int) -> list[tuple[LatticeTile, ...]]:
    """``tiles`` (row-major) in the streaming predictor's batches: runs of ``size`` per row.

    Each tile row of :meth:`Lattice.tiles` is cut into runs of ``size`` tiles from its first
    column, as :class:`inference.predict.sliding_window.SlidingWindowJob` batches it.
    A forward pass over a batch of one tile may round its last float bit differently from one
    over the same tile among others; every runner therefore runs a lone tile of a batch size
    above one beside a copy of itself (:func:`inference.predict.sliding_window.forward`), and
    larger batches give each tile the same bits whatever its neighbours (the agreement tests
    of nested maps check it).
    """
    check_range("--batch-size", size, 1)
    out: list[tuple[LatticeTile, ...]] = []
    for tile in tiles:
        if out and out[-1][-1].row == tile.row and len(out[-1]) < size:
            out[-1] = (*out[-1], tile)
        else:
            out.append((tile,))
    return out


def _pair(value: Any) -> tuple[float, float] | None:
    if isinstance(value, str):
        value = [float(v) for v in value.split(",")]
    return (float(value[0]), float(value[1])) if value else None


def from_record(record: Mapping[str, Any]) -> tuple[Lattice, tuple[float, float] | None]:
    """The lattice and grid corner of a :meth:`Lattice.record` or of COG tags (strings).

    A record without ``lattice`` is an old map's: its tiles were spread evenly (``even``).
    """
    placement = record.get("lattice", "even")
    if placement not in get_args(Placement):
        raise ConfigError(f"unknown tile lattice {placement!r} in a map's record; a newer "
                          "isamap wrote it: update isamap")
    return (Lattice(int(record["tile"]), int(record["overlap"]), record.get("blend", "cosine"),
                    placement),
            _pair(record.get("origin", record.get("lattice_origin"))))


def check_same(lattice: Lattice, origin: tuple[float, float],
               recorded: Mapping[str, Any], where: str) -> None:
    """Refuse to add to ``where`` (a series, a date) a map cut on another lattice than its own.

    On the grid lattice the grid's corner does not move the tiles (the anchor does); an old
    map's even placement depended on it.

    Raises:
        ConfigError: the tile, overlap, blend, placement or anchor differs from ``recorded``.
    """
    theirs, their_origin = from_record(recorded)
    if theirs.placement == "grid":
        anchor = _pair(recorded.get("anchor", recorded.get("lattice_anchor"))) or ANCHOR
        same_origin = all(abs(a - b) < 1e-6 for a, b in zip(ANCHOR, anchor, strict=True))
        their_origin = anchor
    else:
        same_origin = their_origin is None or all(
            abs(a - b) < 1e-6 for a, b in zip(origin, their_origin, strict=True))
    if theirs == lattice and same_origin:
        return
    at = "" if same_origin else f" anchored at {their_origin}"
    remedy = (f"map with {theirs.describe().split(' (')[0]} on the same grid, or into "
              "another --out") if theirs.placement == lattice.placement else (
        "map the whole series again into another --out (its earlier dates were cut on the "
        "earlier placement)")
    raise ConfigError(
        f"{where} was mapped on the tile lattice {theirs.describe()}{at}; this run would "
        f"cut tiles on {lattice.describe()}, and a context-dependent model then shows false "
        f"change between dates: {remedy}")
