"""Fixtures shared by the whole suite: real services started locally, never mocks.

- ``gcs_emulator`` / ``gcs_bucket``: the real google-cloud-storage client against a
  gcp-storage-emulator server on 127.0.0.1 (free port), and GDAL /vsigs/ pointed at it.
- ``ee_offline``: earthengine-api initialised through an HTTP stand-in of the service
  (tests/support/ee_http.py: the discovery document and algorithm list shipped in its wheel),
  so graphs build and serialize with no network; any real server call raises EEException.
- ``ee_http``: the same client against ``FakeEarthEngine``, a stand-in of the REST service
  that records every request and answers as the REST reference documents.
- ``shared_data``: the real Sentinel samples in ../shared/data (skip only off CI when absent).
- ``shared_weights``: the published encoder files in ../shared/weights (the same rule).
- ``cogs``: a real class/probability COG pair from a tiny prediction (publishing, predict's
  command and credentials tests).
- ``demo_chain``: the demo's chain at its smallest size, up to the patches (read-only).
- ``patch_root``, ``trained_unet``: a small patch dataset and a tiny unet trained on it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- order and xdist groups
def _slow_modules_first(items: list) -> None:
    """The modules holding a ``slow`` test run first, each module's tests kept together and in
    their order (a module's fixtures are still built once): the workers take long tests while
    there is other work for the second one, rather than one long test left for the end."""
    slow = {item.module.__name__ for item in items
            if item.get_closest_marker("slow") and getattr(item, "module", None)}
    items.sort(key=lambda item: getattr(getattr(item, "module", None), "__name__", "") not in slow)


#: the tiers: the lab in ``slow``, and an unmarked test over the time limit fails
pytest_plugins = ["tests.support.tiers"]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Modules with ``slow`` tests first (:func:`_slow_modules_first`); tests marked
    ``xdist_group("name")`` run on one worker under ``--dist loadgroup``.

    pytest-xdist (3.8) tells its scheduler a test's group by appending ``@name`` to the test's
    ``_nodeid``; pytest 9.2 keeps the id in ``_id`` instead, so the suffix is lost and every
    group is spread over the workers like any test (pytest-xdist issue 1386), each worker
    building the group's shared fixture again. Here, after xdist's own hook, the same suffix
    goes on the id pytest reads; nothing is done where xdist's took effect or without
    loadgroup (``config.option.loadgroup`` is set on xdist's workers only).
    """
    _slow_modules_first(items)
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        groups = {str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                  for mark in item.iter_markers("xdist_group")}
        suffix = "@" + "_".join(sorted(groups))
        if groups and not item.nodeid.endswith(suffix) and hasattr(item, "_id"):
            # pytest 9.2's id type; on earlier pytest xdist's own suffix took effect above
            from _pytest.nodeid import NodeId

            item._id = NodeId.parse(item.nodeid + suffix)


# ---------------------------------------------------------------- autotune cache
@pytest.fixture(autouse=True)
def _autotune_cache_apart(tmp_path_factory, monkeypatch):
    """``--precision auto`` caches what it measures in the user's cache folder; the suite
    keeps its own (one per test worker), never touching the developer's."""
    monkeypatch.setenv("ISAMAP_AUTOTUNE_CACHE",
                       str(tmp_path_factory.getbasetemp() / "autotune-cache.json"))


# ---------------------------------------------------------------- logging
@pytest.fixture(autouse=True, scope="session")
def _logging_baseline():
    """The loggers' levels as the session found them, before any fixture ran a command."""
    import logging

    from core.commands import ISAMAP_LOGGERS

    return {name: logging.getLogger(name).level for name in ["", *ISAMAP_LOGGERS, "rasterio"]}


@pytest.fixture(autouse=True)
def _logging_apart(_logging_baseline):
    """Every command's ``main`` configures logging process-wide (a stderr handler on the root,
    isamap's loggers at INFO or more): put it back after each test, so records of a later test
    never reach an earlier test's closed capture, and no level leaks from test to test. The
    levels go back to the session's baseline, not to what the test found: a module-scoped
    fixture that ran a command with ``-q`` would otherwise leave isamap's loggers at WARNING
    for every later test of its worker."""
    import logging

    levels = _logging_baseline
    for name, level in levels.items():  # before the test too: a module fixture ran first
        logging.getLogger(name).setLevel(level)
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_isamap", False):
            root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


# ---------------------------------------------------------------- torch threads
@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread per pytest worker: ``-n 2`` on 2 cores must not oversubscribe
    (OpenMP threads spinning against each other make small convolutions 50x slower).

    The processes the tests start (``python -m cli.x``, Beam's multi-processing workers,
    torchrun's ranks, the notebooks) inherit ``OMP_NUM_THREADS=1`` too, where neither the
    environment the suite runs in nor the test names a count of its own.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    omp = os.environ.get("OMP_NUM_THREADS")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(before)
    if omp is None:
        os.environ.pop("OMP_NUM_THREADS", None)


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


@pytest.fixture(scope="session")
def shared_weights() -> Path:
    """Path of ../shared/weights, the published encoder files (skip only off CI when absent)."""
    path = REPO_ROOT.parent / "shared" / "weights"
    if not (path / "presto" / "default_model.pt").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"encoder weights not found in {path}; CI must have ../shared/weights")
        pytest.skip(f"encoder weights not found in {path} (../shared/weights not beside this "
                    "checkout)")
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
    """A gcp-storage-emulator server process on a free loopback port, for the session.

    Started by ``tests/support/gcs_emulator.py``: the emulator itself, with a server that
    serves connections side by side as Cloud Storage does (its own serves one at a time, so
    one waiting client stalled every other one).
    """
    pytest.importorskip("google.cloud.storage")
    pytest.importorskip("gcp_storage_emulator")
    launcher = Path(__file__).parent / "support" / "gcs_emulator.py"
    port = _free_port()
    log = tmp_path_factory.mktemp("gcs") / "emulator.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, str(launcher), "start", "--host", "127.0.0.1", "--port",
             str(port), "--in-memory", "-q"],
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
    from core.storage.gdal_auth import STALL_OPTIONS

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


