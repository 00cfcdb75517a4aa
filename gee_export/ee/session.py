"""The one seam between isamap and the Earth Engine service.

Everything that talks to a server (initialisation, ``computePixels``, ``getInfo``, batch tasks,
assets) goes through an :class:`EESession`. That buys four things:

* **one retry loop**: earthengine-api's own retries (googleapiclient's, 5 by default, uncapped
  backoff) are switched off (``ee.data.setMaxRetries(0)``), and :meth:`EESession.call` retries
  429 / 5xx / timeouts with capped, jittered backoff under one budget: at most
  ``RetryPolicy.max_attempts`` HTTP requests per call, never that number squared (429s that
  an adaptive request limit answers by lowering itself are its flow control and count apart,
  ``retry.FREE_FACTOR`` times the budget at most); computePixels attempts take slots of the
  process's :class:`~core.concurrency.RequestLimit`, and every request carries the
  run's ``workloadTag``;
* failures are classified on the HTTP status the client keeps (the ``HttpError`` behind its
  ``EEException``) and on a few precise phrases, never on a number inside a message:
  deterministic errors ("Too many input pixels per output pixel", "User memory limit
  exceeded"...) fail at once with the server's message;
* authentication failures become :class:`AuthenticationError` with a message that says exactly
  what to run, instead of a stack trace from deep inside google-auth;
* tests swap the *transport* (the object that actually performs a call) for one that serves a
  local GeoTIFF stack, so the retry logic and the export orchestration run for real offline.

Graph *building* (``ee.Image(...)``, filters, maps) needs no server and does not go through here.
The module is longer than most because the classification, the task-status reading and the
task-description rule all belong to the seam and every caller relies on them.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from core.concurrency import Outcome, RequestLimit
from core.errors import AuthenticationError, EarthEngineError, QuotaError
from core.retry import RetryPolicy, retry_call
from gee_export.ee.names import default_workload_tag, task_description

__all__ = [
    "AUTH_HELP",
    "CLIENT_RETRIES",
    "EXPORT_WITHOUT_ACCOUNT",
    "REQUEST_DEADLINE_S",
    "TIMEOUT_RETRIES",
    "EESession",
    "EETransport",
    "HttpStatus",
    "RetryPolicy",
    "Transport",
    "classify",
    "default_workload_tag",
    "endpoint_url",
    "http_status",
    "operation_status",
    "task_description",
]

HIGH_VOLUME_URL = "https://earthengine-highvolume.googleapis.com"
STANDARD_URL = "https://earthengine.googleapis.com"
# earthengine-api's own retry count, set explicitly: EESession.call is the one retry loop.
CLIENT_RETRIES = 0
# Seconds a request may wait for the service's next byte (the client's default is forever: a
# stalled connection would hold an export for good). The service ends an interactive
# computation itself after 5 minutes, so a request silent for longer is a dead connection; its
# TimeoutError is transient, and EESession.call tries again. The client applies it once
# initialised: the handshake of ee.Initialize itself has no limit.
REQUEST_DEADLINE_S = 600
# More task ids than this are read by listing the project's operations (pages of 500)
# instead of one request per task.
PER_TASK_READS = 20
# "Computation timed out" answers retried before the caller is told (it then halves the window).
TIMEOUT_RETRIES = 1

AUTH_HELP = """Earth Engine is not authenticated or has no Cloud project ({reason}).
To use the Earth Engine backend, do ONE of:
  1. Interactive (laptop, Colab):  earthengine authenticate
     (in Colab: `import ee; ee.Authenticate()`), then pass --project YOUR_CLOUD_PROJECT.
  2. Service account (servers, CI): export GOOGLE_APPLICATION_CREDENTIALS=/path/to/key.json
     (a JSON key of a service account registered for Earth Engine) and pass --project PROJECT.
