"""Cutting every patch of a month's stack files into a patch dataset (resumable, atomic).

:func:`patch_stack` serves the local backend, the synthetic demo and any stack GeoTIFFs on a
dataset grid. It reads one strip of patch rows at a time, so the stack can be any size: memory
grows with the stack's width, never with its height. Patches are written by
:class:`~contract.patch_writer.PatchWriter` and the month resumes and commits through
:func:`~contract.patch_writer.open_month`, exactly as the Earth Engine export does.
Format: docs/data-contract.md; behaviour: docs/patches.md.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from contract.dataset import DEFAULT_CLASSES, Backend, DatasetSpec
from contract.grid import Grid
from contract.patch_writer import MonthProgress, open_month, valid_mask
from contract.splits import DEFAULT_BLOCK, DEFAULT_RATIOS, empty_splits, split_counts
from contract.stack import StackPaths, check_stack, fingerprint
from core.errors import ConfigError, GridError, InputDataError
from core.lock import hold_output
from core.progress import progress_bar
from core.storage import Store, open_store


@dataclass(frozen=True)
class PatchSummary:
    """What one :func:`patch_stack` call did (``invalid`` counts the whole month)."""

    root: str
    month: str
    positions: int
    candidates: int
    written: int
    already_done: int
    invalid: int
    dropped_overlap: int
    per_split: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    up_to_date: bool = False
    written_positions: tuple[tuple[int, int], ...] = field(default=(), repr=False)
    """``(row, col)`` of every patch of the month (positions that hold data; not in to_dict)."""
    valid_positions: tuple[tuple[int, int], ...] = field(default=(), repr=False)
    """Where a split came out empty: every position with enough valid pixels, those dropped at
    split borders included (what another ``--split-block`` would write; not in to_dict)."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["written_positions"], out["valid_positions"]
        return out


def patch_stack(
    stack: StackPaths,
    out: str | os.PathLike[str] | Store,
    *,
    min_valid_fraction: float = 0.9,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    block: int = DEFAULT_BLOCK,
    workers: int = 4,
    backend: Backend = "local",
    region: str | None = None,
    recipe: Mapping[str, Any] | None = None,
    sources: Mapping[str, Any] | None = None,
    classes: Mapping[str, str] = DEFAULT_CLASSES,
    label_scheme: str = "isa",
    compress: str = "deflate",
    flush_seconds: float = 30.0,
    progress: bool = True,
) -> PatchSummary:
    """Cut every patch of one month's stack into a patch dataset (resumable, atomic).

    Args:
        stack: the rasters to cut (see :class:`StackPaths`).
        out: dataset root: a local directory, a gs:// URL or a :class:`Store`.
        min_valid_fraction: patches with a smaller share of valid pixels (all bands finite,
            label not nodata) are not written.
        ratios: train/val/test shares of the spatially blocked split (:func:`assign_splits`).
        seed: seed of the split.
        block: split block side in patch positions.
        workers: threads encoding and writing patches (GDAL compression releases the GIL).
        backend: 'ee', 'local' or 'synthetic', recorded in the manifest.
        region: region name recorded in the manifest.
        recipe: every composite parameter shared by all months, recorded in the manifest and
            checked against it (a dataset is never mixed from two recipes).
        sources: extra month-specific facts for the manifest's ``sources/<month>`` (the stack
            files and its content fingerprint are always recorded).
        classes: label value -> class name, recorded in the manifest (its ``impervious``
            class is the one counted in each record's ``isa_fraction``).
        label_scheme: the manifest's ``label.scheme`` (``isa`` or ``landcover``).
        compress: GeoTIFF compression of patch files.
        flush_seconds: the index is rewritten at most this often while running, and at the end.
        progress: show a tqdm bar.

    Returns:
        A :class:`PatchSummary`; when the month is already complete nothing is read or written.

    Raises:
        InputDataError: no position held enough valid pixels (committed, not complete).
    """
    started = time.monotonic()
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    grid = stack.grid
    r1, r2, r3 = ratios
    spec = DatasetSpec(grid=grid, bands=stack.bands, ratios=(r1, r2, r3), seed=seed,
                       block=block, min_valid_fraction=min_valid_fraction,
                       fine_scale=stack.fine_scale, backend=backend, region=region,
                       recipe=dict(recipe or {}), classes=dict(classes),
                       label_scheme=label_scheme)
    store = open_store(out)
    if grid.patch_count == 0:
        raise GridError(f"the {grid.height}x{grid.width} grid is smaller than one "
                        f"{grid.patch_size}-pixel patch")
    check_stack(stack)
    month_sources = _month_sources(stack, sources)
    with hold_output(store):
        state = open_month(store, spec, stack.month, sources=month_sources,
                           image_fine_bands=_fine_bands(stack), compress=compress)
        already = len(state.records)
        if state.up_to_date:
            return _summary(store, state, 0, already, started, up_to_date=True,
                            valid=_valid_positions(stack, state, min_valid_fraction))
        written = _cut(stack, state, min_valid_fraction, workers, flush_seconds, progress)
        if not state.records:  # a month of nothing is no finished month
            _refuse_empty(state, stack.month, min_valid_fraction)
        state.commit(complete=True)
        return _summary(store, state, written, already, started,
                        valid=_valid_positions(stack, state, min_valid_fraction))


