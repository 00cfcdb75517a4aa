"""Raw reads of uncompressed GeoTIFF stacks: the same bits as rasterio, or rasterio itself."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from inference.predict.direct_read import SCRATCH_PIXELS, direct_tiff

WIDTH, HEIGHT = 1000, 700  # not multiples of the blocks: partial tiles at the right and bottom


def _stack(path, layout, dtype="float32", count=4, **options):
    data = np.random.default_rng(1).normal(size=(count, HEIGHT, WIDTH)).astype(dtype)
    if np.dtype(dtype).kind == "f":
        data[1, 5:9, 17:40] = np.nan
        data[2, 600:650, 990:] = np.inf
        data[3, 0, 0] = -9999.0
    with rasterio.open(path, "w", driver="GTiff", width=WIDTH, height=HEIGHT, count=count,
                       dtype=dtype, crs="EPSG:32650", nodata=-9999.0,
                       transform=Affine(10, 0, 500000, 0, -10, 4000000), **layout,
                       **options) as dst:
        dst.write(data)
    return data


LAYOUTS = [
    {"tiled": True, "blockxsize": 256, "blockysize": 256, "interleave": "band"},
    {"tiled": True, "blockxsize": 64, "blockysize": 48, "interleave": "band"},
    {"tiled": False, "interleave": "band"},  # strips of a few rows
    {"tiled": False, "interleave": "band", "blockysize": 700},  # one strip per band
]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_raw_rows_are_rasterios_bits(tmp_path, layout):
    path = tmp_path / "s.tif"
    _stack(path, layout)
    with rasterio.open(path) as src:
        raw = direct_tiff(src)
        assert raw is not None
        try:
            for indexes in ([1, 2, 3, 4], [4, 2], [3]):
                for row, rows in ((0, 256), (1, 300), (250, 7), (480, 220), (699, 1), (0, 700)):
                    window = ((row, row + rows), (0, WIDTH))
                    want = src.read(indexes, window=window, out_dtype="float32")
                    out = np.full((len(indexes), rows, WIDTH), 7.0, np.float32)
                    got = raw.read(indexes, row, rows, out=out)
                    assert got is out
                    # bits, not values: NaN payloads and signed zeros too
                    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
            np.testing.assert_array_equal(raw.read([2], 3, 5).view(np.uint32),
                                          src.read([2], window=((3, 8), (0, WIDTH)))
                                          .view(np.uint32))
        finally:
            raw.close()


def test_a_strip_larger_than_the_scratch_is_read_in_pieces(tmp_path):
    path = tmp_path / "s.tif"
    data = _stack(path, {"tiled": False, "interleave": "band", "blockysize": 700})
    with rasterio.open(path) as src:
        raw = direct_tiff(src)
        assert raw.chunk_rows == SCRATCH_PIXELS // WIDTH < HEIGHT
        np.testing.assert_array_equal(raw.read([2], 0, HEIGHT)[0].view(np.uint32),
                                      data[1].view(np.uint32))
        raw.close()


@pytest.mark.parametrize(("layout", "options"), [
    ({"tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "DEFLATE"}, {}),
    ({"tiled": True, "blockxsize": 256, "blockysize": 256, "interleave": "pixel"}, {}),
    ({"tiled": False, "interleave": "band"}, {"dtype": "int16"}),
    ({"tiled": False, "interleave": "band"}, {"ENDIANNESS": "BIG"}),
])
def test_anything_else_is_left_to_rasterio(tmp_path, layout, options):
    path = tmp_path / "s.tif"
    _stack(path, layout, **options)
    with rasterio.open(path) as src:
        assert direct_tiff(src) is None


def test_sparse_blocks_are_left_to_rasterio(tmp_path):
    path = tmp_path / "s.tif"
    with rasterio.open(path, "w", driver="GTiff", width=WIDTH, height=HEIGHT, count=1,
                       dtype="float32", tiled=True, blockxsize=256, blockysize=256,
                       sparse_ok=True) as dst:
        dst.write(np.ones((256, 256), np.float32), 1, window=((0, 256), (0, 256)))
    with rasterio.open(path) as src:
        assert direct_tiff(src) is None


def test_non_rasterio_sources_are_left_alone():
    class Source:  # anything with read(), width, height and nodatavals
        width, height, nodatavals = 4, 4, (None,)

    assert direct_tiff(Source()) is None


def test_a_file_cut_short_is_an_error_not_zeros(tmp_path):
    path = tmp_path / "s.tif"
    _stack(path, {"tiled": True, "blockxsize": 256, "blockysize": 256, "interleave": "band"})
    with rasterio.open(path) as src:
        raw = direct_tiff(src)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(OSError, match="short read"):
        raw.read([4], 0, HEIGHT)
    raw.close()
