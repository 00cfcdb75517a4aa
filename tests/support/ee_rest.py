"""The Earth Engine REST service's resources, as a stand-in answers them to the real client.

:class:`FakeEarthEngine` keeps assets, IAM policies and operations in memory and answers the REST
methods isamap uses (projects.assets.get/create/getIamPolicy/setIamPolicy,
projects.image.import/importExternal/export/computePixels, projects.operations.get/list,
projects.value.compute) with the JSON the REST reference documents; errors carry the google.rpc
body ``{"error": {"code", "message", "status"}}``. Pixels, their cost and computation profiles
are :mod:`tests.support.ee_compute`'s. Faults (an HTTP status, or a connection error raised by
the transport) are injected per route. Every request it receives is recorded, its headers
included. :mod:`tests.support.ee_http` puts it behind the client's HTTP layer. Where the
service's behaviour is not documented, the choice made here is said where it is made.
"""

from __future__ import annotations

import copy
import itertools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from testing.fake_quota import HttpError
from tests.support.ee_compute import ComputeService, PixelAnswer

RPC_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
              404: "NOT_FOUND", 409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED",
              500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
# What the export service accepts in a task description (its own error message says so).
DESCRIPTION = re.compile(r"[A-Za-z0-9.,:;_-]{1,100}")


@dataclass(frozen=True)
class Request:
    """One HTTP request as the service received it.

    ``path`` is without the API version, ``headers`` have lower-case names, ``host`` is the
    endpoint's (``earthengine.googleapis.com`` or ``earthengine-highvolume.googleapis.com``).
    """

    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    host: str = ""


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int = 0
    message: str = ""
    rpc_status: str = ""
    exception: BaseException | None = None
    times: int = 1
    reason: str = ""


@dataclass
class Operation:
    """A long-running operation and the states it goes through, one per read."""

    name: str
    metadata: dict[str, Any]
    steps: list[tuple[str, float]]
    on_success: Callable[[], None] | None = None
    error: str | None = None
    done: bool = False

    def advance(self) -> dict[str, Any]:
        if len(self.steps) > 1:
            self.steps.pop(0)
        state, progress = self.steps[0]
        self.metadata.update(state=state, progress=progress)
        if state in ("SUCCEEDED", "FAILED", "CANCELLED") and not self.done:
            self.done = True
            if state == "SUCCEEDED" and self.on_success:
                self.on_success()
        return self.json()

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "metadata": dict(self.metadata)}
        if self.done:
            out["done"] = True
            if self.error:
                out["error"] = {"code": 3, "message": self.error}
            else:
                out["response"] = {"@type": "type.googleapis.com/google.protobuf.Empty"}
        return out


class ServiceError(Exception):
    def __init__(self, status: int, message: str, rpc_status: str = "") -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.rpc_status = rpc_status or RPC_STATUS.get(status, "UNKNOWN")