def _month_sources(stack: StackPaths, sources: Mapping[str, Any] | None) -> dict[str, Any]:
    """The manifest's ``sources/<month>``: the caller's facts, the stack files and fingerprint.

    The stack files are named by file name only: a manifest names no folder of the machine
    that made it.
    """
    return {**dict(sources or {}),
            **{role: Path(path).name for role, path in stack.files().items()},
            "fingerprint": fingerprint(stack)}


def _refuse_empty(state: MonthProgress, month: str, min_valid_fraction: float) -> None:
    """Commit a month that wrote no patch as not complete, and say why (InputDataError)."""
    state.commit(complete=False)
    raise InputDataError(
        f"no patch position of {month} has {min_valid_fraction:.0%} valid pixels (every band "
        f"finite, the label not nodata): all {len(state.invalid)} were left out, so nothing "
        "was written and the month is not tagged complete; check that the scenes and the "
        f"label cover the area, lower --min-valid-fraction, or leave {month} out of --months")


def _cut(stack: StackPaths, state: MonthProgress, min_valid_fraction: float, workers: int,
         flush_seconds: float, progress: bool) -> int:
    """Write the month's patches still to do, one strip of patch rows at a time; how many."""
    grid = stack.grid
    todo_rows: dict[int, list[int]] = {}
    for (r, c) in state.todo():
        todo_rows.setdefault(r, []).append(c)
    written = 0
    last_flush = time.monotonic()
    bar = progress_bar(total=len(state.splits),
                       initial=len(state.splits) - sum(map(len, todo_rows.values())),
                       desc=f"patches {stack.month}", unit="patch", disable=not progress)
    with rasterio.Env(GDAL_CACHEMAX=_block_cache_bytes(stack)), \
            rasterio.open(stack.image) as img, rasterio.open(stack.label) as lab, \
            ThreadPoolExecutor(max_workers=workers) as pool:
        fine = _FineReader(stack)
        try:
            for prow in sorted(todo_rows):
                strip = rasterio.windows.Window(0, prow * grid.stride, grid.width,
                                                grid.patch_size)
                futures = _submit_row(state, grid, prow, sorted(todo_rows[prow]),
                                      img.read(window=strip, out_dtype="float32"),
                                      lab.read(1, window=strip), fine, pool,
                                      min_valid_fraction, bar)
                for future in futures:
                    state.add(future.result())
                    written += 1
                    bar.update(1)
                if time.monotonic() - last_flush > flush_seconds:
                    state.commit(complete=False)
                    last_flush = time.monotonic()
        finally:
            fine.close()
            bar.close()
    return written


