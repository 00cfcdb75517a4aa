"""The one seam between isamap and the Earth Engine service.

Everything that talks to a server (initialisation, ``computePixels``, ``getInfo``, batch tasks)
goes through an :class:`EESession`. That buys three things:

* authentication failures become :class:`AuthenticationError` with a message that says exactly
  what to run, instead of a stack trace from deep inside google-auth;
* transient failures (HTTP 429 / 5xx, timeouts) are retried with exponential backoff and full
  jitter under a bounded budget, then surface as :class:`QuotaError` / :class:`EarthEngineError`;
* tests swap the *transport* (the object that actually performs a call) for one that serves a
  local GeoTIFF stack, so the retry logic and the export orchestration run for real offline.

Graph *building* (``ee.Image(...)``, filters, maps) needs no server and does not go through here.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from gee_export.core.errors import AuthenticationError, EarthEngineError, QuotaError
from gee_export.core.retry import RetryPolicy, retry_call

__all__ = ["AUTH_HELP", "EESession", "EETransport", "RetryPolicy", "Transport", "classify"]

HIGH_VOLUME_URL = "https://earthengine-highvolume.googleapis.com"

AUTH_HELP = """Earth Engine is not authenticated or has no Cloud project ({reason}).
To use the Earth Engine backend, do ONE of:
  1. Interactive (laptop, Colab):  earthengine authenticate
     (in Colab: `import ee; ee.Authenticate()`), then pass --project YOUR_CLOUD_PROJECT.
  2. Service account (servers, CI): export GOOGLE_APPLICATION_CREDENTIALS=/path/to/key.json
     (a JSON key of a service account registered for Earth Engine) and pass --project PROJECT.
