"""The one seam between isamap and the Earth Engine service.

Everything that talks to a server (initialisation, ``computePixels``, ``getInfo``, batch tasks,
assets) goes through an :class:`EESession`. That buys five things:

* **one retry loop**: earthengine-api's own retries (googleapiclient's, 5 by default, uncapped
  backoff) are switched off (``ee.data.setMaxRetries(0)``), and :meth:`EESession.call` retries
  429 / 5xx / timeouts with capped, jittered backoff under one budget: at most
  ``RetryPolicy.max_attempts`` HTTP requests per call, never that number squared (429s that
  an adaptive request limit answers by lowering itself are its flow control and count apart,
  ``retry.FREE_FACTOR`` times the budget at most); computePixels attempts take slots of the
  process's :class:`~core.concurrency.RequestLimit`, and every request carries the
  run's ``workloadTag``;
* failures are classified (:mod:`gee_export.ee.service_errors`): deterministic errors fail at
  once with the server's message, and a spent daily or monthly compute cap stops the run at
  the first refusal with one line saying when it resets and how to resume;
* authentication failures become :class:`AuthenticationError` with a message that says exactly
  what to run, instead of a stack trace from deep inside google-auth;
* ``--max-eecu-hours``: a session given a :class:`~gee_export.ee.budget.ComputeBudget` charges
  every computePixels request to it before sending it, and refuses the request that would pass
  the bound (:class:`~core.errors.ComputeBudgetError`, resumable); a session given a
  :class:`~gee_export.ee.profiles.ProfileMeter` profiles a sample of its computePixels
  requests, reads their EECU back, and prices the budget's requests at the measured rate;
* tests swap the *transport* (the object that actually performs a call,
  :mod:`gee_export.ee.transport`) for one that serves a local GeoTIFF stack, so the retry logic
  and the export orchestration run for real offline.

Graph *building* (``ee.Image(...)``, filters, maps) needs no server and does not go through here.
The classification, the transport and the names live beside it and are re-exported here, the
names callers know the seam by.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from core.concurrency import Outcome, RequestLimit
from core.errors import AuthenticationError, EarthEngineError, QuotaError
from core.retry import RetryPolicy, retry_call
from gee_export.ee.budget import ComputeBudget
from gee_export.ee.names import default_workload_tag, task_description
from gee_export.ee.profiles import ProfileMeter, profiles_request, request_pixels
from gee_export.ee.service_errors import (
    cap_spent_error,
    classify,
    computation_timeout,
    http_status,
    spent_cap,
)
from gee_export.ee.transport import (
    CLIENT_RETRIES,
    HIGH_VOLUME_URL,
    STANDARD_URL,
    EETransport,
    ProfilingTransport,
    Transport,
    credentials,
    endpoint_url,
    operation_status,
    takes_profile,
)

__all__ = [
    "AUTH_HELP",
    "BACKEND_PURPOSE",
    "EXPORT_WITHOUT_ACCOUNT",
    "HIGH_VOLUME_URL",
    "REQUEST_DEADLINE_S",
    "STANDARD_URL",
    "TIMEOUT_RETRIES",
    "EESession",
    "EETransport",
    "RetryPolicy",
    "classify",
    "default_workload_tag",
    "endpoint_url",
    "http_status",
    "operation_status",
    "task_description",
]

# Seconds a request may wait for the service's next byte (the client's default is forever: a
# stalled connection would hold an export for good). The service ends an interactive
# computation itself after 5 minutes, so a request silent for longer is a dead connection; its
# TimeoutError is transient, and EESession.call tries again. The client applies it once
# initialised: the handshake of ee.Initialize itself has no limit.
REQUEST_DEADLINE_S = 600
# The endpoint the process's earthengine-api client was last initialised on by a session. The
# client is one per process: a session opened on the other endpoint (a map's high-volume one,
# after a publication's standard one) moves it for every session, so a session whose endpoint
# it is not initialises the client on its own again before its next call.
_CLIENT: dict[str, str | None] = {"url": None}
# "Computation timed out" answers retried before the caller is told (it then halves the window).
TIMEOUT_RETRIES = 1

AUTH_HELP = """Earth Engine is not authenticated or has no Cloud project ({reason}).
To {purpose}, do ONE of:
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

