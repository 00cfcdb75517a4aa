"""How far ahead of the predictor FetchedSource fetches, and that it reads the same pixels."""

from __future__ import annotations

import numpy as np

from contract.grid import Grid
from inference.mapping.fetched import (
    DEFAULT_REQUEST_BYTES,
    FetchedSource,
    covers,
    fetch_layout,
    group_requests,
    look_ahead,
    ramp_tiles,
)

BANDS = ("B2", "B3", "B4", "B8", "VV", "VH")


#: a corner at 32 px past a corner of the 512/64 lattice on both axes: the core blend's first
#: tile then starts at the grid's corner minus 32 px and owns its first pixel
X0, Y0 = (448 * 45 + 32) * 10.0, (448 * 760 + 416) * 10.0
#: 8 tiles of the 512/64 lattice's core blend a row
EIGHT = 8 * 448


def _grid(size: int) -> Grid:
    return Grid("EPSG:32650", X0, Y0, size, size, 10.0)


def _requests(size: int, tile: int = 512, overlap: int = 64) -> list:
    return [group_requests(row, len(BANDS), DEFAULT_REQUEST_BYTES)
            for row in fetch_layout(_grid(size), tile, overlap, "core")]


def _served(truth: np.ndarray, row: int, col: int, height: int, width: int) -> np.ndarray:
    """What Earth Engine answers for a window of the grid: its pixels, NaN past its edges."""
    out = np.full((truth.shape[0], height, width), np.nan, np.float32)
    r0, r1 = max(row, 0), min(row + height, truth.shape[1])
    c0, c1 = max(col, 0), min(col + width, truth.shape[2])
    if r1 > r0 and c1 > c0:
        out[:, r0 - row:r1 - row, c0 - col:c1 - col] = truth[:, r0:r1, c0:c1]
    return out


def _fetch(truth: np.ndarray, asked: list | None = None):
    def fetch(w):
        if asked is not None:
            asked.append((w.row_off, w.col_off, w.height, w.width))
        return _served(truth, w.row_off, w.col_off, w.height, w.width)
    return fetch


def test_look_ahead_keeps_the_workers_busy_within_its_memory():
    small = _requests(EIGHT)  # 8 tiles a row, grouped into 2 requests
    assert {len(row) for row in fetch_layout(_grid(EIGHT), 512, 64, "core")} == {8}
    assert min(len(row) for row in small) == 2
    assert look_ahead(small, workers=1, bands=len(BANDS)) == 0
    assert look_ahead(small, workers=4, bands=len(BANDS)) == 1
    assert look_ahead(small, workers=16, bands=len(BANDS)) == 2  # 128 MiB / 48 MiB a row
    assert look_ahead(small, workers=16, bands=len(BANDS), max_bytes=10**12) == 7
    wide = _requests(16384)  # a row of 16,384 px is 200 MiB: no row ahead (memory first)
    assert look_ahead(wide, workers=40, bands=len(BANDS)) == 0
    assert look_ahead([], workers=16, bands=len(BANDS)) == 0


def test_the_first_rows_ask_for_small_requests_so_the_model_starts_early():
    assert [ramp_tiles(k) for k in range(5)] == [1, 2, 4, None, None]
    grid = _grid(EIGHT)  # 8 tiles of 512 a row; a whole row's pixels exceed one request
    src = FetchedSource(lambda w: None, grid, BANDS, tile=512, overlap=64, blend="core",
                        workers=16)
    try:
        tiles_per_request = [[len(r.tiles) for r in row] for row in src.requests]
    finally:
        src.close()
    assert tiles_per_request[:3] == [[1] * 8, [2] * 4, [4, 4]]
    # later rows are grouped up to the byte limit only, as before
    assert tiles_per_request[3:] == [[len(r.tiles) for r in row]
                                     for row in _requests(EIGHT)[3:]]
    assert all(len(row) == 2 for row in tiles_per_request[3:])
    # a region too wide to fetch rows ahead, or one worker, gets no ramp
    wide = FetchedSource(lambda w: None, _grid(16384), BANDS, tile=512, overlap=64,
                         blend="core", workers=40)
    one = FetchedSource(lambda w: None, grid, BANDS, tile=512, overlap=64, blend="core",
                        workers=1)
    try:
        assert wide.requests == _requests(16384)
        assert one.requests == _requests(EIGHT)
    finally:
        wide.close()
        one.close()
    # never more requests in a ramp row than workers: 8 tiles, 3 workers -> 3 per request
    few = FetchedSource(lambda w: None, grid, BANDS, tile=512, overlap=64, blend="core",
                        workers=3)
    try:
        assert [[len(r.tiles) for r in row] for row in few.requests[:3]] == [
            [3, 3, 2], [3, 3, 2], [4, 4]]
    finally:
        few.close()
    # the byte limit still applies inside the ramp
    capped = group_requests(fetch_layout(grid, 512, 64, "core")[0], len(BANDS),
                            512 * 512 * 24, 4)
    assert [len(r.tiles) for r in capped] == [1] * 8