# ---------------------------------------------------------------- a user's gcloud login
@pytest.fixture
def token_endpoint():
    """A local OAuth token endpoint; yields ``(url, posts)`` (the refresh requests it got)."""
    from tests.support.gcs_auth import TokenEndpoint

    endpoint = TokenEndpoint()
    yield endpoint.url, endpoint.posts
    endpoint.close()


@pytest.fixture
def user_adc_home(tmp_path, monkeypatch):
    """A HOME whose only credentials are what 'gcloud auth application-default login' writes."""
    import json

    from core.storage import gdal_auth
    from tests.support.gcs_auth import USER_REFRESH_TOKEN

    home = tmp_path / "home"
    adc = home / ".config" / "gcloud" / "application_default_credentials.json"
    adc.parent.mkdir(parents=True)
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "client-123.apps",
                               "client_secret": "secret-456",
                               "refresh_token": USER_REFRESH_TOKEN}))
    monkeypatch.setenv("HOME", str(home))
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG",
                 *gdal_auth.GDAL_OWN_CREDENTIALS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CPL_MACHINE_IS_GCE", "NO")  # GDAL must not try a metadata server
    gdal_auth.forget_credentials()
    yield home
    gdal_auth.forget_credentials()


@dataclass(frozen=True)
class SignedGcs:
    """The emulator's bucket read by GDAL as a real user would: signed requests only."""

    bucket: str
    home: Path
    refresh_token: str
    posts: list  # the token endpoint's refresh requests

    def refreshed(self) -> bool:
        """Whether GDAL exchanged this user's refresh token for an access token."""
        return any(p.get("refresh_token") == [self.refresh_token] for p in self.posts)


