"""How many Earth Engine requests a process keeps in flight: the one concurrency limiter.

An Earth Engine project's quota of concurrent requests is shared by everything that uses the
project (a second export, a Code Editor session, a colleague), so the share left to one job
moves while it runs. A fixed number of requests in flight either leaves quota unused or earns
HTTP 429s that cost a round trip and a backoff each. :class:`RequestLimit` adapts instead,
per process, with additive increase and multiplicative decrease (AIMD, the rule TCP uses on
a shared link, Chiu & Jain 1989), bounded by a ceiling (``--workers``, or a Beam worker's
share of ``--max-concurrent``):

* it starts small and doubles per round trip (one more slot per success) until the first
  429, so a job that starts beside other load does not flood the quota;
* each 429 of a request started after the last decrease multiplies the limit by
  :data:`DECREASE` (one congestion event lowers it once, however many requests it refused);
* each success adds ``max(1 / limit, INCREASE)``: one more request in flight per round trip,
  or :data:`INCREASE` of the limit where that is more.

Both are faster than TCP's halving and one request per round trip, for two reasons: a 429
costs the client one short round trip and no data (the request is retried; under an
adaptive limit the refusals do not count against the retry budget while the limit can still
come down, see ``retry_call``'s ``free``), and the share left by other load moves by tens of
requests at a time, which one request per round trip takes tens of round trips to follow.
``benchmarks/bench_fetch_quota.py`` compares the choices on a simulated shared quota (a cap
redrawn between 8 and 40 every 35 round trips or so): TCP's rule keeps about 0.82 of the
moving cap busy, this one about 0.92 at 4 to 6 refusals per 100 successful requests; a static
40 keeps it fuller but earns over 30 refusals per 100 and loses requests whose retry budget
runs out.

A refused request is retried without a backoff timer: the retry goes back through the limit
it just lowered and waits there for a slot (``retry_call``'s ``free``), as TCP resends
through its congestion window. A timer would not protect the service better (the limit
already holds the retry back) but would idle the thread, and with as many request threads as
the ceiling a sleeping thread is a slot of the quota that nobody uses; at a limit of one
request the refusals are no longer flow control and back off as any failure does.

Several Beam worker processes each run this rule on the same project quota, each within its
share of ``--max-concurrent`` (the job's bound holds without any state shared between
workers). A burst of 429s lowers each worker's limit once, so the job's total comes down by
the same factor as one process's would, and grows back by the same fifth per round trip.

Only 429 (and 403 rate-limit) answers are load signals: a 5xx or a timeout says nothing about
the project's quota, so they leave the limit alone (the retry loop backs off on them).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

from core.errors import ConfigError

Outcome = Literal["ok", "throttled", "failed"]

DECREASE = 0.8
"""Factor applied to the limit on a 429 (the module docstring says why not TCP's 0.5)."""

INCREASE = 0.2
"""Growth of the limit per round trip without a 429: this share of it, or one request where
that is more (see the module docstring)."""

START = 4
"""Requests in flight before the first answer: slow start doubles it each round trip."""


@dataclass(frozen=True)
class Ticket:
    """One request's slot: the congestion epoch it started in (see :meth:`RequestLimit.done`)."""

    epoch: int


class RequestLimit:
    """Requests in flight in one process: adaptive (AIMD) or a fixed number.

    Args:
        ceiling: never more requests in flight than this.
        adaptive: adapt to 429s (AIMD); False holds ``ceiling`` requests in flight whatever
            the service answers (the static budget, for comparison).
        start: requests in flight before the first answer (slow start from there).

    Thread-safe: request threads call :meth:`acquire` before each HTTP request and
    :meth:`done` after it (``EESession.call`` does).
    """

    def __init__(self, ceiling: int, *, adaptive: bool = True, start: int = START) -> None:
        if ceiling < 1:
            raise ConfigError(f"a request limit needs at least one request, got {ceiling}")
        self.ceiling = ceiling
        self.adaptive = adaptive
        self.limit = float(min(ceiling, max(1, start)) if adaptive else ceiling)
        self.in_flight = 0
        self.epoch = 0
        self.slow_start = adaptive
        self.throttled = 0  # 429s seen (every one, also those that did not lower the limit)
        self.succeeded = 0
        self._cond = threading.Condition()

    def allowed(self) -> int:
        """Requests that may be in flight now (at least one)."""
        return max(1, int(self.limit))

    def acquire(self) -> Ticket:
        """Wait for a free slot and take it."""
        with self._cond:
            while self.in_flight >= self.allowed():
                self._cond.wait()
            self.in_flight += 1
            return Ticket(self.epoch)

    def done(self, ticket: Ticket, outcome: Outcome) -> None:
        """Give the slot back and adapt the limit to how the request ended."""
        with self._cond:
            self.in_flight -= 1
            if outcome == "ok":
                self.succeeded += 1
                if self.adaptive:
                    step = 1.0 if self.slow_start else max(1.0 / self.limit, INCREASE)
                    self.limit = min(float(self.ceiling), self.limit + step)
            elif outcome == "throttled":
                self.throttled += 1
                if self.adaptive and ticket.epoch == self.epoch:
                    self.limit = max(1.0, self.limit * DECREASE)
                    self.epoch += 1
                    self.slow_start = False
            self._cond.notify_all()


_SHARED: dict[tuple[str, int], RequestLimit] = {}
_SHARED_LOCK = threading.Lock()


def shared_limit(name: str, ceiling: int) -> RequestLimit:
    """One adaptive limit per process, name and ceiling (a Beam worker's request budget).

    Every DoFn instance of a worker process gets the same object, so the process adapts as
    one client of the quota, however many bundles the runner processes at once.
    """
    with _SHARED_LOCK:
        key = (name, ceiling)
        if key not in _SHARED:
            _SHARED[key] = RequestLimit(ceiling)
        return _SHARED[key]
