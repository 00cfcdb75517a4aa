"""Tiles fetched on demand: a map's input with no file at all.

The region's grid is cut into the predictor's own tiles (tile + overlap, the halo the blend
needs), and each tile is fetched by a callable (``computePixels`` through the Earth Engine
session) on a bounded thread pool, ahead of the predictor: the predictor reads one tile row
ahead of the one it predicts, so a row's requests run while the previous row is predicted, and
further rows are fetched ahead (``ahead_rows``; by default as many as keep ``workers`` requests
busy, within :data:`DEFAULT_AHEAD_BYTES`): grouped requests make few requests per row, and with
a fast model one row's requests alone leave most workers idle. A row is dropped once read, so
memory is bounded by a band of tile rows whatever the region's size.
:class:`FetchedSource` reads like a rasterio dataset
(:class:`inference.predict.sources.RasterSource`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.crs import CRS

from contract.grid import Grid, Window
from core.errors import ConfigError
from gee_export.ee.export import DEFAULT_WORKERS, MAX_WORKERS
from inference.predict.lattice import Blend, Lattice, grid_offset

log = logging.getLogger(__name__)

DEFAULT_REQUEST_BYTES = 32 * 2**20  # two thirds of computePixels' 48 MB per request
DEFAULT_INFLIGHT_BYTES = 128 * 2**20  # what the requests in flight may hold together
#: What rows fetched ahead of the predictor may hold together (the automatic look-ahead).
DEFAULT_AHEAD_BYTES = 128 * 2**20


def covers(c0: int, c1: int, windows: Sequence[Window]) -> bool:
    """Whether the windows' column spans leave no gap in ``[c0, c1)``."""
    reach = c0
    for start, end in sorted((w.col_off, w.col_end) for w in windows):
        if start > reach:
            break
        reach = max(reach, end)
    return reach >= c1


@dataclass(frozen=True)
class FetchTile:
    """One fetched tile: its place in the tile layout and its pixel window on the grid."""

    row: int
    col: int
    window: Window

    @property
    def name(self) -> str:
        return f"r{self.row}c{self.col}"


def fetch_layout(grid: Grid, tile: int, overlap: int,
                 blend: Blend = "cosine") -> list[list[FetchTile]]:
    """The predictor's tiles over ``grid``, row by row (the same lattice it predicts).

    Whole tiles of the grid-anchored lattice (:mod:`inference.predict.lattice`), hanging over
    the grid's edges: Earth Engine computes the pixels around the region too, so a tile at
    the region's edge sees what it sees in a map of a larger region.
    """
    ys, xs = Lattice(tile, overlap, blend).axes(grid.height, grid.width,
                                                grid_offset(grid.transform))
    return [[FetchTile(i, j, Window(row_off=y.start, col_off=x.start, height=tile, width=tile))
             for j, x in enumerate(xs)] for i, y in enumerate(ys)]


@dataclass(frozen=True)
class FetchRequest:
    """Consecutive tiles of one tile row fetched with one request (their union window)."""

    tiles: tuple[FetchTile, ...]
    window: Window


def group_requests(row: Sequence[FetchTile], bands: int, max_bytes: int,
                   max_tiles: int | None = None) -> list[FetchRequest]:
    """Consecutive tiles of a row in requests of at most ``max_bytes`` of float32 each.

    A computePixels request costs the client a serialisation of the whole recipe graph and the
    service a round trip, whatever its size; neighbours in a row share their overlap, so one
    request for a few of them fetches fewer bytes as well. A single tile is never split here
    (the request builder splits anything over the service limits). ``max_tiles`` caps the
    tiles per request as well (see :func:`ramp_tiles`).
    """
    out: list[FetchRequest] = []
    group: list[FetchTile] = []
    for tile in row:
        trial = [*group, tile]
        w = trial[-1].window.col_end - trial[0].window.col_off
        if group and (w * tile.window.height * bands * 4 > max_bytes
                      or (max_tiles is not None and len(trial) > max_tiles)):
            out.append(_request(group))
            trial = [tile]
        group = trial
    if group:
        out.append(_request(group))
    return out


