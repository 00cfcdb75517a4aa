"""GDAL reads gs:// with the credentials google.auth finds: a temporary HOME holding only
gcloud's application-default file, a local OAuth token endpoint, the GCS emulator."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import rasterio

from contract.geotiff import write_geotiff
from contract.grid import Grid
from core.errors import StorageCredentialsError, StorageError
from core.storage import gdal_auth, open_store
from core.storage.gdal_auth import (
    STALL_OPTIONS,
    credential_options,
    forget_credentials,
    gdal_env,
    options_for,
    read_failure,
)
from tests.support.gcs_auth import USER_REFRESH_TOKEN

REFRESH = USER_REFRESH_TOKEN


def _uploaded_raster(gcs_bucket, tmp_path) -> tuple[str, np.ndarray]:
    grid = Grid("EPSG:32650", 238000.0, 3385000.0, 32, 16)
    data = np.arange(32 * 16, dtype=np.float32).reshape(1, 16, 32)
    local = write_geotiff(tmp_path / "r.tif", data, grid.transform, grid.crs, float("nan"))
    name = f"auth/{uuid.uuid4().hex}.tif"  # GDAL caches what it read per path
    open_store(f"gs://{gcs_bucket}").upload_file(local, name)
    return f"gs://{gcs_bucket}/{name}", data


def test_user_adc_alone_lets_gdal_read_through_an_oauth_refresh(
        gcs_bucket, tmp_path, user_adc_home, token_endpoint, monkeypatch):
    uri, data = _uploaded_raster(gcs_bucket, tmp_path)
    url, posts = token_endpoint
    # from here on GDAL signs its requests: the emulator's anonymous mode is off
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    monkeypatch.setenv("GOA2_AUTH_URL_TOKEN", url)
    vsigs = "/vsigs/" + uri[5:]
    with rasterio.Env(), pytest.raises(rasterio.errors.RasterioError, match="not defined"):
        rasterio.open(vsigs)  # GDAL alone does not read gcloud's file
    assert posts == []
    with gdal_env(uri), rasterio.open(vsigs) as src:
        np.testing.assert_array_equal(src.read(), data)
    assert posts and posts[0]["refresh_token"] == [REFRESH]
    assert posts[0]["client_id"] == ["client-123.apps"]
    assert posts[0]["grant_type"] == ["refresh_token"]
    assert not any(p.name.endswith(".boto") for p in user_adc_home.rglob("*"))


def test_offline_the_refresh_fails_at_the_network_and_is_told_apart(user_adc_home, monkeypatch,
                                                                    caplog):
    # offline: neither Google's token endpoint nor Cloud Storage can be reached
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    adc = user_adc_home / ".config" / "gcloud" / "application_default_credentials.json"
    # another user: GDAL keeps the access tokens it got per refresh token for an hour
    adc.write_text(adc.read_text().replace(REFRESH, f"1//user-{uuid.uuid4().hex}"))
    monkeypatch.setenv("GOA2_AUTH_URL_TOKEN", "http://127.0.0.1:9/token")
    monkeypatch.setenv("CPL_GS_ENDPOINT", "http://127.0.0.1:9/")
    uri = f"gs://bucket-{uuid.uuid4().hex[:8]}/maps/isa_class.tif"
    with caplog.at_level(logging.INFO, logger="rasterio._env"), gdal_env(uri), \
            pytest.raises(rasterio.errors.RasterioError) as caught:
        rasterio.open("/vsigs/" + uri[5:])
    signalled = " ".join(r.getMessage() for r in caplog.records)
    assert "Fetching OAuth2 access code" in signalled  # GDAL tried to refresh the token
    assert "not defined" not in signalled + str(caught.value)
    refused = read_failure(uri, caught.value)  # no token: not a damaged file
    assert isinstance(refused, StorageCredentialsError) and refused.exit_code == 1
    assert uri in str(refused)
    unreachable = read_failure(uri, rasterio.errors.RasterioIOError(
        "CURL error: Failed to connect to 127.0.0.1 port 9: Could not connect to server"))
    assert type(unreachable) is StorageError and unreachable.exit_code == 1
    refused = read_failure(uri, rasterio.errors.RasterioIOError(
        "HTTP response code: 403 - AccessDenied"))
    assert isinstance(refused, StorageCredentialsError)


def test_a_damaged_file_is_not_a_credentials_failure(tmp_path):
    bad = tmp_path / "cut.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 10)
    with pytest.raises(rasterio.errors.RasterioError) as caught:
        rasterio.open(bad)
    assert read_failure(str(bad), caught.value) is None
    assert read_failure("gs://b/cut.tif", caught.value) is None


def test_credential_kinds_map_to_gdal_options(tmp_path, monkeypatch, user_adc_home):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.auth import compute_engine
    from google.oauth2 import service_account

    options = credential_options()
    assert options == {"GS_OAUTH2_REFRESH_TOKEN": REFRESH,
                       "GS_OAUTH2_CLIENT_ID": "client-123.apps",
                       "GS_OAUTH2_CLIENT_SECRET": "secret-456"}
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": "p", "private_key_id": "k",
            "private_key": pem, "client_email": "sa@p.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"}
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(info))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    forget_credentials()
    assert credential_options() == {"GS_OAUTH2_PRIVATE_KEY": pem,
                                    "GS_OAUTH2_CLIENT_EMAIL": info["client_email"]}
    sa = service_account.Credentials.from_service_account_info(info)
    assert options_for(sa, str(key_file))["GS_OAUTH2_CLIENT_EMAIL"] == info["client_email"]
    assert options_for(compute_engine.Credentials(), None) == {"CPL_MACHINE_IS_GCE": "YES"}
    with pytest.raises(StorageCredentialsError, match="cannot use"):
        options_for(object(), None)


def test_no_credentials_is_one_line_naming_the_login(user_adc_home, monkeypatch):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    (user_adc_home / ".config" / "gcloud" / "application_default_credentials.json").unlink()
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # no metadata server here
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    # google.auth reads NO_GCE_CHECK once, at import: without this it pings the (absent)
    # metadata server three times with exponential back-off, ~3 s of sleeping
    from google.auth.compute_engine import _metadata
    monkeypatch.setattr(_metadata, "_NO_GCE_CHECK", True)
    with pytest.raises(StorageError, match="application-default login"):
        credential_options()


def test_local_paths_and_the_emulator_need_no_credentials(gcs_emulator, tmp_path):
    assert credential_options() == {}  # STORAGE_EMULATOR_HOST: GDAL is set up for it
    with gdal_env(tmp_path / "x.tif"):
        assert not rasterio.env.hasenv()  # a local read costs no environment
    with gdal_env("gs://bucket/x.tif", GDAL_CACHEMAX=64):
        assert rasterio.env.getenv().get("GS_OAUTH2_REFRESH_TOKEN") is None


@pytest.fixture
def silent_endpoint():
    """A Cloud Storage endpoint that accepts connections and never answers them."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):  # look at ``stop`` now and then
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/", accepted
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


