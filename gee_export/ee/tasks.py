"""Export orchestration, ``tasks`` method: batch-export grid-aligned tiles to GCS, then patch them.

For regions too large for interactive requests. The patch layout is cut into tiles of
``patches_per_tile`` x ``patches_per_tile`` patch positions; a tile's pixel window spans exactly
its patches (``(n - 1) * stride + patch_size`` pixels a side), so each patch lies inside one tile
and no patch is stitched. Each tile is one ``Export.image.toCloudStorage`` task on the grid's
``crs`` and a ``crsTransform`` translated to the tile's corner (the same pixel lattice), written
as one GeoTIFF (``fileDimensions`` rounded up to a multiple of the 256-pixel shard).

Tasks are started while fewer than ``max_pending`` are pending (Earth Engine refuses more than
3,000 per project), polled, and each completed tile is downloaded and cut into patches. Task ids
are saved in the dataset's state, so a re-run picks running tasks up instead of starting them
again, reuses tiles already in the bucket, and skips tiles whose patches are all written.

Polling asks the session for all tracked tasks at once, and the session reads many tasks by
listing the project's operations in pages (``EETransport.task_status``): 2,500 pending tasks
cost a few page requests per poll, not 2,500. A resumed run reads its saved task ids the same
way, once. The EECU each finished task used (``batchEecuUsageSeconds``, as the operation
reports it) is kept in the state as ``eecu``, to check the plan's estimate against. Task
descriptions go through :func:`gee_export.ee.session.task_description`,
the characters the export service accepts.
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
from core.errors import ConfigError, EarthEngineError
from core.lock import hold_output
from core.progress import progress_bar
from core.storage import GcsStore, Store, open_store
from gee_export.ee.compute import ComputeBudget
from gee_export.ee.export import Bookkeeper, ExportJob, ExportSummary
from gee_export.ee.pixels import FLOAT_NODATA_BELOW, to_label
from gee_export.ee.session import EESession, task_description

log = logging.getLogger(__name__)

SHARD = 256
MAX_PENDING_TASKS = 3000
DEFAULT_MAX_PENDING = 2500  # headroom under the per-project limit for the user's other tasks
DEFAULT_PATCHES_PER_TILE = 50  # 50 x 80 + 48 = 4,048 px = 40 km at 10 m: ~460 MB of float32
CONCURRENT_BATCH_TASKS = 2  # what Earth Engine runs of one project at once, on average
TASK_MINUTES = 10.0  # assumed wall time of one tile task once running (plans only)
FINISHED = ("COMPLETED", "SUCCEEDED")
FAILED = ("FAILED", "CANCELLED", "CANCEL_REQUESTED")
LIVE = ("UNSUBMITTED", "READY", "PENDING", "RUNNING")


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
    """The ``Export.image.toCloudStorage`` task of one tile (not started)."""
    import ee

    west, _, _, north = grid.window_bounds(window)
    transform = [grid.resolution, 0.0, west, 0.0, -grid.resolution, north]
    return ee.batch.Export.image.toCloudStorage(
        image=image, description=task_description(description), bucket=bucket,
        fileNamePrefix=prefix,
        dimensions=f"{window.width}x{window.height}", crs=grid.crs, crsTransform=transform,
        fileDimensions=file_dimensions(window), skipEmptyTiles=True, fileFormat="GeoTIFF",
        formatOptions={"cloudOptimized": True}, maxPixels=10**13)


def _tile_rel(month: str, tile: Tile, suffix: str = "") -> str:
    return f"tiles/{month}/{tile.name}{suffix}"


@contextmanager
def _tile_reader(store: Store, rel: str) -> Iterator[Callable[[Window], np.ndarray]]:
    """Download a tile GeoTIFF once and yield ``read(window) -> (bands, h, w)`` float32.

    Patches are read by window, so memory holds one patch, not the whole tile (a default tile
    of 50 x 50 patch positions is about 460 MB of float32).
    """
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "tile.tif")
        store.download_file(rel, local)
        with rasterio.open(local) as src:
            def read(window: Window) -> np.ndarray:
                data = src.read(window=window.to_rasterio(), out_dtype="float32")
                data[data <= FLOAT_NODATA_BELOW] = np.nan
                return data

            yield read


def export_tasks(session: EESession, image: Any, job: ExportJob, out: str | Store, *,
                 fine_label: Any = None, patches_per_tile: int = DEFAULT_PATCHES_PER_TILE,
                 max_pending: int = DEFAULT_MAX_PENDING, poll_seconds: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep,
                 progress: bool = True, budget: ComputeBudget | None = None) -> ExportSummary:
    """Export one month through batch tasks (see module docstring); resumable.

    ``out`` must be a gs:// dataset root: Earth Engine writes the tiles into that bucket under
    ``tiles/<month>/``, and the patches go beside them as usual. ``budget``
    (``--max-eecu-hours``): no task is started whose estimate would take the spending past
    it, counting the ``batchEecuUsageSeconds`` reported for finished tasks (of every run, from
    the state) and the estimate for tasks still running; the tasks started are finished and
    cut, then :class:`~core.errors.ComputeBudgetError` says how to go on.
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
    book = Bookkeeper(store, job)
    already = len(book.done)
    remaining = set(book.todo())
    tiles = [t for t in plan_tiles(job.spec.grid, patches_per_tile)
             if any(p in remaining for p in t.positions())]
    task_ids: dict[str, str] = dict(book.read_state("tasks") or {})
    eecu: dict[str, float] = dict(book.read_state("eecu") or {})  # reported per finished task
    # tasks a previous run started: one batched read, not one request per tile
    earlier = _statuses(session, sorted(set(task_ids.values()))) if task_ids else {}
    bar = progress_bar(total=len(book.splits), initial=len(book.splits) - len(remaining),
               desc=f"patches {job.month} (tiles)", unit="patch", disable=not progress)
    written = 0

    def exports_of(tile: Tile) -> list[tuple[str, Any, Grid, Window]]:
        items = [("", image, job.spec.grid, tile.window)]
        if job.spec.fine_scale:
            k = job.spec.fine_scale
            fw = Window(row_off=tile.window.row_off * k, col_off=tile.window.col_off * k,
                        height=tile.window.height * k, width=tile.window.width * k)
            items.append((f"_label_x{k}", fine_label, job.spec.grid.scaled(k), fw))
        return items

    def start(tile: Tile) -> None:
        for suffix, img, grid, window in exports_of(tile):
            key = tile.name + suffix
            if store.exists(_tile_rel(job.month, tile, suffix + ".tif")):
                continue
            # started by an earlier run: pick it up if still alive
            if key in task_ids and earlier.get(task_ids[key], {}).get("state") in LIVE:
                continue
            prefix = store.key(_tile_rel(job.month, tile, suffix))  # type: ignore[attr-defined]
            task = tile_task(img, grid, window, store.bucket_name,  # type: ignore[attr-defined]
                             prefix, f"isamap_{job.spec.region}_{job.month}_{key}")
            task_ids[key] = session.start_task(task)
        book.write_state("tasks", task_ids)

    def cut(tile: Tile) -> int:
        if not store.exists(_tile_rel(job.month, tile, ".tif")):
            # skipEmptyTiles: a tile without any valid pixel produces no file
            for r, c in tile.positions():
                if (r, c) in remaining:
                    book.mark_invalid(r, c)
                    remaining.discard((r, c))
                    bar.update(1)
            book.flush(complete=False)
            return 0
        k = job.spec.fine_scale or 1
        fine_rel = (_tile_rel(job.month, tile, f"_label_x{k}.tif") if job.spec.fine_scale
                    else None)
        n = 0
        with ExitStack() as stack:
            read = stack.enter_context(_tile_reader(store, _tile_rel(job.month, tile, ".tif")))
            read_fine = stack.enter_context(_tile_reader(store, fine_rel)) if fine_rel else None
            for r, c in tile.positions():
                if (r, c) not in remaining:
                    continue
                w = job.spec.grid.patch_window(r, c)
                local = Window(row_off=w.row_off - tile.window.row_off,
                               col_off=w.col_off - tile.window.col_off,
                               height=w.height, width=w.width)
                patch = read(local)
                label_fine = None
                if read_fine is not None:
                    fw = Window(row_off=local.row_off * k, col_off=local.col_off * k,
                                height=w.height * k, width=w.width * k)
                    label_fine = to_label(read_fine(fw)[0])
                rec = book.accept(r, c, np.ascontiguousarray(patch[:-1]), to_label(patch[-1]),
                                  label_fine)
                if rec is None:
                    book.mark_invalid(r, c)
                else:
                    book.add(rec)
                    n += 1
                remaining.discard((r, c))
                bar.update(1)
        book.flush(complete=False)
        return n

    queue = list(tiles)
    active: list[Tile] = []
    stopped = False
    before = budget.spent_s if budget is not None else 0.0  # the months exported before

    def affordable(tile: Tile) -> bool:
        if budget is None:
            return True
        unmeasured = sum(1 for key in task_ids if key not in eecu)
        budget.recount(before + sum(eecu.values()), unmeasured)
        return budget.allows(len(exports_of(tile)))

    try:
        while (queue and not stopped) or active:
            while queue and not stopped and _pending(task_ids, active, exports_of) < max_pending:
                if not affordable(queue[0]):
                    stopped = True
                    break
                tile = queue.pop(0)
                start(tile)
                active.append(tile)
            ready = []
            statuses = _statuses(session, [task_ids[t.name + s] for t in active
                                           for s, *_ in exports_of(t)
                                           if t.name + s in task_ids])
            for tile in active:
                states = []
                for suffix, *_ in exports_of(tile):
                    reported = statuses.get(task_ids.get(tile.name + suffix, ""), {})
                    if reported.get("state") in FINISHED and "eecu_seconds" in reported:
                        eecu[tile.name + suffix] = reported["eecu_seconds"]  # file or not yet
                    if store.exists(_tile_rel(job.month, tile, suffix + ".tif")):
                        states.append("COMPLETED")
                        continue
                    if tile.name + suffix not in task_ids:
                        states.append("UNKNOWN")
                        continue
                    status = statuses.get(task_ids.get(tile.name + suffix, ""), {})
                    state = status.get("state", "UNKNOWN")
                    if state in FAILED:
                        raise EarthEngineError(
                            f"export task of {tile.name} ({job.month}) ended {state}: "
                            f"{status.get('error_message', 'no message')}. Fix the cause and "
                            "re-run: finished tiles and patches are kept.")
                    states.append(state)
                if all(s in FINISHED for s in states):
                    ready.append(tile)
            for tile in ready:
                active.remove(tile)
                written += cut(tile)
            if active and not ready:
                bar.set_postfix_str(f"{len(active)} tasks running")
                sleep(poll_seconds)
    finally:
        bar.close()
        book.write_state("tasks", task_ids)
        book.write_state("eecu", eecu)
        if eecu:
            log.info("%s: Earth Engine reports %.2f EECU-hours for %d finished tasks",
                     job.month, sum(eecu.values()) / 3600.0, len(eecu))
        book.flush(complete=not queue and not active)
    if stopped and budget is not None:
        raise budget.stopped(f"{job.month} has {len(queue):,} of {len(tiles):,} tiles left")
    return ExportSummary(store.url(), job.month, "tasks", len(book.splits), written, already,
                         len(book.invalid), len(task_ids), session.retries,
                         time.monotonic() - started, book.per_split())


def _pending(task_ids: dict[str, str], active: list[Tile], exports_of) -> int:
    return sum(1 for t in active for s, *_ in exports_of(t) if t.name + s in task_ids)


def _statuses(session: EESession, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Statuses by task id, read in one session call (paged by the transport)."""
    return {task_id: status for task_id, status in zip(ids, session.task_status(ids),
                                                       strict=True)}

