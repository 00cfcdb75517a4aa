"""The patch export as an Apache Beam pipeline: many workers, one Earth Engine request budget.

The same month, the same files as :func:`gee_export.ee.export.export_pixels`, spread over the
workers of a Beam runner (the DirectRunner on one machine, Dataflow for whole provinces)::

    rows of todo cells -> cells -> Reshuffle -> batches -> fetch + write patches
        -> (shard, record) -> GroupByKey -> index shards -> all shards -> commit the month

- **What is to do** is decided once, by the launching process, with the single-process export's
  own :class:`~gee_export.ee.export.Bookkeeper` (finished patches and positions known to be
  invalid are skipped). Cells travel as runs of columns per patch row, so a fresh export of a
  province is a few thousand small elements, not millions, in the job graph.
- **Fetching** is :func:`~gee_export.ee.export.fetch_patch` through the one Earth Engine seam
  (:class:`~gee_export.ee.session.EESession`, which retries 429/5xx), and writing is
  :func:`~gee_export.ee.export.write_fetched` with a
  :class:`~contract.patch_writer.PatchWriter`. Each worker runs ``threads`` requests at
  once under a process-wide semaphore, so ``workers x threads <= --max-concurrent``
  (:mod:`core.pipeline_options`). A worker skips a cell whose patch already exists,
  which makes a retried bundle cheap and exact.
- **Index shards**: the records of new patches are grouped into shards and written to
  ``state/<month>/index-shards/`` (atomically, through the store), so the last step never has
  to read a patch's tags back for them.
- **Commit**: one step reads the shards and hands them to the single-process export's
  ``Bookkeeper``, whose ``flush`` writes ``index.jsonl``, the resume state and ``manifest.json``
  exactly as a single-process run does; then the shards are deleted.

Workers rebuild nothing from the recipe: the launching process serializes the Earth Engine
images once (the JSON expression earthengine-api itself sends), and each worker deserializes
them after opening its session. How a worker opens its session is a picklable factory:
:class:`EarthEngineProject` for the real service, :class:`testing.fake_server.StackSessions`
for tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from contract.dataset import read_manifest
from contract.grid import patch_id
from contract.patch_writer import PatchWriter, patch_rel_paths
from core.errors import ConfigError
from core.lock import hold_output
from core.pipeline_options import (
    RunnerConfig,
    WorkerRequests,
    pipeline_counters,
    require_beam,
    run_pipeline,
)
from core.storage import LocalStore, open_store
from gee_export.ee.budget import ComputeBudget
from gee_export.ee.export import (
    DEFAULT_LIMITS,
    Bookkeeper,
    ExportJob,
    ExportSummary,
    fetch_patch,
    planned_requests,
    write_fetched,
)
from gee_export.ee.pixels import Limits
from gee_export.ee.session import EESession

log = logging.getLogger(__name__)

METRICS_NAMESPACE = "isamap.export"
DEFAULT_SHARD_SIZE = 20_000  # records per index shard (a few MB of JSON)
SHARD_DIR = "index-shards"


class SessionFactory(Protocol):
    """Opens the Earth Engine session of one worker (must pickle: it travels to the workers)."""

    def __call__(self) -> EESession: ...


@dataclass(frozen=True)
class EarthEngineProject:
    """The real service: an initialised :class:`EESession` of ``project`` on each worker.

    Attributes:
        project: the Google Cloud project registered for Earth Engine.
        application_default: use the worker's own service account (Dataflow); False uses the
            credentials of ``earthengine authenticate`` (the DirectRunner on a laptop).
    """

    project: str | None
    application_default: bool = False
    workload_tag: str | None = None  # the command's run, named on every worker's requests

    def __call__(self) -> EESession:
        return EESession(project=self.project, application_default=self.application_default,
                         workload_tag=self.workload_tag).initialize()


@dataclass(frozen=True)
class SerializedImages:
    """The stack and the optional fine label, as earthengine-api's JSON expressions."""

    image: str
    fine_label: str | None = None

    @classmethod
    def of(cls, image: Any, fine_label: Any = None) -> SerializedImages:
        return cls(image.serialize(), fine_label.serialize() if fine_label is not None else None)

    def load(self) -> tuple[Any, Any]:
        """The images back (earthengine-api must be initialised, which a session does)."""
        import ee

        image = ee.Image(ee.deserializer.fromJSON(self.image))
        fine = ee.Image(ee.deserializer.fromJSON(self.fine_label)) if self.fine_label else None
        return image, fine


