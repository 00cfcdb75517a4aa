"""How far ahead of the predictor FetchedSource fetches, and that it reads the same pixels."""

from __future__ import annotations

import numpy as np

from gee_export.contract.grid import Grid
from inference.sources import (
    DEFAULT_REQUEST_BYTES,
    FetchedSource,
    fetch_layout,
    group_requests,
    look_ahead,
)

BANDS = ("B2", "B3", "B4", "B8", "VV", "VH")


def _grid(size: int) -> Grid:
    return Grid("EPSG:32650", 200_000.0, 3_400_000.0, size, size, 10.0)


def _requests(size: int, tile: int = 512, overlap: int = 64) -> list:
    return [group_requests(row, len(BANDS), DEFAULT_REQUEST_BYTES)
            for row in fetch_layout(_grid(size), tile, overlap)]


def test_look_ahead_keeps_the_workers_busy_within_its_memory():
    small = _requests(3648)  # 8 tiles a row, grouped into 2 requests
    assert min(len(row) for row in small) == 2
    assert look_ahead(small, workers=1, bands=len(BANDS)) == 0
    assert look_ahead(small, workers=4, bands=len(BANDS)) == 1
    assert look_ahead(small, workers=16, bands=len(BANDS)) == 2  # 128 MiB / 48 MiB a row
    assert look_ahead(small, workers=16, bands=len(BANDS), max_bytes=10**12) == 7
    wide = _requests(16384)  # a row of 16,384 px is 200 MiB: no row ahead (memory first)
    assert look_ahead(wide, workers=40, bands=len(BANDS)) == 0
    assert look_ahead([], workers=16, bands=len(BANDS)) == 0


def test_fetching_ahead_reads_the_same_pixels_and_requests_each_window_once():
    grid = Grid("EPSG:32650", 200_000.0, 3_400_000.0, 300, 260, 10.0)
    yy, xx = np.mgrid[0:grid.height, 0:grid.width].astype(np.float32)
    truth = np.stack([yy * (b + 1) + xx for b in range(len(BANDS))])
    asked = []

    def fetch(window):
        asked.append((window.row_off, window.col_off, window.height, window.width))
        return truth[:, window.row_off:window.row_end, window.col_off:window.col_end].copy()

    for ahead in (0, None):
        asked.clear()
        src = FetchedSource(fetch, grid, BANDS, tile=64, overlap=16, workers=8,
                            ahead_rows=ahead, max_request_bytes=64 * 64 * 6 * 4)
        rows = fetch_layout(grid, 64, 16)
        got = [src.read(range(1, 7), _window(row[0].window.row_off, row[0].window.height,
                                             grid.width)) for row in rows]
        for row, data in zip(rows, got, strict=True):
            r0, h = row[0].window.row_off, row[0].window.height
            np.testing.assert_array_equal(data, truth[:, r0:r0 + h])
        assert len(asked) == len(set(asked)) == sum(len(r) for r in src.requests)
        assert src.ahead_rows == (0 if ahead == 0 else 1)  # 8 workers, 6 requests a row


def _window(row_off: int, height: int, width: int):
    from rasterio.windows import Window

    return Window(0, row_off, width, height)