@dataclass
class FakeEarthEngine:
    """Assets, IAM policies and operations of one test, served as the REST API documents.

    Attributes:
        steps: the (state, progress) an operation reports on its successive reads; the last
            one sticks.
        max_requests: more requests than this raise AssertionError in the transport, so a
            test of a bounded number of attempts fails fast instead of sleeping through an
            unbounded client retry loop.
        compute_result: what ``value:compute`` (``getInfo``) answers, except for
            ``Profile.getProfiles``, which :attr:`compute` answers; a callable is given the
            request's body and answers for it.
        compute: computePixels answers, their metered cost and computation profiles.
        headers: headers every answer carries (the quota status of a project in restricted
            mode: ``x-earth-engine-quota-status: parallelism_restricted=true``).
    """

    steps: tuple[tuple[str, float], ...] = (("PENDING", 0.0), ("RUNNING", 0.25),
                                            ("RUNNING", 0.75), ("SUCCEEDED", 1.0))
    max_requests: int = 200
    compute_result: Any = 42
    requests: list[Request] = field(default_factory=list)
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    page_size_cap: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    compute: ComputeService = field(default_factory=ComputeService)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._etags = itertools.count(1)
        self._lock = threading.Lock()
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Any]]] = [
            ("POST", re.compile(r"projects/[^/]+/value:compute"), self._compute),
            ("POST", re.compile(r"projects/[^/]+/image:computePixels"), self._compute_pixels),
            ("POST", re.compile(r"projects/[^/]+/image:import"), self._import),
            ("POST", re.compile(r"projects/[^/]+/image:importExternal"), self._import_external),
            ("POST", re.compile(r"projects/[^/]+/image:export"), self._export),
            ("GET", re.compile(r"projects/[^/]+/operations/[^/]+"), self._get_operation),
            ("GET", re.compile(r"projects/[^/]+/operations"), self._list_operations),
            ("POST", re.compile(r"(projects/[^/]+/assets/.+):getIamPolicy"), self._get_policy),
            ("POST", re.compile(r"(projects/[^/]+/assets/.+):setIamPolicy"), self._set_policy),
            ("GET", re.compile(r"projects/[^/]+/assets/.+"), self._get_asset),
            ("POST", re.compile(r"(projects/[^/]+)/assets"), self._create_asset),
        ]

    # ------------------------------------------------------------------ test set-up
    def fail(self, method: str, pattern: str, status: int = 0, message: str = "",
             *, times: int = 1, rpc_status: str = "", reason: str = "",
             exception: BaseException | None = None) -> None:
        """Answer the next ``times`` requests matching ``method`` + ``pattern`` with an error.

        ``reason`` adds the ``errors[].reason`` of Google's JSON error format (e.g.
        ``rateLimitExceeded``); ``exception`` is raised by the transport instead, as a
        dropped connection would be.
        """
        self.faults.append(Fault(method, re.compile(pattern), status, message, rpc_status,
                                 exception, times, reason))

    def add_asset(self, name: str, type_: str = "FOLDER",
                  bindings: list[dict[str, Any]] | None = None) -> None:
        self.assets[name] = {"type": type_, "name": name, "id": name.split("/assets/", 1)[1]}
        self.policies[name] = {"version": 1, "etag": self._etag(), "bindings": bindings or [
            {"role": "roles/owner", "members": ["user:owner@example.com"]}]}

    def add_operation(self, project: str, description: str,
                      steps: tuple[tuple[str, float], ...] | None = None) -> str:
        """An export operation started elsewhere; returns its (server-assigned) id."""
        op = self._new_operation(project, "EXPORT_IMAGE", description, steps=steps)
        return op.name.rsplit("/", 1)[1]

    def calls(self, method: str | None = None, pattern: str = "") -> list[Request]:
        return [r for r in self.requests if (method is None or r.method == method)
                and re.search(pattern, r.path)]

    # ------------------------------------------------------------------ dispatch
    def handle(self, request: Request) -> tuple[int, Any]:
        """The status and answer (JSON-able, or a :class:`PixelAnswer`'s bytes) of a request."""
        method, path = request.method, request.path
        with self._lock:
            self.requests.append(request)
            if len(self.requests) > self.max_requests:
                raise AssertionError(f"more than {self.max_requests} HTTP requests: "
                                     f"{method} {path}")
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.pattern.search(path):
                    fault.times -= 1
                    if fault.exception is not None:
                        raise fault.exception
                    return fault.status, error_body(fault.status, fault.message, fault.rpc_status,
                                                fault.reason)
            for verb, pattern, handler in self._routes:
                match = pattern.fullmatch(path)
                if verb == method and match:
                    try:
                        return 200, handler(match, request)
                    except ServiceError as exc:
                        return exc.status, error_body(exc.status, exc.message, exc.rpc_status)
                    except HttpError as exc:  # the computations' refusals
                        return exc.resp.status, error_body(exc.resp.status, exc.message)
            return 404, error_body(404, f"Method not found: {method} {path}")

    # ------------------------------------------------------------------ values
    def _compute(self, match: re.Match, request: Request) -> Any:
        profile = self.compute.profile_text(request.body["expression"])
        result = self.compute_result(request.body) if callable(self.compute_result) \
            else self.compute_result
        return {"result": result if profile is None else profile}

    def _compute_pixels(self, match: re.Match, request: Request) -> PixelAnswer:
        return self.compute.compute_pixels(request.body, request.headers)

    # ------------------------------------------------------------------ operations
    def _etag(self) -> str:
        return f"BwY{next(self._etags):05d}"

    def _new_operation(self, project: str, kind: str, description: str,
                       on_success: Callable[[], None] | None = None,
                       steps: tuple[tuple[str, float], ...] | None = None) -> Operation:
        # Operation ids are assigned by the server and differ from any client request id.
        name = f"{project}/operations/{next(self._ids):04d}OPSERVER{kind[:3]}"
        op = Operation(name, {"@type": "type.googleapis.com/google.earthengine.v1."
                              "OperationMetadata", "type": kind, "description": description,
                              "createTime": "2026-11-02T10:00:00Z"},
                       list(steps or self.steps), on_success)
        op.metadata.update(state=op.steps[0][0], progress=op.steps[0][1])
        self.operations[name] = op
        return op

    def _parent_of(self, name: str) -> str:
        return name.rsplit("/", 1)[0]

    def _container_exists(self, name: str) -> bool:
        if re.fullmatch(r"projects/[^/]+/assets", name):
            return True  # the project's asset root always exists
        asset = self.assets.get(name)
        return asset is not None and asset["type"] in ("FOLDER", "IMAGE_COLLECTION")

    def _check_parent(self, name: str) -> None:
        # Not documented: the exact error for a missing parent. Ingestion into a folder or
        # collection that does not exist fails; here it fails at the request, with 404.
        if not self._container_exists(self._parent_of(name)):
            raise ServiceError(404, f"Parent of asset '{name}' does not exist.")

    def _import(self, match: re.Match, request: Request) -> Any:
        manifest = request.body["imageManifest"]
        name = manifest["name"]
        self._check_parent(name)
        if name in self.assets and not request.body.get("overwrite"):
            raise ServiceError(409, f"Cannot overwrite asset '{name}'.")
        project = match.group(0).split("/image:")[0]

        def created() -> None:
            self.add_asset(name, "IMAGE")

        return self._new_operation(project, "INGEST_IMAGE", f"Ingest image: \"{name}\"",
                                   created).json()

    def _import_external(self, match: re.Match, request: Request) -> Any:
        name = request.body["imageManifest"]["name"]
        self._check_parent(name)
        if name in self.assets and not request.body.get("overwrite"):
            raise ServiceError(409, f"Cannot overwrite asset '{name}'.")
        self.add_asset(name, "IMAGE")
        return {}

    def _export(self, match: re.Match, request: Request) -> Any:
        description = request.body.get("description", "")
        if not DESCRIPTION.fullmatch(description):
            raise ServiceError(400, "The description must contain only the following "
                               "characters: a..z, A..Z, 0..9, \".\", \",\", \":\", \";\", \"_\" "
                               "or \"-\". The description must be at most 100 characters long.")
        project = match.group(0).split("/image:")[0]
        request_id = request.body.get("requestId")
        if request_id:  # the documented idempotency key: one operation per request id
            for op in self.operations.values():
                if op.metadata.get("requestId") == request_id:
                    return op.json()
        op = self._new_operation(project, "EXPORT_IMAGE", description)
        op.metadata["requestId"] = request_id
        return op.json()

    def _get_operation(self, match: re.Match, request: Request) -> Any:
        op = self.operations.get(match.group(0))
        if op is None:
            raise ServiceError(404, f"Operation {match.group(0)} not found.")
        return op.advance()

    def _list_operations(self, match: re.Match, request: Request) -> Any:
        project = match.group(0).rsplit("/", 1)[0]
        ops = [op for name, op in self.operations.items() if name.startswith(project + "/")]
        size = min(int(request.query.get("pageSize", 50)), self.page_size_cap)
        start = int(request.query.get("pageToken") or 0)
        page = ops[start:start + size]
        out: dict[str, Any] = {"operations": [op.advance() for op in page]}
        if start + size < len(ops):
            out["nextPageToken"] = str(start + size)
        return out

    # ------------------------------------------------------------------ assets
    def _get_asset(self, match: re.Match, request: Request) -> Any:
        name = match.group(0)
        if name not in self.assets:
            raise ServiceError(404, f"Asset '{name}' does not exist or doesn't allow this "
                               "operation.")
        return self.assets[name]

    def _create_asset(self, match: re.Match, request: Request) -> Any:
        name = f"{match.group(1)}/assets/{request.query['assetId']}"
        if name in self.assets:
            raise ServiceError(409, f"Cannot overwrite asset '{name}'.")
        self._check_parent(name)
        if request.body.get("type") not in ("FOLDER", "IMAGE_COLLECTION"):
            raise ServiceError(400, f"Invalid asset type {request.body.get('type')!r}.")
        self.add_asset(name, request.body["type"])
        return self.assets[name]

    def _get_policy(self, match: re.Match, request: Request) -> Any:
        name = match.group(1)
        if name not in self.policies:
            raise ServiceError(404, f"Asset '{name}' does not exist.")
        return copy.deepcopy(self.policies[name])

    def _set_policy(self, match: re.Match, request: Request) -> Any:
        # setIamPolicy replaces the whole policy; a stale etag is refused with ABORTED, as
        # IAM documents for concurrent read-modify-write cycles.
        name = match.group(1)
        if name not in self.policies:
            raise ServiceError(404, f"Asset '{name}' does not exist.")
        policy = copy.deepcopy(request.body["policy"])
        etag = policy.pop("etag", None)
        if etag is not None and etag != self.policies[name]["etag"]:
            raise ServiceError(409, "There were concurrent policy changes. Please retry the "
                               "whole read-modify-write with exponential backoff.", "ABORTED")
        policy["etag"] = self._etag()
        policy.setdefault("version", 1)
        self.policies[name] = policy
        return copy.deepcopy(policy)


def error_body(status: int, message: str, rpc_status: str = "", reason: str = "") -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message,
                             "status": rpc_status or RPC_STATUS.get(status, "UNKNOWN")}
    if reason:
        error["errors"] = [{"message": message, "domain": "global", "reason": reason}]
    return {"error": error}