@dataclass(frozen=True)
class _Task:
    """Everything a worker needs, picklable (stores and sessions are opened on the worker)."""

    sessions: SessionFactory
    images: SerializedImages
    job: ExportJob
    out: str
    limits: Limits
    threads: int
    run_id: str
    rows_per_shard: int
    complete: bool = True  # False: the budget held positions back, the month stays open


def todo_runs(cells: Iterable[tuple[int, int]]) -> list[tuple[int, tuple[tuple[int, int], ...]]]:
    """Cells grouped as ``(row, ((first_col, end_col), ...))`` runs of consecutive columns."""
    rows: dict[int, list[int]] = {}
    for r, c in cells:
        rows.setdefault(r, []).append(c)
    out = []
    for r in sorted(rows):
        cols = sorted(rows[r])
        runs: list[tuple[int, int]] = []
        for c in cols:
            if runs and runs[-1][1] == c:
                runs[-1] = (runs[-1][0], c + 1)
            else:
                runs.append((c, c + 1))
        out.append((r, tuple(runs)))
    return out


def _cells(run: tuple[int, tuple[tuple[int, int], ...]]) -> Iterator[tuple[int, int]]:
    row, runs = run
    for first, end in runs:
        for col in range(first, end):
            yield row, col


def _make_dofns() -> tuple[type, type, type]:
    """The DoFn classes (defined lazily: Apache Beam is an optional extra)."""
    beam: Any = require_beam()  # an optional extra: untyped here
    from apache_beam.metrics import Metrics

    class FetchPatches(beam.DoFn):
        """Fetch and write a batch of patches with ``threads`` concurrent requests."""

        def __init__(self, task: _Task) -> None:
            self.task = task

        def setup(self) -> None:
            t = self.task
            self.session = t.sessions()
            self.image, self.fine = t.images.load()
            self.store = open_store(t.out)
            job = t.job
            spec = job.spec
            self.writer = PatchWriter(self.store, spec.grid, spec.bands, job.month,
                                      splits=spec.splits(), fine_scale=spec.fine_scale,
                                      clean_up=False)
            self.counters = {name: Metrics.counter(METRICS_NAMESPACE, name) for name in
                             ("written", "invalid", "skipped", "requests", "retries")}
            self.requests = WorkerRequests(self.session, t.threads, "isamap-fetch",
                                           self.counters["retries"])

        def _one(self, row: int, col: int) -> tuple[str, int, Any, int]:
            """(kind, shard, record or id, requests); kind 'skipped' for a finished patch."""
            t = self.task
            pid = patch_id(row, col)
            shard = row // t.rows_per_shard
            if self.store.exists(patch_rel_paths(t.job.month, pid)["image"]):
                return "skipped", shard, pid, 0  # a retried bundle: the patch is finished
            with self.requests.gate:
                image, label, fine, requests = fetch_patch(
                    self.session, self.image, self.fine, t.job, row, col, t.limits)
            record = write_fetched(self.writer, t.job, row, col, image, label, fine)
            if record is None:
                return "invalid", shard, pid, requests
            return "record", shard, record, requests

        def start_bundle(self) -> None:
            self.requests.start()

        def _emit(self, results: Iterable[tuple[str, int, Any, int]]) -> Iterator[Any]:
            # Metrics are counted here, on the bundle's thread: Beam keeps them per thread.
            for kind, shard, value, requests in results:
                self.counters["requests"].inc(requests)
                self.counters["written" if kind == "record" else kind].inc()
                if kind != "skipped":
                    yield shard, (kind, value)

        def process(self, cells: Sequence[tuple[int, int]]):
            # the batch joins the bundle's stream of requests: the slots stay busy from one
            # batch to the next, and the bundle waits for its last patches only at its end
            for r, c in cells:
                self.requests.submit(self._one, r, c)
            yield from self._emit(self.requests.finished())

        def finish_bundle(self):
            from apache_beam.transforms.window import GlobalWindow
            from apache_beam.utils.windowed_value import WindowedValue

            window = GlobalWindow()
            for output in self._emit(self.requests.drain()):
                yield WindowedValue(output, window.max_timestamp(), (window,))

        def teardown(self) -> None:
            if getattr(self, "requests", None) is not None:
                self.requests.close()

    class WriteShard(beam.DoFn):
        """Write one index shard (records and invalid ids) atomically; yield its path."""

        def __init__(self, task: _Task) -> None:
            self.task = task

        def process(self, element: tuple[int, Iterable[tuple[str, Any]]]):
            shard, items = element
            records: list[Any] = []
            invalid: list[Any] = []
            for kind, value in items:
                (records if kind == "record" else invalid).append(value)
            records.sort(key=lambda r: (r["row"], r["col"]))
            rel = f"state/{self.task.job.month}/{SHARD_DIR}/{self.task.run_id}/{shard:06d}.json"
            body = {"records": records, "invalid": sorted(invalid)}
            open_store(self.task.out).write_bytes(
                rel, json.dumps(body, sort_keys=True, allow_nan=False).encode("utf-8"))
            yield rel

    class Commit(beam.DoFn):
        """Merge every shard into the index and manifest with the export's own Bookkeeper."""

        def __init__(self, task: _Task) -> None:
            self.task = task

        def process(self, shards: list[str]):
            yield commit_shards(self.task.out, self.task.job, shards,
                                complete=self.task.complete)

    return FetchPatches, WriteShard, Commit


