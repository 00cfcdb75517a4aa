"""The export pipeline's steps: what Beam runs on the workers, and the commit at the end.

::

    rows of todo cells -> cells -> Reshuffle -> batches -> fetch + write patches
        -> (shard, record) -> GroupByKey -> index shards -> all shards -> commit the month

Each worker fetches with :func:`gee_export.ee.fetch.fetch_patch` through its own session and
writes with :func:`gee_export.ee.export_job.write_fetched`, ``threads`` requests at once
(:class:`core.pipeline_options.WorkerRequests`), skipping a patch that exists (a retried bundle).
New patches' records are grouped into index shards (``state/<month>/index-shards/``, written
atomically), and the last step hands every shard to the month's
:func:`~gee_export.ee.export_job.open_job` resume state, which writes the index and manifest as a
single-process run does. The DoFn classes are made on demand: Apache Beam is an optional extra.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.grid import patch_id
from contract.patch_writer import PatchWriter, patch_rel_paths
from core.pipeline_options import WorkerRequests, require_beam
from core.storage import LocalStore, open_store
from gee_export.ee.export_job import ExportJob, open_job, write_fetched
from gee_export.ee.fetch import fetch_patch
from gee_export.ee.pixels import Limits
from gee_export.ee.worker_session import SerializedImages, SessionFactory

METRICS_NAMESPACE = "isamap.export"
SHARD_DIR = "index-shards"


@dataclass(frozen=True)
class ExportTask:
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


def _fetch_dofn() -> type:
    """The DoFn that fetches and writes patches (made on demand: Beam is an optional extra)."""
    beam: Any = require_beam()  # an optional extra: untyped here
    from apache_beam.metrics import Metrics

    class FetchPatches(beam.DoFn):
        """Fetch and write a batch of patches with ``threads`` concurrent requests."""

        def __init__(self, task: ExportTask) -> None:
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

    return FetchPatches


def _index_dofns() -> tuple[type, type]:
    """The DoFns that write index shards and commit the month (made on demand, as above)."""
    beam: Any = require_beam()  # an optional extra: untyped here

    class WriteShard(beam.DoFn):
        """Write one index shard (records and invalid ids) atomically; yield its path."""

        def __init__(self, task: ExportTask) -> None:
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
        """Merge every shard into the index and manifest with the export's own resume state."""

        def __init__(self, task: ExportTask) -> None:
            self.task = task

        def process(self, shards: list[str]):
            yield commit_shards(self.task.out, self.task.job, shards,
                                complete=self.task.complete)

    return WriteShard, Commit


def commit_shards(out: str, job: ExportJob, shards: Sequence[str], *,
                  complete: bool = True) -> int:
    """Commit the month from the index shards of a run; returns the patches indexed.

    The shards' records are handed to the month's resume state (:func:`open_job`) as written
    elsewhere, so only patches finished by an earlier, failed run (and absent from every shard)
    have their tags read back. Every shard folder of the month is removed afterwards.
    ``complete`` False leaves the month open (a run the compute budget cut short resumes it).
    """
    store = open_store(out)
    records, invalid = [], set()
    for rel in shards:
        body = json.loads(store.read_bytes(rel))
        records.extend(body["records"])
        invalid.update(body["invalid"])
    book = open_job(store, job, written_elsewhere=records)
    book.invalid.update(invalid)
    book.commit(complete=complete)
    shard_root = f"state/{job.month}/{SHARD_DIR}"
    for rel in store.list(shard_root + "/"):
        store.delete(rel)
    if isinstance(store, LocalStore):  # local folders outlive their files; Cloud Storage's don't
        _remove_empty_folders(store.path(shard_root))
    return len(book.records)


def _remove_empty_folders(root: Path) -> None:
    if not root.is_dir():
        return
    for folder in [p for p in root.iterdir() if p.is_dir()] + [root]:
        with contextlib.suppress(OSError):  # not empty: something else lives there
            folder.rmdir()


def build_export(pipeline: Any, task: ExportTask, runs: Sequence[Any], batch: int) -> Any:
    """Add the export's transforms to ``pipeline``; returns the committed-count PCollection."""
    beam: Any = require_beam()  # an optional extra: untyped here
    fetch = _fetch_dofn()
    write_shard, commit = _index_dofns()
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
