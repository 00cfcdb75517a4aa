"""Export orchestration, ``pixels`` method: one computePixels request per patch, to the store.

For each patch position of the month that belongs to a split and is not finished yet, a worker of a
bounded thread pool asks Earth Engine (through the session, which retries 429/5xx with backoff and
keeps as many requests in flight as the project's shared quota lets through, at most ``workers``:
:mod:`core.concurrency`) for the patch's window of the stack — every band and the label
in one request — and writes the patch files with :class:`PatchWriter`. Finished patches carry their
index record in their own tags, so a killed run loses nothing: a re-run lists the finished patches,
recovers their records and fetches only the rest. ``index.jsonl`` and ``manifest.json`` are
rewritten atomically every ``flush_seconds`` and at the end (also when the run fails), through the
contract's one manifest writer (``commit_month``), exactly as the local backend writes them. The
output root is locked for the run (:func:`core.lock.hold_output`).

The ``tasks`` method (batch export of tiles) lives in tasks.py and shares the bookkeeping here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from contract.bands import LABEL
from contract.dataset import DatasetSpec
from contract.grid import Grid, Window, patch_id
from contract.patch_writer import MonthProgress, PatchWriter, open_month, valid_mask
from contract.splits import Split, split_counts
from core.errors import ConfigError, EarthEngineError
from core.lock import hold_output
from core.months import check_month
from core.progress import progress_bar
from core.storage import Store, open_store
from gee_export.ee.compute import ComputeBudget, format_duration
from gee_export.ee.pixels import (
    Limits,
    SubRequest,
    assemble,
    build_request,
    decode,
    split_request,
    to_label,
)
from gee_export.ee.session import EESession

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 16
DEFAULT_LIMITS = Limits()
MAX_WORKERS = 40  # Earth Engine allows about 40 concurrent requests per project


@dataclass(frozen=True)
class ExportJob:
    """One month of a dataset to export: the dataset's parameters and the month's own facts.

    The dataset's parameters are its :class:`DatasetSpec` (grid, bands, split, recipe, classes:
    checked against the manifest before anything is fetched), never copied field by field, so
    the export records exactly what the local backend records. The month adds its own:

    Attributes:
        spec: the parameters shared by every month of the dataset.
        month: ``YYYY-MM``.
        sources: facts of this month only (the composite date windows, the export method),
            recorded under ``sources/<month>`` of the manifest.
    """

    spec: DatasetSpec
    month: str
    sources: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_month(self.month)

    def check_fine_label(self, fine_label: Any) -> None:
        """Refuse to start without the fine label image a dataset with ``fine_scale`` needs."""
        if self.spec.fine_scale and fine_label is None:
            raise ConfigError(f"the dataset has fine_scale {self.spec.fine_scale} but no "
                              "fine_label image was given")


@dataclass(frozen=True)
class ExportSummary:
    """What one export run did."""

    root: str
    month: str
    method: str
    candidates: int
    written: int
    already_done: int
    invalid: int
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    per_split: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_workers(workers: int) -> int:
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers must be between 1 and {MAX_WORKERS} (Earth Engine allows "
                          f"about {MAX_WORKERS} concurrent requests per project), got {workers}")
    return workers


class Bookkeeper:
    """Resume state of one month of an Earth Engine export (shared by both methods).

    Everything about the dataset itself (compatibility, finished patches, index and manifest)
    is the contract's :class:`~contract.patch_writer.MonthProgress`, the same one the
    local backend uses; this adds only what an export needs on top: the fetched arrays'
    validity test and the batch task ids (``state/<month>/tasks.json``).
    """

    def __init__(self, store: Store, job: ExportJob,
                 written_elsewhere: Iterable[Mapping[str, Any]] = ()) -> None:
        """Read the dataset's resume state.

        Args:
            store: the dataset root.
            job: what the month's export produces.
            written_elsewhere: records of patches other processes wrote since the index was
                last written (the Beam export's index shards), so their tags are not read back.
        """
        self.store = store
        self.job = job
        self.progress: MonthProgress = open_month(store, job.spec, job.month,
                                                  sources=job.sources,
                                                  also_known=written_elsewhere)
        self.writer = self.progress.writer

    @property
    def splits(self) -> dict[tuple[int, int], Split]:
        return self.progress.splits

    @property
    def done(self) -> set[str]:
        """Ids of the finished patches of the month."""
        return set(self.progress.records)

    @property
    def invalid(self) -> set[str]:
        return self.progress.invalid

    @property
    def existing(self) -> dict[str, Any]:
        return self.progress.existing

    def read_state(self, name: str) -> Any:
        return self.progress.read_state(name)

    def write_state(self, name: str, value: Any) -> None:
        self.progress.write_state(name, value)

    def todo(self) -> list[tuple[int, int]]:
        """Positions still to export, row-major."""
        return self.progress.todo()

    def add(self, record: dict) -> None:
        self.progress.add(record)

    def flush(self, complete: bool) -> None:
        """Rewrite resume state, index and manifest atomically (through ``commit_month``)."""
        self.progress.commit(complete)

    def per_split(self) -> dict[str, int]:
        return split_counts(r["split"] for r in self.progress.records.values())

    def accept(self, row: int, col: int, image: np.ndarray, label: np.ndarray,
               label_fine: np.ndarray | None) -> dict | None:
        """Write a fetched patch if valid enough; None when not (thread-safe: no state change).

        The caller records the outcome with :meth:`add` or :meth:`mark_invalid` from one thread.
        """
        return write_fetched(self.writer, self.job, row, col, image, label, label_fine)

    def mark_invalid(self, row: int, col: int) -> None:
        """Remember a patch below ``min_valid_fraction`` so a re-run does not fetch it again."""
        self.progress.mark_invalid(row, col)


def write_fetched(writer: PatchWriter, job: ExportJob, row: int, col: int, image: np.ndarray,
                  label: np.ndarray, label_fine: np.ndarray | None) -> dict | None:
    """Write a fetched patch with ``writer`` if valid enough; None when it is not.

    The one rule deciding which fetched patches enter the dataset, shared by the threads of
    :func:`export_pixels` and the workers of the Beam export.
    """
    if valid_mask(image, label).mean() < job.spec.min_valid_fraction:
        return None
    return writer.write(row, col, image, label, label_fine)


def fetch_patch(session: EESession, image: Any, fine_label: Any, job: ExportJob, row: int,
                col: int, limits: Limits = DEFAULT_LIMITS
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """Image ``(C, P, P)``, label ``(P, P)`` and optional fine label of one patch.

    Returns the arrays and the number of computePixels requests made.
    """
    spec = job.spec
    names = (*spec.bands, LABEL)
    stack, requests = fetch_window(session, image, spec.grid, spec.grid.patch_window(row, col),
                                   names, limits)
    fine = None
    if spec.fine_scale:
        fgrid = spec.grid.scaled(spec.fine_scale)
        fine_stack, n = fetch_window(session, fine_label, fgrid, fgrid.patch_window(row, col),
                                     (LABEL,), limits)
        fine = to_label(fine_stack[0])
        requests += n
    return stack[:-1], to_label(stack[-1]), fine, requests


TOO_BIG_MARKERS = ("user memory limit exceeded", "computation timed out")
"""Earth Engine's answers to a request too large to compute: half the window may pass."""

MIN_HALVED_PX = 256
"""A window this small a side is not halved further: its failure is reported."""


def fetch_window(session: EESession, image: Any, grid: Grid, window: Window,
                 bands: tuple[str, ...], limits: Limits = DEFAULT_LIMITS
                 ) -> tuple[np.ndarray, int]:
    """``(bands, height, width)`` float32 of any window of ``grid`` (nodata NaN), and requests.

    The window may reach beyond the grid (a tile's halo at the region's edge): Earth Engine
    returns those pixels masked, which arrive as NaN. Requests that would exceed the service
    limits are split and reassembled (see :mod:`gee_export.ee.pixels`); one the service
    cannot compute ("User memory limit exceeded", "Computation timed out") is asked again as
    two halves, down to :data:`MIN_HALVED_PX`, before the error is reported.
    """
    parts: list[tuple[SubRequest, np.ndarray]] = []
    requests = 0
    for sub in split_request(window, bands, limits):
        requests += _fetch_halving(session, image, grid, sub, parts)
    return assemble(window, bands, parts), requests


def _fetch_halving(session: EESession, image: Any, grid: Grid, sub: SubRequest,
                   parts: list[tuple[SubRequest, np.ndarray]]) -> int:
    """Fetch ``sub`` into ``parts`` (halves when it is too big to compute); returns requests."""
    try:
        parts.append((sub, decode(session.compute_pixels(build_request(image, grid, sub)),
                                  sub)))
        return 1
    except EarthEngineError as exc:
        w = sub.window
        if (not any(m in str(exc).lower() for m in TOO_BIG_MARKERS)
                or max(w.height, w.width) <= MIN_HALVED_PX):
            raise
        if w.width >= w.height:
            half = w.width // 2
            halves = (Window(row_off=w.row_off, col_off=w.col_off, height=w.height, width=half),
                      Window(row_off=w.row_off, col_off=w.col_off + half, height=w.height,
                             width=w.width - half))
        else:
            half = w.height // 2
            halves = (Window(row_off=w.row_off, col_off=w.col_off, height=half, width=w.width),
                      Window(row_off=w.row_off + half, col_off=w.col_off,
                             height=w.height - half, width=w.width))
        log.info("a %d x %d px request was too large to compute (%s); asking for halves",
                 w.width, w.height, str(exc).splitlines()[0][:120])
        return 1 + sum(_fetch_halving(session, image, grid, SubRequest(h, sub.bands), parts)
                       for h in halves)


def _state_wall_time(session: EESession, requests_left: int) -> None:
    """Log the latency measured on the run's first requests and the wall time it implies."""
    latency = session.measured_latency() or 0.0
    in_flight = session.limit.allowed() if session.limit is not None else 1
    log.info("measured %.2f s per request over the first %d; %s requests left at %d in "
             "flight take about %s", latency, session.answered, f"{max(0, requests_left):,}",
             in_flight, format_duration(max(0, requests_left) * latency / in_flight / 3600.0))


def export_pixels(session: EESession, image: Any, job: ExportJob, out: str | Store, *,
                  fine_label: Any = None, workers: int = DEFAULT_WORKERS,
                  limits: Limits = DEFAULT_LIMITS, flush_seconds: float = 30.0,
                  progress: bool = True,
                  on_patch: Callable[[str], None] | None = None,
                  budget: ComputeBudget | None = None) -> ExportSummary:
    """Export one month with computePixels (see module docstring); resumable.

    Args:
        session: the Earth Engine seam (its transport may serve a local stack in tests).
        image: the stack of stack.build_stack (bands then ``label``).
        job: grid, bands, month and dataset parameters.
        out: dataset root, local directory or gs:// URL.
        fine_label: stack.build_fine_label's image when ``job.spec.fine_scale`` is set.
        workers: most concurrent requests (1..40); the session's adaptive limit
            (:mod:`core.concurrency`) keeps fewer in flight while the project's
            quota answers 429.
        limits: request limits (tests shrink them to exercise splitting).
        flush_seconds: index/manifest rewrite period while running.
        progress: show a tqdm bar (patches, rate, ETA).
        on_patch: called with each finished patch id (progress hooks, tests).
        budget: ``--max-eecu-hours``: no patch is asked for whose planned requests would
            take the dataset's estimated spending past it; the run then stops with
            :class:`~core.errors.ComputeBudgetError` once the patches in flight
            are written (resumable). What earlier runs fetched counts against it: the
            month's finished and invalid patches, at the planned requests per patch.
    """
    check_workers(workers)
    job.check_fine_label(fine_label)
    session.limit_requests(workers)  # adaptive, at most ``workers`` requests in flight
    store = open_store(out)
    with hold_output(store):
        return _export_pixels(session, image, job, store, fine_label, workers, limits,
                              flush_seconds, progress, on_patch, budget)


def planned_requests(job: ExportJob, limits: Limits = DEFAULT_LIMITS) -> int:
    """Requests (computePixels) of one patch when nothing is halved: the plan's figure."""
    spec = job.spec
    n = len(split_request(spec.grid.patch_window(0, 0), (*spec.bands, LABEL), limits))
    if spec.fine_scale:
        fine = spec.grid.scaled(spec.fine_scale)
        n += len(split_request(fine.patch_window(0, 0), (LABEL,), limits))
    return n


MEASURE_AFTER = 20
"""Answered requests after which a run states its measured latency and expected wall time."""


def _export_pixels(session: EESession, image: Any, job: ExportJob, store: Store,
                   fine_label: Any, workers: int, limits: Limits, flush_seconds: float,
                   progress: bool, on_patch: Callable[[str], None] | None,
                   budget: ComputeBudget | None) -> ExportSummary:
    started = time.monotonic()
    book = Bookkeeper(store, job)
    todo = book.todo()
    per_patch = planned_requests(job, limits)
    if budget is not None:  # what earlier runs fetched: the month's finished and invalid patches
        budget.charge(per_patch * (len(book.done) + len(book.invalid)))
    already = len(book.done & {patch_id(r, c) for r, c in book.splits})
    retries0 = session.retries
    counters = {"written": 0, "requests": 0}
    if not todo and book.existing.get("complete", {}).get(job.month):
        return ExportSummary(store.url(), job.month, "pixels", len(book.splits), 0, already,
                             len(book.invalid), 0, 0, time.monotonic() - started,
                             book.per_split())

    flags = {"stopped": False, "measured": False}

    def work(row: int, col: int) -> tuple[dict | None, int, tuple[int, int]]:
        img, lab, fine, n = fetch_patch(session, image, fine_label, job, row, col, limits)
        return book.accept(row, col, img, lab, fine), n, (row, col)

    bar = progress_bar(total=len(book.splits), initial=len(book.splits) - len(todo),
               desc=f"patches {job.month}", unit="patch", disable=not progress)
    error: BaseException | None = None
    last_flush = time.monotonic()
    queue = iter(todo)
    pending: set[Future] = set()
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            def refill() -> None:
                while error is None and not flags["stopped"] and len(pending) < 2 * workers:
                    nxt = next(queue, None)
                    if nxt is None:
                        return
                    if budget is not None and not budget.take(per_patch):
                        flags["stopped"] = True  # the next patch would pass the bound
                        return
                    pending.add(pool.submit(work, *nxt))

            refill()
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    pending.discard(fut)
                    try:
                        record, n, position = fut.result()
                    except BaseException as exc:  # keep the first failure, finish the rest
                        error = error or exc
                        continue
                    counters["requests"] += n
                    if budget is not None:
                        budget.charge(n - per_patch)  # halved windows cost more
                    if record is None:
                        book.mark_invalid(*position)
                    else:
                        book.add(record)
                        counters["written"] += 1
                        if on_patch:
                            on_patch(record["id"])
                    bar.update(1)
                if error is not None:
                    for fut in pending:
                        fut.cancel()
                if not flags["measured"] and session.answered >= MEASURE_AFTER:
                    flags["measured"] = True
                    _state_wall_time(session, per_patch * len(todo) - counters["requests"])
                if time.monotonic() - last_flush > flush_seconds:
                    book.flush(complete=False)
                    last_flush = time.monotonic()
                refill()
    finally:
        bar.close()
        book.flush(complete=error is None and not flags["stopped"])
    if error is not None:
        raise error
    if flags["stopped"] and budget is not None:
        raise budget.stopped(f"{job.month} has {len(book.todo()):,} of {len(book.splits):,} "
                             "patch positions left")
    return ExportSummary(store.url(), job.month, "pixels", len(book.splits),
                         counters["written"], already, len(book.invalid), counters["requests"],
                         session.retries - retries0, time.monotonic() - started,
                         book.per_split())
