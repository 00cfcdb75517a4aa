"""The Earth Engine REST service at the HTTP layer, for tests of the real earthengine-api client.

earthengine-api 1.7 sends every call through google-api-python-client: a discovery document
describes the REST methods, and every call ends in ``http.request(uri, method, body, headers)``
on the transport given to ``ee.Initialize(http_transport=...)``, which must return an
``(httplib2.Response, bytes)`` pair. :class:`EarthEngineHttp` is that transport, so everything
above it (ee.data, ee.batch, googleapiclient's request building, its retry loop, the
translation of HTTP errors into ``EEException``) is the real client, unpatched.

It answers the client's set-up requests itself: the discovery request with a document built
offline from the one the wheel ships (``ee/tests/cloud_api_discovery_document.json``, a v1alpha
description without schemas: its paths are moved to ``v1`` and ``image:importExternal``, which
it lacks, is added in the shape of ``image:import``), the algorithm list with the wheel's
``ee/tests/algorithms.json`` (already a ListAlgorithmsResponse), and the deprecated-asset
catalogue that ``ee.Initialize`` reads through urllib (:func:`urllib_handler`) with
:data:`DEPRECATED_CATALOG`. Every other request goes to the attached :class:`FakeEarthEngine`;
with none attached it is refused with HTTP 401, as the service refuses a request that carries
no credentials.

:class:`FakeEarthEngine` keeps assets, IAM policies and operations in memory and answers the REST
methods isamap uses (projects.assets.get/create/getIamPolicy/setIamPolicy,
projects.image.import/importExternal/export, projects.operations.get/list,
projects.value.compute) with the JSON the REST reference documents; errors carry the google.rpc
body ``{"error": {"code", "message", "status"}}``. Faults (an HTTP status, or a connection error
raised by the transport) are injected per route. Every request it receives is recorded. Where
the service's behaviour is not documented, the choice made here is said where it is made.
"""

from __future__ import annotations

import copy
import io
import itertools
import json
import re
import threading
import urllib.request
import urllib.response
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

API_ROOT = "https://earthengine.googleapis.com/"
VERSION = "v1"
DEPRECATED_CATALOG_URL = ("https://storage.googleapis.com/earthengine-stac/catalog/"
                          "catalog_deprecated.json")
# The deprecated-asset catalogue as ee.deprecation reads it: STAC links flagged "deprecated",
# titled with the asset id (checked 2026-11: GLO30 deprecated since 2026-07-09).
DEPRECATED_CATALOG = {
    "type": "Catalog", "id": "GEE_catalog_deprecated",
    "links": [{"rel": "child", "title": "COPERNICUS/DEM/GLO30", "deprecated": True,
               "href": "https://earthengine-stac.storage.googleapis.com/catalog/COPERNICUS/"
                       "COPERNICUS_DEM_GLO30.json",
               "gee:replacement_id": "COPERNICUS/DEM/GLO30_2024_1"}],
}
RPC_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
              404: "NOT_FOUND", 409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED",
              500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
NO_CREDENTIALS = ("Request is missing required authentication credential. Expected OAuth 2 "
                  "access token, login cookie or other valid authentication credential.")
# What the export service accepts in a task description (its own error message says so).
DESCRIPTION = re.compile(r"[A-Za-z0-9.,:;_-]{1,100}")


def _wheel_file(name: str) -> Path:
    import ee

    return Path(ee.__file__).parent / "tests" / name


@lru_cache(maxsize=1)
def discovery_document() -> str:
    """The v1 discovery document, built offline from the v1alpha one the wheel ships."""
    doc = json.loads(_wheel_file("cloud_api_discovery_document.json").read_text())
    doc["version"] = VERSION
    text = json.dumps(doc).replace('"v1alpha/', f'"{VERSION}/')
    doc = json.loads(text)
    image = doc["resources"]["projects"]["resources"]["image"]["methods"]
    external = copy.deepcopy(image["import"])
    external.update(id="earthengine.projects.image.importExternal",
                    path=f"{VERSION}/{{+project}}/image:importExternal",
                    flatPath=f"{VERSION}/projects/{{projectsId}}/image:importExternal")
    image["importExternal"] = external
    return json.dumps(doc)


