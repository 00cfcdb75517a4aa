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


def test_restricted_mode_stops_at_the_first_answer_instead_of_running_on_slowed(ee_http):
    """The client only warns and goes on (slowed, until next month); the session stops."""
    import ee

    ee_http.max_requests = 1
    ee_http.headers["x-earth-engine-quota-status"] = "parallelism_restricted=true"
    with pytest.raises(QuotaError) as info:
        session(ee).get_info(ee.Number(1))
    text = str(info.value)
    assert len(ee_http.calls("POST", "value:compute")) == 1
    assert "the Cloud project's monthly Earth Engine quota is spent" in text
    assert "restricted mode" in text and "resets next month" in text
    assert "higher noncommercial tier" in text and "\n" not in text


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
    (UserWarning(RESTRICTED_WARNING), "month"),
    (HttpError(429, "Too many concurrent requests for this project"), None),
    (UserWarning("something else"), None),
])
def test_caps_are_told_from_congestion(error, period):
    assert spent_cap(error) == period
    assert classify(error) == ("fatal" if isinstance(error, UserWarning) and period is None
                               else "quota")
