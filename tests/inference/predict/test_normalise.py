"""The batch normalised on the CPU: torch's way and the C loop write the same values."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from gee_export.core import native
from gee_export.core.commands import DETAIL
from inference.predict.direct_read import Mosaic, direct_tiff
from inference.predict.normalise import BUILDS, BatchNormaliser

needs_kernel = pytest.mark.skipif(native.compiler() is None, reason="no C compiler")
FORMATS = [torch.contiguous_format, torch.channels_last]
TILE = 96


@pytest.fixture(autouse=True)
def _fresh_loads():
    native.forget()
    yield
    native.forget()


def _coefficients(bands):
    rng = np.random.default_rng(bands)
    mean, std = rng.normal(100, 30, bands), rng.uniform(5, 50, bands)
    return (-mean / std).astype(np.float32), (1 / std).astype(np.float32)


def _raw(bands, height, width, seed=0):
    return np.random.default_rng(seed).normal(100, 40, (bands, height, width)).astype(np.float32)


def _both(tiles, bands, fmt, finite=None):
    """The batch and its finiteness by torch and by each build of the C loop (copies: the
    buffer is reused); ``"native"``: the last build."""
    shift, scale = _coefficients(bands)
    ways = {"torch": BatchNormaliser(shift, scale, "torch")}
    ways |= {b: BatchNormaliser(shift, scale, "native", [b]) for b in BUILDS}
    out = {}
    for name, way in ways.items():
        x, clean = way(tiles, fmt, finite)
        assert x.is_contiguous(memory_format=fmt)
        out[name] = (x.clone(), clean)
    for b in BUILDS:
        torch.testing.assert_close(out[b][0], out["torch"][0], rtol=1e-6, atol=1e-6)
        assert out[b][1] == out["torch"][1]
    out["native"] = out[BUILDS[-1]]
    return out


def _expected(raw, bands):
    shift, scale = _coefficients(bands)
    return torch.from_numpy(np.nan_to_num(raw * scale[:, None, None] + shift[:, None, None],
                                          nan=0.0, posinf=0.0, neginf=0.0))


def _stack(path, bands, layout):
    data = _raw(bands, 300, 400, seed=bands)
    with rasterio.open(path, "w", driver="GTiff", width=400, height=300, count=bands,
                       dtype="float32", crs="EPSG:32650",
                       transform=Affine(10, 0, 500000, 0, -10, 4000000), **layout) as dst:
        dst.write(data)
    return data


@needs_kernel
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("bands", [1, 3, 6, 20])
@pytest.mark.parametrize("width", [TILE, 37])  # four pixels at a time, and three left over
def test_views_of_a_row_the_same_both_ways(fmt, bands, width):
    row = _raw(bands, TILE, 5 * TILE)
    tiles = [row[:, :, x:x + width] for x in (0, 70, 201, 5 * TILE - width)]
    out = _both(tiles, bands, fmt)
    torch.testing.assert_close(out["native"][0], out["torch"][0], rtol=1e-6, atol=1e-6)
    for j in range(len(tiles)):
        torch.testing.assert_close(out["native"][0][j], _expected(tiles[j], bands),
                                   rtol=1e-6, atol=1e-5)
    assert out["native"][1] and out["torch"][1]


@needs_kernel
@pytest.mark.parametrize("fmt", FORMATS)
def test_odd_arrays_the_same_both_ways(fmt):
    """A whole batch array, a float64 one, pixels with a stride."""
    wide = _raw(4, TILE, 2 * TILE)
    cases = [wide.reshape(4, TILE, 2, TILE).transpose(2, 0, 1, 3).copy(),
             wide.reshape(4, TILE, 2, TILE).transpose(2, 0, 1, 3).astype(np.float64),
             [wide[:, :, ::2], wide[:, :, TILE:]]]
    for tiles in cases:
        out = _both(tiles, 4, fmt)
        torch.testing.assert_close(out["native"][0], out["torch"][0], rtol=1e-6, atol=1e-6)


@needs_kernel
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("layout", [
    {"tiled": True, "blockxsize": 64, "blockysize": 48, "interleave": "band"},
    {"tiled": False, "interleave": "band"},  # strips of a few rows
    {"tiled": False, "interleave": "band", "blockysize": 300},  # one strip per band
])
def test_mapped_pieces_the_same_both_ways(tmp_path, fmt, layout):
    data = _stack(tmp_path / "s.tif", 6, layout)
    with rasterio.open(tmp_path / "s.tif") as src:
        mapped = direct_tiff(src, [4, 1, 2, 3, 5, 6])
    try:
        tiles = [mapped.tile(y, x, TILE, TILE) for y, x in ((0, 0), (30, 50), (204, 304))]
        assert any(isinstance(t, Mosaic) for t in tiles)  # pieces of blocks or of bands
        out = _both(tiles, 6, fmt)
    finally:
        mapped.close()
    torch.testing.assert_close(out["native"][0], out["torch"][0], rtol=1e-6, atol=1e-6)
    want = _expected(data[[3, 0, 1, 2, 4, 5], 30:30 + TILE, 50:50 + TILE], 6)
    torch.testing.assert_close(out["native"][0][1], want, rtol=1e-6, atol=1e-5)


@needs_kernel
def test_pieces_of_one_band_each(tmp_path):
    """Bands not evenly spaced in the file: a piece per band, each written to its channel."""
    rows = list(range(0, 300, 48))
    data = _raw(2, 300, 400, seed=3)
    with rasterio.open(tmp_path / "u.tif", "w", driver="GTiff", width=400, height=300, count=2,
                       dtype="float32", tiled=True, blockxsize=64, blockysize=48,
                       interleave="band") as dst:
        for band, order in ((1, rows), (2, rows[::-1])):
            for y in order:
                dst.write(data[band - 1:band, y:y + 48], [band], window=((y, min(y + 48, 300)),
                                                                          (0, 400)))
    with rasterio.open(tmp_path / "u.tif") as src:
        mapped = direct_tiff(src, [2, 1])
    try:
        assert mapped.band_step is None
        tiles = [mapped.tile(10, 20, TILE, TILE)]
        out = _both(tiles, 2, torch.channels_last)
    finally:
        mapped.close()
    torch.testing.assert_close(out["native"][0][0],
                               _expected(data[[1, 0], 10:10 + TILE, 20:20 + TILE], 2),
                               rtol=1e-6, atol=1e-5)


@needs_kernel
@pytest.mark.parametrize("method", ["torch", "native"])
@pytest.mark.parametrize("bands", [3, 6])
def test_nan_and_infinities_become_the_mean(method, bands):
    tiles = [_raw(bands, TILE, TILE - 1, seed=s) for s in range(3)]
    tiles[1][0, 5, 7], tiles[1][2, 50, 60], tiles[2][1, 0, 0] = np.nan, np.inf, -np.inf
    tiles.append(_raw(bands, TILE, TILE - 1, seed=9))
    tiles[3][bands - 1, TILE - 1, TILE - 2] = np.nan  # among the pixels past a multiple of 4
    shift, scale = _coefficients(bands)
    norm = BatchNormaliser(shift, scale, method)
    x, clean = norm(tiles, torch.channels_last)
    assert not clean and bool(torch.isfinite(x).all())
    assert x[1, 0, 5, 7] == 0 and x[1, 2, 50, 60] == 0 and x[2, 1, 0, 0] == 0
    assert x[3, bands - 1, TILE - 1, TILE - 2] == 0
    for j in range(4):
        torch.testing.assert_close(x[j], _expected(tiles[j], bands), rtol=1e-6, atol=1e-5)
    x, clean = norm(tiles[:1], torch.channels_last)
    assert clean  # a batch without any
    x, clean = norm(tiles, torch.channels_last, finite=False)  # replaced without a check
    assert not clean and bool(torch.isfinite(x).all())
    x, clean = norm(tiles[:1], torch.channels_last, finite=True)  # the caller checked
    assert clean


@needs_kernel
def test_the_faster_way_is_measured_on_the_first_batch(caplog):
    shift, scale = _coefficients(6)
    norm = BatchNormaliser(shift, scale)
    assert norm.method is None and norm.way is None
    tiles = [_raw(6, TILE, TILE, seed=s) for s in range(4)]
    with caplog.at_level(DETAIL, logger="inference.predict.normalise"):
        x, clean = norm(tiles, torch.channels_last)
    want = {"torch", *(" ".join(("C", *b)) for b in BUILDS)}
    assert set(norm.timings) == want and all(t > 0 for t in norm.timings.values())
    assert norm.way == min(norm.timings, key=norm.timings.get)
    assert norm.method == ("torch" if norm.way == "torch" else "native")
    assert f"tiles normalised by {norm.way}" in caplog.text
    torch.testing.assert_close(x[3], _expected(tiles[3], 6), rtol=1e-6, atol=1e-5)
    assert clean
    first = x.data_ptr()
    timings = dict(norm.timings)
    assert norm(tiles, torch.channels_last)[0].data_ptr() == first  # the batch is reused
    assert norm.timings == timings  # measured once


def test_without_the_kernel_it_is_torch(monkeypatch):
    monkeypatch.setenv(native.ENV, "off")
    shift, scale = _coefficients(2)
    norm = BatchNormaliser(shift, scale)
    tiles = [_raw(2, TILE, TILE)]
    x, clean = norm(tiles, torch.channels_last)
    assert norm.method == "torch" and norm.timings == {} and clean
    torch.testing.assert_close(x[0], _expected(tiles[0], 2), rtol=1e-6, atol=1e-5)
    with pytest.raises(RuntimeError, match="C loop is not available"):
        BatchNormaliser(shift, scale, "native")


@needs_kernel
def test_each_memory_format_is_measured_on_its_own_first_batch():
    """``auto`` normalises its first batch channels-first, the run channels-last: the way
    chosen for one layout is not taken for the other."""
    shift, scale = _coefficients(6)
    norm = BatchNormaliser(shift, scale)
    tiles = [_raw(6, TILE, TILE, seed=s) for s in range(2)]
    norm(tiles, torch.contiguous_format)
    first = norm.timings
    x, _ = norm(tiles, torch.channels_last)
    assert norm.timings is not first  # measured again, for this layout
    assert norm.way == min(norm.timings, key=norm.timings.get)
    second = norm.timings
    norm(tiles, torch.contiguous_format)
    norm(tiles, torch.channels_last)
    assert norm.timings is second  # each layout measured once
    torch.testing.assert_close(x[1], _expected(tiles[1], 6), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("method", ["torch", pytest.param("native", marks=needs_kernel)])
def test_tiles_of_another_shape_are_refused(method):
    """The batch's slots are shaped by the first tile: torch would resize its view of a slot
    and leave the slot stale, the C loop would write past the buffer."""
    shift, scale = _coefficients(6)
    norm = BatchNormaliser(shift, scale, method)
    for other in (_raw(6, TILE + 8, TILE), _raw(7, TILE, TILE), _raw(6, TILE, TILE - 4)):
        with pytest.raises(ValueError, match="differ in shape"):
            norm([_raw(6, TILE, TILE), other], torch.channels_last)
    x, clean = norm([_raw(6, TILE, TILE)] * 2, torch.channels_last)  # still usable
    assert clean and x.shape == (2, 6, TILE, TILE)

