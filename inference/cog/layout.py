"""The bytes of a Cloud-Optimized GeoTIFF, arranged from tiles already compressed.

:class:`inference.cog.stream.CogStream` compresses a map's tiles level by level
while the rows are produced; what is left at the end is only arrangement, done here as
GDAL's COG driver lays a file out: the header, GDAL's "ghost" structural metadata, one IFD
per level (full resolution first, with the tags of the level's template GTiff), the tile
arrays, then the tile data of the smallest overview up to the full resolution, row-major,
each tile preceded by its size (4 bytes) and followed by its last 4 bytes repeated.

The encoder writes its tiles already framed that way (:func:`frame`), so a level's data is
one run of bytes of its tile file, copied into the COG by the kernel
(``os.copy_file_range``) without passing through Python. Imports nothing of the project.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_GHOST = ("LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nBLOCK_LEADER=SIZE_AS_UINT4\n"
          "BLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n ")
# TIFF tags set per level by the assembler; every other tag of a level file is copied.
_NEW_SUBFILE, _WIDTH, _HEIGHT = 254, 256, 257
_STRIP_TAGS = {273, 278, 279}
_TILE_OFFSETS, _TILE_COUNTS = 324, 325
_STRUCTURAL = {_NEW_SUBFILE, _WIDTH, _HEIGHT, 322, 323, _TILE_OFFSETS, _TILE_COUNTS,
               *_STRIP_TAGS}
# georeferencing and dataset metadata belong to the full-resolution IFD only (as GDAL does)
_MAIN_ONLY = {33550, 33922, 34264, 34735, 34736, 34737, 42112}
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
              16: 8, 17: 8, 18: 8}


#: Bytes of a tile's size leader (before its data) and of its repeated trailer (after it).
LEADER_BYTES = TRAILER_BYTES = 4
#: Bytes a framed tile adds to its data.
FRAME_BYTES = LEADER_BYTES + TRAILER_BYTES
#: Bytes per call when a level is copied without ``copy_file_range``.
_COPY_CHUNK = 1 << 24


def frame(data: bytes) -> tuple[bytes, bytes, bytes]:
    """A compressed tile as the COG stores it: size leader, the data, last 4 bytes again."""
    return (struct.pack("<I", len(data)), data,
            data[-TRAILER_BYTES:].rjust(TRAILER_BYTES, b"\0"))


@dataclass(frozen=True)
class _Entry:
    type: int
    count: int
    data: bytes  # the value's bytes (little-endian), whatever their length


def read_ifd(path: Path) -> dict[int, _Entry]:
    """The tags of the first IFD of a little-endian (Big)TIFF, with their values' bytes."""
    with open(path, "rb") as fh:
        head = fh.read(16)
        if head[:2] != b"II":
            raise ValueError(f"{path}: not a little-endian TIFF")
        big = struct.unpack_from("<H", head, 2)[0] == 43
        count_fmt, off_fmt, n_fmt, inline = ("<Q", "<Q", "<Q", 8) if big else ("<I", "<I", "<H", 4)
        offset = struct.unpack_from(off_fmt, head, 8 if big else 4)[0]
        fh.seek(offset)
        n = struct.unpack(n_fmt, fh.read(struct.calcsize(n_fmt)))[0]
        size = 20 if big else 12
        raw = fh.read(n * size)
        entries: dict[int, _Entry] = {}
        for i in range(n):
            rec = raw[i * size:(i + 1) * size]
            tag, typ = struct.unpack_from("<HH", rec)
            count = struct.unpack_from(count_fmt, rec, 4)[0]
            nbytes = _TYPE_SIZE.get(typ, 1) * count
            value = rec[4 + struct.calcsize(count_fmt):]
            if nbytes <= inline:
                data = value[:nbytes]
            else:
                where = fh.tell()
                fh.seek(struct.unpack(off_fmt, value)[0])
                data = fh.read(nbytes)
                fh.seek(where)
            entries[tag] = _Entry(typ, count, data)
    return entries