@lru_cache(maxsize=1)
def algorithms() -> bytes:
    return _wheel_file("algorithms.json").read_bytes()


@dataclass(frozen=True)
class Request:
    """One HTTP request as the service received it (``path`` without the API version)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any


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
        compute_result: what ``value:compute`` (``getInfo``) answers.
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

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._etags = itertools.count(1)
        self._lock = threading.Lock()
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Any]]] = [
            ("POST", re.compile(r"projects/[^/]+/value:compute"), self._compute),
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
    def handle(self, method: str, path: str, query: dict[str, str], body: Any
               ) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(Request(method, path, query, body))
            if len(self.requests) > self.max_requests:
                raise AssertionError(f"more than {self.max_requests} HTTP requests: "
                                     f"{method} {path}")
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.pattern.search(path):
                    fault.times -= 1
                    if fault.exception is not None:
                        raise fault.exception
                    return fault.status, _error(fault.status, fault.message, fault.rpc_status,
                                                fault.reason)
            for verb, pattern, handler in self._routes:
                match = pattern.fullmatch(path)
                if verb == method and match:
                    try:
                        return 200, handler(match, query, body)
                    except ServiceError as exc:
                        return exc.status, _error(exc.status, exc.message, exc.rpc_status)
            return 404, _error(404, f"Method not found: {method} {path}")

    # ------------------------------------------------------------------ values
    def _compute(self, match: re.Match, query: dict[str, str], body: Any) -> Any:
        return {"result": self.compute_result}

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

    def _import(self, match: re.Match, query: dict[str, str], body: Any) -> Any:
        manifest = body["imageManifest"]
        name = manifest["name"]
        self._check_parent(name)
        if name in self.assets and not body.get("overwrite"):
            raise ServiceError(409, f"Cannot overwrite asset '{name}'.")
        project = match.group(0).split("/image:")[0]

        def created() -> None:
            self.add_asset(name, "IMAGE")

        return self._new_operation(project, "INGEST_IMAGE", f"Ingest image: \"{name}\"",
                                   created).json()

    def _import_external(self, match: re.Match, query: dict[str, str], body: Any) -> Any:
        name = body["imageManifest"]["name"]
        self._check_parent(name)
        if name in self.assets and not body.get("overwrite"):
            raise ServiceError(409, f"Cannot overwrite asset '{name}'.")
        self.add_asset(name, "IMAGE")
        return {}

    def _export(self, match: re.Match, query: dict[str, str], body: Any) -> Any:
        description = body.get("description", "")
        if not DESCRIPTION.fullmatch(description):
            raise ServiceError(400, "The description must contain only the following "
                               "characters: a..z, A..Z, 0..9, \".\", \",\", \":\", \";\", \"_\" "
                               "or \"-\". The description must be at most 100 characters long.")
        project = match.group(0).split("/image:")[0]
        request_id = body.get("requestId")
        if request_id:  # the documented idempotency key: one operation per request id
            for op in self.operations.values():
                if op.metadata.get("requestId") == request_id:
                    return op.json()
        op = self._new_operation(project, "EXPORT_IMAGE", description)
        op.metadata["requestId"] = request_id
        return op.json()

    def _get_operation(self, match: re.Match, query: dict[str, str], body: Any) -> Any:
        op = self.operations.get(match.group(0))
        if op is None:
            raise ServiceError(404, f"Operation {match.group(0)} not found.")
        return op.advance()

    def _list_operations(self, match: re.Match, query: dict[str, str], body: Any) -> Any:
        project = match.group(0).rsplit("/", 1)[0]
        ops = [op for name, op in self.operations.items() if name.startswith(project + "/")]
        size = min(int(query.get("pageSize", 50)), self.page_size_cap)
        start = int(query.get("pageToken") or 0)
        page = ops[start:start + size]
        out: dict[str, Any] = {"operations": [op.advance() for op in page]}
        if start + size < len(ops):
            out["nextPageToken"] = str(start + size)
        return out

    # ------------------------------------------------------------------ assets
    def _get_asset(self, match: re.Match, query: dict[str, str], body: Any) -> Any:
        name = match.group(0)
        if name not in self.assets:
            raise ServiceError(404, f"Asset '{name}' does not exist or doesn't allow this "
                               "operation.")
        return self.assets[name]

    def _create_asset(self, match: re.Match, query: dict[str, str], body: Any) -> Any:
        name = f"{match.group(1)}/assets/{query['assetId']}"
        if name in self.assets:
            raise ServiceError(409, f"Cannot overwrite asset '{name}'.")
        self._check_parent(name)
        if body.get("type") not in ("FOLDER", "IMAGE_COLLECTION"):
            raise ServiceError(400, f"Invalid asset type {body.get('type')!r}.")
        self.add_asset(name, body["type"])
        return self.assets[name]

    def _get_policy(self, match: re.Match, query: dict[str, str], body: Any) -> Any:
        name = match.group(1)
        if name not in self.policies:
            raise ServiceError(404, f"Asset '{name}' does not exist.")
        return copy.deepcopy(self.policies[name])

    def _set_policy(self, match: re.Match, query: dict[str, str], body: Any) -> Any:
        # setIamPolicy replaces the whole policy; a stale etag is refused with ABORTED, as
        # IAM documents for concurrent read-modify-write cycles.
        name = match.group(1)
        if name not in self.policies:
            raise ServiceError(404, f"Asset '{name}' does not exist.")
        policy = copy.deepcopy(body["policy"])
        etag = policy.pop("etag", None)
        if etag is not None and etag != self.policies[name]["etag"]:
            raise ServiceError(409, "There were concurrent policy changes. Please retry the "
                               "whole read-modify-write with exponential backoff.", "ABORTED")
        policy["etag"] = self._etag()
        policy.setdefault("version", 1)
        self.policies[name] = policy
        return copy.deepcopy(policy)


def _error(status: int, message: str, rpc_status: str = "", reason: str = "") -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message,
                             "status": rpc_status or RPC_STATUS.get(status, "UNKNOWN")}
    if reason:
        error["errors"] = [{"message": message, "domain": "global", "reason": reason}]
    return {"error": error}


class EarthEngineHttp:
    """An ``httplib2.Http``-shaped transport answering as the Earth Engine REST service."""

    def __init__(self) -> None:
        self.service: FakeEarthEngine | None = None

    def request(self, uri: str, method: str = "GET", body: Any = None,
                headers: dict[str, str] | None = None, redirections: int = 5,
                connection_type: Any = None) -> tuple[Any, bytes]:
        import httplib2

        parts = urlsplit(uri)
        query = dict(parse_qsl(parts.query))
        if "$discovery" in parts.path:
            return _response(200), discovery_document().encode()
        path = unquote(parts.path).lstrip("/")
        assert path.startswith(f"{VERSION}/"), f"request outside the {VERSION} API: {uri}"
        path = path[len(VERSION) + 1:]
        if method == "GET" and re.fullmatch(r"projects/[^/]+/algorithms", path):
            return _response(200), algorithms()
        if self.service is None:
            return _response(401), json.dumps(_error(401, NO_CREDENTIALS)).encode()
        data = json.loads(body) if body else None
        status, payload = self.service.handle(method.upper(), path, query, data)
        assert isinstance(status, int)
        return httplib2.Response({"status": status, "content-type": "application/json",
                                  **self.service.headers}), json.dumps(payload).encode()


def _response(status: int) -> Any:
    import httplib2

    return httplib2.Response({"status": status, "content-type": "application/json"})


class _CatalogHandler(urllib.request.BaseHandler):
    """Serves the deprecated-asset catalogue to ``urllib.request.urlopen`` (nothing else)."""

    handler_order = 100  # before urllib's own HTTPS handler, which would go to the network

    def https_open(self, req: urllib.request.Request) -> Any:
        if req.full_url != DEPRECATED_CATALOG_URL:
            return None  # not ours: the next handler (the real network) answers
        data = json.dumps(DEPRECATED_CATALOG).encode()
        headers = Message()
        headers["Content-Type"] = "application/json"
        response = urllib.response.addinfourl(io.BytesIO(data), headers, req.full_url, 200)
        response.msg = "OK"  # read by urllib's error processor
        return response


def urllib_opener() -> urllib.request.OpenerDirector:
    """A urllib opener that serves :data:`DEPRECATED_CATALOG` at its catalogue address."""
    return urllib.request.build_opener(_CatalogHandler())