def test_a_stalled_read_ends_as_unreachable_instead_of_hanging(silent_endpoint, monkeypatch):
    """Without a stall limit GDAL waits on such a connection forever."""
    url, accepted = silent_endpoint
    monkeypatch.setenv("CPL_GS_ENDPOINT", url)
    monkeypatch.setenv("GS_NO_SIGN_REQUEST", "YES")
    monkeypatch.setenv("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")  # no listing to stall too
    for name in STALL_OPTIONS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(gdal_auth, "STALL_OPTIONS",  # a second instead of a minute
                        {**STALL_OPTIONS, "GDAL_HTTP_LOW_SPEED_TIME": "1"})
    uri = f"gs://bucket-{uuid.uuid4().hex[:8]}/maps/isa_class.tif"
    started = time.monotonic()
    with gdal_env(uri), pytest.raises(rasterio.errors.RasterioIOError) as caught:
        rasterio.open("/vsigs/" + uri[5:])
    assert accepted and time.monotonic() - started < 60
    failure = read_failure(uri, caught.value)
    assert type(failure) is StorageError and "could not reach" in str(failure)


def test_cloud_storage_reads_get_stall_limits_and_the_users_own_win(monkeypatch, tmp_path):
    monkeypatch.setenv("GS_NO_SIGN_REQUEST", "YES")  # no credentials to resolve here
    for name in STALL_OPTIONS:
        monkeypatch.delenv(name, raising=False)
    with gdal_env("gs://bucket/x.tif"):
        seen = {name: rasterio.env.get_gdal_config(name, normalize=False)
                for name in STALL_OPTIONS}
        assert seen == STALL_OPTIONS
    monkeypatch.setenv("GDAL_HTTP_LOW_SPEED_TIME", "600")
    with gdal_env("gs://bucket/x.tif"):  # GDAL reads the user's
        assert rasterio.env.get_gdal_config("GDAL_HTTP_LOW_SPEED_TIME", normalize=False) == "600"
    with gdal_env(tmp_path / "x.tif"):
        assert not rasterio.env.hasenv()


