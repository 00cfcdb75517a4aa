"""Uncompressed GeoTIFF stacks read in the file's pages: rasterio's bits, or rasterio itself."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from inference.predict.blending import all_finite, invalid_mask
from inference.predict.direct_read import HUGE_PAGE, Mosaic, Piece, direct_tiff

WIDTH, HEIGHT = 1000, 700  # not multiples of the blocks: partial tiles at the right and bottom


def _stack(path, layout, dtype="float32", count=4, **options):
    data = np.random.default_rng(1).normal(size=(count, HEIGHT, WIDTH)).astype(dtype)
    if np.dtype(dtype).kind == "f":
        data[1, 5:9, 17:40] = np.nan
        data[2, 600:650, 990:] = np.inf
        data[3, 0, 0] = -9999.0
        data[0, 300, 500] = -0.0
    with rasterio.open(path, "w", driver="GTiff", width=WIDTH, height=HEIGHT, count=count,
                       dtype=dtype, crs="EPSG:32650", nodata=-9999.0,
                       transform=Affine(10, 0, 500000, 0, -10, 4000000), **layout,
                       **options) as dst:
        dst.write(data)
    return data


def _written_in_order(path, count, block, writes):
    """A tiled stack whose blocks are written in the order ``writes`` gives: ``(bands, block
    row)`` pairs, each writing that block row of those bands (1-based)."""
    data = np.random.default_rng(count).normal(size=(count, HEIGHT, WIDTH)).astype("float32")
    with rasterio.open(path, "w", driver="GTiff", width=WIDTH, height=HEIGHT, count=count,
                       dtype="float32", tiled=True, blockxsize=block, blockysize=block,
                       interleave="band") as dst:
        for bands, y in writes:
            rows = (y, min(y + block, HEIGHT))
            dst.write(data[np.array(bands) - 1, rows[0]:rows[1]], bands,
                      window=(rows, (0, WIDTH)))
    return data


def _by_block_rows(path):
    """Block row by block row, every band in turn (bands evenly spaced)."""
    return _written_in_order(path, 3, 256, [([1, 2, 3], y) for y in range(0, HEIGHT, 256)])


def _uneven(path):
    """The second band's blocks bottom row first: bands not evenly spaced."""
    rows = range(0, HEIGHT, 128)
    return _written_in_order(path, 2, 128, [([1], y) for y in rows]
                             + [([2], y) for y in reversed(rows)])


LAYOUTS = [
    {"tiled": True, "blockxsize": 256, "blockysize": 256, "interleave": "band"},
    {"tiled": True, "blockxsize": 64, "blockysize": 48, "interleave": "band"},
    {"tiled": False, "interleave": "band"},  # strips of a few rows
    {"tiled": False, "interleave": "band", "blockysize": 700},  # one strip per band
]
WINDOWS = [(0, 0, 256, 256), (1, 3, 300, 517), (250, 990, 7, 10), (480, 0, 220, WIDTH),
           (699, 999, 1, 1), (0, 0, HEIGHT, WIDTH)]


def _check_windows(path, want_of):
    with rasterio.open(path) as src:
        for indexes in ([1, 2, 3, 4][:src.count], [src.count, 1], [min(3, src.count)]):
            mapped = direct_tiff(src, indexes)
            assert mapped is not None
            try:
                for row, col, rows, cols in WINDOWS:
                    want = want_of(src, indexes, ((row, row + rows), (col, col + cols)))
                    got = np.asarray(mapped.tile(row, col, rows, cols))
                    # bits, not values: NaN payloads and signed zeros too
                    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
            finally:
                mapped.close()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_mapped_tiles_are_rasterios_bits(tmp_path, layout):
    _stack(tmp_path / "s.tif", layout)
    _check_windows(tmp_path / "s.tif", lambda src, idx, w: src.read(idx, window=w))


@pytest.mark.parametrize("write", [_by_block_rows, _uneven])
def test_any_order_of_blocks_in_the_file(tmp_path, write):
    data = write(tmp_path / "s.tif")
    _check_windows(tmp_path / "s.tif", lambda src, idx, w: data[np.array(idx) - 1][
        :, w[0][0]:w[0][1], w[1][0]:w[1][1]])


def test_how_tiles_are_cut(tmp_path):
    """Contiguous strips are one plane (a tile is a plain view); blocks give pieces."""
    _stack(tmp_path / "strips.tif", LAYOUTS[2])
    _stack(tmp_path / "tiles.tif", LAYOUTS[0])
    _uneven(tmp_path / "uneven.tif")
    with rasterio.open(tmp_path / "strips.tif") as src:
        assert src.block_shapes[0][0] < 10
        strips = direct_tiff(src, [1, 2, 3, 4])
    tile = strips.tile(5, 7, 512, 512)
    assert isinstance(tile, np.ndarray) and tile.shape == (4, 512, 512)
    with rasterio.open(tmp_path / "tiles.tif") as src:
        tiles = direct_tiff(src, [1, 3])
    assert isinstance(tiles.tile(10, 20, 100, 100), np.ndarray)  # inside one block
    mosaic = tiles.tile(200, 200, 100, 100)
    assert isinstance(mosaic, Mosaic) and len(mosaic.pieces) == 4
    assert all(p.bands == slice(0, 2) for p in mosaic.pieces)
    with rasterio.open(tmp_path / "uneven.tif") as src:
        uneven = direct_tiff(src, [1, 2])
    assert uneven.band_step is None
    pieces = uneven.tile(0, 0, 10, 10).pieces  # one block, one piece per band
    assert [p.bands for p in pieces] == [slice(0, 1), slice(1, 2)]
    for m in (strips, tiles, uneven):
        m.close()


