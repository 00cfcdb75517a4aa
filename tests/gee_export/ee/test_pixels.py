"""computePixels request sizing, building and decoding (pure functions)."""

from __future__ import annotations

import numpy as np
import pytest

from contract.grid import Grid, Window
from core.errors import EarthEngineError
from gee_export.ee.pixels import (
    MAX_REQUEST_BYTES,
    Limits,
    SubRequest,
    assemble,
    build_request,
    decode,
    grid_spec,
    planar,
    split_request,
    to_label,
)


def covered(window: Window, bands, subs) -> np.ndarray:
    hits = np.zeros((len(bands), window.height, window.width), int)
    for s in subs:
        rows = slice(s.window.row_off - window.row_off, s.window.row_end - window.row_off)
        cols = slice(s.window.col_off - window.col_off, s.window.col_end - window.col_off)
        for b in s.bands:
            hits[bands.index(b), rows, cols] += 1
    return hits


@pytest.mark.parametrize("size,nbands,limits,expected", [
    (128, 7, Limits(), 1),  # the paper's patch: one request
    (2048, 8, Limits(), 3),  # 16 MiB per band: three bands per request
    (64, 2000, Limits(), 2),  # the 1,024-band limit
    (40_000, 1, Limits(), None),  # wider than 32,768 px: tiles
    (128, 7, Limits(max_bytes=128 * 128 * 4 * 3), 3),
])
def test_split_respects_every_limit(size, nbands, limits, expected):
    window = Window(row_off=80, col_off=160, height=size, width=size)
    bands = tuple(f"b{i}" for i in range(nbands))
    subs = split_request(window, bands, limits)
    if expected is not None:
        assert len(subs) == expected
    for s in subs:
        assert s.nbytes <= limits.max_bytes and len(s.bands) <= limits.max_bands
        assert s.window.width <= limits.max_side and s.window.height <= limits.max_side
    if size * size * nbands < 5e7:
        assert np.all(covered(window, list(bands), subs) == 1)  # everything exactly once
    assert MAX_REQUEST_BYTES == 48 * 1024 * 1024


def test_request_and_decode_roundtrip(ee_offline):
    grid = Grid("EPSG:32650", 238000.0, 3385000.0, 400, 400)
    window = grid.patch_window(1, 2)
    sub = SubRequest(window, ("B2", "label"))
    req = build_request(ee_offline.Image.constant([1, 2]).rename(["B2", "label"]), grid, sub)
    assert req["fileFormat"] == "NUMPY_NDARRAY" and req["bandIds"] == ["B2", "label"]
    assert req["grid"] == grid_spec(grid, window)
    assert req["grid"]["affineTransform"]["translateX"] == 238000.0 + 160 * 10
    assert req["grid"]["affineTransform"]["translateY"] == 3385000.0 - 80 * 10
    assert req["grid"]["crsCode"] == "EPSG:32650"
    arr = np.zeros((128, 128), dtype=[("B2", "<f4"), ("label", "<f4")])
    arr["B2"] = 0.25
    arr["B2"][0, 0] = -3.0e38
    arr["label"] = 1
    arr["label"][5, 5] = 255
    out = decode(arr, sub)
    assert out.shape == (2, 128, 128) and np.isnan(out[0, 0, 0]) and out[0, 1, 1] == 0.25
    lab = to_label(out[1])
    assert lab.dtype == np.uint8 and lab[5, 5] == 255 and lab[0, 0] == 1
    with pytest.raises(EarthEngineError, match="expected"):
        decode(arr[:10], sub)
    whole = assemble(window, ("B2", "label"), [(sub, out)])
    np.testing.assert_array_equal(whole, out)


@pytest.mark.parametrize("fields", [
    [("B2", "<f4"), ("B3", "<f4"), ("label", "<f4")],  # packed float32 in request order
    [("label", "<f4"), ("B2", "<f4"), ("B3", "<f4")],  # other order
    [("B2", "<f8"), ("B3", "<f4"), ("label", "<i2")],  # other types
    [("B2", ">f4"), ("B3", ">f4"), ("label", ">f4")],  # big-endian
])
def test_decode_takes_each_band_by_name_whatever_the_layout(fields):
    rng = np.random.default_rng(0)
    arr = np.zeros((6, 7), dtype=fields)
    for name, _ in fields:
        arr[name] = rng.integers(-50, 50, arr.shape)
    arr["B3"][2, 3] = -3.0e38 if arr.dtype["B3"].kind == "f" else 0
    arr.flags.writeable = False  # a response is never written
    sub = SubRequest(Window(row_off=0, col_off=0, height=6, width=7), ("B2", "B3", "label"))
    out = decode(arr, sub)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.flags.writeable
    for i, name in enumerate(sub.bands):
        expected = arr[name].astype(np.float32)
        expected[expected <= -1.0e38] = np.nan
        np.testing.assert_array_equal(out[i], expected)


@pytest.mark.parametrize("block_bytes", [1, 7 * 9 * 3 * 4, 10**9])
def test_planar_gives_every_band_whole_whatever_the_block(block_bytes):
    """Blocks of one row, of rows that do not divide the height, and the whole answer."""
    rng = np.random.default_rng(1)
    pixels = rng.standard_normal((20, 9, 3)).astype(np.float32)
    pixels[19, 8, 2] = pixels[0, 0, 0] = -3.0e38  # nodata in the first and the last block
    out = planar(pixels, block_bytes)
    assert out.shape == (3, 20, 9) and out.flags.c_contiguous
    expected = np.moveaxis(pixels, -1, 0).copy()
    expected[expected <= -1.0e38] = np.nan
    np.testing.assert_array_equal(out, expected)


def test_embedding_requests_are_sized_by_the_bytes_of_their_eight_bit_values(capsys):
    """The embedding's bands arrive as one byte a value, and were sized as four: a 1,024 px
    patch of its 64 bands and the label took 6 requests where 2 hold it (68 MB, not 260)."""
    from cli.export import main
    from gee_export.ee.embedding import BANDS

    window = Window(row_off=0, col_off=0, height=1024, width=1024)
    subs = split_request(window, (*BANDS, "label"))
    assert len(subs) == 2 and [b for s in subs for b in s.bands] == [*BANDS, "label"]
    assert all(s.nbytes <= MAX_REQUEST_BYTES for s in subs)
    assert sum(s.nbytes for s in subs) == 1024 * 1024 * (64 + 4)
    assert main(["--bbox", "114.1,30.4,114.3,30.6", "--months", "2021-06", "--bands", "aef",
                 "--patch-size", "1024", "--stride", "1024", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "4 computePixels requests (2 per patch" in printed
    assert "(68.0 MB per patch;" in printed
