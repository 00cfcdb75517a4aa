"""How a map's tile outputs combine (pure array maths).

Where the tiles are cut is the lattice's business (:mod:`inference.predict.lattice`: tiles at
multiples of the stride from the CRS origin, hanging over the raster's edges). Each tile's
prediction is weighted by a separable tapered-cosine (Tukey) window whose flanks are half Hann
windows as long as the overlap, on all four sides: two flanks that overlap by exactly that
length sum to one, and every pixel a map needs lies under all the lattice tiles that cover it,
so the weights form a partition of unity. A model with no edge effects is reproduced exactly,
while edge effects of a real network (zero padding, missing context) fade out smoothly
instead of leaving a seam. A pixel's weights, and the order its tiles are added in, depend
only on where it lies on the lattice, so two maps over the same pixels blend it alike.

The weighted blend itself lives here too: :class:`Accumulator` sums weighted tile
probabilities over the output rows still open and hands finished rows back, :func:`encode`
turns blended probabilities into the class map and the stored impervious probability, and
:func:`invalid_mask` / :func:`pad_to` prepare an input block. The streaming predictor
(:mod:`inference.predict.raster`) and the single-tile path of the map pipelines
(:mod:`inference.mapping.tiles`) both blend through them, so a tile is blended and encoded one way.
With the ``core`` blend each output pixel comes from the one tile that owns it, so the
streaming predictor and the tile units of a distributed runner give the same map for any
model; ``cosine`` and ``uniform`` blend the overlaps (one process only).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from core.errors import ConfigError
from inference.cog.maps import NODATA, PROB_SCALE
from inference.predict.lattice import AxisTile, Blend
from training.forward_memory import check_scaled_batch, input_multiple

if TYPE_CHECKING:
    from training.model_meta import ModelMeta


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


def check_model_tiles(module: object, meta: ModelMeta, tile: int, batch_size: int,
                      override: str | None = "--any-tile", any_tile: bool = False) -> None:
    """Refuse, before the first tile, a tile or batch the model cannot run (one owner).

    The window the model's maps are made on (:func:`check_window`; not with ``any_tile``),
    the multiple its forward needs the tile's sides to be
    (:func:`training.forward_memory.input_multiple`), and, for a model whose output is finer
    than its input, one batch's output within the budget
    (:func:`training.forward_memory.check_scaled_batch`).

    Raises:
        ConfigError: naming ``--tile`` or ``--batch-size`` and what to give.
    """
    if not any_tile:
        check_window(meta.window, tile, meta.name, override=override)
    multiple = input_multiple(module)
    if tile % multiple:
        low = tile - tile % multiple
        raise ConfigError(
            f"--tile {tile} is not a multiple of {multiple}, which this {meta.name} model's "
            f"input sides must be; give --tile {low or multiple}"
            + (f" or {low + multiple}" if low else ""))
    check_scaled_batch(int(meta.output_scale), tile, batch_size, model=meta.name)


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
                 finite: bool | None = None, own: Sequence[int] | None = None) -> np.ndarray:
    """True where a judged band is NaN, infinite or its nodata value: the output is nodata there.

    ``finite``: :func:`all_finite` of ``block`` when the caller knows it (then only the
    nodata values are looked for). ``own``: the indices of the bands that judge a pixel
    (:func:`contract.bands.own_month` of the model's bands: a series stack's earlier month
    may be nodata where it was cloudy, and the model reads it as the training patches held
    it, NaN as the band mean); None: every band.
    """
    invalid = np.zeros(block.shape[1:], dtype=bool)
    if finite is None:
        finite = all_finite(block)
    judged = range(len(nodata)) if own is None else own
    for k in judged:
        band, value = block[k], nodata[k]
        if not finite:
            invalid |= ~np.isfinite(band)
        if value is not None and not math.isnan(value):
            invalid |= band == value
    return invalid


def nodata_as_nan(block: np.ndarray, nodata: Sequence[float | None]) -> np.ndarray:
    """``block`` (C, h, w) with each band's nodata value set to NaN, in place.

    The one rule of what the model sees at a pixel a band marks with a value: the same as a
    NaN pixel (the band mean after normalisation), so a stack's nodata block gives the map
    that block as NaN gives, bit for bit.
    """
    for band, value in zip(block, nodata, strict=True):
        if value is not None and not math.isnan(value):
            band[band == np.float32(value)] = np.nan
    return block


def pad_to(block: np.ndarray, height: int, width: int) -> np.ndarray:
    """``block`` (C, h, w) edge-padded at the bottom and right to at least ``height x width``."""
    pad_h, pad_w = height - block.shape[-2], width - block.shape[-1]
    if pad_h <= 0 and pad_w <= 0:
        return block
    return np.pad(block, ((0, 0), (0, max(pad_h, 0)), (0, max(pad_w, 0))), mode="edge")


def weight_sums(extent: int, tiles: Sequence[AxisTile], tile: int, flank: int,
                scale: int = 1, blend: Blend = "cosine") -> np.ndarray:
    """Per output pixel along one axis, the summed 1-D weights of the lattice ``tiles``.

    Tile weights are outer products of two axis tapers (:func:`tile_weights`) and the tiles
    form a grid, so the weight a pixel gets from all its tiles is the product of this sum
    along the rows and along the columns: the accumulator divides by that instead of summing
    a weight map tile by tile. ``extent`` and the tiles (:func:`inference.predict.lattice.
    axis_tiles`, which may start before 0 and end past ``extent``) are on the input grid,
    ``tile`` and ``flank`` too; the result has ``extent * scale`` entries, each summed over
    its tiles in lattice order (the same sum in every map of that pixel). The ``core`` blend
    gives every pixel to one tile at weight 1: ones.
    """
    out = np.zeros(extent * scale, np.float32)
    if blend == "core":
        out[:] = 1.0
        return out
    taper_all = taper(tile * scale, flank * scale, True, True, blend)
    for t in tiles:
        a, b = max(t.start, 0) * scale, min(t.start + tile, extent) * scale
        if b > a:
            out[a:b] += taper_all[a - t.start * scale:b - t.start * scale]
    return out


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

    def mark_invalid(self, invalid: np.ndarray, row: int, col: int = 0) -> None:
        """Mark ``invalid`` (h, w), placed at output ``(row, col)``, as nodata."""
        skip = max(self.row0 - row, 0)
        w = invalid.shape[1]
        if skip < invalid.shape[0]:
            for at, first, n in self._spans(row + skip - self.row0, invalid.shape[0] - skip):
                self.invalid[at:at + n, col:col + w] |= invalid[skip + first:skip + first + n]

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
