"""Fixtures shared by the whole suite: real services started locally, never mocks.

- ``gcs_emulator`` / ``gcs_bucket``: the real google-cloud-storage client against a
  gcp-storage-emulator server on 127.0.0.1 (free port), and GDAL /vsigs/ pointed at it.
- ``ee_offline``: earthengine-api initialised through an HTTP stand-in of the service
  (tests/support/ee_http.py: the discovery document and algorithm list shipped in its wheel),
  so graphs build and serialize with no network; any real server call raises EEException.
- ``ee_http``: the same client against ``FakeEarthEngine``, a stand-in of the REST service
  that records every request and answers as the REST reference documents.
- ``shared_data``: the real Sentinel samples in ../shared/data (skip only off CI when absent).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- autotune cache
@pytest.fixture(autouse=True)
def _autotune_cache_apart(tmp_path_factory, monkeypatch):
    """``--precision auto`` caches what it measures in the user's cache folder; the suite
    keeps its own (one per test worker), never touching the developer's."""
    monkeypatch.setenv("ISAMAP_AUTOTUNE_CACHE",
                       str(tmp_path_factory.getbasetemp() / "autotune-cache.json"))


# ---------------------------------------------------------------- torch threads
@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread per pytest worker: ``-n 2`` on 2 cores must not oversubscribe
    (OpenMP threads spinning against each other make small convolutions 50x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- shared sample data
@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data (override with ISAMAP_SHARED_DATA)."""
    path = Path(os.environ.get("ISAMAP_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared sample data not found at {path}; CI must have ../shared/data")
        pytest.skip(f"shared sample data not found at {path} (set ISAMAP_SHARED_DATA)")
    return path


# ---------------------------------------------------------------- Earth Engine, offline
EE_PROJECT = "offline"


@pytest.fixture(scope="session")
def _ee_http_transport():
    """The HTTP layer under earthengine-api for the whole session (tests/support/ee_http.py)."""
    pytest.importorskip("ee")
    from tests.support.ee_http import EarthEngineHttp

    return EarthEngineHttp()


def _ee_initialise(ee, transport) -> None:
    """``ee.Initialize`` through the HTTP stand-in: discovery, algorithms, deprecated assets.

    Nothing of the client is patched: it fetches its discovery document and the algorithm
    list through ``transport`` (and the deprecated-asset catalogue through urllib, answered by
    the stand-in's handler only while initialising), exactly as it would from the service.
    """
    import urllib.request

    from tests.support.ee_http import urllib_opener

    previous = urllib.request._opener  # the process-wide opener, restored below
    urllib.request.install_opener(urllib_opener())
    try:
        ee.Reset()
        ee.Initialize(None, project=EE_PROJECT, http_transport=transport)
    finally:
        urllib.request.install_opener(previous)


@pytest.fixture
def ee_offline(_ee_http_transport):
    """The ``ee`` module initialised offline: graphs build and serialize, no server is reached.

    A real server call gets the service's answer to a request without credentials (HTTP 401,
    an EEException). Initialised once per worker, again only after a test reset it.
    """
    import ee

    state = ee.data._get_state()
    if not state.initialized or state.http_transport is not _ee_http_transport:
        _ee_initialise(ee, _ee_http_transport)
    return ee


@pytest.fixture
def ee_http(_ee_http_transport):
    """A fresh ``FakeEarthEngine`` behind the real client's HTTP layer; yields the service.

    ``ee`` is initialised afresh (the client's defaults, five retries included) against it;
    every request the client sends is in ``service.requests``.
    """
    import ee

    from tests.support.ee_http import FakeEarthEngine

    service = FakeEarthEngine()
    _ee_http_transport.service = service
    try:
        _ee_initialise(ee, _ee_http_transport)
        yield service
    finally:
        _ee_http_transport.service = None
        _ee_initialise(ee, _ee_http_transport)  # later tests get the offline client back


# ---------------------------------------------------------------- Cloud Storage emulator
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class GcsEmulator:
    host: str  # http://127.0.0.1:PORT

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="isamap-test", credentials=AnonymousCredentials())


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory):
    """A gcp-storage-emulator server process on a free loopback port, for the session."""
    pytest.importorskip("google.cloud.storage")
    exe = Path(sys.executable).with_name("gcp-storage-emulator")
    if not exe.exists():
        exe = Path(shutil.which("gcp-storage-emulator") or "gcp-storage-emulator")
    port = _free_port()
    log = tmp_path_factory.mktemp("gcs") / "emulator.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            [str(exe), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"],
            stdout=log_file, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"gcp-storage-emulator did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
    from gee_export.core.storage.gdal_auth import STALL_OPTIONS

    host = f"http://127.0.0.1:{port}"
    # GDAL's stall limits also for tests that open /vsigs/ without gdal_env: a stalled
    # emulator is then a failed read, not a test waiting forever
    settings = {"STORAGE_EMULATOR_HOST": host, "CPL_GS_ENDPOINT": host + "/",
                "GS_NO_SIGN_REQUEST": "YES", **STALL_OPTIONS}
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield GcsEmulator(host)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def gcs_bucket(gcs_emulator) -> str:
    """A fresh, empty bucket on the emulator; returns its name."""
    name = f"isamap-{uuid.uuid4().hex[:12]}"
    gcs_emulator.client().create_bucket(name)
    return name