def test_rows_give_the_mask_of_the_materialised_rows(tmp_path):
    _stack(tmp_path / "s.tif", LAYOUTS[1])
    nodata = [None, float("nan"), None, -9999.0]
    with rasterio.open(tmp_path / "s.tif") as src:
        mapped = direct_tiff(src, [1, 2, 3, 4])
        for row, rows in ((0, 10), (0, 100), (590, 110)):
            got = mapped.rows(row, rows)
            want = src.read([1, 2, 3, 4], window=((row, row + rows), (0, WIDTH)))
            assert got.shape == want.shape
            for finite in (False, all_finite(want)):
                np.testing.assert_array_equal(got.invalid_mask(nodata, finite),
                                              invalid_mask(want, nodata, finite))
            np.testing.assert_array_equal(np.asarray(got), want)
        mapped.close()


def _mapped_kib(path) -> int:
    """Resident KiB of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split()[0]:
                inside = line.rstrip().endswith(str(path))
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


def test_rows_are_mapped_in_ahead_and_given_back(tmp_path):
    """The reader maps the next rows in (no first-touch faults on the model's thread) and
    gives back those done with: the process holds a few rows of the stack, not all of it."""
    path, width, height, bands = tmp_path / "s.tif", 2048, 4096, 4
    data = np.random.default_rng(4).normal(size=(bands, height, width)).astype("float32")
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=bands,
                       dtype="float32", tiled=True, blockxsize=256, blockysize=64,
                       interleave="band") as dst:
        dst.write(data)
    row_kib = bands * 64 * width * 4 // 1024  # one block row of every band: 2 MiB
    # pages are given back in whole huge pages: up to two of each band's range stay mapped
    slack = bands * 2 * HUGE_PAGE // 1024 + 1024
    with rasterio.open(path) as src:
        mapped = direct_tiff(src, list(range(1, bands + 1)))
    assert _mapped_kib(path) == 0
    mapped.rows(0, 128)
    assert 2 * row_kib <= _mapped_kib(path) <= 2 * row_kib + slack
    peak = 0
    for row in range(64, height - 128, 64):
        mapped.release(row - 64)
        rows = mapped.rows(row, 128)
        np.testing.assert_array_equal(np.asarray(rows), data[:, row:row + 128])
        peak = max(peak, _mapped_kib(path))
    assert peak <= 3 * row_kib + slack <= height // 64 * row_kib // 2  # of the whole file
    mapped.release(height)
    assert _mapped_kib(path) <= slack
    # rows given back read the same again (the kernel maps them in once more)
    np.testing.assert_array_equal(np.asarray(mapped.tile(0, 0, 64, 64)), data[:, :64, :64])
    mapped.close()


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
        assert direct_tiff(src, [1]) is None


def test_sparse_blocks_are_left_to_rasterio(tmp_path):
    path = tmp_path / "s.tif"
    with rasterio.open(path, "w", driver="GTiff", width=WIDTH, height=HEIGHT, count=1,
                       dtype="float32", tiled=True, blockxsize=256, blockysize=256,
                       sparse_ok=True) as dst:
        dst.write(np.ones((256, 256), np.float32), 1, window=((0, 256), (0, 256)))
    with rasterio.open(path) as src:
        assert direct_tiff(src, [1]) is None


def test_non_rasterio_sources_are_left_alone():
    class Source:  # anything with read(), width, height and nodatavals
        width, height, nodatavals = 4, 4, (None,)

    assert direct_tiff(Source(), [1]) is None


def test_a_file_cut_short_is_an_error_not_a_crash(tmp_path):
    path = tmp_path / "s.tif"
    _stack(path, {"tiled": True, "blockxsize": 256, "blockysize": 256, "interleave": "band"})
    with rasterio.open(path) as src:
        mapped = direct_tiff(src, [4])
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    with pytest.raises(OSError, match="truncated"):
        mapped.rows(0, HEIGHT)
    mapped.close()


def test_a_piece_outside_its_tile_is_refused():
    """A mosaic's pieces come from the file's block layout; one reaching past the tile must
    not become a write past the batch (the C loop writes where a piece says it goes)."""
    def raw(bands, rows, cols):
        return np.zeros((bands, rows, cols), np.float32)

    inside = Piece(raw(6, 96, 48), slice(0, 6), 0, 0)
    Mosaic((6, 96, 96), (inside, Piece(raw(6, 96, 48), slice(0, 6), 0, 48)))  # fits
    for outside in (Piece(raw(6, 96, 48), slice(0, 6), 0, 49),
                    Piece(raw(6, 4, 96), slice(0, 6), 93, 0),
                    Piece(raw(1, 96, 96), slice(6, 7), 0, 0)):
        with pytest.raises(ValueError, match="does not fit the tile"):
            Mosaic((6, 96, 96), (inside, outside))