BACKEND_PURPOSE = "use the Earth Engine backend"
"""What the export and the map need Earth Engine for (the default of :class:`EESession`)."""


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
        without_account, purpose: what the command can do without an account, and what it
            needs Earth Engine for ("To PURPOSE, do ONE of:"): its authentication advice.
        limit: the requests in flight of the process (:mod:`core.concurrency`);
            None: as many as the caller's threads.
        workload_tag: the ``workloadTag`` every request carries, so Cloud Monitoring
            attributes the run's EECU to it (default :func:`default_workload_tag`).
        budget: ``--max-eecu-hours``: every computePixels request is charged to it before
            it is sent (at its estimate per request: the service reports none), and the
            request that would pass the bound is refused (None: no bound).
    """

    def __init__(self, project: str | None = None, *, high_volume: bool = True,
                 retry: RetryPolicy | None = None, transport: Transport | None = None,
                 sleep: Callable[[float], None] = time.sleep, seed: int | None = None,
                 application_default: bool = False,
                 without_account: str = EXPORT_WITHOUT_ACCOUNT,
                 purpose: str = BACKEND_PURPOSE,
                 limit: RequestLimit | None = None, workload_tag: str | None = None,
                 budget: ComputeBudget | None = None) -> None:
        self.project = project
        self.without_account, self.purpose = without_account, purpose
        self.application_default = application_default
        self.high_volume = high_volume
        #: the endpoint :meth:`initialize` opened (None: a transport given, its URL not ours)
        self.endpoint: str | None = None
        self.retry = retry or RetryPolicy()
        self.transport = transport
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.retries = 0  # total retries performed, for progress reports and tests
        self.limit = limit
        self.workload_tag = workload_tag or default_workload_tag()
        self.budget = budget
        # samples computePixels requests' profiles (None: none is profiled)
        self.meter: ProfileMeter | None = None
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
        self._open(ee)
        self.transport = EETransport(ee, self.project, self.workload_tag)
        return self

    def _open(self, ee: Any) -> None:
        """``ee.Initialize`` on this session's endpoint, named explicitly (see :data:`_CLIENT`)."""
        url = endpoint_url(self.high_volume)
        ee.data.setMaxRetries(CLIENT_RETRIES)  # before Initialize: its requests are calls too

        def init() -> None:
            ee.Initialize(credentials(ee, self.application_default), project=self.project,
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
        self.endpoint = _CLIENT["url"] = url

    def _auth_help(self, reason: str) -> str:
        """How to authenticate, and what the command can do without an account."""
        return AUTH_HELP.format(reason=reason, purpose=self.purpose,
                                without_account=self.without_account)

    # ------------------------------------------------------------------ calls
    def call(self, what: str, fn: Callable[..., Any], *args: Any,
             idempotent: bool = True, limited: bool = False,
             any_failure: bool = False) -> Any:
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
            any_failure: a read retried after any failure but authentication and a spent cap
                (``Profile.getProfiles``: earthengine-api's ``ee.profilePrinting`` retries it
                after every error, as a profile the service has not stored yet is refused).

        "Computation timed out" is retried once only (:data:`TIMEOUT_RETRIES`): a second
        one means the request is too large to compute in the interactive limit, and the
        caller (``export.fetch_window``) asks for halves instead of spending five more
        attempts of up to five minutes each.
        """
        if isinstance(self.transport, EETransport):
            if self.endpoint is not None and _CLIENT["url"] != self.endpoint:
                self._open(self.transport.ee)  # another session moved the process's client
            self.transport.configure_client()
        timeouts = [0]

        def retryable(exc: Exception) -> bool:
            kind = classify(exc)
            if kind == "quota" and spent_cap(exc):
                return False  # a daily or monthly cap: no backoff outlasts it
            if kind == "transient" and computation_timeout(exc):
                timeouts[0] += 1
                return timeouts[0] <= TIMEOUT_RETRIES
            return kind == "quota" or (idempotent and kind == "transient") or (
                any_failure and kind != "auth")

        def fail(exc: Exception, attempt: int, exhausted: bool) -> Exception:
            kind = classify(exc)
            if kind == "quota" and spent_cap(exc):
                return cap_spent_error(what, exc)
            if kind == "transient" and computation_timeout(exc):
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
        """``ee.data.computePixels`` with retries (one patch's bands, see export.py).

        Charged to :attr:`budget` first: the request that would pass the bound is not sent.
        """
        if self.budget is not None and not self.budget.take(1):
            raise self.budget.stopped("the next computePixels request would pass it")
        transport, meter, pixels = self._transport(), self.meter, request_pixels(request)
        if meter is None or not takes_profile(transport) or not meter.wants(pixels):
            return self.call("computePixels", transport.compute_pixels, request, limited=True)
        ids: list[str] = []  # one per answer that came with a profile id (the last one won)
        profiled = cast(ProfilingTransport, transport)
        answer = self.call("computePixels", lambda r: profiled.compute_pixels(
            r, profile=ids.append), request, limited=True)
        if ids:
            meter.record(ids[-1], pixels)
        else:  # no profile header on the answer: nothing to price it by (said once)
            meter.no_profile_id()
        self.read_profiles()
        return answer

    def read_profiles(self, flush: bool = False) -> None:
        """Read a full batch of pending profiles (``flush``: all of them); price from them.

        One ``Profile.getProfiles`` request per batch, through :meth:`call`, retried after any
        failure as earthengine-api retries it. A profile still unread after the retries, or
        that cannot be parsed, stops the profiling (said once); the run goes on. The
        budget's requests are then priced at the measured rate per Mpx times the mean
        pixels of the requests sent so far.
        """
        meter = self.meter
        if meter is None:
            return
        while batch := meter.due(flush):
            try:
                text = self.call("reading computePixels profiles", self._transport().get_info,
                                 profiles_request([profile_id for profile_id, _ in batch]),
                                 any_failure=True)
                meter.add(batch, text)
            except Exception as exc:  # a price never fails the run
                meter.give_up(f"{type(exc).__name__}: {exc}")
                break
        price = meter.price()
        if price is not None and self.budget is not None:
            self.budget.revalue(*price)

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
