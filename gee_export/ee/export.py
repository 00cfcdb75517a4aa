"""Export orchestration, ``pixels`` method: one computePixels request per patch, to the store.

For each patch position of the month that belongs to a split and is not finished yet, a worker of a
bounded thread pool asks Earth Engine (through the session, which retries 429/5xx with backoff and
keeps as many requests in flight as the project's shared quota lets through, at most ``workers``:
:mod:`core.concurrency`) for the patch's window of the stack — every band and the label
in one request (:func:`gee_export.ee.fetch.fetch_patch`) — and writes the patch files with
:class:`~contract.patch_writer.PatchWriter`. Finished patches carry their index record in their
own tags, so a killed run loses nothing: a re-run lists the finished patches, recovers their
records and fetches only the rest. ``index.jsonl`` and ``manifest.json`` are rewritten atomically
every ``flush_seconds`` and at the end (also when the run fails), through the contract's one
manifest writer (``commit_month``), exactly as the local backend writes them. The output root is
locked for the run (:func:`core.lock.hold_output`). The month's requests are priced from a
sample of their profiles (:mod:`gee_export.ee.profiles`); what the profiles measured is kept in
the month's resume state (``profiled``), and a re-run prices its requests from it at once.

The month's job, summary and resume state are :mod:`gee_export.ee.export_job`'s (re-exported
here, with the fetching functions, under the names callers know); the ``tasks`` method (batch
export of tiles) lives in tasks.py and shares them.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from contract.grid import patch_id
from core.errors import ComputeBudgetError
from core.lock import hold_output
from core.progress import progress_bar
from core.storage import Store, open_store
from gee_export.ee.budget import ComputeBudget
from gee_export.ee.compute import NOT_REPORTED, format_duration
from gee_export.ee.export_job import (
    DEFAULT_WORKERS,
    MAX_WORKERS,
    ExportJob,
    ExportSummary,
    check_workers,
    open_job,
    split_figures,
    write_fetched,
)
from gee_export.ee.fetch import (
    DEFAULT_LIMITS,
    fetch_patch,
    fetch_window,
    planned_requests,
)
from gee_export.ee.pixels import Limits
from gee_export.ee.profiles import PixelCost, ProfileMeter
from gee_export.ee.session import EESession

__all__ = ["DEFAULT_LIMITS", "DEFAULT_WORKERS", "MAX_WORKERS", "MEASURE_AFTER", "ExportJob",
           "ExportSummary", "check_workers", "export_pixels", "fetch_patch", "fetch_window",
           "planned_requests", "write_fetched"]

log = logging.getLogger(__name__)

MEASURE_AFTER = 20
"""Answered requests after which a run states its measured latency and expected wall time."""


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
                  progress: bool = True, budget: ComputeBudget | None = None) -> ExportSummary:
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
        budget: ``--max-eecu-hours``: each patch's planned requests are charged before it
            is asked for (at the estimate per request; the service reports none), and none
            is asked for whose requests would pass it; the session charges the requests a
            halved window adds, and refuses the one that would pass it. The run then stops
            with :class:`~core.errors.ComputeBudgetError` once the patches in flight are
            written (resumable). What earlier runs fetched counts against it: the month's
            finished and invalid patches, at the planned requests per patch.
    """
    check_workers(workers)
    job.check_fine_label(fine_label)
    session.limit_requests(workers)  # adaptive, at most ``workers`` requests in flight
    store = open_store(out)
    carried = session.budget, session.meter
    session.budget = budget if budget is not None else carried[0]
    session.meter = ProfileMeter()  # the month's own: its resume state holds what it measured
    try:
        with hold_output(store):
            return _PixelRun(session, image, job, store, fine_label, workers, limits,
                             flush_seconds, progress).run()
    finally:
        session.budget, session.meter = carried


