"""A Beam pipeline run: its failure as one line, its counters, and the workers' request threads.

:func:`run_pipeline` runs a job to the end and turns a failed one into
:class:`PipelineFailedError` (the worker's own error line, the step, what to do);
:func:`pipeline_counters` reads a job's metrics; :class:`WorkerRequests` are a worker DoFn's
Earth Engine request threads under the process-wide :func:`worker_semaphore`, so a job holds at
most ``workers x threads`` requests in flight (:mod:`core.pipeline_options` decides both numbers).
Nothing here imports Apache Beam.

May import: the rest of ``core``; nothing else of the project.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from core import errors
from core.concurrency import shared_limit
from core.errors import ConfigError, IsamapError


class PipelineFailedError(IsamapError, RuntimeError):
    """A pipeline's worker failed for good (after the runner's retries); the job stopped.

    ``exit_code`` is the worker error's own when it was an isamap error (an Earth Engine quota,
    a storage fault), else 1: a worker fails because of its environment, not the command line.
    """

    exit_code = 1


# the last "module.Class: message" line of a runner's error text: the worker's own exception
_ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception)): (.+)$",
                         re.MULTILINE)


def run_pipeline(pipeline: Any, *, resume: str) -> Any:
    """Run ``pipeline`` to the end; a failed job becomes one line saying what failed.

    Runners report a worker's exception as a long text of tracebacks (the DirectRunner as a
    ``RuntimeError``, Dataflow as its own exception); this keeps the worker's error line, the
    step it happened in, and what to do, so commands print it without a traceback.

    Args:
        pipeline: a built ``apache_beam.Pipeline``.
        resume: what an identical re-run does, e.g. "finished tiles are kept".

    Returns:
        The finished ``PipelineResult`` (its metrics: :func:`pipeline_counters`).
    """
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except IsamapError:
        raise
    except Exception as exc:
        raise _failure(exc, resume) from exc
    return result


def _failure(exc: Exception, resume: str) -> PipelineFailedError:
    found = _ERROR_LINE.findall(str(exc))
    if not found:
        name, message = type(exc).__name__, " ".join(str(exc).split()) or "no message"
    else:
        name, message = found[-1]
    error = PipelineFailedError(f"the pipeline stopped: {name}: {message.strip()}; {resume}: "
                                "run the same command again to resume")
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, IsamapError):
        error.exit_code = cls.exit_code
    return error


def pipeline_counters(result: Any, namespace: str) -> dict[str, int]:
    """The metric counters of ``namespace`` of a finished pipeline (committed where known)."""
    from apache_beam.metrics.metric import MetricsFilter

    out: dict[str, int] = {}
    query = result.metrics().query(MetricsFilter().with_namespace(namespace))
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        out[counter.key.metric.name] = out.get(counter.key.metric.name, 0) + int(value or 0)
    return out


_SEMAPHORES: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_SEMAPHORES_LOCK = threading.Lock()


def worker_semaphore(name: str, capacity: int) -> threading.BoundedSemaphore:
    """One semaphore per process, name and capacity: the per-worker request bound.

    Every DoFn instance of a worker process gets the same object, so however many bundles the
    runner processes at once, at most ``capacity`` requests are in flight in the process.
    """
    if capacity < 1:
        raise ConfigError(f"a worker needs at least one request thread, got {capacity}")
    with _SEMAPHORES_LOCK:
        key = (name, capacity)
        if key not in _SEMAPHORES:
            _SEMAPHORES[key] = threading.BoundedSemaphore(capacity)
        return _SEMAPHORES[key]


class WorkerRequests:
    """A Beam worker's Earth Engine request threads, shared by the export and the map DoFns.

    ``threads`` pool threads per DoFn instance, at most ``threads`` requests in flight per
    worker process (:func:`worker_semaphore`: the runner may run several bundles at once),
    fewer while the quota answers 429 (the session's adaptive limit, one per process:
    :func:`core.concurrency.shared_limit`), and
    the session's retries added to a Beam counter once each (the session counts them for the
    life of the worker, Beam's counters per bundle thread).

    Work can stream through a whole bundle (:meth:`submit`, :meth:`finished`, :meth:`drain`):
    a DoFn that waited for each element's requests before taking the next element would let
    its request slots empty at every element's end (the slowest request of the element, a
    time-out, a retry's backoff), a share of the quota that grows as elements get smaller.
    Streaming keeps up to ``2 x threads`` units of work queued across elements and waits for
    all of them only when the bundle ends. Call these three on the bundle's thread (Beam keeps
    metrics per thread); :meth:`start` at each bundle's start.
    """

    def __init__(self, session: Any, threads: int, name: str, retries: Any) -> None:
        self.session = session
        self.threads = threads
        self.gate = worker_semaphore("earthengine-requests", threads)
        # the process adapts as one client of the quota, within its share of the budget
        session.limit = shared_limit("earthengine-requests", threads)
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self._retries = retries
        self._reported = 0
        self._lock = threading.Lock()
        self._pending: set[Future[Any]] = set()

    def start(self) -> None:
        """Forget what a failed bundle left (its work is cancelled, its results unwanted)."""
        self.cancel()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` on the request threads; its result comes from :meth:`finished`."""
        self._pending.add(self.pool.submit(fn, *args))

    def finished(self, backlog: int | None = None) -> Iterator[Any]:
        """Results of finished work (any order), waiting while more than ``backlog`` is queued.

        ``backlog`` defaults to ``2 x threads``: enough queued work to keep every thread busy
        while the runner hands the DoFn its next element. The first failure is raised after
        the rest of the bundle's work is cancelled (the runner retries the bundle whole).
        """
        backlog = 2 * self.threads if backlog is None else backlog
        try:
            while self._pending:
                done = {f for f in self._pending if f.done()}
                if not done:
                    if len(self._pending) <= backlog:
                        return
                    done, _ = wait(self._pending, return_when=FIRST_COMPLETED)
                for future in done:
                    self._pending.discard(future)
                    yield future.result()
        except BaseException:
            self.cancel()
            raise

    def drain(self) -> Iterator[Any]:
        """Results of all queued work (the bundle's end: call from ``finish_bundle``)."""
        try:
            yield from self.finished(backlog=0)
        finally:
            self.report_retries()

    def cancel(self) -> None:
        """Cancel queued work that has not started (a failed bundle fetches no more)."""
        for future in self._pending:
            future.cancel()
        self._pending = set()

    def report_retries(self) -> None:
        """Add the retries since the last report to the counter (call on the bundle thread)."""
        with self._lock:
            total = self.session.retries
            self._retries.inc(total - self._reported)
            self._reported = total

    def close(self) -> None:
        self.cancel()
        self.pool.shutdown(wait=True)