def ramp_tiles(row: int, ramp_rows: int = 3) -> int | None:
    """Most tiles per request in tile row ``row``: 1, 2, 4 ... over the first rows, then no cap.

    The first rows are on the critical path: the predictor has nothing to do until row 0
    arrives, and the service's time grows with the pixels a request asks for (with a fast
    model, a region of a few rows waited as long for its first grouped request as the model
    took for the whole region). Small requests first let the model start after one tile's
    latency; the later rows, fetched while it works, are grouped fully.
    """
    return 2**row if row < ramp_rows else None


def layout_requests(layout: Sequence[Sequence[FetchTile]], bands: int, workers: int,
                    max_bytes: int = DEFAULT_REQUEST_BYTES) -> list[list[FetchRequest]]:
    """The requests that fetch ``layout``, row by row.

    What :class:`FetchedSource` sends and the dry-run plan counts: one owner of the rule.
    Neighbouring tiles share requests up to ``max_bytes``; the first rows' requests are
    smaller (:func:`ramp_tiles`, but never more of them in a row than ``workers``) when the
    region's rows are narrow enough to be fetched ahead (:func:`look_ahead`), i.e. when the
    start is a noticeable share of the run. A region too
    wide for that runs long enough that the start does not matter, and there the ramp's many
    small requests would cost a graph serialisation each and more requests in flight (more
    requests and a higher peak RSS, which ``benchmarks/bench_mapping.py`` reports).
    """
    grouped = [group_requests(row, bands, max_bytes) for row in layout]
    if look_ahead(grouped, workers, bands) == 0:
        return grouped

    def cap(k: int, row: Sequence[FetchTile]) -> int | None:
        # never more requests than workers in a ramp row: a second wave would wait a whole
        # round trip more, whatever the requests' size
        ramp = ramp_tiles(k)
        return None if ramp is None else max(ramp, -(-len(row) // workers))

    return [group_requests(row, bands, max_bytes, cap(k, row)) for k, row in enumerate(layout)]


def look_ahead(requests: Sequence[Sequence[FetchRequest]], workers: int, bands: int,
               max_bytes: int = DEFAULT_AHEAD_BYTES) -> int:
    """Tile rows to fetch ahead so that ``workers`` requests are busy, within ``max_bytes``.

    The predictor reads the next row while it predicts this one, so one row is ahead anyway;
    each further row adds its requests to those in flight and its pixels to memory.
    """
    if not requests:
        return 0
    per_row = max(1, min(len(row) for row in requests))
    row_bytes = max(sum(r.window.height * r.window.width for r in row) for row in requests)
    wanted = -(-workers // per_row) - 1
    affordable = max_bytes // max(row_bytes * bands * 4, 1)
    return int(max(0, min(wanted, affordable)))


def _request(tiles: Sequence[FetchTile]) -> FetchRequest:
    first, last = tiles[0].window, tiles[-1].window
    return FetchRequest(tuple(tiles), Window(row_off=first.row_off, col_off=first.col_off,
                                             height=first.height,
                                             width=last.col_end - first.col_off))


@dataclass
class FetchStats:
    """Counters of a :class:`FetchedSource` (read by progress reports and error messages)."""

    tiles: int = 0
    fetched: int = 0
    failed: tuple[str, ...] = ()


class FetchedSource:
    """Tiles of ``grid`` fetched on a bounded thread pool, ahead of a row-by-row reader.

    The requests in flight together ask for at most :data:`DEFAULT_INFLIGHT_BYTES`: with large
    requests fewer than ``workers`` run at once rather than the memory growing (the bytes in
    flight, not the request count, set the throughput when the service's time grows with the
    pixels asked for).

    Args:
        fetch: returns ``(len(bands), h, w)`` float32 for a window of ``grid`` (NaN = nodata).
        grid: the map's grid.
        bands: band names, in the order ``fetch`` returns them.
        tile / overlap: the predictor's tiling (the fetched tiles are its tiles).
        blend: the predictor's blend (the ``core`` blend needs fewer tiles at the edges).
        workers: concurrent fetches (1..40).
        ahead_rows: tile rows fetched ahead of the one being read (None: enough to keep
            ``workers`` requests in flight, holding at most :data:`DEFAULT_AHEAD_BYTES`).
        max_request_bytes: neighbouring tiles of a row share a request up to this size (2/3 of
            computePixels' 48 MB limit by default; a single tile is never split here), and
            the first rows' requests hold fewer tiles (:func:`ramp_tiles`).
        identity: names the input in the prediction's fingerprint (recipe, date, grid).
    """

    #: reads the pixels past the grid's edges (a tile's halo): Earth Engine computes them
    reads_beyond = True
    #: read a tile row whole (its requests are fetched, and freed, by the row)
    whole_rows = True

    def __init__(self, fetch: Callable[[Window], np.ndarray], grid: Grid,
                 bands: Sequence[str], *, tile: int, overlap: int, blend: Blend = "cosine",
                 workers: int = DEFAULT_WORKERS, ahead_rows: int | None = None,
                 identity: str = "",
                 max_request_bytes: int = DEFAULT_REQUEST_BYTES) -> None:
        if not 1 <= workers <= MAX_WORKERS:
            raise ConfigError(f"--workers must be between 1 and {MAX_WORKERS} (Earth Engine "
                              f"allows about {MAX_WORKERS} concurrent requests), got {workers}")
        self.grid, self.bands = grid, tuple(bands)
        self.width, self.height, self.count = grid.width, grid.height, len(self.bands)
        self.transform, self.crs = grid.transform, CRS.from_user_input(grid.crs)
        self.descriptions = self.bands
        self.nodatavals = (float("nan"),) * self.count
        self.identity = identity or f"fetched:{grid.to_dict()}"
        self.layout = fetch_layout(grid, tile, overlap, blend)
        self.requests = layout_requests(self.layout, self.count, workers, max_request_bytes)
        self.ahead_rows = (look_ahead(self.requests, workers, self.count)
                           if ahead_rows is None else max(0, ahead_rows))
        self.stats = FetchStats(tiles=sum(len(r) for r in self.layout))
        self._fetch = fetch
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="fetch")
        self._rows: dict[int, list[Future]] = {}
        self._freed: set[int] = set()
        self._lock = threading.Lock()
        self._budget = threading.Condition()
        self._budget_bytes, self._inflight = DEFAULT_INFLIGHT_BYTES, 0

    # ------------------------------------------------------------------ fetching
    def _one(self, request: FetchRequest) -> np.ndarray:
        nbytes = min(request.window.height * request.window.width * self.count * 4,
                     self._budget_bytes)
        with self._budget:  # bytes in flight stay within the budget, whatever --workers is
            while self._inflight + nbytes > self._budget_bytes:
                self._budget.wait()
            self._inflight += nbytes
        try:
            data = self._fetch(request.window)
        except BaseException:
            with self._lock:
                self.stats.failed = (*self.stats.failed, *(t.name for t in request.tiles))
            raise
        finally:
            with self._budget:
                self._inflight -= nbytes
                self._budget.notify_all()
        expected = (self.count, request.window.height, request.window.width)
        if data.shape != expected:
            raise ConfigError(f"tiles {request.tiles[0].name}.. arrived with shape "
                              f"{data.shape}, expected {expected}")
        with self._lock:
            self.stats.fetched += 1
        return data

    def _submit_rows(self, first: int, last: int) -> None:
        for k in range(max(first, 0), min(last, len(self.layout) - 1) + 1):
            if k not in self._rows:
                self._rows[k] = [self._pool.submit(self._one, r) for r in self.requests[k]]

    def _rows_for(self, r0: int, r1: int) -> list[int]:
        """Tile rows to read rows ``[r0, r1)`` from.

        The one row it is (the predictor's reads), or else every row it touches.
        """
        for k, row in enumerate(self.layout):
            if (row[0].window.row_off, row[0].window.row_end) == (r0, r1):
                return [k]
        return [k for k, row in enumerate(self.layout)
                if row[0].window.row_off < r1 and row[0].window.row_end > r0]

    def pending_tiles(self) -> list[str]:
        """Tiles not fetched yet, from the first unfinished row on (for error messages)."""
        out: list[str] = []
        for k in range(len(self.layout)):
            if k in self._freed:
                continue
            futures = self._rows.get(k)
            for j, request in enumerate(self.requests[k]):
                f = futures[j] if futures else None
                if f is None or not f.done() or f.cancelled() or f.exception() is not None:
                    out.extend(t.name for t in request.tiles)
        return out

    # ------------------------------------------------------------------ RasterSource
    def read_apart(self, indexes: Sequence[int], window: Any) -> np.ndarray:
        """Pixels of ``window`` (a rasterio Window) fetched on their own request.

        For a few windows read away from the predictor's rows (int8's check windows spread
        over the map): the rows fetched ahead are neither used nor freed.
        """
        data = self._fetch(Window(row_off=int(window.row_off), col_off=int(window.col_off),
                                  height=int(window.height), width=int(window.width)))
        return np.ascontiguousarray(data[[i - 1 for i in indexes]], dtype=np.float32)

    def read(self, indexes: Sequence[int], window: Any = None, out_dtype: str = "float32",
             out: np.ndarray | None = None) -> np.ndarray:
        """Pixels of ``window`` (a rasterio Window) for the 1-based band ``indexes``.

        ``out``: a float32 array of the window's shape to fill instead of a new one.
        """
        if window is None:
            r0, c0, h, w = 0, 0, self.height, self.width
        else:
            r0, c0 = int(window.row_off), int(window.col_off)
            h, w = int(window.height), int(window.width)
        r1, c1 = r0 + h, c0 + w
        rows = self._rows_for(r0, r1)
        exact = len(rows) == 1 and self.layout[rows[0]][0].window.row_off == r0 and \
            self.layout[rows[0]][0].window.row_end == r1
        with self._lock:
            # rows the reader moved past: above the window, or (reading tile row by tile row,
            # as the predictor does) every row before this one
            done = [k for k in self._rows if self.layout[k][0].window.row_end <= r0
                    or (exact and k < rows[0])]
            for k in done:
                for future in self._rows.pop(k):  # the reader moved past: free the row
                    future.cancel()
                self._freed.add(k)
            self._submit_rows(rows[0], rows[-1] + self.ahead_rows)
            wanted = {k: list(self._rows[k]) for k in rows}
            if exact:  # the predictor never reads a tile row twice: take the row over, so
                self._rows.pop(rows[0], None)  # each request is freed once copied
        pick = [i - 1 for i in indexes]
        if out is None or out.shape != (len(pick), h, w) or out.dtype != np.float32:
            out = np.empty((len(pick), h, w), dtype=np.float32)
        # Each pass over a row costs the model's cores memory bandwidth (a 16,384-wide row of
        # six bands is 250 MB): the NaN fill only where no request lands, the bands copied
        # straight from the answers (a list index would copy them once more first).
        if not (exact and covers(c0, c1, [r.window for r in self.requests[rows[0]]])):
            out.fill(np.nan)
        every = pick == list(range(self.count))
        for k in rows:
            futures = wanted.pop(k)
            for request in self.requests[k]:
                future = futures.pop(0)
                tw = request.window
                rr0, rr1 = max(r0, tw.row_off), min(r1, tw.row_end)
                cc0, cc1 = max(c0, tw.col_off), min(c1, tw.col_end)
                if rr1 <= rr0 or cc1 <= cc0:
                    continue
                data = future.result()
                into = (slice(rr0 - r0, rr1 - r0), slice(cc0 - c0, cc1 - c0))
                part = (slice(rr0 - tw.row_off, rr1 - tw.row_off),
                        slice(cc0 - tw.col_off, cc1 - tw.col_off))
                if every:
                    out[(slice(None), *into)] = data[(slice(None), *part)]
                else:
                    for j, band in enumerate(pick):
                        out[(j, *into)] = data[(band, *part)]
                del data, future
        if exact:
            with self._lock:
                self._freed.add(rows[0])
        return out.astype(out_dtype, copy=False)

    def close(self) -> None:
        """Stop fetching (queued tiles are cancelled, running ones finish)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._rows.clear()

    def __enter__(self) -> FetchedSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