@pytest.fixture
def signed_gcs(gcs_bucket, user_adc_home, token_endpoint, monkeypatch) -> SignedGcs:
    """``gcs_bucket`` with GDAL's anonymous mode off and only a user's gcloud login in HOME.

    The storage client stays anonymous (the emulator's own mode); GDAL signs every
    ``/vsigs/`` request with an access token it must obtain from the user's refresh token at
    the local token endpoint, so a read without the credentials fails with GDAL's
    "configuration options not defined", as on a real account. Each test gets its own refresh
    token: GDAL keeps the access token it obtained for a refresh token for an hour, so a
    shared one would let a test pass on an earlier test's token.
    """
    import json

    url, posts = token_endpoint
    refresh = f"1//user-{uuid.uuid4().hex}"
    adc = user_adc_home / ".config" / "gcloud" / "application_default_credentials.json"
    info = json.loads(adc.read_text())
    adc.write_text(json.dumps({**info, "refresh_token": refresh}))
    monkeypatch.delenv("GS_NO_SIGN_REQUEST", raising=False)
    monkeypatch.setenv("GOA2_AUTH_URL_TOKEN", url)
    return SignedGcs(gcs_bucket, user_adc_home, refresh, posts)


# ---------------------------------------------------------------- the demo's chain
@pytest.fixture(scope="session")
def demo_chain(tmp_path_factory):
    """The demo's steps at its smallest ``--size`` up to the patches, once per worker: the
    synthetic scene at both dates, the stack, the quick-looks and the patches, as ``isamap-demo
    --until patches`` writes them; returns the steps' ``DemoContext`` (``scene``, ``later``,
    ``stack``, ``out``). Read-only: a test that changes a file works on a copy."""
    from cli.demo import DEMO_SIZES
    from inference.demo.context import DemoContext
    from inference.demo.steps import run_demo

    ctx = DemoContext(tmp_path_factory.mktemp("demo") / "out", size=DEMO_SIZES[0],
                      progress=False)
    run_demo(ctx, until="patches")
    return ctx


# ---------------------------------------------------------------- a tiny training run
@pytest.fixture(scope="session")
def patch_root(tmp_path_factory) -> Path:
    """A 10-patch, 32 px, six-band (B2 B3 B4 B8 VV VH) dataset: 6 train, 2 val, 2 test,
    written by the real patch writer (read-only)."""
    from tests.support.rasters import write_patch_dataset

    return write_patch_dataset(tmp_path_factory.mktemp("patches") / "ds")


@pytest.fixture(scope="session")
def trained_unet(patch_root, tmp_path_factory) -> Path:
    """A tiny unet trained one epoch on ``patch_root`` by isamap-train: its model file, which
    records the grid and band ranges (read-only)."""
    from cli.train import train_main

    run = tmp_path_factory.mktemp("trained_unet") / "run"
    assert train_main(["--data", str(patch_root), "--out", str(run), "--model", "unet",
                       "--model-kwargs", '{"widths": [4, 8, 8, 16, 16]}', "--epochs", "1",
                       "--batch-size", "2", "--workers", "0", "--precision", "fp32",
                       "--no-progress", "-q"]) == 0
    return run / "model.pt"


# ---------------------------------------------------------------- a tiny map's COGs
@pytest.fixture
def cogs(tmp_path):
    """A real class/probability COG pair from a tiny prediction."""
    return _tiny_cogs(tmp_path)


@pytest.fixture(scope="module")
def module_cogs(tmp_path_factory):
    """The pair of ``cogs``, made once for a module whose tests only read it."""
    return _tiny_cogs(tmp_path_factory.mktemp("cogs"))


def _tiny_cogs(tmp_path: Path):
    import numpy as np

    from inference.cog.maps import OutputInfo
    from inference.predict.raster import PredictConfig, predict_raster
    from inference.predict.runtime import RuntimeOptions, TilePredictor
    from tests.support.models import conv1x1
    from tests.support.rasters import smooth_stack, write_stack

    src = write_stack(tmp_path / "small.tif", smooth_stack(90, 110))
    p = TilePredictor(conv1x1(), np.zeros(6), np.ones(6),
                      options=RuntimeOptions(precision="fp32", channels_last="on"))
    info = OutputInfo("unet", ("B2", "B3", "B4", "B8", "VV", "VH"), month="2023-06",
                      metrics={"iou": 0.8})
    return predict_raster(str(src), str(tmp_path / "maps" / "wuhan_2023-06"), p, info,
                          PredictConfig(tile=64, overlap=16), progress=False)
