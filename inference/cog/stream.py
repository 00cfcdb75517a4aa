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
  header, the IFDs, and each level's framed tiles copied in runs of bytes, smallest overview
  first. No tile is decoded or recompressed.

A map may also arrive in panels of columns, each top to bottom (:meth:`CogStream.begin_panel`):
the tiles a panel boundary cuts wait in small carry files for the next panel
(:mod:`inference.cog.levels`), and the COG has the same bytes as from whole rows.

The COG decodes to the same pixels as GDAL's at every level, with the same tags, description,
colour table, nodata, tiling and overview count (``tests/inference/cog/test_stream.py``); its
bytes differ (another DEFLATE implementation), and are the same from run to run. That holds
where every overview is an exact 2x reduction of the level below (:func:`encodes`: width and
height divisible by 2 to the number of overviews, as 8,192 or 768 pixels are): on other grids
GDAL's overviews are no 2x2 blocks of the level below (their sizes round down, and their
windows follow the uneven ratio), so such maps go to GDAL's COG driver. Memory is one block
row of the panel per level. Classic TIFF unless the data could pass 4 GiB, then BigTIFF.

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

from core.errors import ConfigError
from inference.cog.layout import assemble
from inference.cog.levels import Level
from inference.cog.maps import (
    BAND_IDS,
    BLOCK,
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
        self.levels: list[Level] = []
        try:
            grids = [(width, height), *overview_sizes(width, height)]
            for i, (w, h) in enumerate(grids):
                level = Level(work / f"{name}.level{i}.tif", w, h,
                              transform @ Affine.scale(width / w, height / h), crs)
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

    def begin_panel(self, c0: int, c1: int) -> None:
        """Start the panel of full-resolution columns ``[c0, c1)`` (:mod:`inference.cog.levels`).

        Panels follow each other left to right, each given every row (:meth:`add`) before the
        next begins; each overview level gets the columns its level below hands on.
        """
        for level in self.levels:
            c0, c1 = level.begin(c0, c1)
            c0, c1 = c0 // 2, math.ceil(c1 / 2)

    def add(self, rows: np.ndarray) -> list[bytes]:
        """The next rows ``(n, c1 - c0)`` of the current panel; overviews follow at once.

        Without :meth:`begin_panel`, the map is one panel of its whole width. Returns the
        compressed full-resolution tiles of the block rows these rows completed, row-major:
        where the panel's columns are whole tiles, a checkpoint can store them as they are
        (:func:`inference.cog.layout.write_tiled`) instead of compressing the rows again.
        """
        top = self.levels[0]
        if top.panel_done and top.cols_done == 0:
            self.begin_panel(0, top.width)
        if rows.ndim != 2 or rows.shape[1] != top.c1 - top.c0 or rows.dtype != np.uint8:
            raise ValueError(f"expected uint8 rows (n, {top.c1 - top.c0}), got "
                             f"{rows.dtype} {rows.shape}")
        return self._write(0, rows)

    def _write(self, i: int, rows: np.ndarray) -> list[bytes]:
        """Rows of level ``i``; the block rows they complete go on, reduced, to level i + 1."""
        completed: list[bytes] = []
        for tiles, done in self.levels[i].write(rows):
            completed += tiles
            if i + 1 < len(self.levels) and done.shape[1]:
                self._write(i + 1, reduce2(done, self.resampling))
        return completed

    def finish(self, dst: str | os.PathLike, bigtiff: bool | None = None) -> None:
        """Close the level files and arrange them into the COG ``dst`` (see :func:`assemble`)."""
        missing = [lv.path.name for lv in self.levels
                   if not lv.panel_done or lv.cols_done != lv.width]
        self.close()
        if missing:
            raise ValueError(f"incomplete levels {missing}; add every row before finish()")
        assemble([lv.path for lv in self.levels], Path(dst),
                 [lv.tiles() for lv in self.levels], [lv.data_path for lv in self.levels],
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
