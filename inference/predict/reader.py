"""The sliding window's reader: a tile row's block of tile columns into a reused buffer.

:class:`BlockReader` runs in the reader thread of :class:`inference.predict.sliding_window.
SlidingWindowJob`, one block ahead of the model: the block spans its tiles whole (past the
raster's edges too, :func:`inference.predict.sources.read_padded`), read into one of two
buffers per block width (a fresh array would cost the reader a page fault per 4 KiB), and
the pixels where a band holds its nodata value are set to NaN, as the model sees NaN.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import rasterio
import rasterio.errors

from core.errors import InputDataError
from core.storage.gdal_auth import check_read
from inference.predict.blending import invalid_mask, nodata_as_nan
from inference.predict.lattice import AxisTile
from inference.predict.sources import read_padded, unreadable
from inference.predict.stages import Stages

#: a block's nodata mask on the output grid, and its output ``(row, col)``
Invalid = tuple[np.ndarray, int, int]


@contextlib.contextmanager
def read_errors(src: Any) -> Iterator[None]:
    """A damaged or vanished input as :class:`InputDataError`, credentials as their own error."""
    try:
        yield
    except (rasterio.errors.RasterioError, OSError) as exc:
        name = getattr(src, "name", "the input")
        check_read(name, exc)  # credentials or network, not a damaged stack
        raise InputDataError(unreadable(name, exc)) from None


class BlockReader:
    """Blocks of tile columns of the lattice's tile rows, read in turn.

    Args:
        src: the open input; ``indexes``: its bands the model reads.
        tile: the lattice's tile side; ``rows``: its tile rows; ``blocks``: its column
            blocks (:func:`inference.predict.panels.column_blocks`).
        scale: output pixels per input pixel.
        lock: held while ``src`` is read (int8's patches read it from another thread).
        stages: where the read and mask times go.
        own: the bands (positions in ``indexes``) that judge a pixel nodata
            (:func:`inference.predict.blending.invalid_mask`); None: all.
    """

    def __init__(self, src: Any, indexes: list[int], tile: int, rows: Sequence[AxisTile],
                 blocks: Sequence[Sequence[AxisTile]], scale: int, lock: threading.Lock,
                 stages: Stages, own: Sequence[int] | None = None) -> None:
        self.src, self.indexes, self.tile, self.rows, self.blocks = (
            src, indexes, tile, rows, blocks)
        self.scale, self.lock, self.stages, self.own = scale, lock, stages, own
        self.nodata = [src.nodatavals[i - 1] for i in indexes]
        #: filled in turn (per block width): the reader runs one block ahead of the model,
        #: so the block the model reads its tiles from is never the one being filled
        self._buffers: dict[int, list[np.ndarray]] = {}
        self._reads: dict[int, int] = {}

    def read(self, k: int, c: int) -> tuple[np.ndarray, Invalid | None]:
        """Tile row ``k``'s column block ``c``: ``(its tiles' input, nodata mask)``.

        A band's nodata value is read as NaN (:func:`inference.predict.blending.
        nodata_as_nan`), so the mask is always None here: NaN and infinities are found by the
        model's thread as it normalises the tiles, which masks their pixels
        (:meth:`invalid`).
        """
        xs = self.blocks[c]
        col, width = xs[0].start, xs[-1].start + self.tile - xs[0].start
        with self.stages.time("read"):
            buffers = self._buffers.setdefault(width, [])
            if len(buffers) < 2:
                buffers.append(np.empty((len(self.indexes), self.tile, width), np.float32))
            out = buffers[self._reads.get(width, 0) % 2]
            self._reads[width] = self._reads.get(width, 0) + 1
            with self.lock, read_errors(self.src):
                block = read_padded(self.src, self.indexes, self.rows[k].start, col, self.tile,
                                    width, out=out)
        with self.stages.time("mask"):
            if any(v is not None and not math.isnan(v) for v in self.nodata):
                nodata_as_nan(block, self.nodata)  # the model's thread masks it as NaN
        return block, None

    def inside(self, k: int, c: int) -> tuple[int, int, int, int]:
        """``(row0, row1, col0, col1)`` of tile row ``k``'s block ``c`` inside the raster."""
        y, xs, tile = self.rows[k].start, self.blocks[c], self.tile
        return (max(y, 0), min(y + tile, self.src.height), max(xs[0].start, 0),
                min(xs[-1].start + tile, self.src.width))

    def invalid(self, block: np.ndarray, k: int, c: int, finite: bool) -> Invalid:
        """Where the block's pixels inside the raster are nodata, and their output corner.

        On the output grid, as ``(mask, row, col)``; ``finite``: skip the NaN test.
        """
        r0, r1, c0, c1 = self.inside(k, c)
        y, x = self.rows[k].start, self.blocks[c][0].start
        invalid = invalid_mask(block[:, r0 - y:r1 - y, c0 - x:c1 - x], self.nodata, finite,
                               self.own)
        s = self.scale
        if s > 1:
            invalid = invalid.repeat(s, axis=0).repeat(s, axis=1)
        return invalid, r0 * s, c0 * s
