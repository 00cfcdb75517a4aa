"""Retrying a call with exponential backoff and full jitter, under a bounded budget.

Both remote services isamap talks to ask clients to back off on overload (Earth Engine on
HTTP 429 / "too many requests", Cloud Storage on 429 and 5xx), and both seams
(:mod:`gee_export.ee.session`, :mod:`core.storage`) retry the same way: wait a
random time
in ``[0, min(max_delay, base_delay * 2**(attempt-1))]`` ("full jitter", AWS architecture blog,
2015) so a pool of workers does not retry in lock-step, and give up after ``max_attempts``.
What counts as transient and which error to raise are the seams' own business, passed in.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
FREE_FACTOR = 3  # free retries per counted attempt at most (see retry_call's ``free``)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter.

    Attributes:
        max_attempts: calls per operation, the first one included (the retry budget).
        base_delay: seconds before the first retry; doubles on each further one.
        max_delay: cap on one wait, so a long outage does not sleep for hours.
    """

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


def retry_call(call: Callable[[], T], policy: RetryPolicy, *,
               retryable: Callable[[Exception], bool],
               fail: Callable[[Exception, int, bool], BaseException],
               sleep: Callable[[float], None] = time.sleep,
               delay: Callable[[int], float] | None = None,
               free: Callable[[Exception], bool] | None = None) -> T:
    """Run ``call()`` until it succeeds, a failure is not retryable, or the budget is spent.

    Args:
        call: the operation.
        policy: attempts and backoff.
        retryable: whether a failure is transient (worth another attempt).
        fail: ``fail(exc, requests, exhausted)`` returns the exception to raise for a failure
            that ends the loop (``exhausted``: the budget was spent on transient failures);
            returning ``exc`` itself re-raises it unchanged.
        sleep: the wait function (tests pass a recorder to stay fast).
        delay: seconds to wait after failed attempt ``n``; default ``policy.delay`` drawn from
            the ``random`` module.
        free: failures that do not count against ``max_attempts`` (at most
            ``FREE_FACTOR * max_attempts`` of them, so a call never makes more than
            ``(FREE_FACTOR + 1) * max_attempts`` requests): the refusals an adaptive
            concurrency limit can still answer by lowering itself
            (:mod:`core.concurrency`), which are flow control, not failures.
            They are retried without a backoff wait: the retry goes back through the limit,
            which holds it until the lowered limit has room, as TCP resends through its
            congestion window rather than after a timer. A timer there would only idle the
            thread: with as many request threads as the limit's ceiling, each sleeping thread
            is a slot of the quota nobody uses.
    """
    delay = delay or (lambda n: policy.delay(n, random))  # type: ignore[arg-type]
    attempt = freed = 0
    while True:
        attempt += 1
        try:
            return call()
        except Exception as exc:
            transient = retryable(exc)
            if (transient and free is not None and freed < FREE_FACTOR * policy.max_attempts
                    and free(exc)):
                freed += 1
                attempt -= 1
                continue  # no timer: the retry waits for a slot of the limit it lowered
            if not transient or attempt >= policy.max_attempts:
                error = fail(exc, attempt + freed, transient)
                if error is exc:
                    raise
                raise error from exc
            sleep(delay(attempt))
