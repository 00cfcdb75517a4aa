"""A prediction's map COG encoded while its rows are produced, not after.

GDAL's COG driver (:func:`inference.cog.maps.strips_cog`, this encoder's plain twin and test
oracle) can only copy a finished raster: it reads the map again, computes the overviews and
compresses every tile at the end, when nothing is left to overlap with. :class:`CogStream`
takes the rows of a one-band uint8 map in order, as the sliding window finishes them, and does
the same work right away, in whatever thread calls it:

- the full-resolution rows are cut into 512 x 512 tiles and compressed as they arrive (DEFLATE
  level :data:`~inference.cog.maps.DEFLATE_LEVEL` by ISA-L, without TIFF's predictor: zlib
  streams, as TIFF's DEFLATE expects), appended to a tile file framed as the COG stores them,
  while GDAL writes the level's tags into an empty (sparse) GTiff of the same structure;
- every overview level is reduced 2x from the level below as soon as two of its rows exist
  (``MODE`` for classes, ``AVERAGE`` for probabilities, nodata excluded: GDAL's rules, bit
  for bit) and written the same way;
- :meth:`CogStream.finish` then only *arranges* bytes (:mod:`inference.cog.layout`): the
  header, the IFDs, and each level's framed tiles copied as one run of bytes, smallest
  overview first. No tile is decoded or recompressed.

The COG decodes to the same pixels as GDAL's at every level, with the same tags, description,
colour table, nodata, tiling and overview count (``tests/inference/cog/test_stream.py``); its
bytes differ (another DEFLATE implementation), and are the same from run to run. That holds
where every overview is an exact 2x reduction of the level below (:func:`encodes`: width and
height divisible by 2 to the number of overviews, as 8,192 or 768 pixels are): on other grids
GDAL's overviews are no 2x2 blocks of the level below (their sizes round down, and their
windows follow the uneven ratio), so such maps go to GDAL's COG driver. Memory is one block
row per level. Classic TIFF unless the data could pass 4 GiB, then BigTIFF.

Which writer a prediction uses: :func:`cog_writer` (``ISAMAP_COG_WRITER``) and :func:`encodes`.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import rasterio.errors
from affine import Affine
from isal import isal_zlib

from core.errors import ConfigError
from inference.cog.layout import FRAME_BYTES, LEADER_BYTES, assemble, frame
from inference.cog.maps import (
    BAND_IDS,
    BLOCK,
    DEFLATE_LEVEL,
    DESCRIPTIONS,
    NODATA,
    Kind,
    colour_table,
    unwritable,
    verify_written,
)

Resampling = Literal["mode", "average"]
#: Who writes a prediction's two maps: this encoder, or GDAL's COG driver from the strips.
Writer = Literal["stream", "gdal"]
WRITERS: tuple[Writer, ...] = ("stream", "gdal")
#: Environment variable naming the writer when the caller does not (default ``stream``).
WRITER_ENV = "ISAMAP_COG_WRITER"


def cog_writer(name: str | None = None) -> Writer:
    """The writer of a prediction's two maps: ``name``, else ``$ISAMAP_COG_WRITER``, else stream.

    Both give the same pixels at every level; ``gdal`` is the plain twin (and what ZSTD
    compression always uses: the encoder writes DEFLATE only).
    """
    value = name if name is not None else os.environ.get(WRITER_ENV, "").strip() or "stream"
    if value not in WRITERS:
        raise ConfigError(f"{WRITER_ENV}={value!r} is not a COG writer; use one of "
                          f"{', '.join(WRITERS)} (or unset it)")
    return value  # type: ignore[return-value]


def encodes(width: int, height: int) -> bool:
    """Whether this encoder writes GDAL's COG for a map of this size (see the module docstring).

    Every overview must halve the level below exactly: then GDAL's overview sizes are the
    encoder's and its resampling windows are the encoder's 2x2 blocks.
    """
    factor = 2 ** len(overview_sizes(width, height))
    return width % factor == 0 and height % factor == 0


def overview_sizes(width: int, height: int, block: int = BLOCK) -> list[tuple[int, int]]:
    """``(width, height)`` of each overview: halved (rounding up) until within one block."""
    sizes = []
    while max(width, height) > block:
        width, height = math.ceil(width / 2), math.ceil(height / 2)
        sizes.append((width, height))
    return sizes


def reduce2(rows: np.ndarray, resampling: Resampling) -> np.ndarray:
    """One 2x reduction of uint8 rows (nodata 255 excluded): ``(h, w) -> (ceil h/2, ceil w/2)``.

    ``average`` rounds half up; ``mode`` returns the most frequent valid value of each 2x2
    block, a tie going to the value whose count completes first in scan order. Both are
    GDAL's AVERAGE and MODE bit for bit (its overviews are computed level from level too).
    A block without valid pixels is nodata. An odd row or column is padded with nodata.
    """
    h, w = rows.shape
    if h % 2 or w % 2:
        padded = np.full((h + h % 2, w + w % 2), NODATA, dtype=np.uint8)
        padded[:h, :w] = rows
        rows = padded
    a, b, c, d = rows[0::2, 0::2], rows[0::2, 1::2], rows[1::2, 0::2], rows[1::2, 1::2]
    va, vb, vc, vd = a != NODATA, b != NODATA, c != NODATA, d != NODATA
    if resampling == "average":
        n = va.view(np.uint8) + vb.view(np.uint8)
        n += vc.view(np.uint8)
        n += vd.view(np.uint8)
        total = (a * va).astype(np.uint16)
        for x, v in ((b, vb), (c, vc), (d, vd)):
            total += x * v
        n16 = n.astype(np.uint16)
        out = (2 * total + n16) // np.maximum(2 * n16, 1)
        out[n == 0] = NODATA
        return out.astype(np.uint8)
    # mode as GDAL computes it: scanning the block in order, the first value whose running
    # count reaches the block's highest count wins. With pairwise equalities (an equality
    # implies both pixels valid): the earliest pixel whose count is the highest, except for
    # the two pairs a=d, b=c, where b's pair completes first (third pixel, before the fourth)
    ab, ac, ad = (a == b) & va, (a == c) & va, (a == d) & va
    bc, bd, cd = (b == c) & vb, (b == d) & vb, (c == d) & vc

    def count(*flags: np.ndarray) -> np.ndarray:
        total = flags[0].view(np.uint8).copy()
        for f in flags[1:]:
            total += f.view(np.uint8)
        return total

    na, nb, nc, nd = count(va, ab, ac, ad), count(vb, ab, bc, bd), count(vc, ac, bc, cd), \
        count(vd, ad, bd, cd)
    top = np.maximum(np.maximum(na, nb), np.maximum(nc, nd))
    out = d.copy()
    for x, n in ((c, nc), (b, nb), (a, na)):
        np.copyto(out, x, where=n == top)
    np.copyto(out, b, where=ad & bc & ~ab)
    out[top == 0] = NODATA
    return out


class _Level:
    """One resolution level filled row by row, and the rows feeding the next.

    ``ds`` is an empty (sparse) tiled GTiff of the level's structure and tags; each completed
    block row is cut into tiles here, compressed, and appended to :attr:`data_path`, their
    offsets and sizes kept in :attr:`tiles`.
    """

    def __init__(self, path: Path, width: int, height: int, transform: Affine,
                 crs: Any) -> None:
        self.path, self.width, self.height = path, width, height
        self.row = 0
        self.ds = rasterio.open(
            path, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8",
            crs=crs, transform=transform, nodata=NODATA, tiled=True, blockxsize=BLOCK,
            blockysize=BLOCK, bigtiff="IF_SAFER", compress="DEFLATE", predictor=1,
            zlevel=DEFLATE_LEVEL, sparse_ok=True)
        self.carry: np.ndarray | None = None  # an unpaired row of the level below
        self.data_path = path.with_name(path.name + ".tiles")
        #: (offset, size) of every tile in :attr:`data_path`, row-major
        self.tiles: list[tuple[int, int]] = []
        self._data = open(self.data_path, "wb")  # noqa: SIM115 (closed by close())
        self._across = math.ceil(width / BLOCK)
        self._block = np.full((BLOCK, self._across * BLOCK), NODATA, dtype=np.uint8)
        self._filled = 0  # rows of the current block row in ``_block``

    def write(self, rows: np.ndarray) -> list[bytes]:
        """Write the next rows; returns the compressed tiles of the block rows they completed."""
        if self.row + rows.shape[0] > self.height:
            raise ValueError(f"{self.path.name}: rows past the end ({self.row} + "
                             f"{rows.shape[0]} > {self.height})")
        done, completed = 0, []
        if (self._filled == 0 and rows.shape[0] == BLOCK and self.width % BLOCK == 0
                and rows.flags.c_contiguous):
            self.row += BLOCK  # a whole block row: its tiles are cut from ``rows`` as they are
            return self._flush(rows)
        while done < rows.shape[0]:
            n = min(BLOCK - self._filled, rows.shape[0] - done)
            self._block[self._filled:self._filled + n, :self.width] = rows[done:done + n]
            self._filled += n
            done += n
            self.row += n
            if self._filled == BLOCK or self.row == self.height:
                completed += self._flush()
        return completed

    def _flush(self, block: np.ndarray | None = None) -> list[bytes]:
        """Compress the block row's tiles (padded with nodata below the last row).

        ``block``: a whole block row given as it is, instead of the one filled in ``_block``.
        """
        if block is None:
            block = self._block
            if self._filled < BLOCK:
                block[self._filled:] = NODATA
        tiles = np.ascontiguousarray(  # laid out tile by tile
            block.reshape(BLOCK, self._across, BLOCK).transpose(1, 0, 2))
        offset = self._data.tell()
        compressed = []
        for tile in tiles:
            data = isal_zlib.compress(tile, DEFLATE_LEVEL)
            self._data.writelines(frame(data))  # as the COG stores it: copied as it is
            self.tiles.append((offset + LEADER_BYTES, len(data)))
            offset += len(data) + FRAME_BYTES
            compressed.append(data)
        self._filled = 0
        return compressed

    def close(self) -> None:
        if not self.ds.closed:
            self.ds.close()
        if not self._data.closed:
            self._data.close()

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
        self.data_path.unlink(missing_ok=True)


class CogStream:
    """Encode a one-band uint8 COG from its rows, top to bottom (see the module docstring).

    Args:
        work: folder for the level files (kept small: compressed tiles only).
        name: file name stem of the level files.
        width / height / transform / crs: the full-resolution grid.
        resampling: ``mode`` (classes) or ``average`` (probabilities) for the overviews.
        tags: dataset metadata; description: the band description.
        colormap: ``{value: (r, g, b, a)}`` for paletted maps, or None.
    """

    def __init__(self, work: Path, name: str, width: int, height: int, transform: Affine,
                 crs: Any, resampling: Resampling, tags: dict[str, str], description: str,
                 colormap: dict[int, tuple[int, int, int, int]] | None = None) -> None:
        self.resampling = resampling
        self.levels: list[_Level] = []
        try:
            grids = [(width, height), *overview_sizes(width, height)]
            for i, (w, h) in enumerate(grids):
                level = _Level(work / f"{name}.level{i}.tif", w, h,
                               transform * Affine.scale(width / w, height / h), crs)
                self.levels.append(level)
                if colormap:
                    level.ds.write_colormap(1, colormap)
            self.levels[0].ds.update_tags(**tags)
            self.levels[0].ds.set_band_description(1, description)
        except Exception:
            self.remove()
            raise

    def update_tags(self, **tags: str) -> None:
        """Add dataset metadata (known only once rows were produced, e.g. timings)."""
        self.levels[0].ds.update_tags(**tags)

    @property
    def rows_written(self) -> int:
        return self.levels[0].row

    def add(self, rows: np.ndarray) -> list[bytes]:
        """The next full-width rows ``(n, width)`` of the map; overviews follow at once.

        Returns the compressed full-resolution tiles of the block rows these rows completed,
        row-major: a checkpoint can store them as they are
        (:func:`inference.cog.layout.write_tiled`) instead of compressing the rows again.
        """
        if rows.ndim != 2 or rows.shape[1] != self.levels[0].width or rows.dtype != np.uint8:
            raise ValueError(f"expected uint8 rows (n, {self.levels[0].width}), got "
                             f"{rows.dtype} {rows.shape}")
        completed = self.levels[0].write(rows)
        last = self.levels[0].row == self.levels[0].height
        for below, level in zip(self.levels, self.levels[1:], strict=False):
            if level.carry is not None:
                rows = np.concatenate([level.carry, rows])
                level.carry = None
            if rows.shape[0] % 2 and not (last and below.row == below.height):
                level.carry, rows = rows[-1:].copy(), rows[:-1]
            if not rows.shape[0]:
                break
            rows = reduce2(rows, self.resampling)
            level.write(rows)
        return completed

    def finish(self, dst: str | os.PathLike, bigtiff: bool | None = None) -> None:
        """Close the level files and arrange them into the COG ``dst`` (see :func:`assemble`)."""
        missing = [lv.path.name for lv in self.levels if lv.row != lv.height]
        self.close()
        if missing:
            raise ValueError(f"incomplete levels {missing}; add every row before finish()")
        assemble([lv.path for lv in self.levels], Path(dst),
                 [lv.tiles for lv in self.levels], [lv.data_path for lv in self.levels],
                 bigtiff)

    def close(self) -> None:
        for level in self.levels:
            level.close()

    def remove(self) -> None:
        for level in self.levels:
            level.remove()


def open_stream(work: Path, name: str, kind: Kind, width: int, height: int,
                transform: Affine, crs: Any, tags: dict[str, str]) -> CogStream:
    """A :class:`CogStream` for one map of ``kind``, styled as ``strips_cog`` styles it.

    The kind's description, colour table, overview resampling (``MODE`` for classes,
    ``AVERAGE`` for probabilities) and ``band_id`` tag: every COG isamap writes carries the
    same metadata, whichever writer wrote it.
    """
    colours = colour_table(kind)
    return CogStream(work, name, width, height, transform, crs,
                     "average" if kind == "probability" else "mode",
                     {**tags, "band_id": BAND_IDS[kind]}, DESCRIPTIONS[kind],
                     dict(enumerate(colours)) if colours else None)


def finish_stream(stream: CogStream, dst: str | os.PathLike) -> None:
    """Assemble ``stream`` into the COG ``dst`` and read it back (``verify_written``).

    A level file cut short by a full disk (libtiff only prints the error) shows up as an
    unreadable TIFF when the COG is assembled: that is reported as the ``OSError`` it is.
    """
    try:
        stream.finish(dst)
    except (struct.error, ValueError, KeyError, rasterio.errors.RasterioError) as exc:
        raise unwritable(dst, exc) from None
    verify_written(dst)
