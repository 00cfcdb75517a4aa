"""Export orchestration, ``tasks`` method: batch-export grid-aligned tiles to GCS, then patch them.

For regions too large for interactive requests. The patch layout is cut into tiles of
``patches_per_tile`` x ``patches_per_tile`` patch positions; a tile's pixel window spans exactly
its patches (``(n - 1) * stride + patch_size`` pixels a side), so each patch lies inside one tile
and no patch is stitched. Each tile is one ``Export.image.toCloudStorage`` task on the grid's
``crs`` and a ``crsTransform`` translated to the tile's corner (the same pixel lattice), written
as one GeoTIFF (``fileDimensions`` rounded up to a multiple of the 256-pixel shard).

Tasks are started, followed and paid for by the shared task loop
(:func:`gee_export.ee.task_loop.run_tasks`: at most ``max_pending`` pending, one status call
per poll, task ids and the EECU each finished task reported kept in the dataset's state, the
budget counting what was reported), and each completed tile is downloaded and cut into patches.
A re-run picks running tasks up instead of starting them again, reuses tiles already in the
bucket, and skips tiles whose patches are all written. Task descriptions go through
:func:`gee_export.ee.names.task_description`, the characters the export service accepts.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio

from contract.grid import Grid, Window
from contract.patch_writer import MonthProgress
from core.errors import ConfigError
from core.lock import hold_output
from core.progress import progress_bar
from core.storage import GcsStore, Store, open_store
from gee_export.ee.budget import ComputeBudget
from gee_export.ee.embedding import decode_bands, one_type
from gee_export.ee.export_job import (
    ExportJob,
    ExportSummary,
    open_job,
    split_figures,
    write_fetched,
)
from gee_export.ee.names import task_description
from gee_export.ee.pixels import FLOAT_NODATA_BELOW, to_label
from gee_export.ee.session import EESession
from gee_export.ee.task_loop import BatchTask, TaskGroup, run_tasks

log = logging.getLogger(__name__)

SHARD = 256
MAX_PENDING_TASKS = 3000
DEFAULT_MAX_PENDING = 2500  # headroom under the per-project limit for the user's other tasks
DEFAULT_PATCHES_PER_TILE = 50  # 50 x 80 + 48 = 4,048 px = 40 km at 10 m: ~460 MB of float32
CONCURRENT_BATCH_TASKS = 2  # what Earth Engine runs of one project at once, on average
TASK_MINUTES = 10.0  # assumed wall time of one tile task once running (plans only)


@dataclass(frozen=True)
class Tile:
    """A block of patch positions and the pixel window that holds them."""

    row: int
    col: int
    rows: tuple[int, int]  # patch rows [start, end)
    cols: tuple[int, int]
    window: Window

    @property
    def name(self) -> str:
        return f"tile_r{self.row}_c{self.col}"

    def positions(self) -> list[tuple[int, int]]:
        return [(r, c) for r in range(*self.rows) for c in range(*self.cols)]


def plan_tiles(grid: Grid, patches_per_tile: int = DEFAULT_PATCHES_PER_TILE) -> list[Tile]:
    """Tiles covering every patch position exactly once (pure)."""
    if patches_per_tile < 1:
        raise ConfigError(f"patches per tile must be >= 1, got {patches_per_tile}")
    n = patches_per_tile
    tiles = []
    for ti, r0 in enumerate(range(0, grid.patch_rows, n)):
        r1 = min(r0 + n, grid.patch_rows)
        for tj, c0 in enumerate(range(0, grid.patch_cols, n)):
            c1 = min(c0 + n, grid.patch_cols)
            window = Window(row_off=r0 * grid.stride, col_off=c0 * grid.stride,
                            height=(r1 - r0 - 1) * grid.stride + grid.patch_size,
                            width=(c1 - c0 - 1) * grid.stride + grid.patch_size)
            tiles.append(Tile(ti, tj, (r0, r1), (c0, c1), window))
    return tiles


def tasks_hours(tasks: int) -> float:
    """Wall time of ``tasks`` batch tasks: waves of :data:`CONCURRENT_BATCH_TASKS`."""
    return math.ceil(tasks / CONCURRENT_BATCH_TASKS) * TASK_MINUTES / 60.0


def file_dimensions(window: Window) -> int:
    """Smallest multiple of the 256-pixel shard holding the whole tile in one file."""
    return SHARD * math.ceil(max(window.width, window.height) / SHARD)


def tile_task(image: Any, grid: Grid, window: Window, bucket: str, prefix: str,
              description: str):
    """The ``Export.image.toCloudStorage`` task of one tile (not started).

    Every band float32 (:func:`gee_export.ee.embedding.one_type`): Earth Engine refuses a
    GeoTIFF of bands of incompatible types (the embedding's 8-bit integers beside floats).
    """
    import ee

    west, _, _, north = grid.window_bounds(window)
    transform = [grid.resolution, 0.0, west, 0.0, -grid.resolution, north]
    return ee.batch.Export.image.toCloudStorage(
        image=one_type(image), description=task_description(description), bucket=bucket,
        fileNamePrefix=prefix,
        dimensions=f"{window.width}x{window.height}", crs=grid.crs, crsTransform=transform,
        fileDimensions=file_dimensions(window), skipEmptyTiles=True, fileFormat="GeoTIFF",
        formatOptions={"cloudOptimized": True}, maxPixels=10**13)


def _tile_rel(month: str, tile: Tile, suffix: str = "") -> str:
    return f"tiles/{month}/{tile.name}{suffix}"


@contextmanager
def _tile_reader(store: Store, rel: str, bands: tuple[str, ...]
                 ) -> Iterator[Callable[[Window], np.ndarray]]:
    """Download a tile GeoTIFF once and yield ``read(window) -> (bands, h, w)`` float32.

    Patches are read by window, so memory holds one patch, not the whole tile (a default tile
    of 50 x 50 patch positions is about 460 MB of float32). ``bands`` are the tile's: the
    Satellite Embedding's hold its published integers, read as its values (NaN masked).
    """
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "tile.tif")
        store.download_file(rel, local)
        with rasterio.open(local) as src:
            def read(window: Window) -> np.ndarray:
                data = src.read(window=window.to_rasterio(), out_dtype="float32")
                data[data <= FLOAT_NODATA_BELOW] = np.nan
                return decode_bands(data, bands)

            yield read


def export_tasks(session: EESession, image: Any, job: ExportJob, out: str | Store, *,
                 fine_label: Any = None, patches_per_tile: int = DEFAULT_PATCHES_PER_TILE,
                 max_pending: int = DEFAULT_MAX_PENDING, poll_seconds: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep,
                 progress: bool = True, budget: ComputeBudget | None = None) -> ExportSummary:
    """Export one month through batch tasks (see module docstring); resumable.

    ``out`` must be a gs:// dataset root: Earth Engine writes the tiles into that bucket under
    ``tiles/<month>/``, and the patches go beside them as usual. ``budget``
    (``--max-eecu-hours``): no task is started whose price would take the spending past
    it, counting the ``batchEecuUsageSeconds`` reported for finished tasks (of every run, from
    the state) and, for tasks still running, the price those reports give (the plan's
    estimate before any); the tasks started are finished and cut, then
    :class:`~core.errors.ComputeBudgetError` says how to go on.
    """
    store = open_store(out)
    with hold_output(store):
        return _export_tasks(session, image, job, store, fine_label, patches_per_tile,
                             max_pending, poll_seconds, sleep, progress, budget)


def _export_tasks(session: EESession, image: Any, job: ExportJob, store: Store,
                  fine_label: Any, patches_per_tile: int, max_pending: int, poll_seconds: float,
                  sleep: Callable[[float], None], progress: bool,
                  budget: ComputeBudget | None) -> ExportSummary:
    started = time.monotonic()
    if not isinstance(store, GcsStore):
        raise ConfigError("--method tasks exports tiles to Cloud Storage: give --out "
                          "gs://BUCKET/PREFIX (or use --method pixels for a local folder)")
    if not 1 <= max_pending <= MAX_PENDING_TASKS:
        raise ConfigError(f"max pending tasks must be 1..{MAX_PENDING_TASKS}, got {max_pending}")
    job.check_fine_label(fine_label)
    book = open_job(store, job)
    already = len(book.records)
    remaining = set(book.todo())
    tiles = [t for t in plan_tiles(job.spec.grid, patches_per_tile)
             if any(p in remaining for p in t.positions())]
    bar = progress_bar(total=len(book.splits), initial=len(book.splits) - len(remaining),
                       desc=f"patches {job.month} (tiles)", unit="patch", disable=not progress)
    cutter = _TileCutter(store, job, book, remaining, bar)
    groups = [_tile_group(store, job, tile, image, fine_label) for tile in tiles]
    by_name = dict(zip((g.name for g in groups), tiles, strict=True))
    try:
        outcome = run_tasks(
            session, groups, book, on_ready=lambda g: cutter.cut(by_name[g.name]),
            failed=lambda g, state, msg: (
                f"export task of {g.name} ({job.month}) ended {state}: {msg}. Fix the cause "
                "and re-run: finished tiles and patches are kept."),
            max_pending=max_pending, poll_seconds=poll_seconds, sleep=sleep, budget=budget,
            on_wait=lambda n: bar.set_postfix_str(f"{n} tasks running"))
    finally:
        bar.close()
        book.commit(complete=not book.todo())
    if outcome.left and budget is not None:
        raise budget.stopped(f"{job.month} has {outcome.left:,} of {len(tiles):,} tiles left")
    return ExportSummary(store.url(), job.month, "tasks", len(book.splits), cutter.written,
                         already, len(book.invalid), outcome.started, session.retries,
                         time.monotonic() - started, **split_figures(job, book))


def _tile_group(store: Store, job: ExportJob, tile: Tile, image: Any,
                fine_label: Any) -> TaskGroup:
    """The tile's tasks: its stack, and its fine label when the dataset has one."""
    items = [("", image, job.spec.grid, tile.window)]
    if job.spec.fine_scale:
        k = job.spec.fine_scale
        fw = Window(row_off=tile.window.row_off * k, col_off=tile.window.col_off * k,
                    height=tile.window.height * k, width=tile.window.width * k)
        items.append((f"_label_x{k}", fine_label, job.spec.grid.scaled(k), fw))

    def task(suffix: str, img: Any, grid: Grid, window: Window) -> BatchTask:
        rel = _tile_rel(job.month, tile, suffix)
        key = tile.name + suffix

        def make() -> Any:
            return tile_task(img, grid, window, store.bucket_name,  # type: ignore[attr-defined]
                             store.key(rel),  # type: ignore[attr-defined]
                             f"isamap_{job.spec.region}_{job.month}_{key}")

        return BatchTask(key, window.width * window.height, make,
                         lambda: store.exists(rel + ".tif"))

    return TaskGroup(tile.name, tuple(task(*item) for item in items))


@dataclass
class _TileCutter:
    """Cuts a finished tile into the month's patches (the tile read once, window by window)."""

    store: Store
    job: ExportJob
    book: MonthProgress
    remaining: set[tuple[int, int]]
    bar: Any
    written: int = 0

    def cut(self, tile: Tile) -> None:
        job, book = self.job, self.book
        if not self.store.exists(_tile_rel(job.month, tile, ".tif")):
            # skipEmptyTiles: a tile without any valid pixel produces no file
            for r, c in tile.positions():
                if (r, c) in self.remaining:
                    book.mark_invalid(r, c)
                    self.remaining.discard((r, c))
                    self.bar.update(1)
            book.commit(complete=False)
            return
        k = job.spec.fine_scale or 1
        fine_rel = (_tile_rel(job.month, tile, f"_label_x{k}.tif") if job.spec.fine_scale
                    else None)
        with ExitStack() as stack:
            read = stack.enter_context(_tile_reader(
                self.store, _tile_rel(job.month, tile, ".tif"), (*job.spec.bands, "label")))
            read_fine = (stack.enter_context(_tile_reader(self.store, fine_rel, ("label",)))
                         if fine_rel else None)
            for r, c in tile.positions():
                if (r, c) in self.remaining:
                    self._patch(tile, r, c, k, read, read_fine)
        book.commit(complete=False)

    def _patch(self, tile: Tile, r: int, c: int, k: int, read: Callable[[Window], np.ndarray],
               read_fine: Callable[[Window], np.ndarray] | None) -> None:
        w = self.job.spec.grid.patch_window(r, c)
        local = Window(row_off=w.row_off - tile.window.row_off,
                       col_off=w.col_off - tile.window.col_off, height=w.height, width=w.width)
        patch = read(local)
        label_fine = None
        if read_fine is not None:
            fw = Window(row_off=local.row_off * k, col_off=local.col_off * k,
                        height=w.height * k, width=w.width * k)
            label_fine = to_label(read_fine(fw)[0])
        rec = write_fetched(self.book.writer, self.job, r, c, np.ascontiguousarray(patch[:-1]),
                            to_label(patch[-1]), label_fine)
        if rec is None:
            self.book.mark_invalid(r, c)
        else:
            self.book.add(rec)
            self.written += 1
        self.remaining.discard((r, c))
        self.bar.update(1)
