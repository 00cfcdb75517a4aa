"""The patch export as an Apache Beam pipeline: many workers, one Earth Engine request budget.

The same month, the same files as :func:`gee_export.ee.export.export_pixels`, spread over the
workers of a Beam runner (the DirectRunner on one machine, Dataflow for whole provinces)::

    rows of todo cells -> cells -> Reshuffle -> batches -> fetch + write patches
        -> (shard, record) -> GroupByKey -> index shards -> all shards -> commit the month

- **What is to do** is decided once, by the launching process, with the single-process export's
  own resume state (:func:`~gee_export.ee.export_job.open_job`: finished patches and
  positions known to be invalid are skipped). Cells travel as runs of columns per patch row,
  so a fresh export of a province is a few thousand small elements, not millions, in the job
  graph.
- **Fetching** is :func:`~gee_export.ee.fetch.fetch_patch` through the one Earth Engine seam
  (:class:`~gee_export.ee.session.EESession`, which retries 429/5xx), and writing is
  :func:`~gee_export.ee.export_job.write_fetched` with a
  :class:`~contract.patch_writer.PatchWriter`. Each worker runs ``threads`` requests at
  once under a process-wide semaphore, so ``workers x threads <= --max-concurrent``
  (:mod:`core.pipeline_options`). A worker skips a cell whose patch already exists,
  which makes a retried bundle cheap and exact.
- **Index shards**: the records of new patches are grouped into shards and written to
  ``state/<month>/index-shards/`` (atomically, through the store), so the last step never has
  to read a patch's tags back for them.
- **Commit**: one step reads the shards and hands them to the single-process export's
  resume state, whose ``commit`` writes ``index.jsonl``, the resume state and ``manifest.json``
  exactly as a single-process run does; then the shards are deleted.

Workers rebuild nothing from the recipe: the launching process serializes the Earth Engine
images once, and each worker deserializes them after opening its session through a picklable
factory (:mod:`gee_export.ee.worker_session`). The steps the workers run are
:mod:`gee_export.ee.beam_steps`; this module decides what to fetch, builds and runs the
pipeline.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from contract.dataset import read_index, read_manifest
from contract.grid import patch_id
from contract.patch_writer import MonthProgress
from core.lock import hold_output
from core.pipeline_options import RunnerConfig, pipeline_counters, require_beam, run_pipeline
from core.storage import open_store
from gee_export.ee.beam_steps import (
    METRICS_NAMESPACE,
    ExportTask,
    build_export,
    todo_runs,
)
from gee_export.ee.budget import ComputeBudget
from gee_export.ee.export_job import (
    ExportJob,
    ExportSummary,
    HeldPositions,
    held_positions,
    open_job,
    split_figures,
)
from gee_export.ee.fetch import DEFAULT_LIMITS, planned_requests
from gee_export.ee.pixels import Limits
from gee_export.ee.worker_session import EarthEngineProject, SerializedImages, SessionFactory

__all__ = ["DEFAULT_SHARD_SIZE", "METRICS_NAMESPACE", "EarthEngineProject", "PlannedExport",
           "SerializedImages", "SessionFactory", "export_pipeline", "plan_export", "todo_runs"]

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 20_000  # records per index shard (a few MB of JSON)


@dataclass(frozen=True)
class PlannedExport:
    """A month's export pipeline, built but not run.

    Attributes:
        pipeline: the Beam pipeline; None when the month is already complete (nothing to run).
        before: the summary of what was there before the run (candidates, finished, invalid).
        todo: patches the pipeline will fetch.
        held_back: positions left for a later run by ``--max-eecu-hours``.
        per_patch: planned requests per patch (what the budget charged for each).
    """

    pipeline: Any
    before: ExportSummary
    todo: int
    held_back: int = 0
    per_patch: int = 0


def plan_export(sessions: SessionFactory, image: Any, job: ExportJob, out: str,
                runner: RunnerConfig, *, fine_label: Any = None, limits: Limits = DEFAULT_LIMITS,
                shard_size: int = DEFAULT_SHARD_SIZE,
                budget: ComputeBudget | None = None) -> PlannedExport:
    """Check everything, read the resume state and build the pipeline (arguments as below)."""
    job.check_fine_label(fine_label)
    runner.check(cloud={"--out": out})
    beam: Any = require_beam()  # an optional extra: untyped here
    options = runner.pipeline_options()  # Beam's own validation, before any work
    store = open_store(out)
    book = open_job(store, job)  # resume state, temporaries of killed runs removed
    todo = book.todo()
    already = len(book.records.keys() & {patch_id(r, c) for r, c in book.splits})
    before = ExportSummary(store.url(), job.month, "beam", len(book.splits), 0, already,
                           len(book.invalid), **split_figures(job, book))
    if not todo and book.existing.get("complete", {}).get(job.month):
        return PlannedExport(None, before, 0)
    per_patch = planned_requests(job, limits)
    admitted = len(todo) if budget is None else _admit(budget, per_patch, book, len(todo))
    held_back, todo = len(todo) - admitted, todo[:admitted]
    if not todo and held_back:
        return PlannedExport(None, before, 0, held_back, per_patch)
    task = ExportTask(sessions, SerializedImages.of(image, fine_label), job, store.url(),
                 limits, runner.threads, uuid.uuid4().hex[:12],
                 max(1, shard_size // max(1, job.spec.grid.patch_cols)), not held_back)
    pipeline = beam.Pipeline(options=options)
    build_export(pipeline, task, todo_runs(todo), batch=2 * runner.threads)
    return PlannedExport(pipeline, before, len(todo), held_back, per_patch)


def _admit(budget: ComputeBudget, per_patch: int, book: MonthProgress, todo: int) -> int:
    """Patches of ``todo`` the budget allows, charged to it at the planned requests each.

    Decided here, in the launching process, before the job starts: Dataflow's workers share
    no state (a per-worker share of the bound would stop one worker while another still has
    room, and a worker restarted or added by autoscaling would start a fresh share), and a
    job's metrics reach the launcher only, not the workers while they fetch. Admitting a
    prefix of the row-major todo list makes the cut exact whatever the runner does with
    workers, bundles and retries (a retried bundle skips the patches it already wrote).
    What earlier runs fetched counts first, as in the single-process export.
    """
    budget.charge(per_patch * (len(book.records) + len(book.invalid)))
    admitted = 0
    while admitted < todo and budget.take(per_patch):
        admitted += 1
    return admitted


def export_pipeline(sessions: SessionFactory, image: Any, job: ExportJob, out: str,
                    runner: RunnerConfig, *, fine_label: Any = None,
                    shard_size: int = DEFAULT_SHARD_SIZE,
                    budget: ComputeBudget | None = None) -> ExportSummary:
    """Export one month with a Beam pipeline (see module docstring); resumable.

    Args:
        sessions: opens each worker's Earth Engine session (:class:`EarthEngineProject`).
        image: the stack of ``recipe.build_stack`` (bands then ``label``).
        job: grid, bands, month and dataset parameters (as for ``export_pixels``).
        out: dataset root, a local folder (DirectRunner) or a gs:// URL (any runner).
        runner: the runner and its options; ``runner.threads`` requests per worker.
        fine_label: ``recipe.build_fine_label``'s image when ``job.spec.fine_scale`` is set.
        shard_size: records per index shard (patch rows are never split between shards).
        budget: ``--max-eecu-hours``: only the patches whose planned requests keep the
            dataset's estimated spending within it are fetched (decided before the job
            starts, see :func:`_admit`); the month is then committed open and
            :class:`~core.errors.ComputeBudgetError` says how to go on (exit 1).
            Windows halved during the run are charged after it.

    Returns:
        The run's :class:`ExportSummary` (``method`` 'beam'); counts come from the pipeline's
        metrics and are zero for a dry run. A month already complete runs no pipeline at all.
    """
    started = time.monotonic()
    with hold_output(out):  # the launcher holds the output's lock for the whole job
        return _run_export(started, plan_export(
            sessions, image, job, out, runner, fine_label=fine_label,
            shard_size=shard_size, budget=budget), job, runner, budget)


def _run_export(started: float, plan: PlannedExport, job: ExportJob,
                runner: RunnerConfig, budget: ComputeBudget | None) -> ExportSummary:
    before = plan.before
    if plan.pipeline is None and plan.held_back and budget is not None:
        raise _stopped(budget, plan)
    if plan.pipeline is None:
        log.info("%s: %s is complete, nothing to do", before.root, job.month)
        return replace(before, seconds=time.monotonic() - started)
    log.info("%s %s: %d patches to fetch on the %s runner (%d workers x %d requests)%s",
             before.root, job.month, plan.todo, runner.runner, runner.workers, runner.threads,
             " [dry run: nothing is submitted]" if runner.dry_run else "")
    result = run_pipeline(plan.pipeline, resume="patches already written are kept")
    counts = pipeline_counters(result, METRICS_NAMESPACE) if not runner.dry_run else {}
    per_split, written, held = before.per_split, 0, HeldPositions()
    if not runner.dry_run:
        counts_now = read_manifest(before.root)["counts"]
        per_split = counts_now["per_split"]
        # from the month's index, not the counters: Beam counts only a bundle's successful
        # attempt, and patches written by a failed attempt are indexed (from their tags) too
        written = counts_now["per_month"][job.month]["patches"] - before.already_done
        held = held_positions(job, job.spec.splits(), (
            r for r in read_index(before.root) if r["month"] == job.month))
    if plan.held_back and budget is not None and not runner.dry_run:
        budget.charge(counts.get("requests", 0) - plan.per_patch * plan.todo)  # halved windows
        raise _stopped(budget, plan)
    return replace(before, written=written,
                   invalid=before.invalid + counts.get("invalid", 0),
                   requests=counts.get("requests", 0), retries=counts.get("retries", 0),
                   seconds=time.monotonic() - started, per_split=per_split, **held)


def _stopped(budget: ComputeBudget, plan: PlannedExport) -> Exception:
    return budget.stopped(f"{plan.before.month} has {plan.held_back:,} of "
                          f"{plan.before.candidates:,} patch positions left")

