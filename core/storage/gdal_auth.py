"""GDAL's ``/vsigs/`` reads with the credentials the Cloud Storage client uses, in every thread.

The storage client finds credentials with ``google.auth.default()``: the user's
application-default credentials (what ``gcloud auth application-default login`` writes), a
service-account key, or the metadata server of a Google Cloud VM. The GDAL bundled with
rasterio looks only at ``GOOGLE_APPLICATION_CREDENTIALS``, its own ``GS_*`` options,
``~/.boto`` and the metadata server, so without this module a user who followed the docs
uploads with one identity and then cannot read back what was uploaded.

This module is the one owner of that hand-over. :func:`ready_for_remote` gives GDAL the same
credentials (and :data:`STALL_OPTIONS`) through the process environment (``os.environ``),
which GDAL consults for every config option no thread or ``rasterio.Env`` set. Process-wide
matters: ``rasterio.Env`` sets its options for the calling thread only when that is not the
main thread, so options entered in a Beam worker's thread, or in any thread that starts reader
and encoder threads (the predictor's), would not reach the threads that do the reading; the
environment is one for the whole process, whichever thread changed it. Every way the project
names a ``gs://`` object to GDAL calls it: :func:`core.storage.files.gdal_path`,
``GcsStore.gdal_path`` and :func:`gdal_env`. :func:`read_failure` tells an authentication
failure apart from a damaged file, for every check that decides from a read whether work is
already done.

Rules of the hand-over: a variable the user set is never overwritten (their ``GS_*`` or
``CPL_GS_CREDENTIALS_FILE`` setting means no credentials are handed over at all, and their
stall limit wins); only what this module added is taken back (:func:`forget_credentials`);
nothing is written to disk. The trade-off of the environment: child processes started while
the values are set (a compiler, a Beam worker process) inherit the credentials. They run as the
same user, who can read the credentials file anyway. The environment changes when a first
``gs://`` path is named to GDAL (and when a login is forgotten), not per read.

May import: the rest of ``core``; nothing else of the project.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.errors import StorageCredentialsError, StorageError

GDAL_OWN_CREDENTIALS = ("GS_SECRET_ACCESS_KEY", "GS_OAUTH2_REFRESH_TOKEN",
                        "GS_OAUTH2_PRIVATE_KEY", "GS_OAUTH2_PRIVATE_KEY_FILE",
                        "GS_NO_SIGN_REQUEST", "CPL_GS_CREDENTIALS_FILE")
"""GDAL options that, set by the user, mean GDAL is already told how to authenticate."""

AUTH_MARKERS = ("http response code: 401", "http response code: 403", "accessdenied",
                "access denied", "access token", "oauth2", "invalid_grant", "unauthorized",
                "configuration options not defined", "credentials", "permission")
"""Fragments of GDAL's messages when Cloud Storage refused (or GDAL could not sign) a read."""

NETWORK_MARKERS = ("curl error", "could not connect", "couldn't connect", "timed out",
                   "timeout", "could not resolve", "http response code: 5",
                   "http response code: 429")
"""Fragments of GDAL's messages when Cloud Storage could not be reached or was overloaded."""

STALL_OPTIONS = {"GDAL_HTTP_CONNECTTIMEOUT": "30", "GDAL_HTTP_LOW_SPEED_TIME": "60",
                 "GDAL_HTTP_LOW_SPEED_LIMIT": "1"}
"""GDAL options that end a stalled Cloud Storage read, for every ``/vsigs/`` read.

GDAL's own default is to wait forever: a connection that is accepted and then never answers
would hold a job (and its lock on the output) until someone kills it. With these a connection
not made in 30 s, or one moving less than a byte a second for a minute, is a CURL error that
:data:`NETWORK_MARKERS` recognise (the same command then resumes). No total time limit: a large
read over a slow link is legitimate. A value the user set in the environment wins.
"""

_lock = threading.Lock()
_cached: dict[str, str] | None = None
_installed: dict[str, str] = {}  # the os.environ entries ready_for_remote added, with values


def _users_value(name: str) -> str | None:
    """The environment's value of ``name`` unless it is the one this module put there."""
    value = os.environ.get(name)
    return None if value is None or _installed.get(name) == value else value


def _adc_file() -> str | None:
    """The file ``google.auth.default()`` reads credentials from, if it reads one."""
    explicit = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if explicit:
        return explicit
    from google.auth import _cloud_sdk

    # google.auth leaves this private helper unannotated (it returns the path as a str)
    path: str = _cloud_sdk.get_application_default_credentials_path()  # type: ignore[no-untyped-call]
    return path if os.path.isfile(path) else None


