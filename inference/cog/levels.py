"""One resolution level of a streamed COG: its 512-pixel tiles cut and compressed panel by panel.

A map may be produced in panels of columns, each top to bottom, one after the other (so that no
buffer spans the map's width: :mod:`inference.predict.panels`). A :class:`Level` takes each
panel's rows of its own columns ``[c0, c1)`` in order and compresses every tile as soon as its
block row of the panel holds all of the tile's pixels. A tile that a panel boundary cuts waits
on disk, not in memory: the columns right of the panel's last whole tile (fewer than 512) go
to a *carry* file, row after row, and the next panel reads them back block row by block row in
front of its own. The last panel pads the level's last tiles with nodata, as GDAL does.

The level also hands on, per completed block row, the pixels of the whole tiles it cut (and,
for the last panel, of the level's last columns): the level above reduces them 2x. Tiles are
appended to one tile file in the order they are cut, framed as the COG stores them
(:func:`inference.cog.layout.frame`); :attr:`Level.index` says where each one lies, so
:func:`inference.cog.layout.assemble` writes them in the COG's row-major order. A map
produced as one panel of the whole width is cut exactly as before panels existed, and any
cutting into panels gives the same tiles, hence the same COG bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from isal import isal_zlib

from inference.cog.layout import FRAME_BYTES, LEADER_BYTES, frame
from inference.cog.maps import BLOCK, DEFLATE_LEVEL, NODATA

#: one completed block row of a panel: its compressed tiles (left to right) and its pixels
#: over the columns it hands on (``(rows, columns)`` of the level)
BlockRow = tuple[list[bytes], np.ndarray]


class Level:
    """One resolution level, filled panel by panel, each panel row by row.

    ``ds`` is an empty (sparse) tiled GTiff of the level's structure and tags (the COG's IFD is
    made from it); the compressed tiles go to :attr:`data_path`.

    Args:
        path: the level's template GTiff (its tile file and carry files are named from it).
        width / height / transform / crs: the level's grid.
    """

    def __init__(self, path: Path, width: int, height: int, transform: Affine,
                 crs: Any) -> None:
        self.path, self.width, self.height = path, width, height
        self.ds = rasterio.open(
            path, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8",
            crs=crs, transform=transform, nodata=NODATA, tiled=True, blockxsize=BLOCK,
            blockysize=BLOCK, bigtiff="IF_SAFER", compress="DEFLATE", predictor=1,
            zlevel=DEFLATE_LEVEL, sparse_ok=True)
        self.data_path = path.with_name(path.name + ".tiles")
        self._data = open(self.data_path, "wb")  # noqa: SIM115 (closed by close())
        self._offset = 0
        self.across, self.down = math.ceil(width / BLOCK), math.ceil(height / BLOCK)
        #: (offset, size) in :attr:`data_path` of every tile (-1: not cut yet)
        self.index = np.full((self.down, self.across, 2), -1, np.int64)
        #: the carry files: one is read (left of the panel), the other written (right of it)
        self._carries = [path.with_name(f"{path.name}.carry{i}") for i in (0, 1)]
        self._carry_in, self._carry_width = 0, 0  # the file the next panel reads, its width
        self.cols_done = 0  # every column left of this is complete in every row
        self.row = self.height  # rows of the current panel (none begun: complete)
        self.c0 = self.c1 = self.g0 = self.t1 = self.end = 0
        self._block = np.empty((0, 0), np.uint8)
        self._filled = 0  # rows of the current block row in ``_block``
        self._writer: Any = None  # the carry file being written

    @property
    def panel_done(self) -> bool:
        return self.row == self.height

    def begin(self, c0: int, c1: int) -> tuple[int, int]:
        """Start the panel of columns ``[c0, c1)``; returns the columns it hands on.

        Those are ``[g0, end)``: from the first tile the panel completes (its left carry
        included) to the last (the level's last column for the last panel). Empty when the
        panel completes no tile here: its columns then wait in the carry for the next panel.
        """
        if not self.panel_done:
            raise ValueError(f"{self.path.name}: a panel began before the last one ended "
                             f"(row {self.row} of {self.height})")
        if c0 != self.cols_done or not c0 <= c1 <= self.width:
            raise ValueError(f"{self.path.name}: panel [{c0}, {c1}) does not follow the "
                             f"columns done ({self.cols_done}) within {self.width}")
        self.c0, self.c1 = c0, c1
        self.g0 = c0 // BLOCK * BLOCK
        last = c1 == self.width
        # the end of the panel's whole tiles (the last panel's last tile padded with nodata)
        self.t1 = self.across * BLOCK if last else c1 // BLOCK * BLOCK
        self.end = self.width if last else self.t1
        if c0 == c1:  # nothing of this level in this panel: the carry stays for the next
            return self.g0, self.g0
        if self.c0 - self.g0 != self._carry_width:
            raise ValueError(f"{self.path.name}: the carry holds {self._carry_width} "
                             f"columns, the panel needs {self.c0 - self.g0}")
        self.row, self._filled = 0, 0
        self._block = np.full((BLOCK, max(self.t1, c1) - self.g0), NODATA, np.uint8)
        if c1 > self.t1:
            self._writer = open(self._carries[1 - self._carry_in], "wb")  # noqa: SIM115
        return self.g0, self.end

    def write(self, rows: np.ndarray) -> Iterator[BlockRow]:
        """The panel's next rows ``(n, c1 - c0)``; yields the block rows they complete.

        A block row's pixels are a view of the level's buffer: use them before the next.
        """
        if self.row + rows.shape[0] > self.height:
            raise ValueError(f"{self.path.name}: rows past the end ({self.row} + "
                             f"{rows.shape[0]} > {self.height})")
        return self._blocks(rows)

    def _blocks(self, rows: np.ndarray) -> Iterator[BlockRow]:
        if (self._filled == 0 and rows.shape[0] == BLOCK and self.g0 == self.c0
                and self.t1 == self.c1 and rows.flags.c_contiguous):
            # whole tiles of a whole block row: cut from ``rows`` as they are
            self.row += BLOCK
            yield self._flush(rows)
            self._panel_end()
            return
        done, own = 0, self.c0 - self.g0
        while done < rows.shape[0]:
            n = min(BLOCK - self._filled, rows.shape[0] - done)
            self._block[self._filled:self._filled + n, own:own + self.c1 - self.c0] = \
                rows[done:done + n]
            self._filled += n
            done += n
            self.row += n
            if self._filled == BLOCK or self.row == self.height:
                yield self._flush()
        self._panel_end()

    def _flush(self, block: np.ndarray | None = None) -> BlockRow:
        """Compress the block row's whole tiles; carry the rest (the panel's right edge).

        ``block``: a whole block row given as it is, instead of the one filled in ``_block``.
        """
        rows = BLOCK if block is not None else self._filled
        if block is None:
            block = self._block
            if self.g0 < self.c0:
                self._read_carry(block[:rows, :self.c0 - self.g0])
            if self._writer is not None:
                self._writer.write(np.ascontiguousarray(
                    block[:rows, self.t1 - self.g0:self.c1 - self.g0]).data)
            if rows < BLOCK:
                block[rows:] = NODATA
        b = (self.row - 1) // BLOCK
        count = (self.t1 - self.g0) // BLOCK
        tiles = np.ascontiguousarray(  # laid out tile by tile
            block[:, :count * BLOCK].reshape(BLOCK, count, BLOCK).transpose(1, 0, 2))
        compressed = []
        for i, tile in enumerate(tiles):
            data = isal_zlib.compress(tile, DEFLATE_LEVEL)
            self._data.writelines(frame(data))  # as the COG stores it: copied as it is
            self.index[b, self.g0 // BLOCK + i] = (self._offset + LEADER_BYTES, len(data))
            self._offset += len(data) + FRAME_BYTES
            compressed.append(data)
        self._filled = 0
        return compressed, block[:rows, :self.end - self.g0]

    def _read_carry(self, out: np.ndarray) -> None:
        """The left carry's rows of the block row being flushed, into ``out``."""
        width = self.c0 - self.g0
        first = (self.row - 1) // BLOCK * BLOCK
        with open(self._carries[self._carry_in], "rb") as fh:
            fh.seek(first * width)
            data = fh.read(out.size)
        if len(data) != out.size:
            raise OSError(f"{self.path.name}: its carry file ended early (a full disk?)")
        out[...] = np.frombuffer(data, np.uint8).reshape(out.shape)

    def _panel_end(self) -> None:
        """After the panel's last row: the carry it wrote is what the next panel reads."""
        if not self.panel_done:
            return
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._carry_in = 1 - self._carry_in
            self._carry_width = self.c1 - self.t1
        elif self.c1 > self.c0:
            self._carry_width = 0
        self.cols_done = self.c1
        self._block = np.empty((0, 0), np.uint8)

    def tiles(self) -> list[tuple[int, int]]:
        """Every tile's ``(offset, size)`` in the tile file, row-major (the COG's order).

        Raises:
            ValueError: a tile was never cut (the level did not get every row of every column).
        """
        if (self.index < 0).any() or not self.panel_done:
            raise ValueError(f"{self.path.name}: incomplete")
        return [(int(o), int(s)) for o, s in self.index.reshape(-1, 2)]

    def close(self) -> None:
        if not self.ds.closed:
            self.ds.close()
        for handle in (self._data, self._writer):
            if handle is not None and not handle.closed:
                handle.close()

    def remove(self) -> None:
        self.close()
        for path in (self.path, self.data_path, *self._carries):
            path.unlink(missing_ok=True)
