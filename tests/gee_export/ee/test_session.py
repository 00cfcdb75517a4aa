"""The Earth Engine seam: one retry loop, classification by HTTP status, task reading.

Most tests run the real earthengine-api client against ``ee_http``: its HTTP layer answers as
the Earth Engine REST service documents (tests/support/ee_http.py), so what is counted below
is the HTTP requests the client would send.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from core.errors import AuthenticationError, EarthEngineError, QuotaError
from gee_export.ee import session as ee_session
from gee_export.ee import transport as ee_transport
from gee_export.ee.session import (
    AUTH_HELP,
    BACKEND_PURPOSE,
    EXPORT_WITHOUT_ACCOUNT,
    EESession,
    EETransport,
    RetryPolicy,
    classify,
    task_description,
)
from testing.fake_server import HttpError
from tests.support.ee_http import algorithms, discovery_document, urllib_opener


class EEException(Exception):
    """Stands in for ee.EEException raised before any request (no HTTP status)."""


def session(ee, attempts: int = 4, delays: list | None = None) -> EESession:
    sleep = delays.append if delays is not None else (lambda s: None)
    return EESession("offline", transport=EETransport(ee, "offline"), sleep=sleep, seed=0,
                     retry=RetryPolicy(max_attempts=attempts, base_delay=1.0, max_delay=4.0))


def compute(service) -> list:
    return service.calls("POST", "value:compute")


# ---------------------------------------------------------------- one retry loop (HTTP level)
def test_quota_answers_are_retried_by_one_loop_with_a_bounded_number_of_requests(ee_http):
    import ee

    service = ee_http
    service.max_requests = 4  # the planned attempts: a second loop would exceed them at once
    service.fail("POST", "value:compute", 429, "Too many requests.", times=3)
    delays: list[float] = []
    s = session(ee, attempts=4, delays=delays)
    assert s.get_info(ee.Number(1)) == 42
    assert len(compute(service)) == 4  # 3 refusals + 1 answer: exactly the planned attempts
    assert s.retries == 3 and len(delays) == 3
    assert all(0 <= d <= cap for d, cap in zip(delays, (1.0, 2.0, 4.0), strict=True))


def test_a_persistent_outage_costs_exactly_max_attempts_requests(ee_http):
    import ee

    service = ee_http
    service.max_requests = 3
    service.fail("POST", "value:compute", 503, "The service is currently unavailable.",
                 times=99)
    with pytest.raises(EarthEngineError, match="kept failing after 3 attempts"):
        session(ee, attempts=3).get_info(ee.Number(1))
    assert len(compute(service)) == 3
    assert ee.data._get_state().max_retries == 0  # the client's own loop is off


def test_dropped_connections_are_retried_too(ee_http):
    import ee

    service = ee_http
    service.fail("POST", "value:compute", exception=TimeoutError("timed out"), times=2)
    assert session(ee, attempts=3).get_info(ee.Number(1)) == 42
    assert len(compute(service)) == 3


# ---------------------------------------------------------------- classification (HTTP level)
@pytest.mark.parametrize(("status", "message", "requests", "error"), [
    # deterministic: fail at once with the server's message
    (400, "Too many input pixels per output pixel. Need 5001, limit 4096.", 1,
     "Too many input pixels per output pixel"),
    (400, "User memory limit exceeded.", 1, "User memory limit exceeded"),
    (500, "User memory limit exceeded.", 1, "User memory limit exceeded"),
    # numbers inside a message are not statuses
    (400, "Image.select: Band index 500 out of range, image has 6 bands.", 1,
     "Band index 500"),
    (404, "Image.load: Image asset 'projects/x/assets/r429' not found.", 1, "r429"),
    # statuses that are worth another attempt
    (429, "Too many concurrent aggregations.", 3, QuotaError),
    (500, "An internal error has occurred.", 3, "kept failing after 3 attempts"),
    # retried once, then reported for the caller to halve the window (not the whole budget)
    (400, "Computation timed out.", 2, "getInfo failed.*Computation timed out"),
])
def test_failures_are_classified_by_status_and_precise_phrases(ee_http, status, message,
                                                                requests, error):
    import ee

    service = ee_http
    service.max_requests = requests
    service.fail("POST", "value:compute", status, message, times=99)
    if isinstance(error, str):
        with pytest.raises(EarthEngineError, match=error) as info:
            session(ee, attempts=3).get_info(ee.Number(1))
        assert not isinstance(info.value, (QuotaError, AuthenticationError))
    else:
        with pytest.raises(error, match="--workers"):
            session(ee, attempts=3).get_info(ee.Number(1))
    assert len(compute(service)) == requests


@pytest.mark.parametrize(("status", "reason", "requests", "error"), [
    (401, "", 1, AuthenticationError),  # auth stays auth: never retried
    (403, "", 1, AuthenticationError),  # project not registered, API disabled...
    (403, "rateLimitExceeded", 3, QuotaError),  # Google's documented rate-limit 403
])
def test_auth_errors_fail_at_once_and_rate_limits_are_retried(ee_http, status, reason,
                                                              requests, error):
    import ee

    ee_http.fail("POST", "value:compute", status, "Caller is not allowed.", reason=reason,
                 times=9)
    with pytest.raises(error):
        session(ee, attempts=3).get_info(ee.Number(1))
    assert len(compute(ee_http)) == requests


def test_the_error_the_client_raises_keeps_its_http_status(ee_http):
    import ee

    ee_http.fail("POST", "value:compute", 429, "Quota exceeded for quota metric.")
    ee.data.setMaxRetries(0)
    with pytest.raises(ee.EEException) as info:
        ee.Number(1).getInfo()
    assert str(info.value) == "Quota exceeded for quota metric."  # the text carries no code
    assert classify(info.value) == "quota"  # ... the HttpError behind it does


@pytest.mark.parametrize("exc,kind", [
    (HttpError(429, "x"), "quota"),
    (HttpError(503, "x"), "transient"),
    (HttpError(401, "x"), "auth"),
    (HttpError(400, "Too many input pixels per output pixel"), "fatal"),
    (EEException("Computation timed out."), "transient"),
    (EEException("Too many concurrent aggregations."), "quota"),
    (EEException("Error 500 while reading band 429"), "fatal"),  # numbers, no status
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
def test_classify_without_a_server(exc, kind):
    assert classify(exc) == kind


# ---------------------------------------------------------------- tasks (HTTP level)
def test_many_tasks_are_read_in_pages_few_one_by_one(ee_http):
    import ee

    service = ee_http
    ids = [service.add_operation("projects/offline", f"tile_{i}") for i in range(2500)]
    s = session(ee)
    statuses = s.task_status(ids)
    assert [st["id"] for st in statuses] == ids
    assert {st["state"] for st in statuses} == {"RUNNING"}
    assert {st["progress"] for st in statuses} == {0.25}  # the reported progress is kept
    assert len(service.requests) == 5  # 2,500 operations in pages of 500, not 2,500 reads
    assert {r.query["pageSize"] for r in service.requests} == {"500"}

    service.requests.clear()
    few = s.task_status([*ids[:3], "NOSUCHTASK"])
    assert len(service.requests) == 4  # a few tasks: one read each
    assert [st["state"] for st in few] == ["RUNNING", "RUNNING", "RUNNING", "UNKNOWN"]


def test_failed_task_status_carries_the_server_message(ee_http):
    import ee

    service = ee_http
    task_id = service.add_operation("projects/offline", "t", steps=(("FAILED", 0.4),))
    service.operations[f"projects/offline/operations/{task_id}"].error = \
        "User memory limit exceeded."
    (status,) = session(ee).task_status([task_id])
    assert status["state"] == "FAILED"
    assert status["error_message"] == "User memory limit exceeded."


@pytest.mark.parametrize("text,expected", [
    ("isamap wuhan 2023-06 stack", "isamap_wuhan_2023-06_stack"),
    ("São Paulo (2019/06)", "Sao_Paulo_2019_06"),
    ("a" * 150, "a" * 100),
    ("///", "isamap_task"),
    ("ok.name,1:2;3_4-5", "ok.name,1:2;3_4-5"),
])
def test_task_description_keeps_only_what_the_service_accepts(text, expected):
    assert task_description(text) == expected


def test_export_tasks_start_with_an_accepted_description(ee_http):
    import ee

    service = ee_http
    task = ee.batch.Export.image.toCloudStorage(
        image=ee.Image(1), description="isamap wuhan 2023-06 stack (notebook 03)",
        bucket="b", fileNamePrefix="p", dimensions="10x10", crs="EPSG:32650",
        crsTransform=[10, 0, 0, 0, -10, 0])
    task_id = session(ee).start_task(task)
    (start,) = service.calls("POST", "image:export")
    assert start.body["description"] == "isamap_wuhan_2023-06_stack_notebook_03"
    assert start.body["requestId"]  # the client's idempotency key: retrying is safe
    assert task_id == service.operations[next(iter(service.operations))].name.rsplit("/", 1)[1]


# ---------------------------------------------------------------- without a server
def test_retry_budget_and_backoff_with_a_transport():
    delays: list[float] = []
    s = EESession(transport=object(), sleep=delays.append, seed=1,
                  retry=RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=3.0))
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise HttpError(500, "Internal")
        return "ok"

    assert s.call("test", flaky) == "ok"
    assert len(calls) == 4 and s.retries == 3
    assert max(delays) <= 3.0  # capped
    with pytest.raises(QuotaError, match="after 5 attempts"):
        s.call("computePixels", lambda: (_ for _ in ()).throw(HttpError(429, "slow down")))
    with pytest.raises(EarthEngineError, match="failed: boom"):
        s.call("x", lambda: (_ for _ in ()).throw(ValueError("boom")))


def test_a_call_that_is_not_idempotent_is_repeated_only_after_a_429():
    calls = []

    def start(error):
        calls.append(1)
        if len(calls) == 1:
            raise error
        return "started"

    s = EESession(transport=object(), sleep=lambda _: None)
    assert s.call("start", start, HttpError(429, "slow down"), idempotent=False) == "started"
    calls.clear()
    with pytest.raises(EarthEngineError, match="may have received it"):
        s.call("start", start, HttpError(503, "unavailable"), idempotent=False)
    assert len(calls) == 1


def test_auth_help_names_every_way():
    text = AUTH_HELP.format(reason="test", purpose=BACKEND_PURPOSE,
                            without_account=EXPORT_WITHOUT_ACCOUNT)
    for needle in ("earthengine authenticate", "GOOGLE_APPLICATION_CREDENTIALS", "--project",
                   "isamap-export --backend local", "make demo"):
        assert needle in text


def test_auth_help_says_what_the_command_itself_can_do_without_an_account():
    with pytest.raises(AuthenticationError) as err:
        EESession(project=None, without_account="No account? Do X.").initialize()
    assert str(err.value).endswith("No account? Do X.") and "isamap-export" not in str(err.value)


def test_missing_project_is_an_auth_error():
    with pytest.raises(AuthenticationError, match="no --project given"):
        EESession(project=None).initialize()


def test_uninitialised_client_library_is_an_auth_error_without_retries():
    """The real earthengine-api, never initialised, refuses a call: the seam says "authenticate"."""
    ee = pytest.importorskip("ee")
    ee.Reset()
    delays: list[float] = []
    s = EESession("p", transport=EETransport(ee, "p"), sleep=delays.append)
    with pytest.raises(AuthenticationError, match="earthengine authenticate") as info:
        s.task_status(["TASKID"])
    assert "not initialized" in str(info.value)
    assert s.retries == 0 and delays == []


def test_a_standard_session_after_a_high_volume_one_leaves_the_high_volume_endpoint(
        _ee_http_transport):
    """The real client keeps the URL of an earlier initialisation unless one is named."""
    import urllib.request

    import ee

    from gee_export.ee.session import HIGH_VOLUME_URL, STANDARD_URL, endpoint_url
    from tests.support.ee_http import urllib_opener

    previous = urllib.request._opener
    urllib.request.install_opener(urllib_opener())
    try:
        ee.Reset()
        ee.Initialize(None, project="offline", http_transport=_ee_http_transport,
                      opt_url=endpoint_url(True))
        assert ee.data._get_state().cloud_api_base_url == HIGH_VOLUME_URL
        ee.Initialize(None, project="offline", http_transport=_ee_http_transport)
        assert ee.data._get_state().cloud_api_base_url == HIGH_VOLUME_URL  # kept: the trap
        ee.Initialize(None, project="offline", http_transport=_ee_http_transport,
                      opt_url=endpoint_url(False))
        assert ee.data._get_state().cloud_api_base_url == STANDARD_URL
    finally:
        urllib.request.install_opener(previous)
        ee.Reset()


# ---------------------------------------------------------------- a stalled connection
class _StallingService(BaseHTTPRequestHandler):
    """Earth Engine's REST service over real HTTP, with gcloud's token endpoint beside it:
    answers the client's handshake, then never answers a computation."""

    release: ClassVar[threading.Event]
    computes: ClassVar[list[str]]

    def _json(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if "$discovery" in self.path:
            return self._json(discovery_document().encode())
        if self.path.split("?")[0].endswith("/algorithms"):
            return self._json(algorithms())
        self.send_error(404)
        return None

    def do_POST(self):
        if self.path.startswith("/token"):  # the key's token endpoint
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            return self._json(json.dumps({"access_token": "ya29.test", "expires_in": 3600,
                                          "token_type": "Bearer"}).encode())
        type(self).computes.append(self.path)
        type(self).release.wait(60)  # silent: no status line, no byte
        return None

    def log_message(self, *args):
        pass


def test_a_publication_after_a_map_goes_to_the_standard_endpoint(
        ee_http, _ee_http_transport, monkeypatch):
    """``isamap-map --publish`` checks the publication (a standard session) before mapping,
    then maps through a high-volume session: the process has one client, so the publication's
    calls went to the high-volume endpoint. A session re-opens its own endpoint first."""
    import ee

    from inference.publish.assets import connect

    opened = ee.Initialize

    def initialize(credentials, **kwargs):  # the stand-in's HTTP layer, as ee_http's own
        previous = urllib.request._opener
        urllib.request.install_opener(urllib_opener())
        try:
            opened(credentials, **{"http_transport": _ee_http_transport, **kwargs})
        finally:
            urllib.request.install_opener(previous)

    monkeypatch.setattr(ee, "Initialize", initialize)
    monkeypatch.setattr(ee_session, "credentials", lambda module, application_default=False: None)
    ee_http.add_asset("projects/offline/assets/isamap")
    assets = connect("offline")  # the publication's session: the standard endpoint
    mapping = EESession("offline", sleep=lambda seconds: None).initialize()  # high-volume
    mapping.get_info(ee.Number(1))
    assert assets.asset_type("projects/offline/assets/isamap") == "FOLDER"
    mapping.get_info(ee.Number(2))
    hosts = [("compute" if "value:compute" in r.path else "asset", r.host)
             for r in ee_http.requests if "value:compute" in r.path or "/assets/" in r.path]
    assert hosts == [("compute", "earthengine-highvolume.googleapis.com"),
                     ("asset", "earthengine.googleapis.com"),  # the publication's
                     ("compute", "earthengine-highvolume.googleapis.com")]


@pytest.fixture
def stalling_service(tmp_path, monkeypatch):
    """The service's URL; the session's credentials are a service-account key whose token
    endpoint is the service's ``/token``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    _StallingService.release, _StallingService.computes = threading.Event(), []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StallingService)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    key = tmp_path / "key.json"
    key.write_text(json.dumps({"type": "service_account", "project_id": "p",
                               "private_key_id": "k", "private_key": pem,
                               "client_email": "isamap@p.iam.gserviceaccount.com",
                               "client_id": "1", "token_uri": f"{url}/token"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    previous = urllib.request._opener  # the deprecated-asset catalogue, answered offline
    urllib.request.install_opener(urllib_opener())
    import ee

    ee.Reset()  # nothing of an earlier test's client
    yield url, _StallingService.computes
    urllib.request.install_opener(previous)
    _StallingService.release.set()
    server.shutdown()
    server.server_close()
    ee.Reset()  # later tests initialise their own client


def test_a_stalled_request_times_out_and_is_retried_instead_of_waiting_forever(
        stalling_service, monkeypatch):
    import ee

    url, computes = stalling_service
    monkeypatch.setattr(ee_transport, "STANDARD_URL", url)
    monkeypatch.setattr(ee_session, "REQUEST_DEADLINE_S", 1)  # a second, not ten minutes
    s = EESession("p", high_volume=False, sleep=lambda seconds: None,
                  retry=RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0))
    s.initialize()
    assert ee.data._get_state().deadline_ms == 1000
    started = time.monotonic()
    with pytest.raises(EarthEngineError, match="kept failing after 2 attempts"):
        s.get_info(ee.Number(1))
    assert len(computes) == 2 and time.monotonic() - started < 30


@pytest.mark.parametrize(("message", "reason", "period"), [
    ("Quota exceeded for quota metric 'Compute EECU-seconds' and limit 'Compute EECU-seconds "
     "per day per project' of service 'earthengine.googleapis.com' for consumer "
     "'project_number:123'.", "rateLimitExceeded", "daily"),
    ("Project has exceeded its monthly Earth Engine compute quota (EECU-hours).", "", "monthly"),
])
def test_a_spent_daily_or_monthly_quota_stops_at_once_with_a_resumable_line(
        ee_http, message, reason, period):
    """A spent daily EECU cap was handled as congestion: 66 refused requests in 24 s, then
    "lower --workers, wait a few minutes", though it resets only the next day."""
    import ee

    ee_http.max_requests = 1
    ee_http.fail("POST", "value:compute", 429, message, reason=reason,
                 rpc_status="RESOURCE_EXHAUSTED", times=99)
    with pytest.raises(QuotaError) as info:
        session(ee, attempts=5).get_info(ee.Number(1))
    text = str(info.value)
    assert len(compute(ee_http)) == 1  # no retry
    assert f"the Cloud project's {period} Earth Engine quota is spent" in text
    assert "Run the same command again after the reset: finished work is kept" in text
    assert "--workers" not in text and "\n" not in text


def test_a_rate_limit_without_a_period_is_still_congestion(ee_http):
    import ee

    ee_http.max_requests = 3
    ee_http.fail("POST", "value:compute", 429, "Quota exceeded for quota metric 'Requests' "
                 "and limit 'Requests per minute' of service 'earthengine.googleapis.com'.",
                 times=99)
    with pytest.raises(QuotaError, match="--workers"):
        session(ee, attempts=3).get_info(ee.Number(1))
    assert len(compute(ee_http)) == 3
