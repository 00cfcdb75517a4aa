"""Spent compute caps, answered by the real client over HTTP as Earth Engine documents them.

A project's daily EECU-time quota answers "Your usage exceeded the custom quota for
'earthengine.googleapis.com/daily_eecu_usage_time' ..." (429 RESOURCE_EXHAUSTED) until it resets
the next day; a noncommercial project past its monthly allowance gets every answer with
``X-Earth-Engine-Quota-Status: parallelism_restricted=true`` (restricted mode). Either stops the
run at the first answer, in one line that says when the cap resets and how to resume.
"""

from __future__ import annotations

import datetime as dt

import pytest

from core.errors import QuotaError
from gee_export.ee.service_errors import cap_spent_error, classify, pacific_midnight, spent_cap
from gee_export.ee.session import EESession, EETransport, RetryPolicy
from testing.fake_quota import DAILY_QUOTA_MESSAGE, RESTRICTED_WARNING, HttpError


def session(ee, attempts: int = 5) -> EESession:
    return EESession("offline", transport=EETransport(ee, "offline"), sleep=lambda s: None,
                     seed=0, retry=RetryPolicy(max_attempts=attempts, base_delay=1.0,
                                               max_delay=4.0))


def test_a_spent_daily_eecu_quota_stops_at_the_first_refusal_saying_when_it_resets(ee_http):
    import ee

    ee_http.max_requests = 1  # a retry would be a second request
    ee_http.fail("POST", "value:compute", 429, DAILY_QUOTA_MESSAGE,
                 rpc_status="RESOURCE_EXHAUSTED", times=99)
    with pytest.raises(QuotaError) as info:
        session(ee).get_info(ee.Number(1))
    text = str(info.value)
    assert len(ee_http.calls("POST", "value:compute")) == 1
    assert "the Cloud project's daily Earth Engine quota is spent" in text
    assert "daily_eecu_usage_time" in text and "midnight Pacific time" in text
    assert "Run the same command again after the reset" in text
    assert "EECU-time) per day' quota in the Cloud console" in text
    assert "--workers" not in text and "\n" not in text


def test_restricted_mode_is_said_once_and_every_answer_is_served(ee_http):
    """Past the monthly allowance Earth Engine slows the project's computations and answers
    them (the header says so): the session stopped at the first answer, and with it every
    command, publishing included. The answers are used, and the client's warning shown once."""
    import warnings

    import ee

    ee_http.headers["x-earth-engine-quota-status"] = "parallelism_restricted=true"
    warnings.onceregistry.clear()  # once a run: this test's run starts here
    with warnings.catch_warnings(record=True) as seen:
        s = session(ee)
        assert [s.get_info(ee.Number(1)) for _ in range(3)] == [42, 42, 42]
    assert len(ee_http.calls("POST", "value:compute")) == 3  # none sent twice
    said = [str(w.message) for w in seen if RESTRICTED_WARNING[:40] in str(w.message)]
    assert len(said) == 1 and "restricted mode" in said[0]
    assert s.retries == 0


def test_an_answer_without_the_restricted_header_is_served(ee_http):
    import ee

    ee_http.headers["x-earth-engine-quota-status"] = "parallelism_restricted=false"
    assert session(ee).get_info(ee.Number(1)) == 42


@pytest.mark.parametrize(("now", "reset"), [
    (dt.datetime(2026, 11, 2, 20, 0, tzinfo=dt.UTC), dt.datetime(2026, 11, 3, 8, 0,
                                                                tzinfo=dt.UTC)),  # PST
    (dt.datetime(2026, 7, 2, 6, 30, tzinfo=dt.UTC), dt.datetime(2026, 7, 2, 7, 0,
                                                               tzinfo=dt.UTC)),  # PDT
])
def test_the_daily_reset_is_the_next_midnight_in_pacific_time(now, reset):
    assert pacific_midnight(now) == reset
    error = cap_spent_error("computePixels", HttpError(429, DAILY_QUOTA_MESSAGE), now)
    assert f"{reset:%Y-%m-%d %H:%M} UTC" in str(error)


@pytest.mark.parametrize(("error", "period"), [
    (HttpError(429, DAILY_QUOTA_MESSAGE), "day"),
    (UserWarning(RESTRICTED_WARNING), None),  # a warning of slowed answers, never a refusal
    (HttpError(429, "Too many concurrent requests for this project"), None),
    (UserWarning("something else"), None),
])
def test_caps_are_told_from_congestion(error, period):
    assert spent_cap(error) == period
    assert classify(error) == ("fatal" if isinstance(error, UserWarning) and period is None
                               else "quota")