def _ints(entry: _Entry) -> list[int]:
    fmt = {3: "H", 4: "I", 16: "Q"}[entry.type]
    return list(struct.unpack(f"<{entry.count}{fmt}", entry.data))


def assemble(levels: Sequence[Path], dst: Path, tiles: Sequence[list[tuple[int, int]]],
             data: Sequence[Path], bigtiff: bool | None = None) -> None:
    """Write the COG ``dst`` from one-band levels, full resolution first.

    ``levels``: each level's tiled GTiff, written empty (sparse): its tags are the level's IFD.
    ``tiles``: each level's tiles as (offset, size) in its ``data`` file, row-major, framed
    (:func:`frame`); tiles that lie one after the other in the file are copied as one run of
    bytes (a level cut in whole rows is one run).
    ``bigtiff`` None: BigTIFF only when the file could pass 4 GiB.
    """
    ifds = [read_ifd(p) for p in levels]
    data_size = sum(c + FRAME_BYTES for level in tiles for _, c in level)
    big = data_size + 2**20 * (len(levels) + 1) >= 2**32 if bigtiff is None else bigtiff
    plans = [_plan(entries, overview=i > 0) for i, entries in enumerate(ifds)]

    def write_level(i: int, out: BinaryIO) -> None:
        for start, length in runs(tiles[i]):
            copy_range(data[i], start, length, out)

    with open(dst, "wb") as out:
        _write_cog(out, plans, list(tiles), write_level, big)


