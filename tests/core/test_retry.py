"""The one backoff loop both service seams (Earth Engine, Cloud Storage) retry with."""

from __future__ import annotations

import random

import pytest

from core import storage
from core.retry import RetryPolicy, retry_call
from gee_export.ee import session as ee_session


class Transient(Exception):
    pass


class Fatal(Exception):
    pass


def test_retries_transient_failures_with_capped_jittered_backoff():
    policy = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=3.0)
    waits: list[float] = []
    calls: list[int] = []

    def flaky():
        calls.append(1)
        if len(calls) < 5:
            raise Transient("busy")
        return "ok"

    rng = random.Random(0)
    got = retry_call(flaky, policy, retryable=lambda e: isinstance(e, Transient),
                     fail=lambda e, n, x: e, sleep=waits.append,
                     delay=lambda n: policy.delay(n, rng))
    assert got == "ok" and len(calls) == 5 and len(waits) == 4
    assert all(0 <= w <= cap for w, cap in zip(waits, (1.0, 2.0, 3.0, 3.0), strict=True))


def test_fail_decides_what_ends_the_loop():
    policy = RetryPolicy(max_attempts=3, base_delay=0.0)
    seen: list[tuple[str, int, bool]] = []

    def fail(exc, attempts, exhausted):
        seen.append((type(exc).__name__, attempts, exhausted))
        return exc if isinstance(exc, Fatal) else RuntimeError(f"gave up after {attempts}")

    def raiser(exc):
        def call():
            raise exc
        return call

    with pytest.raises(Fatal):  # not retryable: re-raised unchanged on the first attempt
        retry_call(raiser(Fatal()), policy, retryable=lambda e: isinstance(e, Transient),
                   fail=fail, sleep=lambda _: None)
    with pytest.raises(RuntimeError, match="gave up after 3") as info:
        retry_call(raiser(Transient()), policy, retryable=lambda e: isinstance(e, Transient),
                   fail=fail, sleep=lambda _: None)
    assert isinstance(info.value.__cause__, Transient)
    assert seen == [("Fatal", 1, False), ("Transient", 3, True)]


def test_both_seams_use_it():
    assert ee_session.RetryPolicy is RetryPolicy
    assert ee_session.retry_call is retry_call and storage.gcs.retry_call is retry_call
