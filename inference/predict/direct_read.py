"""Rows of an uncompressed GeoTIFF read straight from the file into the caller's buffer.

The sliding window reads a full-width tile row of the input (hundreds of MB) per row of tiles.
Through GDAL each block goes from the file into GDAL's block buffer and from there into the
row buffer; for a stack that is stored raw (no compression, float32 in the machine's byte
order, one band per plane) the bytes in the file *are* the pixels, so :class:`DirectTiff`
reads each block's needed rows with one ``preadv`` into a small scratch buffer that stays in
the CPU cache and copies them into place: the same pixels as rasterio's ``read`` (tested
bit for bit) for about a third less CPU when read alone; beside the model, whose threads
share the memory bandwidth, the reader costs about what GDAL's did (docs/performance.md).

Everything else (compressed, pixel-interleaved, other data types, sparse blocks, remote or
virtual files) is read by rasterio: :func:`direct_tiff` returns ``None`` for it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

#: The pixels' data type the raw path handles: what the engine reads its input as.
DTYPE = np.dtype(np.float32)
#: Pixels of the scratch buffer a read lands in (1 MiB of float32 is 2**18; a 512² tile):
#: small enough to stay in the CPU's cache between the read and the copy out of it.
SCRATCH_PIXELS = 1 << 18


class DirectTiff:
    """The raw blocks of one uncompressed, band-interleaved float32 GeoTIFF.

    Args:
        path: the local file.
        width, height: raster size.
        block: ``(rows, cols)`` of one block (tile or strip).
        offsets: per band (1-based index), the byte offset of each block, row-major.
    """

    def __init__(self, path: str, width: int, height: int, block: tuple[int, int],
                 offsets: dict[int, np.ndarray]) -> None:
        self.path, self.width, self.height = path, width, height
        self.block_rows, self.block_cols = block
        self.offsets = offsets
        self.across = -(-width // self.block_cols)
        self._fd = os.open(path, os.O_RDONLY)
        #: rows per read: a block, or fewer when a block (a strip) is bigger than the cache
        self.chunk_rows = max(1, min(self.block_rows, SCRATCH_PIXELS // self.block_cols))
        self._scratch = np.empty(self.chunk_rows * self.block_cols, DTYPE)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def read(self, indexes: Sequence[int], row: int, rows: int,
             out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``[row, row + rows)`` of the bands ``indexes`` at full width.

        ``(bands, rows, width)`` float32, into ``out`` when given.
        """
        if out is None:
            out = np.empty((len(indexes), rows, self.width), DTYPE)
        if out.shape != (len(indexes), rows, self.width) or out.dtype != DTYPE:
            raise ValueError(f"buffer {out.shape} {out.dtype} does not hold "
                             f"{(len(indexes), rows, self.width)} float32")
        if row < 0 or rows < 0 or row + rows > self.height:
            raise ValueError(f"rows {row}..{row + rows} outside the raster's {self.height}")
        br, bc = self.block_rows, self.block_cols
        line = bc * DTYPE.itemsize
        for b, index in enumerate(indexes):
            offsets = self.offsets[index]
            y = row
            while y < row + rows:
                by, top = divmod(y, br)
                # a strip's last block may be shorter than the others: never past the raster
                n = min(br - top, row + rows - y, self.chunk_rows)
                view = self._scratch[:n * bc]
                for bx in range(self.across):
                    got = os.preadv(self._fd, [view], int(offsets[by * self.across + bx])
                                    + top * line)
                    if got != view.nbytes:
                        raise OSError(f"{self.path}: short read ({got} of {view.nbytes} "
                                      "bytes); the file changed or is truncated")
                    c0 = bx * bc
                    cols = min(bc, self.width - c0)
                    out[b, y - row:y - row + n, c0:c0 + cols] = (
                        view.reshape(n, bc)[:, :cols])
                y += n
        return out


def direct_tiff(src: Any) -> DirectTiff | None:
    """A :class:`DirectTiff` for the rasterio dataset ``src`` when its blocks are raw pixels.

    ``None`` for anything rasterio must decode: a compressed, pixel-interleaved or
    big-endian file, bands not float32, sparse (absent) blocks, a file that is not local.
    """
    if getattr(src, "driver", None) != "GTiff" or not getattr(src, "files", None):
        return None  # not a rasterio dataset of a GeoTIFF: read through its own read()
    path = src.files[0]
    if (not os.path.isfile(path) or src.compression is not None
            or getattr(src.interleaving, "name", "") != "band"
            or any(np.dtype(d) != DTYPE for d in src.dtypes)
            or len(set(src.block_shapes)) != 1 or sys.byteorder != "little"):
        return None
    with open(path, "rb") as f:
        if f.read(2) != b"II":
            return None
    rows, cols = src.block_shapes[0]
    across, down = -(-src.width // cols), -(-src.height // rows)
    offsets = {}
    for index in range(1, src.count + 1):
        band = np.empty(across * down, np.int64)
        for k in range(across * down):
            y, x = divmod(k, across)
            offset = src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=index)
            size = src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=index)
            full = min(rows, src.height - y * rows) * cols * DTYPE.itemsize
            if not offset or not size or int(size) < full or int(offset) <= 0:
                return None  # sparse, or not the layout read() assumes
            band[k] = int(offset)
        offsets[index] = band
    return DirectTiff(path, src.width, src.height, (rows, cols), offsets)