def options_for(credentials: Any, source_file: str | None) -> dict[str, str]:
    """GDAL config options that authenticate ``/vsigs/`` as ``credentials`` do.

    Args:
        credentials: what ``google.auth.default()`` returned.
        source_file: the JSON file it came from (None for the metadata server).

    Raises:
        StorageCredentialsError: a kind of credentials GDAL cannot refresh on its own.
    """
    from google.auth import compute_engine
    from google.oauth2 import credentials as user_credentials
    from google.oauth2 import service_account

    if isinstance(credentials, user_credentials.Credentials):
        missing = [name for name in ("refresh_token", "client_id", "client_secret")
                   if not getattr(credentials, name, None)]
        if missing:
            raise StorageCredentialsError(
                f"the application-default credentials lack {', '.join(missing)}, which GDAL "
                "needs to read gs:// rasters; run 'gcloud auth application-default login' again")
        return {"GS_OAUTH2_REFRESH_TOKEN": credentials.refresh_token,
                "GS_OAUTH2_CLIENT_ID": credentials.client_id,
                "GS_OAUTH2_CLIENT_SECRET": credentials.client_secret}
    if isinstance(credentials, service_account.Credentials) and source_file:
        with open(source_file, encoding="utf-8") as handle:
            info = json.load(handle)
        return {"GS_OAUTH2_PRIVATE_KEY": info["private_key"],
                "GS_OAUTH2_CLIENT_EMAIL": info["client_email"]}
    if isinstance(credentials, compute_engine.Credentials):
        return {"CPL_MACHINE_IS_GCE": "YES"}
    raise StorageCredentialsError(
        f"GDAL cannot use {type(credentials).__module__}.{type(credentials).__name__} "
        "credentials to read gs:// rasters; use 'gcloud auth application-default login', a "
        "service-account key (GOOGLE_APPLICATION_CREDENTIALS) or a Google Cloud VM's account")


def credential_options() -> dict[str, str]:
    """The GDAL options for ``google.auth.default()``'s credentials (resolved once a process).

    Empty when GDAL is already told how to authenticate: the user's own
    ``GS_*``/``CPL_GS_CREDENTIALS_FILE`` setting (``GS_NO_SIGN_REQUEST`` included, as for a
    public bucket or the anonymous storage emulator).

    Raises:
        StorageError: no credentials can be found.
    """
    global _cached
    if any(_users_value(k) for k in GDAL_OWN_CREDENTIALS):
        return {}
    with _lock:
        if _cached is None:
            import google.auth
            from google.auth.exceptions import DefaultCredentialsError

            try:
                credentials, _ = google.auth.default()
            except DefaultCredentialsError as exc:
                raise StorageError(
                    f"no Google credentials to read gs:// rasters with ({exc}); run 'gcloud auth "
                    "application-default login' or set GOOGLE_APPLICATION_CREDENTIALS to a "
                    "service-account JSON file") from None
            _cached = options_for(credentials, _adc_file())
        return dict(_cached)


def forget_credentials() -> None:
    """Take the credentials back from GDAL; they are resolved again at the next remote read.

    Removes from the environment only what :func:`ready_for_remote` added and nobody changed
    since. For a login that changed within the process (and tests that switch users).
    """
    global _cached
    with _lock:
        _cached = None
        for key, value in _installed.items():
            if os.environ.get(key) == value:
                del os.environ[key]
        _installed.clear()


def ready_for_remote() -> None:
    """Make GDAL able to read ``/vsigs/`` in every thread: credentials and stall limits.

    Idempotent and cheap after the first call. The environment changes only when what it
    derives from changed; a variable the user set (before or since) is theirs and left alone.

    Raises:
        StorageError: no credentials can be found.
    """
    offered = STALL_OPTIONS | credential_options()
    wanted = {k: v for k, v in offered.items() if _users_value(k) is None}
    with _lock:
        for key in [k for k, v in _installed.items() if os.environ.get(k) != v]:
            del _installed[key]  # changed or removed by someone else: no longer ours
        if wanted == _installed:
            return
        for key in set(_installed) - set(wanted):
            del os.environ[key]
            del _installed[key]
        for key, value in wanted.items():
            os.environ[key] = value
            _installed[key] = value


def is_remote(path: str | os.PathLike[str]) -> bool:
    text = os.fspath(path)
    return text.startswith(("gs://", "/vsigs/"))


@contextmanager
def gdal_env(*paths: str | os.PathLike[str] | None, **options: Any) -> Iterator[None]:
    """A ``rasterio.Env`` with ``options``, after :func:`ready_for_remote` for Cloud Storage.

    The credentials and stall limits (:data:`STALL_OPTIONS`) are in the process environment,
    so threads started inside the block (or anywhere else) read Cloud Storage with them too.

    Args:
        paths: what will be read; the credentials and stall limits are added when one is on
            Cloud Storage.
        options: other GDAL config options for the block.
    """
    import rasterio

    if any(p is not None and is_remote(p) for p in paths):
        ready_for_remote()
    if not options:
        yield  # nothing to set: a patch read of a local dataset costs no environment
        return
    with rasterio.Env(**options):
        yield


def read_failure(path: str | os.PathLike[str], exc: BaseException) -> StorageError | None:
    """What a failed read of a ``gs://`` raster says about storage, or None for a bad file.

    A resume check that reads an output ("was this written by this run?") must not take a
    refused or unreachable read for a damaged file: that would redo finished work on every
    run, and fail again at the end. Returns :class:`StorageCredentialsError` when Cloud
    Storage refused the credentials (or GDAL could not obtain a token), :class:`StorageError`
    when it could not be reached, None when the bytes themselves are the problem (or the
    path is local).
    """
    if not is_remote(path):
        return None
    text = str(exc).lower()
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if any(marker in text for marker in AUTH_MARKERS):
        return StorageCredentialsError(
            f"Cloud Storage refused to let GDAL read {path} ({first}); check that "
            "'gcloud auth application-default login' (or GOOGLE_APPLICATION_CREDENTIALS) "
            "names an account that can read the bucket")
    if any(marker in text for marker in NETWORK_MARKERS):
        return StorageError(f"GDAL could not reach {path} ({first}); check the network and "
                            "run the same command again (finished work is kept)")
    return None


def check_read(path: str | os.PathLike[str], exc: BaseException) -> None:
    """Raise what :func:`read_failure` finds; return when the file itself is at fault."""
    failure = read_failure(path, exc)
    if failure is not None:
        raise failure from None
