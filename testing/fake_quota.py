"""A project quota shared with other load, as the fake Earth Engine server simulates it.

The service serves a project a limited number of concurrent requests, and everything else
that uses the project takes part of it, so the share left to one job moves. :class:`SharedQuota`
plays the service's side: a cap of concurrent requests that changes every ``period_s``
(drawn from a seeded generator), HTTP 429 at once for a request that arrives while the
cap is full, latency drawn from a lognormal distribution (heavy right tail: most requests
are quick, a few take many times the median), occasional 5xx after the work and occasional
time-outs (the request holds its slot for ``timeout_s``, then the client's deadline ends it).

It measures what a client makes of the quota: from the first request, the time-integral of
the requests it is serving (at most the cap) against the integral of the cap, i.e. the share
of the available quota kept busy, until :meth:`SharedQuota.stop_measuring` (a benchmark
calls it when its last request has been sent, so the drain at the end does not count). Used by
:class:`testing.fake_server.StackTransport` (``quota=``) and by :class:`QuotaTransport`,
which answers computePixels with zeros so that thousands of requests cost little.
"""

from __future__ import annotations

import math
import random
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class _Response:
    status: int


class HttpError(Exception):
    """Shaped like googleapiclient's HttpError: ``resp.status`` carries the code.

    Picklable, so a quota served from another process (a Beam benchmark) raises it there.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"<HttpError {status} {message}>")
        self.resp = _Response(status)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return HttpError, (self.resp.status, self.message)


@dataclass(frozen=True)
class QuotaModel:
    """The simulated service's behaviour (all times in seconds; seeded).

    Attributes:
        cap_low / cap_high: the cap of concurrent requests left to the job, drawn uniformly
            in ``[cap_low, cap_high]`` for each period (other load comes and goes).
        period_s: how long one cap holds.
        latency_s: median seconds of a request the service computes.
        sigma: lognormal shape of the latency (0.8: one request in a hundred takes over six
            times the median).
        reject_s: seconds a 429 takes to arrive.
        error_rate: share of admitted requests that end in a 503 after the work.
        timeout_rate: share of admitted requests that never answer (client deadline).
        timeout_s: the client's deadline, how long a request that never answers holds its slot.
        seed: the generator's seed (caps, latencies and faults).
    """

    cap_low: int = 8
    cap_high: int = 40
    period_s: float = 0.5
    latency_s: float = 0.01
    sigma: float = 0.8
    reject_s: float = 0.001
    error_rate: float = 0.01
    timeout_rate: float = 0.002
    timeout_s: float = 0.2
    seed: int = 0


class SharedQuota:
    """The service's side of a shared quota (see module docstring); thread-safe."""

    def __init__(self, model: QuotaModel = QuotaModel(),
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 measure_until: int | None = None) -> None:
        self.model = model
        self._clock, self._sleep = clock, sleep
        self._rng = random.Random(model.seed)
        self._caps: list[int] = []
        self._lock = threading.Lock()
        self.started = clock()
        self.serving = 0
        self.busy_seconds = 0.0  # integral of min(serving, cap)
        self.cap_seconds = 0.0  # integral of the cap
        self._last: float | None = None  # measuring starts with the first request
        self._measuring = True
        self.measure_until = measure_until  # admitted requests after which measuring stops
        self.served = self.throttled = self.errors = self.timeouts = 0
        self.peak = 0

    def cap(self, at: float | None = None) -> int:
        """The cap at clock time ``at`` (now by default)."""
        k = int(((self._clock() if at is None else at) - self.started) / self.model.period_s)
        with self._lock:
            return self._cap(k)

    def _cap(self, k: int) -> int:
        while len(self._caps) <= k:
            self._caps.append(self._rng.randint(self.model.cap_low, self.model.cap_high))
        return self._caps[k]

    def _advance(self, now: float) -> None:
        """Add ``[last, now)`` to the integrals, period by period (lock held)."""
        if self._last is None:
            return  # no request yet: nothing to measure
        period = self.model.period_s
        t = self._last
        while self._measuring and t < now:
            k = int((t - self.started) / period)
            if self.started + (k + 1) * period <= t:  # t on a boundary, rounded below it
                k += 1
            end = min(now, self.started + (k + 1) * period)
            cap = self._cap(k)
            self.busy_seconds += min(self.serving, cap) * (end - t)
            self.cap_seconds += cap * (end - t)
            t = end
        self._last = now

    def stop_measuring(self) -> None:
        """Close the integrals now (later requests are still served)."""
        with self._lock:
            self._advance(self._clock())
            self._measuring = False

    def busy_fraction(self) -> float:
        """Share of the available cap kept busy while measuring."""
        with self._lock:
            self._advance(self._clock())
            return self.busy_seconds / self.cap_seconds if self.cap_seconds else 0.0

    def serve(self, answer: Callable[[], T]) -> T:
        """Admit a request or refuse it (429), hold it for its latency, then answer or fail."""
        with self._lock:
            now = self._clock()
            if self._last is None:
                self._last = now
            self._advance(now)
            if self.serving >= self._cap(int((now - self.started) / self.model.period_s)):
                self.throttled += 1
                admitted = False
            else:
                self.serving += 1
                self.peak = max(self.peak, self.serving)
                admitted = True
                draw = self._rng.random()
                latency = self.model.latency_s * math.exp(self.model.sigma
                                                          * self._rng.gauss(0.0, 1.0))
        if not admitted:
            self._sleep(self.model.reject_s)
            raise HttpError(429, "Too many concurrent requests for this project")
        fault = ("timeout" if draw < self.model.timeout_rate else "error"
                 if draw < self.model.timeout_rate + self.model.error_rate else None)
        try:
            self._sleep(self.model.timeout_s if fault == "timeout" else latency)
            if fault == "timeout":
                raise TimeoutError("the request passed its deadline")
            if fault == "error":
                raise HttpError(503, "The service is currently unavailable")
            return answer()
        finally:
            with self._lock:
                self._advance(self._clock())
                self.serving -= 1
                if fault == "timeout":
                    self.timeouts += 1
                elif fault == "error":
                    self.errors += 1
                else:
                    self.served += 1
                if self.measure_until is not None and self._measuring and (
                        self.served + self.errors + self.timeouts >= self.measure_until):
                    self._measuring = False

    def request(self) -> None:
        """:meth:`serve` with nothing to answer (a quota served to other processes)."""
        self.serve(lambda: None)

    def stats(self) -> dict[str, float]:
        """The counters and the busy fraction, as one dict."""
        busy = self.busy_fraction()
        return {"busy": busy, "served": self.served, "throttled": self.throttled,
                "errors": self.errors, "timeouts": self.timeouts, "peak": self.peak}


