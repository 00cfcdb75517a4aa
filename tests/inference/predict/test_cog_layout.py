"""COG bytes arranged from framed tile files: copied by the kernel or through a buffer."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
import rasterio
from affine import Affine

from inference.predict import cog_layout
from inference.predict.cog_layout import FRAME_BYTES, copy_range, frame
from inference.predict.cog_stream import CogStream

TRANSFORM = Affine(10, 0, 500000, 0, -10, 3500000)


def test_a_frame_is_size_data_and_last_four_bytes():
    leader, data, trailer = frame(b"abcdefgh")
    assert leader == struct.pack("<I", 8) and data == b"abcdefgh" and trailer == b"efgh"
    assert frame(b"xy")[2] == b"\0\0xy"  # a tile shorter than 4 bytes: padded, as GDAL does
    assert len(b"".join(frame(b"abcdefgh"))) == 8 + FRAME_BYTES


def _copy(tmp_path, start, length):
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 64)
    with open(tmp_path / "dst.bin", "wb") as out:
        out.write(b"head")
        copy_range(src, start, length, out)
        out.write(b"tail")  # the buffered writer continues after the copied bytes
    return (tmp_path / "dst.bin").read_bytes(), src.read_bytes()


def test_copy_range_appends_the_bytes(tmp_path):
    got, src = _copy(tmp_path, 100, 5000)
    assert got == b"head" + src[100:5100] + b"tail"


def test_copy_range_goes_through_a_buffer_where_the_kernel_refuses(tmp_path, monkeypatch):
    def refuse(*args):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(cog_layout, "_COPY_CHUNK", 1000)
    monkeypatch.setattr(os, "copy_file_range", refuse)
    got, src = _copy(tmp_path, 7, 4321)
    assert got == b"head" + src[7:4328] + b"tail"


def test_copy_range_of_a_short_file_is_an_error(tmp_path):
    with pytest.raises(OSError, match=r"ended .* early"):
        _copy(tmp_path, 16000, 1000)


@pytest.mark.parametrize("kernel", [True, False])
def test_the_cog_is_the_same_copied_by_the_kernel_or_a_buffer(tmp_path, monkeypatch, kernel):
    data = (np.arange(700 * 900) % 7).astype(np.uint8).reshape(700, 900)
    if not kernel:
        monkeypatch.setattr(os, "copy_file_range", lambda *a: (_ for _ in ()).throw(OSError()))
    stream = CogStream(tmp_path, "m", 900, 700, TRANSFORM, "EPSG:32650", "mode", {}, "d")
    stream.add(data)
    stream.finish(tmp_path / "m.tif")
    stream.remove()
    with rasterio.open(tmp_path / "m.tif") as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        np.testing.assert_array_equal(ds.read(1), data)
        assert ds.overviews(1) == [2]


def test_tiles_not_framed_one_after_another_are_refused(tmp_path):
    stream = CogStream(tmp_path, "m", 600, 512, TRANSFORM, "EPSG:32650", "mode", {}, "d")
    stream.add(np.zeros((512, 600), np.uint8))
    level = stream.levels[0]
    offset, size = level.tiles[1]
    level.tiles[1] = (offset + 1, size - 1)  # a gap: not the bytes the COG needs
    with pytest.raises(ValueError, match="not framed one after another"):
        stream.finish(tmp_path / "m.tif")
    stream.remove()