The Cloud project must have the Earth Engine API enabled and be registered for Earth Engine
(https://console.cloud.google.com/earth-engine). Pass it with --project or EE_PROJECT.
No account? Run the same recipe on local scenes instead:
  python export_patches.py --backend local --scenes DIR ...
(or `make demo` for a synthetic scene)."""

_TRANSIENT_MARKERS = (
    "429", "too many requests", "resource_exhausted", "resource exhausted", "quota exceeded",
    "rate limit", "500", "502", "503", "504", "internal error", "backend error",
    "service unavailable", "deadline exceeded", "timed out", "timeout",
    "too many concurrent", "connection reset", "connection aborted", "temporarily",
)
# What earthengine-api and google-auth say when no usable credentials were ever loaded: the
# client library was never initialised ("Earth Engine client library not initialized"), the
# stored user credentials are missing, expired or revoked, or no default credentials exist.
# Each means "authenticate first", never "retry" or "bad request".
_AUTH_MARKERS = (
    "earthengine authenticate", "authorize access", "unauthenticated", "not signed up",
    "not registered", "not initialized", "not initialised", "not authenticated",
    "default credentials", "invalid authentication credentials", "credentials were not found",
    "no credentials", "invalid_grant", "reauthentication",
)
_QUOTA_MARKERS = ("429", "too many", "resource_exhausted", "resource exhausted", "quota",
                  "rate limit")


class Transport(Protocol):
    """What actually performs server calls; the real one wraps ``ee.data``."""

    def compute_pixels(self, request: dict[str, Any]) -> Any: ...

    def get_info(self, obj: Any) -> Any: ...

    def start_task(self, task: Any) -> str: ...

    def task_status(self, task_ids: list[str]) -> list[dict[str, Any]]: ...


class EETransport:
    """The real transport: ``ee.data`` calls of earthengine-api."""

    def __init__(self, ee_module: Any) -> None:
        self.ee = ee_module

    def compute_pixels(self, request: dict[str, Any]) -> Any:
        return self.ee.data.computePixels(request)

    def get_info(self, obj: Any) -> Any:
        return obj.getInfo()

    def start_task(self, task: Any) -> str:
        task.start()
        return str(task.id)

    def task_status(self, task_ids: list[str]) -> list[dict[str, Any]]:
        return list(self.ee.data.getTaskStatus(task_ids))


def classify(exc: BaseException) -> str:
    """Return ``'auth'``, ``'quota'``, ``'transient'`` or ``'fatal'`` for an exception.

    earthengine-api reports HTTP errors as ``EEException`` text (and sometimes as a
    googleapiclient ``HttpError`` with ``resp.status``), so the decision is made on the status
    when there is one and on the message otherwise. "Client library not initialized" and the
    missing/expired-credentials messages of google-auth are ``'auth'`` here, in the seam, so no
    caller has to recognise them itself.
    """
    if isinstance(exc, AuthenticationError):
        return "auth"
    status = getattr(getattr(exc, "resp", None), "status", None) or getattr(exc, "code", None)
    if isinstance(status, int):
        if status == 429:
            return "quota"
        if status >= 500:
            return "transient"
        if status in (401, 403):
            return "auth"
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return "transient"
    text = str(exc).lower()
    if any(m in text for m in _AUTH_MARKERS):
        return "auth"
    if any(m in text for m in _QUOTA_MARKERS):
        return "quota"
    if any(m in text for m in _TRANSIENT_MARKERS):
        return "transient"
    return "fatal"


class EESession:
    """An initialised Earth Engine connection with retrying calls.

    Args:
        project: Google Cloud project registered for Earth Engine (``--project``).
        high_volume: use the high-volume endpoint, meant for many small ``computePixels``
            requests from automated jobs (the interactive endpoint throttles them).
        retry: the retry budget of every call.
        transport: who performs calls; ``None`` means the real ``ee.data`` after
            :meth:`initialize`. Tests pass a transport serving a local stack.
        sleep: the wait function (tests pass a no-op to stay fast).
        seed: seed of the jitter, for reproducible tests.
        application_default: authenticate with the machine's application-default credentials
            (the service account of a Dataflow or Compute Engine worker), where no user has
            run ``earthengine authenticate``.
    """

    def __init__(self, project: str | None = None, *, high_volume: bool = True,
                 retry: RetryPolicy | None = None, transport: Transport | None = None,
                 sleep: Callable[[float], None] = time.sleep, seed: int | None = None,
                 application_default: bool = False) -> None:
        self.project = project
        self.application_default = application_default
        self.high_volume = high_volume
        self.retry = retry or RetryPolicy()
        self.transport = transport
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.retries = 0  # total retries performed, for progress reports and tests

    # ------------------------------------------------------------------ initialisation
    def initialize(self) -> EESession:
        """Initialise earthengine-api, translating every auth failure into one clear error."""
        if self.transport is not None:
            return self
        try:
            import ee
        except ImportError:  # pragma: no cover - the ee extra is part of the dev install
            raise AuthenticationError(AUTH_HELP.format(
                reason="earthengine-api is not installed; pip install 'isamap[ee]'")) from None
        if not self.project:
            raise AuthenticationError(AUTH_HELP.format(reason="no --project given"))
        url = HIGH_VOLUME_URL if self.high_volume else None
        try:
            credentials = _credentials(ee, self.application_default)
            ee.Initialize(credentials, project=self.project, opt_url=url)
        except Exception as exc:  # google-auth, EEException, file errors: all mean "not set up"
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:400]
            raise AuthenticationError(AUTH_HELP.format(reason=reason)) from exc
        self.transport = EETransport(ee)
        return self

    # ------------------------------------------------------------------ calls
    def call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` with the retry policy; ``what`` names it in error messages."""

        def fail(exc: Exception, attempt: int, exhausted: bool) -> Exception:
            kind = classify(exc)
            if not exhausted:
                if kind == "auth":
                    return AuthenticationError(AUTH_HELP.format(reason=f"{what}: {exc}"))
                return EarthEngineError(f"{what} failed: {exc}")
            if kind == "quota":
                return QuotaError(
                    f"{what} still refused after {attempt} attempts (Earth Engine quota/"
                    f"rate limit: {exc}). Lower --workers (at most 40 concurrent requests "
                    "per project), wait a few minutes and re-run: finished patches are "
                    "skipped.")
            return EarthEngineError(
                f"{what} kept failing after {attempt} attempts ({exc}). The service may "
                "be degraded; re-run later (finished work is skipped), or use "
                "--method tasks for very large regions.")

        return retry_call(lambda: fn(*args), self.retry, sleep=self._sleep,
                          retryable=lambda exc: classify(exc) in ("quota", "transient"),
                          fail=fail, delay=self._next_delay)

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
        return self.call("computePixels", self._transport().compute_pixels, request)

    def get_info(self, obj: Any, what: str = "getInfo") -> Any:
        """Evaluate a (small) computed object on the server, with retries."""
        return self.call(what, self._transport().get_info, obj)

    def start_task(self, task: Any) -> str:
        """Start a batch task; returns its id."""
        return self.call("starting an export task", self._transport().start_task, task)

    def task_status(self, task_ids: list[str]) -> list[dict[str, Any]]:
        """Status dicts (``id``, ``state``, ``error_message``...) of batch tasks."""
        if not task_ids:
            return []
        return self.call("reading task status", self._transport().task_status, task_ids)


EE_SCOPES = ("https://www.googleapis.com/auth/earthengine",
             "https://www.googleapis.com/auth/cloud-platform")


def _credentials(ee: Any, application_default: bool = False) -> Any:
    """Service-account key when GOOGLE_APPLICATION_CREDENTIALS is set, else stored user creds.

    ``application_default`` takes the machine's own credentials (a worker's service account).
    """
    import json
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