def test_every_thread_reads_with_the_credentials_wherever_they_were_given(signed_gcs, tmp_path):
    """rasterio.Env options entered outside the main thread are that thread's alone: a Beam
    worker's thread whose reader thread starts the decoding threads would hand them nothing."""
    uri, data = _uploaded_raster(signed_gcs.bucket, tmp_path)
    vsigs = "/vsigs/" + uri[5:]

    def read() -> np.ndarray:
        with rasterio.open(vsigs) as src:
            return src.read()

    def child() -> np.ndarray:  # started by the worker; its own thread does the reading
        with ThreadPoolExecutor(1) as grandchild:
            return grandchild.submit(read).result()

    def worker() -> np.ndarray:  # a thread that is not the main one names the gs:// path
        with gdal_env(uri), ThreadPoolExecutor(1) as reader:
            return reader.submit(child).result()

    with ThreadPoolExecutor(1) as pool:
        np.testing.assert_array_equal(pool.submit(worker).result(), data)
        # a thread the worker never started, after its block ended, reads as well
        np.testing.assert_array_equal(pool.submit(read).result(), data)
    assert signed_gcs.refreshed()
    forget_credentials()  # taken back from GDAL: a read now fails as without them
    with pytest.raises(rasterio.errors.RasterioIOError, match="not defined"):
        read()


def test_the_hand_over_never_overwrites_the_users_values_and_takes_back_only_its_own(
        user_adc_home, monkeypatch):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    for name in (*STALL_OPTIONS, "GS_OAUTH2_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GDAL_HTTP_CONNECTTIMEOUT", "5")  # the user's own stall limit
    gdal_auth.ready_for_remote()
    assert os.environ["GS_OAUTH2_REFRESH_TOKEN"] == REFRESH
    assert os.environ["GDAL_HTTP_CONNECTTIMEOUT"] == "5"
    assert os.environ["GDAL_HTTP_LOW_SPEED_TIME"] == STALL_OPTIONS["GDAL_HTTP_LOW_SPEED_TIME"]
    assert os.environ["CPL_MACHINE_IS_GCE"] == "NO"  # the fixture's, not touched
    gdal_auth.ready_for_remote()  # again: what it added is not taken for the user's
    assert os.environ["GS_OAUTH2_REFRESH_TOKEN"] == REFRESH
    monkeypatch.setenv("GS_OAUTH2_CLIENT_ID", "users-own.apps")  # set since: the user's now
    forget_credentials()
    assert "GS_OAUTH2_REFRESH_TOKEN" not in os.environ
    assert "GDAL_HTTP_LOW_SPEED_TIME" not in os.environ
    assert os.environ["GDAL_HTTP_CONNECTTIMEOUT"] == "5"
    assert os.environ["GS_OAUTH2_CLIENT_ID"] == "users-own.apps"
