"""Where a map's tiles are cut, and how their outputs combine (pure array maths).

Tiles are placed evenly along each axis so that consecutive tiles overlap by at least the
requested overlap and the last tile ends exactly on the raster edge (no tile hangs over the edge
unless the raster is smaller than one tile). Each tile's prediction is weighted by a separable
tapered-cosine (Tukey) window whose flanks are half Hann windows as long as the overlap: two
flanks that overlap by exactly that length sum to one, so the weights form a partition of unity
and a model with no edge effects is reproduced exactly, while edge effects of a real network
(zero padding, missing context) fade out smoothly instead of leaving a seam. Flanks that lie on
the raster border are left at one, because no neighbouring tile exists there to blend with.

The weighted blend itself lives here too: :class:`Accumulator` sums weighted tile
probabilities over the output rows still open and hands finished rows back, :func:`encode`
turns blended probabilities into the class map and the stored impervious probability, and
:func:`invalid_mask` / :func:`pad_to` prepare an input block. The streaming predictor
(:mod:`inference.predict.raster`) and the single-tile path of the map pipelines
(:mod:`inference.mapping.tiles`) both blend through them, so a tile is blended and encoded one way.

The tile lattice (:class:`Lattice`) names that placement for a whole map. A model whose output
depends on context (CroFuseNet pools over the whole tile) gives a pixel a value that depends on
the tile it was predicted in. Two maps of the same inputs cut into other tiles differ, and
between two dates of a series that difference reads as change. So a map names its lattice, and
everything that must agree pixel for pixel uses the same one:

- the tiles are :func:`tile_starts` along each axis of the grid, anchored at the grid's
  upper-left corner (``origin``, in the grid's CRS);
- with the ``core`` blend each output pixel comes from the one tile that owns it
  (:func:`tile_cores`), so the streaming predictor and the tile units of a distributed runner
  (:mod:`inference.mapping.tiles`) give the same map for any model; ``cosine`` and
  ``uniform`` blend the overlaps (one process only).

The lattice is recorded in every COG's tags and in a series' ``map.json``; a date mapped on
another lattice than its series is refused (:func:`check_same`).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from gee_export.contract.grid import Window
from gee_export.core.errors import ConfigError
from inference.cog.maps import NODATA, PROB_SCALE

Blend = Literal["cosine", "uniform", "core"]


def tile_starts(extent: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of the tiles covering ``[0, extent)`` along one axis.

    Args:
        extent: raster size along the axis, in pixels.
        tile: tile size in pixels.
        overlap: minimum overlap between consecutive tiles, in pixels.

    Returns:
        Increasing offsets; ``[0]`` when the raster is not larger than one tile (the tile is
        then padded). Otherwise the first is 0, the last is ``extent - tile`` and the spacing
        is at most ``tile - overlap``, so every pair of neighbours overlaps by >= ``overlap``.
    """
    if extent <= 0:
        raise ConfigError(f"raster extent must be positive, got {extent}")
    check_tiling(tile, overlap)
    if extent <= tile:
        return [0]
    stride = tile - overlap
    gaps = math.ceil((extent - tile) / stride)
    return [round(i * (extent - tile) / gaps) for i in range(gaps + 1)]