def test_fetching_ahead_reads_the_same_pixels_and_requests_each_window_once():
    grid = Grid("EPSG:32650", 200_000.0, 3_400_000.0, 300, 260, 10.0)
    yy, xx = np.mgrid[0:grid.height, 0:grid.width].astype(np.float32)
    truth = np.stack([yy * (b + 1) + xx for b in range(len(BANDS))])
    asked: list = []
    fetch = _fetch(truth, asked)

    for ahead in (0, None):
        asked.clear()
        src = FetchedSource(fetch, grid, BANDS, tile=64, overlap=16, workers=8,
                            ahead_rows=ahead, max_request_bytes=64 * 64 * 6 * 4)
        rows = fetch_layout(grid, 64, 16)
        got = [src.read(range(1, 7), _window(row[0].window.row_off, row[0].window.height,
                                             grid.width)) for row in rows]
        for row, data in zip(rows, got, strict=True):
            r0, h = row[0].window.row_off, row[0].window.height
            np.testing.assert_array_equal(data, _served(truth, r0, 0, h, grid.width))
        assert len(asked) == len(set(asked)) == sum(len(r) for r in src.requests)
        assert src.ahead_rows == (0 if ahead == 0 else 1)  # 8 workers, 6 requests a row


def test_any_window_and_band_order_reads_the_fetched_pixels_into_a_used_buffer():
    """Windows across tile rows or part of a row, bands picked in any order, a dirty buffer."""
    from rasterio.windows import Window

    grid = Grid("EPSG:32650", 200_000.0, 3_400_000.0, 200, 150, 10.0)
    yy, xx = np.mgrid[0:grid.height, 0:grid.width].astype(np.float32)
    truth = np.stack([yy * (b + 1) + xx for b in range(len(BANDS))])
    src = FetchedSource(_fetch(truth), grid, BANDS, tile=64, overlap=16, workers=4,
                        max_request_bytes=64 * 64 * 6 * 4)
    rows = fetch_layout(grid, 64, 16)
    exact = rows[1][0].window
    cases = [(range(1, 7), Window(0, exact.row_off, grid.width, exact.height)),  # a tile row
             ([3, 1], Window(0, exact.row_off, grid.width, exact.height)),  # bands reordered
             ([6], Window(30, 10, 70, 90)),  # across tile rows, part of the width
             (range(1, 7), Window(0, 0, grid.width, grid.height))]  # everything
    for indexes, window in cases:
        r, c, h, w = window.row_off, window.col_off, window.height, window.width
        dirty = np.full((len(indexes), h, w), 7.5e9, np.float32)  # a reused row buffer
        got = src.read(indexes, window, out=dirty)
        expected = _served(truth, int(r), int(c), int(h), int(w))[[i - 1 for i in indexes]]
        np.testing.assert_array_equal(got, expected)
    src.close()


def test_covers_finds_gaps_in_column_spans():
    from contract.grid import Window

    def spans(*cols):
        return [Window(row_off=0, col_off=a, height=1, width=b - a) for a, b in cols]

    assert covers(0, 100, spans((0, 60), (40, 100)))  # overlapping tiles
    assert covers(10, 50, spans((40, 60), (0, 45)))  # any order, wider than asked
    assert not covers(0, 100, spans((0, 50), (51, 100)))  # one column missing
    assert not covers(0, 100, spans((0, 99)))
    assert not covers(0, 10, [])


def _window(row_off: int, height: int, width: int):
    from rasterio.windows import Window

    return Window(0, row_off, width, height)


def test_a_window_read_apart_leaves_the_rows_fetched_for_the_predictor():
    """int8's windows spread over the map are fetched on their own: the predictor's rows
    are still read in order afterwards, each fetched once."""
    from rasterio.windows import Window

    from inference.predict.sources import read_window

    grid = Grid("EPSG:32650", 200_000.0, 3_400_000.0, 200, 150, 10.0)
    truth = np.arange(len(BANDS) * grid.height * grid.width, dtype=np.float32).reshape(
        len(BANDS), grid.height, grid.width)
    asked: list = []
    src = FetchedSource(_fetch(truth, asked), grid, BANDS, tile=64, overlap=16, workers=2,
                        ahead_rows=0)
    far = read_window(src, [2, 1], Window(150, 120, 32, 30))  # the bottom right, bands 2, 1
    np.testing.assert_array_equal(far, truth[[1, 0], 120:150, 150:182])
    assert asked == [(120, 150, 30, 32)] and src.stats.fetched == 0  # not one of its rows
    for row in fetch_layout(grid, 64, 16):  # the predictor's reading, from the top
        w = row[0].window
        got = src.read(range(1, 7), Window(0, w.row_off, grid.width, w.height))
        np.testing.assert_array_equal(got, _served(truth, w.row_off, 0, w.height, grid.width))
    assert src.stats.fetched == len(asked) - 1
    src.close()
