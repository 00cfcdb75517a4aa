"""The real transport under the Earth Engine session: ``ee.data`` calls, task statuses, endpoints.

:class:`EETransport` performs the calls of :class:`gee_export.ee.session.EESession` with
earthengine-api, its own retries switched off (the session is the one retry loop), every request
carrying the run's ``workloadTag``, and the client's restricted-mode warning said once a run
(:func:`gee_export.ee.service_errors.say_restricted_mode_once`). Batch tasks' statuses are read as
long-running operations (:func:`operation_status`, with the EECU a finished task reports); many are
read by listing the project's operations in pages. A ``computePixels`` request can ask for its
computation profile (:mod:`gee_export.ee.profiles` reads it back). Tests swap the whole transport
for one that serves a local stack (:mod:`testing.fake_server`).
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable
from typing import Any, Protocol

from gee_export.ee.names import task_description
from gee_export.ee.service_errors import http_status, say_restricted_mode_once

HIGH_VOLUME_URL = "https://earthengine-highvolume.googleapis.com"
STANDARD_URL = "https://earthengine.googleapis.com"
# earthengine-api's own retry count, set explicitly: EESession.call is the one retry loop.
CLIENT_RETRIES = 0
# More task ids than this are read by listing the project's operations (pages of 500)
# instead of one request per task.
PER_TASK_READS = 20
EE_SCOPES = ("https://www.googleapis.com/auth/earthengine",
             "https://www.googleapis.com/auth/cloud-platform")

_OPERATION_TO_TASK_STATE = {"PENDING": "READY", "RUNNING": "RUNNING",
                            "CANCELLING": "CANCEL_REQUESTED", "SUCCEEDED": "COMPLETED",
                            "CANCELLED": "CANCELLED", "FAILED": "FAILED"}


def endpoint_url(high_volume: bool) -> str:
    """The endpoint a session asks for, always explicitly.

    Initialising an already initialised client replaces only what is named: a process that
    mapped through the high-volume endpoint and then publishes would stay on it unless the
    standard URL is passed.
    """
    return HIGH_VOLUME_URL if high_volume else STANDARD_URL


def operation_status(operation: dict[str, Any]) -> dict[str, Any]:
    """A long-running operation as a task status, progress included.

    Returns ``id`` (the server's task id: the last part of the operation name), ``name``,
    ``state`` in the task vocabulary (READY, RUNNING, COMPLETED, FAILED, CANCELLED,
    CANCEL_REQUESTED, UNKNOWN), ``progress`` in [0, 1] (``metadata.progress``, which
    ``ee.data.getTaskStatus`` drops), ``description``, for a failure ``error_message``, and
    ``eecu_seconds`` when the service reported the task's compute
    (``metadata.batchEecuUsageSeconds``).
    """
    name = str(operation.get("name", ""))
    meta = operation.get("metadata") or {}
    state = _OPERATION_TO_TASK_STATE.get(str(meta.get("state", "")), "UNKNOWN")
    status: dict[str, Any] = {"id": name.rsplit("/", 1)[-1], "name": name, "state": state,
                              "progress": float(meta.get("progress") or 0.0),
                              "description": str(meta.get("description", ""))}
    if meta.get("batchEecuUsageSeconds") is not None:  # what the task's compute cost
        status["eecu_seconds"] = float(meta["batchEecuUsageSeconds"])
    if operation.get("done"):
        if "error" in operation:
            status["error_message"] = str(operation["error"].get("message", ""))
            if state not in ("FAILED", "CANCELLED"):
                status["state"] = "FAILED"
        elif state == "UNKNOWN":
            status["state"] = "COMPLETED"
    return status


class Transport(Protocol):
    """What actually performs server calls; the real one wraps ``ee.data``."""

    def compute_pixels(self, request: dict[str, Any]) -> Any: ...

    def get_info(self, obj: Any) -> Any: ...

    def start_task(self, task: Any) -> str: ...

    def task_status(self, task_ids: list[str]) -> list[dict[str, Any]]: ...


class ProfilingTransport(Transport, Protocol):
    """A transport whose ``compute_pixels`` can ask for the request's computation profile.

    It takes a ``profile`` argument (:func:`takes_profile`); other transports are never asked.
    """

    def compute_pixels(self, request: dict[str, Any],
                       profile: Callable[[str], None] | None = None) -> Any: ...


def takes_profile(transport: Any) -> bool:
    """Whether ``transport.compute_pixels`` takes a ``profile`` hook (a profiling transport)."""
    try:
        return "profile" in inspect.signature(transport.compute_pixels).parameters
    except (TypeError, ValueError):  # no signature to read: asked nothing it may not take
        return False


class EETransport:
    """The real transport: ``ee.data`` calls of earthengine-api, with its own retries off.

    Args:
        ee_module: the initialised ``ee`` module.
        project: the Cloud project the session's tasks run in (names their operations).
        workload_tag: the ``workloadTag`` of every request (None: none).
    """

    def __init__(self, ee_module: Any, project: str | None = None,
                 workload_tag: str | None = None) -> None:
        self.ee = ee_module
        self.project = project
        self.workload_tag = workload_tag
        self.configure_client()

    def configure_client(self) -> None:
        """Switch the client's own retries off and set the workload tag (again, after reset).

        The client adds the default tag to every computation and export it sends. Its
        warning of restricted mode (a noncommercial project past its monthly allowance: its
        computations run slowed) is said once a run, and nothing stops on it.
        """
        self.ee.data.setMaxRetries(CLIENT_RETRIES)
        say_restricted_mode_once()
        if self.workload_tag:
            self.ee.data.setDefaultWorkloadTag(self.workload_tag)

    def compute_pixels(self, request: dict[str, Any],
                       profile: Callable[[str], None] | None = None) -> Any:
        """``ee.data.computePixels``; with ``profile``, the request asks for its profile.

        The client sends ``X-Earth-Engine-Computation-Profiling: 1`` while its profiling
        hook is set (``ee.data.profiling``, per thread) and calls the hook with the id the
        answer's ``X-Earth-Engine-Computation-Profile`` header carries.
        """
        if self.workload_tag:  # named in the body: no other thread's tag can replace it
            request = {**request, "workloadTag": self.workload_tag}
        if profile is None:
            return self.ee.data.computePixels(request)
        with self.ee.data.profiling(profile):
            return self.ee.data.computePixels(request)

    def get_info(self, obj: Any) -> Any:
        return obj.getInfo()

    def start_task(self, task: Any) -> str:
        # The client sends the task's request id with the export, so a retried start is
        # recognised by the server and starts nothing twice.
        if task.config and "description" in task.config:
            task.config["description"] = task_description(str(task.config["description"]))
        task.start()
        return str(task.id)

    def task_status(self, task_ids: list[str]) -> list[dict[str, Any]]:
        """Statuses in the order of ``task_ids``: one read each for a few, pages for many."""
        found: dict[str, dict[str, Any]] = {}
        if len(task_ids) > PER_TASK_READS or not self.project:
            wanted = set(task_ids)
            for op in self.ee.data.listOperations():
                status = operation_status(op)
                if status["id"] in wanted or status["name"] in wanted:
                    found[status["id"]] = found[status["name"]] = status
        for task_id in task_ids:
            if task_id not in found:
                found[task_id] = self._read_one(task_id)
        return [found[t] for t in task_ids]

    def _read_one(self, task_id: str) -> dict[str, Any]:
        name = task_id if "/operations/" in task_id else (
            f"projects/{self.project}/operations/{task_id}" if self.project else "")
        if not name:
            return {"id": task_id, "state": "UNKNOWN", "progress": 0.0}
        try:
            return operation_status(self.ee.data.getOperation(name))
        except Exception as exc:
            if http_status(exc).code == 404:
                return {"id": task_id, "name": name, "state": "UNKNOWN", "progress": 0.0}
            raise


def credentials(ee: Any, application_default: bool = False) -> Any:
    """Service-account key when GOOGLE_APPLICATION_CREDENTIALS is set, else stored user creds.

    ``application_default`` takes the machine's own credentials (a worker's service account).
    """
    if application_default:
        import google.auth

        credentials, _ = google.auth.default(scopes=list(EE_SCOPES))
        return credentials

    key = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if key:
        with open(key) as fh:
            email = json.load(fh).get("client_email")
        if email:
            return ee.ServiceAccountCredentials(email, key)
    return "persistent"