def tile_cores(extent: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of the pixels each tile of :func:`tile_starts` owns along one axis.

    Neighbours split their overlap in the middle, the first tile owns from 0 and the last to
    ``extent``: every pixel is owned by exactly one tile, at least ``overlap // 2`` px from a
    side of that tile that has a neighbour. A map made of the owned parts of each tile (the
    ``"core"`` blend) is the same whoever predicts the tiles, one process or many workers,
    because a pixel depends on one tile's input only.
    """
    starts = tile_starts(extent, tile, overlap)
    cuts = [(a + tile + b) // 2 for a, b in itertools.pairwise(starts)]
    return list(zip([0, *cuts], [*cuts, extent], strict=True))


def check_tiling(tile: int, overlap: int) -> None:
    """Raise ConfigError unless ``tile`` and ``overlap`` describe a usable tiling."""
    if tile < 8:
        raise ConfigError(f"tile size must be at least 8 pixels, got {tile}")
    if not 0 <= overlap <= tile // 2:
        raise ConfigError(
            f"overlap must be between 0 and half the tile size ({tile // 2}), got {overlap}; "
            "larger overlaps waste compute without improving the blend"
        )


def check_window(window: int | None, tile: int, model: str = "model",
                 override: str | None = "--any-tile") -> None:
    """Refuse a prediction tile other than the one a model's maps are made with.

    A network that standardises each window by the window's own statistics makes another map
    on another tile: on the ``ghana_a`` tile of docs/real-data.md, ``unet-s2-window`` on 64 px
    tiles maps built area at less than half the F1 it reaches on 512 px tiles. So its file
    records the tile (``window``, ``training.modelfile.ModelMeta.window``; None: any tile)
    and every prediction path holds to it.

    ``override`` names the command's flag that makes the other map anyway (None: none).

    Raises:
        ConfigError: ``tile`` is not ``window``.
    """
    if window is not None and tile != window:
        other = f", or pass {override} to make that other map" if override else ""
        raise ConfigError(
            f"this {model} model standardises each window of its input by the window's own "
            f"statistics, so its maps are made on {window} px tiles; --tile {tile} would make "
            f"another map: omit --tile or pass {window} (lower --batch-size to save "
            f"memory){other}")


def taper(length: int, flank: int, left: bool, right: bool, blend: Blend = "cosine") -> np.ndarray:
    """1-D weights of one tile: ones, with half-Hann flanks of ``flank`` pixels where asked.

    Sample ``i`` of a rising flank is ``sin²(π/2 · (i + 0.5) / flank)``: strictly positive (so
    every pixel keeps some weight) and the mirror image of the falling flank of the neighbour,
    which makes overlapping flanks sum to exactly one.
    """
    weights = np.ones(length, dtype=np.float32)
    if blend == "uniform" or flank <= 0:
        return weights
    flank = min(flank, length // 2)
    rise = np.sin(0.5 * np.pi * (np.arange(flank, dtype=np.float64) + 0.5) / flank) ** 2
    if left:
        weights[:flank] = rise
    if right:
        weights[length - flank:] = rise[::-1]
    return weights


@functools.lru_cache(maxsize=32)
def tile_weights(tile: int, flank: int, *, top: bool, bottom: bool, left: bool, right: bool,
                 blend: Blend = "cosine") -> np.ndarray:
    """2-D weights ``(tile, tile)``: the outer product of the two axis tapers.

    A side is tapered only where a neighbouring tile exists on it (``top`` etc.). The result
    is cached (there are at most 16 variants per run) and must not be modified.
    """
    weights = np.outer(taper(tile, flank, top, bottom, blend),
                       taper(tile, flank, left, right, blend))
    weights.setflags(write=False)
    return weights


def strip_bounds(height: int, strip: int) -> list[tuple[int, int]]:
    """``(row0, row1)`` of the output strips written one by one (the last may be shorter)."""
    return [(r, min(r + strip, height)) for r in range(0, height, strip)]


def all_finite(block: np.ndarray) -> bool:
    """Whether ``block`` holds no NaN and no infinity, in one summing pass (no mask made).

    NaN and infinities survive any sum, so a finite sum proves there are none; a sum that
    overflows only sends the caller to the exact per-pixel test.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.sum(block, dtype=block.dtype)))


def invalid_mask(block: np.ndarray, nodata: Sequence[float | None],
                 finite: bool | None = None) -> np.ndarray:
    """True where any band is NaN, infinite or its nodata value: the output is nodata there.

    ``finite``: :func:`all_finite` of ``block`` when the caller knows it (then only the
    nodata values are looked for).
    """
    invalid = np.zeros(block.shape[1:], dtype=bool)
    if finite is None:
        finite = all_finite(block)
    for band, value in zip(block, nodata, strict=True):
        if not finite:
            invalid |= ~np.isfinite(band)
        if value is not None and not math.isnan(value):
            invalid |= band == value
    return invalid


