"""Tiles of an uncompressed GeoTIFF stack read where they lie in the file's pages.

The sliding window reads a full-width tile row of the input (hundreds of MB) per row of
tiles, and the model's thread then reads each tile again to normalise it into its batch.
For a stack stored raw (no compression, float32 in the machine's byte order, one band per
plane) the bytes in the file *are* the pixels, so :class:`MappedTiff` maps the file
(privately, read-only in effect) and hands out views of its pages instead of a copy: the
reader only asks the kernel to map the next rows' pages (``MADV_POPULATE_READ``, no copy)
and gives back those of the rows done with (``MADV_DONTNEED``: the pages stay in the page
cache, only the process's mapping of them goes, so its RSS stays a few rows). A tile that
lies in one block of the file is a plain view; one that spans blocks is a :class:`Mosaic`
of views, which :class:`inference.predict.runtime.TilePredictor` normalises piece by piece
straight into its batch. Same bits as rasterio's ``read`` (tested), without the reader's
pass over every pixel (docs/performance.md).

Everything else (compressed, pixel-interleaved, other data types, sparse blocks, remote or
virtual files) is read by rasterio: :func:`direct_tiff` returns ``None`` for it.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.predict.blending import invalid_mask

#: The pixels' data type the raw path handles: what the engine reads its input as.
DTYPE = np.dtype(np.float32)
#: ``madvise`` advice that maps a range's pages without touching them (Linux 5.14+); Python
#: 3.11's ``mmap`` module does not name it
MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)
PAGE = mmap.PAGESIZE


def _huge_page() -> int:
    """The size of the kernel's huge pages (its page cache maps large folios whole)."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 2 << 20


#: What pages are given back in: a range that cut a huge page's mapping would split it, and
#: the rest of it, still to be read, would cost a TLB miss per 4 KiB (several times the
#: reads of it)
HUGE_PAGE = _huge_page()


@dataclass(frozen=True)
class Piece:
    """The part of a tile that lies in one block of the file: a view of its pages.

    Attributes:
        array: ``(bands, rows, cols)`` float32 view.
        bands: the tile's bands it holds (all of them, or one when the file's bands are not
            evenly spaced).
        row, col: where it goes in the tile.
    """

    array: np.ndarray
    bands: slice
    row: int
    col: int


@dataclass(frozen=True)
class Mosaic:
    """A ``(bands, rows, cols)`` float32 tile that spans blocks of the file, as their views.

    ``np.asarray`` assembles it (a copy); the predictor reads its pieces in place.
    """

    shape: tuple[int, int, int]
    pieces: tuple[Piece, ...]

    def __post_init__(self) -> None:
        # normalise.c writes a piece where the piece says it goes: one reaching outside the
        # tile would land outside the batch's slot (torch's way and np.asarray would clip it)
        bands, rows, cols = self.shape
        for p in self.pieces:
            nb, h, w = p.array.shape
            b0 = p.bands.start or 0
            if min(b0, p.row, p.col) < 0 or b0 + nb > bands or p.row + h > rows \
                    or p.col + w > cols:
                raise ValueError(f"a piece of {nb}x{h}x{w} at band {b0}, row {p.row}, column "
                                 f"{p.col} does not fit the tile's {bands}x{rows}x{cols}")

    @property
    def dtype(self) -> np.dtype:
        return DTYPE

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.empty(self.shape, DTYPE)
        for p in self.pieces:
            out[p.bands, p.row:p.row + p.array.shape[1], p.col:p.col + p.array.shape[2]] = p.array
        return out if dtype is None else out.astype(dtype, copy=False)