@dataclass
class _PixelRun:
    """One month fetched patch by patch on a bounded thread pool (see :func:`export_pixels`)."""

    session: EESession
    image: Any
    job: ExportJob
    store: Store
    fine_label: Any
    workers: int
    limits: Limits
    flush_seconds: float
    progress: bool
    written: int = 0
    requests: int = 0
    stopped: bool = False
    measured: bool = False
    error: BaseException | None = None
    pending: set[Future] = field(default_factory=set)
    # set by the worker whose patch failed, before its thread takes the next queued patch:
    # queued patches then start nothing, however soon the main thread gets to cancel them
    failing: threading.Event = field(default_factory=threading.Event)

    def run(self) -> ExportSummary:
        started = time.monotonic()
        book = self.book = open_job(self.store, self.job)
        todo = book.todo()
        self.per_patch = planned_requests(self.job, self.limits)
        budget = self.session.budget
        measured = self._resume_measured()
        if budget is not None:  # what earlier runs fetched: the finished and invalid patches
            budget.charge(self.per_patch * (len(book.records) + len(book.invalid)))
            log.info("%s%s", budget.describe(), "" if measured else f"; {NOT_REPORTED}")
        already = len(book.records.keys() & {patch_id(r, c) for r, c in book.splits})
        retries0 = self.session.retries
        if not todo and book.existing.get("complete", {}).get(self.job.month):
            return self._summary(started, already, retries0)
        self.todo_count = len(todo)
        bar = progress_bar(total=len(book.splits), initial=len(book.splits) - len(todo),
                           desc=f"patches {self.job.month}", unit="patch",
                           disable=not self.progress)
        try:
            self._fetch_all(iter(todo), bar)
        finally:
            bar.close()
            self._keep_measured()
            book.commit(complete=self.error is None and not self.stopped)
        if self.error is not None:
            raise self.error
        if self.stopped and budget is not None:
            raise budget.stopped(f"{self.job.month} has {len(book.todo()):,} of "
                                 f"{len(book.splits):,} patch positions left")
        return self._summary(started, already, retries0)

    def _resume_measured(self) -> bool:
        """Price requests at what earlier runs of the month profiled; whether they had."""
        meter, budget = self.session.meter, self.session.budget
        assert meter is not None
        meter.measured = PixelCost.from_dict(self.book.read_state("profiled"))
        price = meter.price()
        if price is not None and budget is not None:
            budget.revalue(*price)
        return price is not None

    def _keep_measured(self) -> None:
        """Read the profiles still pending; keep what the month measured in its state."""
        meter = self.session.meter
        assert meter is not None
        self.session.read_profiles(flush=True)
        if meter.measured.requests:
            self.book.write_state("profiled", meter.measured.to_dict())

    def _summary(self, started: float, already: int, retries0: int) -> ExportSummary:
        book = self.book
        return ExportSummary(self.store.url(), self.job.month, "pixels", len(book.splits),
                             self.written, already, len(book.invalid), self.requests,
                             self.session.retries - retries0, time.monotonic() - started,
                             **split_figures(self.job, book))

    def _work(self, row: int, col: int) -> tuple[dict | None, int, tuple[int, int]] | None:
        """Fetch and check one patch; None (nothing fetched) once another patch failed."""
        if self.failing.is_set():
            return None
        budget = self.session.budget
        try:
            with budget.prepaid(self.per_patch) if budget is not None else nullcontext():
                img, lab, fine, n = fetch_patch(self.session, self.image, self.fine_label,
                                                self.job, row, col, self.limits)
        except ComputeBudgetError:
            raise  # the bound stops the run; patches already paid for may still finish
        except BaseException:
            self.failing.set()
            raise
        return write_fetched(self.book.writer, self.job, row, col, img, lab, fine), n, (row, col)

    def _affordable(self) -> bool:
        """Charge the next patch's planned requests, if they stay within the budget."""
        budget = self.session.budget
        return budget is None or budget.take(self.per_patch)

    def _fetch_all(self, queue: Any, bar: Any) -> None:
        last_flush = time.monotonic()
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            def refill() -> None:
                while (self.error is None and not self.stopped
                       and len(self.pending) < 2 * self.workers):
                    nxt = next(queue, None)
                    if nxt is None:
                        return
                    if not self._affordable():
                        self.stopped = True  # the next patch would pass the bound
                        return
                    self.pending.add(pool.submit(self._work, *nxt))

            refill()
            while self.pending:
                finished, _ = wait(self.pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    self.pending.discard(fut)
                    self._record(fut, bar)
                if self.error is not None:
                    for fut in self.pending:
                        fut.cancel()
                if not self.measured and self.session.answered >= MEASURE_AFTER:
                    self.measured = True
                    _state_wall_time(self.session,
                                     self.per_patch * self.todo_count - self.requests)
                if time.monotonic() - last_flush > self.flush_seconds:
                    self.book.commit(complete=False)
                    last_flush = time.monotonic()
                refill()

    def _record(self, fut: Future, bar: Any) -> None:
        """Book one finished patch; keep the first failure (a refused budget stops the run)."""
        try:
            result = fut.result()
        except ComputeBudgetError:
            self.stopped = True  # a request of this patch would have passed the bound
            return
        except BaseException as exc:  # keep the first failure, finish the rest
            self.error = self.error or exc
            return
        if result is None:
            return  # not started: an earlier patch failed
        record, n, position = result
        self.requests += n
        if record is None:
            self.book.mark_invalid(*position)
        else:
            self.book.add(record)
            self.written += 1
        bar.update(1)