class QuotaTransport:
    """A transport whose computePixels answers zeros of the request's shape through a quota.

    For benchmarks and tests of the request path alone (no stack to read): the answer is a
    NUMPY_NDARRAY structured array like the service's, so the session decodes it as usual.
    """

    def __init__(self, quota: SharedQuota) -> None:
        self.quota = quota  # or a proxy of one in another process

    def compute_pixels(self, request: dict[str, Any]) -> np.ndarray:
        dims = request["grid"]["dimensions"]
        self.quota.request()
        return np.zeros((dims["height"], dims["width"]), [(b, "<f4") for b in request["bandIds"]])

    def get_info(self, obj: Any) -> Any:
        raise HttpError(400, "this fake answers computePixels only")

    def start_task(self, task: Any) -> str:
        raise HttpError(400, "this fake answers computePixels only")

    def task_status(self, task_ids: list[str]) -> list[dict[str, Any]]:
        return []


_SERVED: SharedQuota | None = None


def serve_shared(model: QuotaModel, measure_until: int | None = None) -> None:
    """Create this process's :func:`served_quota` (a ``multiprocessing`` manager's initializer)."""
    global _SERVED
    _SERVED = SharedQuota(model, measure_until=measure_until)


def served_quota() -> SharedQuota:
    """The quota :func:`serve_shared` created: what a manager serves to other processes."""
    if _SERVED is None:
        raise RuntimeError("serve_shared() has not run in this process")
    return _SERVED


DAILY_QUOTA_MESSAGE = (
    "Your usage exceeded the custom quota for 'earthengine.googleapis.com/daily_eecu_usage_time',"
    " which is adjustable by your administrator in the Google Cloud console: "
    "https://console.cloud.google.com/quotas/?project=_.")
"""What Earth Engine answers once a project's daily EECU-time quota is spent (its cost-control
guide quotes it), with HTTP 429 RESOURCE_EXHAUSTED."""

RESTRICTED_WARNING = (
    "Your project has exceeded its noncommercial compute quota and is now in restricted mode. "
    "Visit https://developers.google.com/earth-engine/guides/noncommercial_tiers#restricted_mode"
    " to learn more.")
"""earthengine-api's warning for an answer whose quota-status header says
``parallelism_restricted=true``; the answer itself is served (slowed, on the real service)."""


@dataclass
class EecuAccount:
    """A project's compute as the service meters it, for the fake server's answers.

    Each computePixels request costs ``per_request_s`` plus ``per_mpx_s`` per million output
    pixels, each batch task ``per_mpx_s`` per million pixels (reported as its
    ``batchEecuUsageSeconds``). With a daily quota set, a request that arrives once the
    day's spending reached it is refused with :data:`DAILY_QUOTA_MESSAGE` (HTTP 429) until
    :meth:`new_day`; the request that crossed it was computed (the service documents the
    quota as approximate). Past a noncommercial ``monthly_allowance_s`` every answer comes
    in restricted mode: computed, with the client's :data:`RESTRICTED_WARNING` (``restricted``
    counts those answers). Thread-safe; ``refused`` counts the refusals.
    """

    per_mpx_s: float = 4.0
    per_request_s: float = 0.05
    daily_quota_s: float | None = None
    monthly_allowance_s: float | None = None
    spent_today_s: float = 0.0
    spent_month_s: float = 0.0
    refused: int = 0
    restricted: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def compute(self, pixels: int, requests: int = 1) -> float:
        """Meter one piece of work (a request, or a task with ``requests=0``); its EECU-s."""
        with self._lock:
            if self.daily_quota_s is not None and self.spent_today_s >= self.daily_quota_s:
                self.refused += 1
                raise HttpError(429, DAILY_QUOTA_MESSAGE)
            if (self.monthly_allowance_s is not None
                    and self.spent_month_s >= self.monthly_allowance_s):
                self.restricted += 1  # answered, slowed: the client warns as it reads it
                warnings.warn(RESTRICTED_WARNING, UserWarning, stacklevel=2)
            cost = requests * self.per_request_s + self.per_mpx_s * pixels / 1e6
            self.spent_today_s += cost
            self.spent_month_s += cost
            return cost

    def new_day(self) -> None:
        """The daily quota resets."""
        with self._lock:
            self.spent_today_s = 0.0
