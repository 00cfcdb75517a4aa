"""Beam pipelines run the way Dataflow runs them, on this machine.

Dataflow pickles every DoFn, ships it to worker processes that call ``setup()`` there, and
retries a failed bundle (up to four attempts), discarding what the failed attempt emitted. The
DirectRunner's ``multi_processing`` mode does the first part (each worker is a separate
``sdk_worker_main`` process fed pickled DoFns) but stops the job at the first failed bundle;
:class:`RetryingDirectRunner` adds Dataflow's bundle retry to it, so a test can inject a
failure and check that a retried bundle leaves the same outputs.

:func:`dataflow_like` is the :class:`RunnerConfig` of such a run, and :class:`FailOnce` a
picklable session factory that fails one request in the whole job, in a worker process that
has already written an output (a marker file makes it fail once, whichever process asks).
"""

from __future__ import annotations

import glob
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from apache_beam.runners.portability.fn_api_runner import execution, fn_runner

from core.pipeline_options import RunnerConfig
from gee_export.ee.session import EESession

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_ATTEMPTS = 4  # Dataflow's attempts at a bundle in a batch job
log = logging.getLogger(__name__)
_attempt = threading.local()  # the outputs of the bundle attempt running on this thread


def dataflow_like(max_workers: int = 2, max_concurrent: int = 4) -> RunnerConfig:
    """A ``--runner direct`` config whose workers are processes and whose bundles are retried."""
    return RunnerConfig("direct", max_workers=max_workers, max_concurrent=max_concurrent,
                        extra=("--direct_running_mode=multi_processing",
                               f"--runner={__name__}.RetryingDirectRunner"))


def worker_path(monkeypatch: Any) -> None:
    """Worker processes import isamap from this checkout (they inherit the environment)."""
    paths = [str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(dict.fromkeys(paths)))


class _Staged:
    """A runner buffer's stand-in during one attempt: what the attempt emits waits here."""

    cleared = False

    def __init__(self, outputs: list, key: tuple[Any, str]) -> None:
        self.outputs, self.key = outputs, key

    def append(self, data: bytes) -> None:
        self.outputs.append((self.key, data))

    def reset(self) -> None:
        pass


_real_get_buffer = execution.BundleContextManager.get_buffer
_real_process_bundle = fn_runner.BundleManager.process_bundle


def _get_buffer(self: Any, buffer_id: bytes, transform_id: str) -> Any:
    outputs = getattr(_attempt, "outputs", None)
    if outputs is None:
        return _real_get_buffer(self, buffer_id, transform_id)
    return _Staged(outputs, (buffer_id, transform_id))


def _process_bundle(self: Any, inputs: Any, expected_outputs: Any, fired_timers: Any,
                    expected_output_timers: Any, dry_run: bool = False) -> Any:
    """One bundle (one worker's part of a stage), attempted up to :data:`MAX_ATTEMPTS` times.

    What an attempt emits is kept aside and handed to the runner only when the attempt
    succeeds, as Dataflow commits a bundle's outputs only when it succeeds.
    """
    if dry_run or expected_output_timers or fired_timers:  # none in isamap's pipelines
        return _real_process_bundle(self, inputs, expected_outputs, fired_timers,
                                    expected_output_timers, dry_run)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        _attempt.outputs = outputs = []
        try:
            result = _real_process_bundle(self, inputs, expected_outputs, fired_timers,
                                          expected_output_timers)
        except RuntimeError as exc:
            if attempt == MAX_ATTEMPTS:
                raise
            RetryingDirectRunner.retried.append(str(exc).strip().splitlines()[-1])
            log.warning("bundle attempt %d failed, retrying: %s", attempt, exc)
            continue
        finally:
            _attempt.outputs = None
        for (buffer_id, transform_id), data in outputs:
            _real_get_buffer(self.bundle_context_manager, buffer_id, transform_id).append(data)
        return result
    raise AssertionError("unreachable")


class RetryingDirectRunner(fn_runner.FnApiRunner):
    """The DirectRunner's portable runner with Dataflow's bundle retry.

    ``retried`` lists the error line of every failed attempt that was retried (in this
    process, since the last :meth:`run_pipeline`).
    """

    retried: ClassVar[list[str]] = []
    last_result: ClassVar[Any] = None  # the last run's result (its metrics)

    def run_pipeline(self, pipeline: Any, options: Any) -> Any:
        RetryingDirectRunner.retried = []
        fn_runner.BundleManager.process_bundle = _process_bundle
        execution.BundleContextManager.get_buffer = _get_buffer
        try:
            RetryingDirectRunner.last_result = super().run_pipeline(pipeline, options)
            return RetryingDirectRunner.last_result
        finally:
            fn_runner.BundleManager.process_bundle = _real_process_bundle
            execution.BundleContextManager.get_buffer = _real_get_buffer


class _FailingOnce:
    """A transport whose first request after its own first finished output fails, once a job.

    "Finished" is seen on disk: ``written`` maps the origin of each window to a glob pattern
    of the file written from it (a patch's image, a map tile). The first request this process
    makes once a file of a window it served exists fails (not retryable), so the failing bundle
    has already written something, which its retry must find finished.
    """

    def __init__(self, transport: Any, written: Mapping[str, str], marker: str) -> None:
        self.transport, self.written, self.marker = transport, written, marker
        self.served: list[str] = []
        self.lock = threading.Lock()

    def _finished_one(self) -> bool:
        with self.lock:
            served = list(self.served)
        return any(glob.glob(self.written[o]) for o in served if o in self.written)

    def compute_pixels(self, request: dict[str, Any]) -> Any:
        from testing.fake_server import request_origin

        a = request["grid"]["affineTransform"]
        origin = request_origin(a["translateX"], a["translateY"])
        if self._finished_one():
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass  # failed once already, in some worker process
            else:
                raise RuntimeError(f"injected worker failure at {origin} "
                                   f"in process {os.getpid()}")
        out = self.transport.compute_pixels(request)
        with self.lock:
            self.served.append(origin)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


@dataclass(frozen=True)
class FailOnce:
    """Sessions of ``sessions`` that fail one request in the whole job (see _FailingOnce).

    Picklable: each worker process opens its own session; the marker file (created atomically
    by the attempt that fails) is what makes the failure happen once in the whole job.

    Attributes:
        sessions: the session factory wrapped (``StackSessions``).
        written: window origin (``request_origin``) -> glob pattern of the file written from it.
        marker: the file whose creation marks the failure.
    """

    sessions: Any
    written: Mapping[str, str]
    marker: str

    def __call__(self) -> EESession:
        session = self.sessions()
        session.transport = _FailingOnce(session.transport, self.written, self.marker)
        return session
