"""The Earth Engine seam: error classification, retry budget, auth translation."""

from __future__ import annotations

import pytest

from gee_export.core.ee_session import AUTH_HELP, EESession, EETransport, RetryPolicy, classify
from gee_export.core.errors import AuthenticationError, EarthEngineError, QuotaError
from gee_export.ee.fake_server import HttpError


class EEException(Exception):
    """Stands in for ee.EEException: the API reports HTTP failures as its message text."""


@pytest.mark.parametrize("exc,kind", [
    (HttpError(429, "x"), "quota"),
    (HttpError(503, "x"), "transient"),
    (HttpError(403, "x"), "auth"),
    (EEException("Too Many Requests: Request was rejected because the request rate or "
                 "concurrency limit was exceeded."), "quota"),
    (EEException("Computation timed out."), "transient"),
    (EEException("Internal error."), "transient"),
    (TimeoutError(), "transient"),
    (ConnectionResetError(), "transient"),
    (EEException("Please authorize access to your Earth Engine account by running "
                 "earthengine authenticate"), "auth"),
    (EEException("Earth Engine client library not initialized. See http://goo.gle/ee-auth."),
     "auth"),
    (EEException("Your default credentials were not found. To set up Application Default "
                 "Credentials, see https://cloud.google.com/docs/authentication"), "auth"),
    (EEException("('invalid_grant: Token has been expired or revoked.')"), "auth"),
    (EEException("Image.select: Pattern 'B99' did not match any bands."), "fatal"),
    (EEException("User memory limit exceeded."), "fatal"),
])
def test_classify(exc, kind):
    assert classify(exc) == kind


def test_retry_budget_and_backoff():
    delays: list[float] = []
    session = EESession(transport=object(), sleep=delays.append, seed=1,
                        retry=RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=3.0))
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise HttpError(500, "Internal")
        return "ok"

    assert session.call("test", flaky) == "ok"
    assert len(calls) == 4 and session.retries == 3
    assert [d <= cap for d, cap in zip(delays, (1.0, 2.0, 3.0), strict=True)] == [True] * 3
    with pytest.raises(QuotaError, match="after 5 attempts"):
        session.call("computePixels", lambda: (_ for _ in ()).throw(HttpError(429, "slow down")))
    assert max(delays) <= 3.0  # capped
    with pytest.raises(AuthenticationError, match="earthengine authenticate"):
        session.call("x", lambda: (_ for _ in ()).throw(HttpError(401, "no")))
    with pytest.raises(EarthEngineError, match="failed: boom"):
        session.call("x", lambda: (_ for _ in ()).throw(ValueError("boom")))


def test_auth_help_names_every_way():
    text = AUTH_HELP.format(reason="test")
    for needle in ("earthengine authenticate", "GOOGLE_APPLICATION_CREDENTIALS", "--project",
                   "--backend local", "make demo"):
        assert needle in text


def test_missing_project_is_an_auth_error():
    with pytest.raises(AuthenticationError, match="no --project given"):
        EESession(project=None).initialize()


def test_uninitialised_client_library_is_an_auth_error_without_retries():
    """The real earthengine-api, never initialised, refuses a call: the seam says "authenticate"."""
    ee = pytest.importorskip("ee")
    ee.Reset()
    delays: list[float] = []
    session = EESession("p", transport=EETransport(ee), sleep=delays.append)
    with pytest.raises(AuthenticationError, match="earthengine authenticate") as info:
        session.task_status(["TASKID"])
    assert "not initialized" in str(info.value)
    assert session.retries == 0 and delays == []