class MappedTiff:
    """The raw blocks of one uncompressed, band-interleaved float32 GeoTIFF, mapped.

    Args:
        path: the local file.
        width, height: raster size.
        block: ``(rows, cols)`` of one block (tile or strip).
        offsets: ``(bands, blocks)`` byte offsets of each wanted band's blocks, row-major,
            the bands in the order the caller wants them.

    Rows are asked for top-down (:meth:`rows`) and given back when done (:meth:`release`).
    """

    def __init__(self, path: str, width: int, height: int, block: tuple[int, int],
                 offsets: np.ndarray) -> None:
        self.path, self.width, self.height = path, width, height
        self.block_rows, self.block_cols = block
        self.across = -(-width // self.block_cols)
        self.bands = offsets.shape[0]
        line = self.block_cols * DTYPE.itemsize
        if self.across == 1 and _contiguous(offsets, self.block_rows * line):
            # strips one after the other: each band is one plane, a tile one view
            self.block_rows, offsets = height, offsets[:, :1]
        self.offsets = offsets
        #: byte distance between consecutive bands' blocks when the same for every block (a
        #: tile's piece then holds all bands), else None (one piece per band)
        self.band_step: int | None = 0
        if self.bands > 1:
            steps = np.diff(offsets, axis=0)
            same = bool((steps == steps[0, 0]).all()) and steps[0, 0] != 0
            self.band_step = int(steps[0, 0]) if same else None
        self._line = line
        down = offsets.shape[1] // self.across
        block_rows = np.minimum(self.block_rows, height - np.arange(down) * self.block_rows)
        #: the file's size the blocks need
        self.extent = int((offsets + np.repeat(block_rows, self.across) * line).max())
        fd = os.open(path, os.O_RDONLY)
        try:
            self._check_size(os.fstat(fd).st_size)
            # private: nothing written through it could reach the file (nothing is)
            self._map = mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE,
                                  prot=mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self._bytes = np.frombuffer(self._map, np.uint8)
        self._populated = 0  # rows [0, _populated) have been mapped in
        self._released = 0  # rows [0, _released) have been given back, but for:
        self._pending: list[tuple[int, int]] = []  # byte ranges that did not fill a huge page
        self._populate = True  # False where the kernel has no MADV_POPULATE_READ

    def _check_size(self, size: int) -> None:
        if size < self.extent:
            raise OSError(f"{self.path}: short file ({size} bytes, its blocks reach "
                          f"{self.extent}); the file changed or is truncated")

    def close(self) -> None:
        """Unmap, unless views of the pages are still alive (then when the last one goes)."""
        self._bytes = None  # type: ignore[assignment]
        with contextlib.suppress(BufferError):
            self._map.close()

    # ------------------------------------------------------------------ pages
    def _ranges(self, row: int, stop: int) -> list[tuple[int, int]]:
        """Byte ranges of rows ``[row, stop)`` of every wanted band's blocks."""
        spans = []
        br = self.block_rows
        for by in range(row // br, -(-stop // br)):
            top, bottom = max(row - by * br, 0), min(stop - by * br, br)
            for bx in range(self.across):
                for off in self.offsets[:, by * self.across + bx]:
                    spans.append((int(off) + top * self._line, int(off) + bottom * self._line))
        return spans

    def _advise(self, advice: int, start: int, end: int) -> None:
        if end > start:
            self._map.madvise(advice, start, end - start)

    def prepare(self, row: int, rows: int) -> None:
        """Map rows ``[row, row + rows)`` in now, in the calling thread, not at first touch.

        Raises:
            OSError: the file is shorter than its blocks (changed or truncated).
        """
        self._check_size(os.stat(self.path).st_size)
        start = max(row, self._populated)
        if not self._populate or start >= row + rows:
            return
        for a, b in _merged(self._ranges(start, row + rows)):
            try:
                self._advise(MADV_POPULATE_READ, a - a % PAGE, b)
            except OSError as exc:
                if exc.errno == errno.EINVAL:  # an older kernel: pages map at first touch
                    self._populate = False
                    return
                raise OSError(f"{self.path}: cannot map its pages ({exc.strerror}); the file "
                              "changed or is truncated") from None
        self._populated = row + rows

    def release(self, before: int) -> None:
        """Give back the process's mapping of rows above ``before`` (their last reader is done).

        In whole huge pages: the parts of a range that do not fill one wait until the rows
        next to them are given back too.
        """
        if before <= self._released:
            return
        pending, self._pending = self._pending, []
        for a, b in _merged(pending + self._ranges(self._released, before)):
            lo, hi = -(-a // HUGE_PAGE) * HUGE_PAGE, b - b % HUGE_PAGE
            if hi <= lo:
                self._pending.append((a, b))
                continue
            self._advise(mmap.MADV_DONTNEED, lo, hi)
            self._pending += [(x, y) for x, y in ((a, lo), (hi, b)) if y > x]
        self._released = before

    # ------------------------------------------------------------------ views
    def _block_view(self, band: int | None, k: int, rows: int) -> np.ndarray:
        """Block ``k``'s first ``rows`` rows: all wanted bands (``band`` None) or one."""
        line = self._line
        if band is None:
            shape = (self.bands, rows, self.block_cols)
            strides = (self.band_step, line, DTYPE.itemsize)
            base = int(self.offsets[0, k])
        else:
            shape, strides = (1, rows, self.block_cols), (0, line, DTYPE.itemsize)
            base = int(self.offsets[band, k])
        flat = self._bytes[base:base + rows * line].view(DTYPE)
        return np.lib.stride_tricks.as_strided(flat, shape, strides)

    def tile(self, row: int, col: int, rows: int, cols: int) -> np.ndarray | Mosaic:
        """The window ``rows x cols`` at ``(row, col)`` of the wanted bands, in place."""
        if row < 0 or col < 0 or row + rows > self.height or col + cols > self.width:
            raise ValueError(f"window {rows}x{cols} at ({row}, {col}) outside the raster's "
                             f"{self.height}x{self.width}")
        br, bc = self.block_rows, self.block_cols
        pieces = []
        bands = [None] if self.band_step is not None else range(self.bands)
        for by in range(row // br, -(-(row + rows) // br)):
            r0, r1 = max(row, by * br), min(row + rows, (by + 1) * br)
            for bx in range(col // bc, -(-(col + cols) // bc)):
                c0, c1 = max(col, bx * bc), min(col + cols, (bx + 1) * bc)
                for band in bands:
                    view = self._block_view(band, by * self.across + bx,
                                            min(br, self.height - by * br))
                    piece = view[:, r0 - by * br:r1 - by * br, c0 - bx * bc:c1 - bx * bc]
                    span = slice(0, self.bands) if band is None else slice(band, band + 1)
                    pieces.append(Piece(piece, span, r0 - row, c0 - col))
        if len(pieces) == 1:
            return pieces[0].array
        return Mosaic((self.bands, rows, cols), tuple(pieces))

    def rows(self, row: int, rows: int) -> MappedRows:
        """Rows ``[row, row + rows)`` at full width, mapped in (:meth:`prepare`)."""
        self.prepare(row, rows)
        return MappedRows(self, row, rows)


@dataclass(frozen=True)
class MappedRows:
    """A full-width row of tiles of a :class:`MappedTiff`: what the reader hands the model."""

    tiff: MappedTiff
    row: int
    rows: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.tiff.bands, self.rows, self.tiff.width)

    def tile(self, col: int, cols: int) -> np.ndarray | Mosaic:
        return self.tiff.tile(self.row, col, self.rows, cols)

    def _pieces(self) -> list[Piece]:
        whole = self.tile(0, self.tiff.width)
        if isinstance(whole, Mosaic):
            return list(whole.pieces)
        return [Piece(whole, slice(0, self.tiff.bands), 0, 0)]

    def invalid_mask(self, nodata: Sequence[float | None], finite: bool) -> np.ndarray:
        """:func:`inference.predict.blending.invalid_mask` of the rows, block by block."""
        invalid = np.zeros(self.shape[1:], bool)
        for p in self._pieces():
            _, h, w = p.array.shape
            invalid[p.row:p.row + h, p.col:p.col + w] |= invalid_mask(
                p.array, nodata[p.bands], finite)
        return invalid

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self.tile(0, self.tiff.width), dtype)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Byte ranges with the ones that touch or overlap joined, in order."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _contiguous(offsets: np.ndarray, block_bytes: int) -> bool:
    """Whether each band's blocks follow one another in the file."""
    return bool((np.diff(offsets, axis=1) == block_bytes).all())


def direct_tiff(src: Any, indexes: Sequence[int]) -> MappedTiff | None:
    """A :class:`MappedTiff` of the bands ``indexes`` (1-based) of the rasterio dataset ``src``.

    ``None`` for anything rasterio must decode: a compressed, pixel-interleaved or
    big-endian file, bands not float32, sparse (absent) blocks, a file that is not local or
    cannot be mapped.
    """
    if getattr(src, "driver", None) != "GTiff" or not getattr(src, "files", None):
        return None  # not a rasterio dataset of a GeoTIFF: read through its own read()
    if not hasattr(mmap, "MAP_PRIVATE") or not hasattr(mmap.mmap, "madvise"):
        return None  # a platform without POSIX mappings (Windows)
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
    offsets = np.empty((len(indexes), across * down), np.int64)
    for b, index in enumerate(indexes):
        for k in range(across * down):
            y, x = divmod(k, across)
            offset = src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=index)
            size = src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=index)
            full = min(rows, src.height - y * rows) * cols * DTYPE.itemsize
            if not offset or not size or int(size) < full or int(offset) <= 0:
                return None  # sparse, or not the layout the views assume
            offsets[b, k] = int(offset)
    try:
        return MappedTiff(path, src.width, src.height, (rows, cols), offsets)
    except (OSError, ValueError):
        return None  # a file system that cannot map it: rasterio reads it