def runs(tiles: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``(start, length)`` of the byte runs of a tile file that hold ``tiles`` in their order.

    ``tiles``: ``(offset, size)`` of framed tiles (the offset is the data's, after the leader).
    """
    out: list[tuple[int, int]] = []
    for offset, size in tiles:
        start, length = offset - LEADER_BYTES, size + FRAME_BYTES
        if out and out[-1][0] + out[-1][1] == start:
            out[-1] = (out[-1][0], out[-1][1] + length)
        else:
            out.append((start, length))
    return out


def copy_range(path: Path, start: int, length: int, out: BinaryIO) -> None:
    """Bytes ``[start, start + length)`` of ``path`` appended to ``out``, by the kernel.

    ``os.copy_file_range`` copies between the files' pages without a round trip through
    this process; where the system refuses it (another file system, an old kernel), the
    bytes go through a buffer instead.
    """
    out.flush()
    kernel = True
    with open(path, "rb") as src:
        at, left = start, length
        while left:
            n = 0
            if kernel:
                try:
                    n = os.copy_file_range(src.fileno(), out.fileno(), left, at)
                except OSError:  # not between these two files here: a buffer from now on
                    kernel = False
            if not kernel:
                src.seek(at)
                chunk = src.read(min(left, _COPY_CHUNK))
                out.write(chunk)
                out.flush()
                n = len(chunk)
            if n <= 0:
                raise OSError(f"{path}: ended {left} bytes early; the tile file is incomplete")
            at, left = at + n, left - n
    out.seek(0, os.SEEK_END)


def write_tiled(dst: Path, template: Path, tiles: Sequence[bytes]) -> None:
    """Write ``dst``: the tags of the tiled TIFF ``template`` with these compressed tiles.

    ``template`` (typically written empty by GDAL with ``sparse_ok``) says the structure,
    georeferencing, compression and predictor; ``tiles`` are its tiles in its own order
    (row-major, band after band when the bands are planar), already compressed that way.
    """
    entries = read_ifd(template)
    expected = len(_ints(entries[_TILE_OFFSETS]))
    if expected != len(tiles):
        raise ValueError(f"{template.name} has {expected} tiles, got {len(tiles)}")
    plan = _plan(entries, overview=False)

    def write_level(_: int, out: BinaryIO) -> None:
        for data in tiles:
            out.writelines(frame(data))

    with open(dst, "wb") as out:
        _write_cog(out, [plan], [[(0, len(t)) for t in tiles]], write_level, False)


def _plan(entries: dict[int, _Entry], overview: bool) -> dict[int, _Entry]:
    """The tags a level's IFD gets from its file's.

    Its own tags less the structure the writer sets (an overview also less the dataset's
    georeferencing and metadata), plus its size and tile size, and an overview's subfile type.
    """
    plan = {t: e for t, e in entries.items()
            if t not in _STRUCTURAL and not (overview and t in _MAIN_ONLY)}
    for tag in (_WIDTH, _HEIGHT, 322, 323):
        plan[tag] = entries[tag]
    if overview:
        plan[_NEW_SUBFILE] = _Entry(4, 1, struct.pack("<I", 1))
    return plan


def _write_cog(out: BinaryIO, plans: list[dict[int, _Entry]],
               tiles: list[list[tuple[int, int]]],
               write_level: Callable[[int, BinaryIO], None], big: bool) -> None:
    word, count_fmt, n_fmt, entry_size = ("Q", "<Q", "<Q", 20) if big else ("I", "<I", "<H", 12)
    off_fmt, inline, off_type = "<" + word, 8 if big else 4, 16 if big else 4
    ghost = f"GDAL_STRUCTURAL_METADATA_SIZE={len(_GHOST):06d} bytes\n{_GHOST}".encode()
    pos = (16 if big else 8) + len(ghost)
    pos += pos % 2
    # the IFD area: each IFD followed by its out-of-line values, then every tile array
    ifd_at: list[int] = []
    value_at: list[dict[int, int]] = []
    for plan in plans:
        ifd_at.append(pos)
        pos += struct.calcsize(n_fmt) + (len(plan) + 2) * entry_size + inline
        where = {}
        for tag, e in sorted(plan.items()):
            if len(e.data) > inline:
                where[tag] = pos
                pos += len(e.data) + len(e.data) % 2
        value_at.append(where)
    arrays_at: list[tuple[int, int]] = []
    for level in tiles:
        arrays_at.append((pos, pos + len(level) * inline))
        pos += 2 * len(level) * inline
    # the data: smallest overview first; a tile is its size, its bytes, its last 4 bytes again
    data_at: list[list[int]] = [[] for _ in tiles]
    for i in reversed(range(len(tiles))):
        for _, count in tiles[i]:
            data_at[i].append(pos + LEADER_BYTES)
            pos += count + FRAME_BYTES
    header = (b"II" + struct.pack("<HHHQ", 43, 8, 0, ifd_at[0]) if big
              else b"II" + struct.pack("<HI", 42, ifd_at[0]))
    buf = bytearray(header + ghost)
    buf += b"\0" * (ifd_at[0] - len(buf))
    for i, plan in enumerate(plans):
        n = len(tiles[i])
        arrays = {_TILE_OFFSETS: (arrays_at[i][0], data_at[i][0] if n == 1 else None),
                  _TILE_COUNTS: (arrays_at[i][1], tiles[i][0][1] if n == 1 else None)}
        entries = {**plan, **{t: _Entry(off_type, n, b"") for t in arrays}}
        buf += struct.pack(n_fmt, len(entries))
        for tag, e in sorted(entries.items()):
            if tag in arrays:
                array_at, single = arrays[tag]
                value = struct.pack(off_fmt, array_at if single is None else single)
            elif tag in value_at[i]:
                value = struct.pack(off_fmt, value_at[i][tag])
            else:
                value = e.data.ljust(inline, b"\0")
            buf += struct.pack("<HH", tag, e.type) + struct.pack(count_fmt, e.count) + value
        buf += struct.pack(off_fmt, ifd_at[i + 1] if i + 1 < len(plans) else 0)
        for tag, e in sorted(plan.items()):
            if tag in value_at[i]:
                buf += e.data + b"\0" * (len(e.data) % 2)
    for i, level in enumerate(tiles):
        if len(buf) != arrays_at[i][0]:
            raise AssertionError("COG layout computed inconsistently")
        buf += struct.pack(f"<{len(level)}{word}", *data_at[i])
        buf += struct.pack(f"<{len(level)}{word}", *(c for _, c in level))
    out.write(buf)
    for i in reversed(range(len(tiles))):
        write_level(i, out)