def pad_to(block: np.ndarray, height: int, width: int) -> np.ndarray:
    """``block`` (C, h, w) edge-padded at the bottom and right to at least ``height x width``."""
    pad_h, pad_w = height - block.shape[-2], width - block.shape[-1]
    if pad_h <= 0 and pad_w <= 0:
        return block
    return np.pad(block, ((0, 0), (0, max(pad_h, 0)), (0, max(pad_w, 0))), mode="edge")


def weight_sums(extent: int, starts: Sequence[int], tile: int, flank: int, scale: int = 1,
                blend: Blend = "cosine") -> np.ndarray:
    """Per output pixel along one axis, the summed 1-D weights of the tiles at ``starts``.

    Tile weights are outer products of two axis tapers (:func:`tile_weights`) and the tiles
    form a grid, so the weight a pixel gets from all its tiles is the product of this sum
    along the rows and along the columns: the accumulator divides by that instead of summing
    a weight map tile by tile. ``extent`` and ``starts`` are on the input grid, ``tile`` and
    ``flank`` too; the result has ``extent * scale`` entries. The ``core`` blend gives every
    pixel to one tile at weight 1: ones.
    """
    out = np.zeros(extent * scale, np.float64)
    if blend == "core":
        out[:] = 1.0
        return out.astype(np.float32)
    for i, a in enumerate(starts):
        taper_i = taper(tile * scale, flank * scale, i > 0, i < len(starts) - 1, blend)
        n = min(tile, extent - a) * scale
        out[a * scale:a * scale + n] += taper_i[:n]
    return out.astype(np.float32)