def _submit_row(state: MonthProgress, grid: Grid, prow: int, cols: list[int],
                image_strip: np.ndarray, label_strip: np.ndarray, fine: _FineReader,
                pool: ThreadPoolExecutor, min_valid_fraction: float, bar: Any
                ) -> list[Future[dict[str, Any]]]:
    """Queue the valid patches of one patch row for writing; mark the others invalid."""
    futures: list[Future[dict[str, Any]]] = []
    for pcol in cols:
        window = slice(pcol * grid.stride, pcol * grid.stride + grid.patch_size)
        image = np.ascontiguousarray(image_strip[:, :, window])
        label = np.ascontiguousarray(label_strip[:, window])
        if valid_mask(image, label, state.spec.bands).mean() < min_valid_fraction:
            state.mark_invalid(prow, pcol)
            bar.update(1)
            continue
        futures.append(pool.submit(state.writer.write, prow, pcol, image, label,
                                   *fine.read(prow, pcol)))
    return futures


def _summary(store: Store, state: MonthProgress, written: int, already: int, started: float,
             up_to_date: bool = False, valid: tuple[tuple[int, int], ...] = ()) -> PatchSummary:
    return PatchSummary(store.url(), state.month, state.spec.grid.patch_count, len(state.splits),
                        written, already, len(state.invalid), state.dropped,
                        split_counts(r["split"] for r in state.records.values()),
                        time.monotonic() - started, up_to_date=up_to_date,
                        written_positions=_written(state), valid_positions=valid)


def _written(state: MonthProgress) -> tuple[tuple[int, int], ...]:
    return tuple(sorted((int(r["row"]), int(r["col"])) for r in state.records.values()))


def _valid_positions(stack: StackPaths, state: MonthProgress,
                     min_valid_fraction: float) -> tuple[tuple[int, int], ...]:
    """Where a split came out empty, the positions a run with another split block would write.

    Those are the written patches and the positions dropped at split borders (never read)
    that hold ``min_valid_fraction`` valid pixels, read here, one patch window each; the
    split advice counts its block side's splits over them. None of it when no split is empty.
    """
    counts = split_counts(r["split"] for r in state.records.values())
    if not empty_splits(counts, state.spec.ratios):
        return ()
    grid = stack.grid
    valid = set(_written(state))
    with rasterio.open(stack.image) as img, rasterio.open(stack.label) as lab:
        for r, c in grid.iter_patches():
            if (r, c) in state.splits:  # written, or found invalid: its split decided
                continue
            window = grid.patch_window(r, c).to_rasterio()
            mask = valid_mask(img.read(window=window, out_dtype="float32"),
                              lab.read(1, window=window), stack.bands)
            if mask.mean() >= min_valid_fraction:
                valid.add((r, c))
    return tuple(sorted(valid))


def _block_cache_bytes(stack: StackPaths) -> int:
    """GDAL block cache for patching: about three rows of the stack's blocks.

    GDAL's default cache is 5 % of RAM, and windowed reads fill it with blocks that strip-wise
    patching never reads again; on a 10,000 x 10,000 x 7 stack that alone was 1.2 GB of RSS.
    Three block rows keep the rows shared by consecutive strips (stride < patch size) cached.
    """
    with rasterio.open(stack.image) as src:
        block_rows = max(src.block_shapes[0][0], stack.grid.patch_size)
        row_bytes = src.count * block_rows * src.width * np.dtype(src.dtypes[0]).itemsize
    return int(min(max(3 * row_bytes, 64 * 2**20), 1024 * 2**20))


def _fine_bands(stack: StackPaths) -> tuple[str, ...] | None:
    if not stack.image_fine:
        return None
    with rasterio.open(stack.image_fine) as src:
        return tuple(d or f"band{i}" for i, d in enumerate(src.descriptions, 1))


class _FineReader:
    """Per-patch windowed reads of the optional fine label/image (they are k² times larger)."""

    def __init__(self, stack: StackPaths):
        self.grid = stack.grid.scaled(stack.fine_scale) if stack.fine_scale else None
        self.label = rasterio.open(stack.label_fine) if stack.label_fine else None
        self.image = rasterio.open(stack.image_fine) if stack.image_fine else None

    def read(self, row: int, col: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        if self.grid is None:
            return None, None
        window = self.grid.patch_window(row, col).to_rasterio()
        label = self.label.read(1, window=window) if self.label else None
        image = self.image.read(window=window, out_dtype="float32") if self.image else None
        return label, image

    def close(self) -> None:
        for src in (self.label, self.image):
            if src is not None:
                src.close()