def commit_shards(out: str, job: ExportJob, shards: Sequence[str], *,
                  complete: bool = True) -> int:
    """Commit the month from the index shards of a run; returns the patches indexed.

    The shards' records are handed to :class:`Bookkeeper` as written elsewhere, so only
    patches finished by an earlier, failed run (and absent from every shard) have their tags
    read back. Every shard folder of the month is removed afterwards. ``complete`` False
    leaves the month open (a run the compute budget cut short resumes it).
    """
    store = open_store(out)
    records, invalid = [], set()
    for rel in shards:
        body = json.loads(store.read_bytes(rel))
        records.extend(body["records"])
        invalid.update(body["invalid"])
    book = Bookkeeper(store, job, written_elsewhere=records)
    book.progress.invalid.update(invalid)
    book.flush(complete=complete)
    shard_root = f"state/{job.month}/{SHARD_DIR}"
    for rel in store.list(shard_root + "/"):
        store.delete(rel)
    if isinstance(store, LocalStore):  # local folders outlive their files; Cloud Storage's don't
        _remove_empty_folders(store.path(shard_root))
    return len(book.progress.records)


def _remove_empty_folders(root: Path) -> None:
    if not root.is_dir():
        return
    for folder in [p for p in root.iterdir() if p.is_dir()] + [root]:
        with contextlib.suppress(OSError):  # not empty: something else lives there
            folder.rmdir()