The Cloud project must have the Earth Engine API enabled and be registered for Earth Engine
(https://console.cloud.google.com/earth-engine). Pass it with --project or EE_PROJECT.
{without_account}"""

EXPORT_WITHOUT_ACCOUNT = """No account? Run the same recipe on local scenes instead:
  isamap-export --backend local --scenes DIR ...
(or `make demo` for a synthetic scene)."""
"""What the export can do without an Earth Engine account (the default of :class:`EESession`)."""

Kind = Literal["auth", "quota", "transient", "fatal"]

# Errors that the same request will always get again: fail at once, whatever the status.
_DETERMINISTIC = (
    "too many input pixels per output pixel", "user memory limit exceeded",
    "too many pixels in the region", "did not match any bands",
    "request payload size exceeds the limit", "must be less than or equal to 50331648 bytes",
)
# Phrases of failures that depend on load, checked only where no status says otherwise.
_TRANSIENT_PHRASES = ("computation timed out",)
_QUOTA_PHRASES = ("too many concurrent aggregations",)
# 403 with one of these reasons is googleapiclient's documented rate limit, not a permission.
_RATE_LIMIT_REASONS = ("ratelimitexceeded", "userratelimitexceeded", "quotaexceeded")
# What earthengine-api and google-auth say when no usable credentials were ever loaded: the
# client library was never initialised, the stored user credentials are missing, expired or
# revoked, or no default credentials exist. Each means "authenticate first".
_AUTH_MARKERS = (
    "earthengine authenticate", "authorize access", "not signed up", "not initialized",
    "not initialised", "not authenticated", "default credentials",
    "invalid authentication credentials", "credentials were not found", "no credentials",
    "invalid_grant", "reauthentication", "ee.initialize: no project found",
)
# Exceptions raised below HTTP (no response at all), by class name so core needs neither
# httplib2 nor google-auth: DNS failures, TLS errors, google-auth's transport errors.
_NETWORK_ERRORS = ("ServerNotFoundError", "gaierror", "SSLError", "TransportError")

_OPERATION_TO_TASK_STATE = {"PENDING": "READY", "RUNNING": "RUNNING",
                            "CANCELLING": "CANCEL_REQUESTED", "SUCCEEDED": "COMPLETED",
                            "CANCELLED": "CANCELLED", "FAILED": "FAILED"}


@dataclass(frozen=True)
class HttpStatus:
    """What the service answered: HTTP code, google.rpc status name and error reasons."""

    code: int | None = None
    rpc: str = ""
    reasons: tuple[str, ...] = ()


def http_status(exc: BaseException) -> HttpStatus:
    """The HTTP status behind ``exc``, however deep the client wrapped it.

    earthengine-api raises ``EEException(message)`` *while handling* googleapiclient's
    ``HttpError``, so the error with ``resp.status`` and the JSON body is the exception's
    ``__context__`` (or ``__cause__``, once this seam re-raises it). Returns an empty status
    for errors that never got an HTTP response (timeouts, refused connections).
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop(0)
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        code = getattr(getattr(err, "resp", None), "status", None)
        if isinstance(code, int):
            return HttpStatus(code, *_error_body(getattr(err, "content", b"")))
        todo += [err.__cause__, err.__context__]
    return HttpStatus()


def _error_body(content: Any) -> tuple[str, tuple[str, ...]]:
    """google.rpc status name and reasons of a JSON error body (empty when unreadable)."""
    try:
        error = json.loads(content.decode() if isinstance(content, bytes) else content)["error"]
    except (ValueError, TypeError, KeyError, AttributeError):
        return "", ()
    reasons = [str(e.get("reason", "")) for e in error.get("errors", []) or []
               if isinstance(e, dict)]
    reasons += [str(d.get("reason", "")) for d in error.get("details", []) or []
                if isinstance(d, dict)]
    return str(error.get("status", "")), tuple(r.lower() for r in reasons if r)


def classify(exc: BaseException) -> Kind:
    """Return ``'auth'``, ``'quota'``, ``'transient'`` or ``'fatal'`` for an exception.

    The HTTP status decides where there is one (401 auth; 403 auth unless its reason is a rate
    limit; 429 quota; 408 / 5xx and a 409 ABORTED concurrency conflict transient; anything
    else fatal); a deterministic message overrides it (retrying cannot help). Without a
    status: network errors are transient, the client's "not initialised" and google-auth's
    missing/expired-credential messages are auth, everything else is fatal.
    """
    if isinstance(exc, AuthenticationError):
        return "auth"
    text = str(exc).lower()
    if any(p in text for p in _DETERMINISTIC):
        return "fatal"
    status = http_status(exc)
    if status.code is not None:
        if status.code == 401:
            return "auth"
        if status.code == 403:
            return "quota" if any(r in _RATE_LIMIT_REASONS for r in status.reasons) else "auth"
        if status.code == 429 or any(p in text for p in _QUOTA_PHRASES):
            return "quota"
        if status.code in (408, 500, 502, 503, 504) or (
                status.code == 409 and status.rpc == "ABORTED"):
            return "transient"
        if any(p in text for p in _TRANSIENT_PHRASES):
            return "transient"
        return "auth" if any(m in text for m in _AUTH_MARKERS) else "fatal"
    if isinstance(exc, (TimeoutError, ConnectionError)) or type(exc).__name__ in _NETWORK_ERRORS:
        return "transient"
    if type(exc).__name__ == "RefreshError" or any(m in text for m in _AUTH_MARKERS):
        return "auth"  # google-auth could not refresh the stored credentials
    if any(p in text for p in _QUOTA_PHRASES):
        return "quota"
    if any(p in text for p in _TRANSIENT_PHRASES):
        return "transient"
    return "fatal"


# A quota whose limit counts per day or per month (Google's "Quota exceeded for quota metric
# 'M' and limit 'M per day' of service ..."; Earth Engine's daily/monthly EECU caps): spent
# until it resets, so retrying only piles up refusals.
_SPENT_CAP = re.compile(r"quota\b.{0,300}?\b(per\s*day|perday|daily|per\s*month|permonth|"
                        r"monthly)\b", re.IGNORECASE | re.DOTALL)


def spent_cap(exc: BaseException) -> str | None:
    """``"day"`` or ``"month"`` when ``exc`` says a daily or monthly quota is spent, else None.

    Only a quota refusal (:func:`classify`) counts: its message (and the JSON body behind it)
    names a limit counted per day or per month, which no backoff outlasts.
    """
    if classify(exc) != "quota":
        return None
    texts: list[str] = []
    seen: set[int] = set()
    err: BaseException | None = exc
    while err is not None and id(err) not in seen and len(texts) < 8:
        seen.add(id(err))
        content = getattr(err, "content", b"")
        texts += [str(err), content.decode(errors="replace") if isinstance(content, bytes)
                  else str(content or "")]
        err = err.__cause__ or err.__context__
    found = _SPENT_CAP.search(" ".join(texts))
    if found is None:
        return None
    return "month" if "month" in found.group(1).lower() else "day"


def _computation_timeout(exc: BaseException) -> bool:
    """Whether the service answered that the request took too long to compute."""
    return any(p in str(exc).lower() for p in _TRANSIENT_PHRASES)


def cap_spent_error(what: str, exc: BaseException) -> QuotaError:
    """The one line that stops a run whose project spent a daily or monthly quota."""
    period = spent_cap(exc) or "day"
    said = " ".join(str(exc).split())[:300]
    return QuotaError(
        f"{what} refused: the Cloud project's {'daily' if period == 'day' else 'monthly'} "
        f"Earth Engine quota is spent ({said}); no retry helps until it resets "
        f"{'the next day' if period == 'day' else 'next month'}. Run the same command again "
        "after the reset: finished work is kept and the run resumes where it stopped (or ask "
        "for more quota for the project in the Cloud console)")


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

        The client adds the default tag to every computation and export it sends.
        """
        self.ee.data.setMaxRetries(CLIENT_RETRIES)
        if self.workload_tag:
            self.ee.data.setDefaultWorkloadTag(self.workload_tag)

    def compute_pixels(self, request: dict[str, Any]) -> Any:
        if self.workload_tag:  # named in the body: no other thread's tag can replace it
            request = {**request, "workloadTag": self.workload_tag}
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


class EESession:
    """An initialised Earth Engine connection with retrying calls.

    Args:
        project: Google Cloud project registered for Earth Engine (``--project``).
        high_volume: use the high-volume endpoint, meant for many small ``computePixels``
            requests from automated jobs (the interactive endpoint throttles them).
        retry: the retry budget of every call: at most ``max_attempts`` HTTP requests.
        transport: who performs calls; ``None`` means the real ``ee.data`` after
            :meth:`initialize`. Tests pass a transport serving a local stack.
        sleep: the wait function (tests pass a no-op to stay fast).
        seed: seed of the jitter, for reproducible tests.
        application_default: authenticate with the machine's application-default credentials
            (the service account of a Dataflow or Compute Engine worker), where no user has
            run ``earthengine authenticate``.
        limit: the requests in flight of the process (:mod:`core.concurrency`);
            None: as many as the caller's threads.
        workload_tag: the ``workloadTag`` every request carries, so Cloud Monitoring
            attributes the run's EECU to it (default :func:`default_workload_tag`).
    """

    def __init__(self, project: str | None = None, *, high_volume: bool = True,
                 retry: RetryPolicy | None = None, transport: Transport | None = None,
                 sleep: Callable[[float], None] = time.sleep, seed: int | None = None,
                 application_default: bool = False,
                 without_account: str = EXPORT_WITHOUT_ACCOUNT,
                 limit: RequestLimit | None = None, workload_tag: str | None = None) -> None:
        self.project = project
        self.without_account = without_account
        self.application_default = application_default
        self.high_volume = high_volume
        self.retry = retry or RetryPolicy()
        self.transport = transport
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.retries = 0  # total retries performed, for progress reports and tests
        self.limit = limit
        self.workload_tag = workload_tag or default_workload_tag()
        # computePixels answers and the seconds they took (a run's measured latency)
        self.answered = 0
        self.answer_seconds = 0.0

    def limit_requests(self, ceiling: int, *, adaptive: bool = True) -> RequestLimit:
        """Give the session its own limit of ``ceiling`` requests in flight (see concurrency).

        Returns the limit; one already set with the same ceiling is kept (a resumed month).
        """
        if self.limit is None or self.limit.ceiling != ceiling:
            self.limit = RequestLimit(ceiling, adaptive=adaptive)
        return self.limit

    def measured_latency(self) -> float | None:
        """Mean seconds of this session's answered computePixels requests (None before any)."""
        with self._lock:
            return self.answer_seconds / self.answered if self.answered else None

    # ------------------------------------------------------------------ initialisation
    def initialize(self) -> EESession:
        """Initialise earthengine-api, translating every auth failure into one clear error."""
        if self.transport is not None:
            return self
        try:
            import ee
        except ImportError:  # pragma: no cover - the ee extra is part of the dev install
            raise AuthenticationError(self._auth_help(
                "earthengine-api is not installed; pip install 'isamap[ee]'")) from None
        if not self.project:
            raise AuthenticationError(self._auth_help("no --project given"))
        url = endpoint_url(self.high_volume)
        ee.data.setMaxRetries(CLIENT_RETRIES)  # before Initialize: its requests are calls too

        def init() -> None:
            ee.Initialize(_credentials(ee, self.application_default), project=self.project,
                          opt_url=url)
            ee.data.setDeadline(REQUEST_DEADLINE_S * 1000)

        def fail(exc: Exception, attempt: int, exhausted: bool) -> Exception:
            if exhausted:
                return self._exhausted("initialising Earth Engine", exc, attempt)
            # google-auth, EEException, file errors: all mean "not set up"
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:400]
            return AuthenticationError(self._auth_help(reason))

        retry_call(init, self.retry, sleep=self._sleep, fail=fail, delay=self._next_delay,
                   retryable=lambda exc: classify(exc) in ("quota", "transient"))
        self.transport = EETransport(ee, self.project, self.workload_tag)
        return self

    def _auth_help(self, reason: str) -> str:
        """How to authenticate, and what the command can do without an account."""
        return AUTH_HELP.format(reason=reason, without_account=self.without_account)

    # ------------------------------------------------------------------ calls
    def call(self, what: str, fn: Callable[..., Any], *args: Any,
             idempotent: bool = True, limited: bool = False) -> Any:
        """Run ``fn(*args)`` with the retry policy; ``what`` names it in error messages.

        Args:
            what: the call, as error messages name it.
            fn: the call.
            args: its arguments.
            idempotent: whether repeating the request is harmless. A request that is not
                (an ingestion start: the client sends no request id with it) is retried
                only on 429, which the service sends before doing anything; after a 5xx or
                a timeout it may already have acted, so the error says to look first.
            limited: each attempt takes a slot of the session's :attr:`limit` (the adaptive
                number of requests in flight) and tells it how the attempt ended; under an
                adaptive limit a 429 is its flow control and does not count against the
                retry budget while the limit can come down (``retry_call``'s ``free``).

        "Computation timed out" is retried once only (:data:`TIMEOUT_RETRIES`): a second
        one means the request is too large to compute in the interactive limit, and the
        caller (``export.fetch_window``) asks for halves instead of spending five more
        attempts of up to five minutes each.
        """
        if isinstance(self.transport, EETransport):
            self.transport.configure_client()
        timeouts = [0]

        def retryable(exc: Exception) -> bool:
            kind = classify(exc)
            if kind == "quota" and spent_cap(exc):
                return False  # a daily or monthly cap: no backoff outlasts it
            if kind == "transient" and _computation_timeout(exc):
                timeouts[0] += 1
                return timeouts[0] <= TIMEOUT_RETRIES
            return kind == "quota" or (idempotent and kind == "transient")

        def fail(exc: Exception, attempt: int, exhausted: bool) -> Exception:
            kind = classify(exc)
            if kind == "quota" and spent_cap(exc):
                return cap_spent_error(what, exc)
            if kind == "transient" and _computation_timeout(exc):
                return EarthEngineError(f"{what} failed: {exc}")  # the caller may halve it
            if exhausted:
                return self._exhausted(what, exc, attempt)
            if kind == "auth":
                return AuthenticationError(self._auth_help(f"{what}: {exc}"))
            if kind == "transient":  # only reached when not idempotent
                return EarthEngineError(
                    f"{what} failed ({exc}) and was not repeated: Earth Engine may have "
                    "received it. Look at the Tasks tab (or `earthengine task list`) before "
                    "running the command again.")
            return EarthEngineError(f"{what} failed: {exc}")

        adaptive = limited and self.limit is not None and self.limit.adaptive
        attempt = (lambda: self._limited(fn, args)) if limited and self.limit else (
            lambda: fn(*args))
        return retry_call(attempt, self.retry, sleep=self._sleep,
                          retryable=retryable, fail=fail, delay=self._next_delay,
                          free=self._flow_control if adaptive else None)

    def _flow_control(self, exc: Exception) -> bool:
        """Whether a refusal is the adaptive limit's signal rather than a missing quota.

        Flow control while the limit can still come down; at one request in flight the
        project has no quota left, and the refusal counts against the retry budget. A
        refusal that is flow control is retried at once (through the limit), and counted in
        :attr:`retries` here, as it has no backoff wait to count it.
        """
        free = classify(exc) == "quota" and self.limit is not None and self.limit.limit > 1.0
        if free:
            with self._lock:
                self.retries += 1
        return free

    def _limited(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """One attempt inside a slot of :attr:`limit`; its outcome and latency recorded."""
        limit = self.limit
        assert limit is not None
        ticket = limit.acquire()
        outcome: Outcome = "failed"
        started = time.monotonic()
        try:
            result = fn(*args)
            outcome = "ok"
            with self._lock:
                self.answered += 1
                self.answer_seconds += time.monotonic() - started
            return result
        except Exception as exc:
            if classify(exc) == "quota":
                outcome = "throttled"
            raise
        finally:
            limit.done(ticket, outcome)

    def _exhausted(self, what: str, exc: Exception, attempt: int) -> Exception:
        if classify(exc) == "quota":
            return QuotaError(
                f"{what} still refused after {attempt} attempts (Earth Engine quota/"
                f"rate limit: {exc}). Lower --workers (at most 40 concurrent requests "
                "per project), wait a few minutes and re-run: finished work is skipped.")
        return EarthEngineError(
            f"{what} kept failing after {attempt} attempts ({exc}). The service may be "
            "degraded; re-run later (finished work is skipped), or use --method tasks for "
            "very large regions.")

    def _next_delay(self, attempt: int) -> float:
        """The jittered wait after failed ``attempt``, counted in ``retries`` (thread-safe)."""
        with self._lock:
            self.retries += 1
            return self.retry.delay(attempt, self._rng)

    def _transport(self) -> Transport:
        if self.transport is None:
            self.initialize()
        assert self.transport is not None  # initialize() sets it or raises
        return self.transport

    def compute_pixels(self, request: dict[str, Any]) -> Any:
        """``ee.data.computePixels`` with retries (one patch's bands, see export.py)."""
        return self.call("computePixels", self._transport().compute_pixels, request,
                         limited=True)

    def get_info(self, obj: Any, what: str = "getInfo") -> Any:
        """Evaluate a (small) computed object on the server, with retries."""
        return self.call(what, self._transport().get_info, obj)

    def start_task(self, task: Any) -> str:
        """Start a batch task (its description made acceptable); returns its server id."""
        task_id: str = self.call("starting an export task", self._transport().start_task,
                                 task)
        return task_id

    def task_status(self, task_ids: list[str]) -> list[dict[str, Any]]:
        """Status dicts (``id``, ``state``, ``progress``, ``error_message``...) of tasks."""
        if not task_ids:
            return []
        statuses: list[dict[str, Any]] = self.call("reading task status",
                                                   self._transport().task_status, task_ids)
        return statuses


EE_SCOPES = ("https://www.googleapis.com/auth/earthengine",
             "https://www.googleapis.com/auth/cloud-platform")


def _credentials(ee: Any, application_default: bool = False) -> Any:
    """Service-account key when GOOGLE_APPLICATION_CREDENTIALS is set, else stored user creds.

    ``application_default`` takes the machine's own credentials (a worker's service account).
    """
    import os

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