class Accumulator:
    """Weighted sums of probabilities for the output rows ``[row0, row0 + capacity)``.

    Tiles are added with their blending weights (:func:`tile_weights`) as they arrive, top
    to bottom; rows no later tile can touch are taken (:meth:`take`) and dropped, so memory
    spans only the rows still open. The rows form a ring: a take clears its rows for the
    ones below instead of moving every open row up. The weights the sums are divided by
    are the product of the lattice's row and column sums (:func:`weight_sums`): no weight
    map is summed tile by tile.

    Args:
        classes, capacity, width, row0: channels, rows held, width, first output row.
        row_weights: the tiles' summed weight per output row, the whole height (absolute
            rows); None: every row 1 (one tile, or cores at weight 1).
        col_weights: the same per column (``width``); None: ones.
    """

    def __init__(self, classes: int, capacity: int, width: int, row0: int,
                 row_weights: np.ndarray | None = None,
                 col_weights: np.ndarray | None = None) -> None:
        self.sums = np.zeros((classes, capacity, width), dtype=np.float32)
        self.invalid = np.zeros((capacity, width), dtype=bool)
        self.row0 = row0
        self._head = 0  # where row0 lies in the ring
        self.row_weights = None if row_weights is None else np.asarray(row_weights, np.float32)
        if col_weights is not None and np.shape(col_weights) != (width,):
            raise ValueError(f"column weights {np.shape(col_weights)} for a width of {width}")
        #: what each column's sums are divided by (1 where no tile weighs it), and those
        self._cols = None
        if col_weights is not None:
            col_weights = np.asarray(col_weights, np.float32)
            self._cols = (np.where(col_weights <= 0.0, np.float32(1.0), col_weights),
                          col_weights <= 0.0)

    def _spans(self, offset: int, rows: int) -> list[tuple[int, int, int]]:
        """``(ring row, first row, count)`` pieces of rows ``offset..offset+rows`` past row0."""
        capacity = self.invalid.shape[0]
        if offset + rows > capacity:
            raise RuntimeError("accumulator overflow; tile rows arrived out of order")
        start = (self._head + offset) % capacity
        first = min(rows, capacity - start)
        return [(start, 0, first)] + ([(0, first, rows - first)] if first < rows else [])

    def add(self, probs: np.ndarray, weights: np.ndarray | None, row: int, col: int) -> None:
        """Add ``probs`` (K, h, w) placed at output ``(row, col)``; rows above row0 are dropped.

        ``weights`` ``(h, w)`` (at least): the tile's blending weights, the outer product
        whose sums the accumulator was given; None: 1.
        """
        skip = max(self.row0 - row, 0)
        if skip >= probs.shape[1]:
            return
        h, w = probs.shape[1] - skip, probs.shape[2]
        for at, first, n in self._spans(row + skip - self.row0, h):
            part = probs[:, skip + first:skip + first + n]
            if weights is not None:
                part = part * weights[skip + first:skip + first + n, :w]
            self.sums[:, at:at + n, col:col + w] += part

    def mark_invalid(self, invalid: np.ndarray, row: int) -> None:
        skip = max(self.row0 - row, 0)
        if skip < invalid.shape[0]:
            for at, first, n in self._spans(row + skip - self.row0, invalid.shape[0] - skip):
                self.invalid[at:at + n] |= invalid[skip + first:skip + first + n]

    def take(self, rows: int, isa_class: int) -> tuple[np.ndarray, np.ndarray]:
        """Encode and remove the first ``rows`` rows: (class uint8, ISA probability uint8)."""
        return encode(*self.take_probs(rows), isa_class)

    def take_probs(self, rows: int, out: tuple[np.ndarray, np.ndarray] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Remove the first ``rows`` rows: blended probabilities (K, rows, W) and nodata mask.

        ``out``: arrays of at least that many rows to fill (views of their first ``rows``
        are returned), for a caller done with the previous strip's: a fresh strip is tens
        of MB of new pages to fault in. A pixel no tile weighs (a weight sum of 0) is nodata.
        """
        k, width = self.sums.shape[0], self.sums.shape[2]
        if out is not None and out[0].shape[0] == k and out[0].shape[1] >= rows:
            probs, bad = out[0][:, :rows], out[1][:rows]
        else:
            probs = np.empty((k, rows, width), np.float32)
            bad = np.empty((rows, width), bool)
        row_w = (np.ones(rows, np.float32) if self.row_weights is None
                 else self.row_weights[self.row0:self.row0 + rows])
        if row_w.shape[0] != rows:
            raise RuntimeError(f"rows {self.row0}..{self.row0 + rows} past the row weights' "
                               f"{row_w.shape[0] + self.row0}")
        unweighted = row_w <= 0.0
        # where no tile reached (weight 0) the sum is 0 too: 0 / 1 = 0, and nodata
        row_w = np.where(unweighted, np.float32(1.0), row_w)[:, None]
        for at, first, n in self._spans(0, rows):
            np.divide(self.sums[:, at:at + n], row_w[first:first + n],
                      out=probs[:, first:first + n])
            np.copyto(bad[first:first + n], self.invalid[at:at + n])
            self.sums[:, at:at + n] = 0.0
            self.invalid[at:at + n] = False
        if self._cols is not None:
            np.divide(probs, self._cols[0], out=probs)
            bad[:, self._cols[1]] = True
        bad[unweighted] = True
        self._head = (self._head + rows) % self.invalid.shape[0]
        self.row0 += rows
        return probs, bad


def encode(probs: np.ndarray, bad: np.ndarray, isa_class: int,
           overwrite: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(class uint8, ISA probability uint8) of blended probabilities, nodata where ``bad``.

    One channel means a two-class model in compact form (P(class 1) only). ``overwrite``:
    the caller is done with ``probs``, which then holds the scaled probability (no new
    strip-sized array to fault in).
    """
    if probs.shape[0] == 1:
        p1 = probs[0]
        classes = np.greater(p1, 0.5).view(np.uint8)  # argmax; a tie goes to class 0
        if isa_class == 1 and overwrite:
            scaled = np.multiply(p1, np.float32(PROB_SCALE), out=p1)
        else:
            scaled = (p1 if isa_class == 1 else 1.0 - p1) * np.float32(PROB_SCALE)
    else:
        classes = np.argmax(probs, axis=0).astype(np.uint8)
        scaled = probs[isa_class] * np.float32(PROB_SCALE)
    # one scratch array, rounded in place (the caller may still use ``probs``)
    np.clip(scaled, 0.0, PROB_SCALE, out=scaled)
    np.rint(scaled, out=scaled)
    prob = scaled.astype(np.uint8)
    np.copyto(classes, NODATA, where=bad)
    np.copyto(prob, NODATA, where=bad)
    return classes, prob


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