def build_export(pipeline: Any, task: _Task, runs: Sequence[Any], batch: int) -> Any:
    """Add the export's transforms to ``pipeline``; returns the committed-count PCollection."""
    beam: Any = require_beam()  # an optional extra: untyped here
    fetch, write_shard, commit = _make_dofns()
    return (
        pipeline
        | "TodoRows" >> beam.Create(list(runs), reshuffle=False)
        | "Cells" >> beam.FlatMap(_cells)
        | "Spread" >> beam.Reshuffle()
        | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=batch)
        | "FetchAndWrite" >> beam.ParDo(fetch(task))
        | "ByShard" >> beam.GroupByKey()
        | "IndexShards" >> beam.ParDo(write_shard(task))
        | "AllShards" >> beam.combiners.ToList()
        | "Commit" >> beam.ParDo(commit(task))
    )


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
    if shard_size < 1:
        raise ConfigError(f"shard_size must be at least 1, got {shard_size}")
    if runner.runner == "dataflow" and not out.startswith("gs://"):
        raise ConfigError(f"Dataflow workers cannot write to the local folder {out!r}; give "
                          "--out gs://bucket/prefix")
    runner.check()
    beam: Any = require_beam()  # an optional extra: untyped here
    options = runner.pipeline_options()  # Beam's own validation, before any work
    store = open_store(out)
    book = Bookkeeper(store, job)  # resume state, temporaries of killed runs removed
    todo = book.todo()
    already = len(book.done & {patch_id(r, c) for r, c in book.splits})
    before = ExportSummary(store.url(), job.month, "beam", len(book.splits), 0, already,
                           len(book.invalid), per_split=book.per_split())
    if not todo and book.existing.get("complete", {}).get(job.month):
        return PlannedExport(None, before, 0)
    per_patch = planned_requests(job, limits)
    admitted = len(todo) if budget is None else _admit(budget, per_patch, book, len(todo))
    held_back, todo = len(todo) - admitted, todo[:admitted]
    if not todo and held_back:
        return PlannedExport(None, before, 0, held_back, per_patch)
    task = _Task(sessions, SerializedImages.of(image, fine_label), job, store.url(),
                 limits, runner.threads, uuid.uuid4().hex[:12],
                 max(1, shard_size // max(1, job.spec.grid.patch_cols)), not held_back)
    pipeline = beam.Pipeline(options=options)
    build_export(pipeline, task, todo_runs(todo), batch=2 * runner.threads)
    return PlannedExport(pipeline, before, len(todo), held_back, per_patch)


def _admit(budget: ComputeBudget, per_patch: int, book: Bookkeeper, todo: int) -> int:
    """Patches of ``todo`` the budget allows, charged to it at the planned requests each.

    Decided here, in the launching process, before the job starts: Dataflow's workers share
    no state (a per-worker share of the bound would stop one worker while another still has
    room, and a worker restarted or added by autoscaling would start a fresh share), and a
    job's metrics reach the launcher only, not the workers while they fetch. Admitting a
    prefix of the row-major todo list makes the cut exact whatever the runner does with
    workers, bundles and retries (a retried bundle skips the patches it already wrote).
    What earlier runs fetched counts first, as in the single-process export.
    """
    budget.charge(per_patch * (len(book.done) + len(book.invalid)))
    admitted = 0
    while admitted < todo and budget.take(per_patch):
        admitted += 1
    return admitted


def export_pipeline(sessions: SessionFactory, image: Any, job: ExportJob, out: str,
                    runner: RunnerConfig, *, fine_label: Any = None,
                    limits: Limits = DEFAULT_LIMITS,
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
        limits: computePixels limits (tests shrink them to exercise splitting).
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
            sessions, image, job, out, runner, fine_label=fine_label, limits=limits,
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
    per_split, written = before.per_split, 0
    if not runner.dry_run:
        counts_now = read_manifest(before.root)["counts"]
        per_split = counts_now["per_split"]
        # from the month's index, not the counters: Beam counts only a bundle's successful
        # attempt, and patches written by a failed attempt are indexed (from their tags) too
        written = counts_now["per_month"][job.month]["patches"] - before.already_done
    if plan.held_back and budget is not None and not runner.dry_run:
        budget.charge(counts.get("requests", 0) - plan.per_patch * plan.todo)  # halved windows
        raise _stopped(budget, plan)
    return replace(before, written=written,
                   invalid=before.invalid + counts.get("invalid", 0),
                   requests=counts.get("requests", 0), retries=counts.get("retries", 0),
                   seconds=time.monotonic() - started, per_split=per_split)


def _stopped(budget: ComputeBudget, plan: PlannedExport) -> Exception:
    return budget.stopped(f"{plan.before.month} has {plan.held_back:,} of "
                          f"{plan.before.candidates:,} patch positions left")

