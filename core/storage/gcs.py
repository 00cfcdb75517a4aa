"""A store on Cloud Storage (``gs://bucket/prefix``), through the real google-cloud-storage client.

Uploads carry a generation precondition and are verified against the MD5 the server computed;
transient errors (429, 5xx, dropped connections) are retried with backoff and jitter. Tests run
this module against the gcp-storage-emulator server (``STORAGE_EMULATOR_HOST``).

One retry loop: every client call goes through :func:`with_retries` and is made with
``retry=None`` and an explicit ``timeout``. The client's own default (google.api_core's
``DEFAULT_RETRY``, up to 120 s per call) would otherwise run inside ours, so one outage would
cost up to ``attempts`` x 120 s before an error surfaced, and ``attempts`` would not be the
number of requests the service sees.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from core.errors import ChecksumMismatchError, ConfigError, StorageError
from core.retry import RetryPolicy, retry_call
from core.storage.base import TEMP_MARK, Store, clean_rel, file_md5_b64, md5_b64
from core.storage.gdal_auth import ready_for_remote
from core.storage.local import atomic_path

T = TypeVar("T")

TIMEOUT = 60.0
"""Seconds one request to Cloud Storage may take (connect and each read) before it is retried."""


def _transient_errors() -> tuple[type[BaseException], ...]:
    import requests
    from google.api_core import exceptions as gexc

    return (gexc.TooManyRequests, gexc.InternalServerError, gexc.BadGateway,
            gexc.ServiceUnavailable, gexc.GatewayTimeout, requests.ConnectionError,
            requests.Timeout, ConnectionError, TimeoutError)


def with_retries(call: Callable[[], T], *, what: str, attempts: int = 6,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``call``, retrying transient failures with exponential backoff and full jitter.

    Cloud Storage asks clients to back off on 429 and 5xx; jitter keeps a pool of uploaders from
    retrying in lock-step. After ``attempts`` tries the last error surfaces as
    :class:`StorageError` naming the operation.
    """
    transient = _transient_errors()

    def fail(exc: Exception, attempt: int, exhausted: bool) -> BaseException:
        if not exhausted:
            return exc  # not transient: the caller's own translation applies
        return StorageError(f"{what} failed {attempt} times with transient errors (last: "
                            f"{exc}); Cloud Storage may be overloaded, try again later")

    return retry_call(call, RetryPolicy(attempts, 0.5, 30.0), sleep=sleep,
                      retryable=lambda exc: isinstance(exc, transient), fail=fail)


def _gcs_client() -> Any:  # a google.cloud.storage.Client (the package ships no types)
    try:
        # google-cloud-storage has no py.typed, so mypy sees only the typed google.cloud
        # packages beside it and no `storage` in the namespace
        from google.cloud import storage  # type: ignore[attr-defined]
    except ImportError:
        raise ConfigError(
            "gs:// paths need google-cloud-storage; install the 'ee' extra: "
            "pip install 'isamap[ee]'"
        ) from None
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        # (the ignore: google.auth leaves AnonymousCredentials.__init__ unannotated)
        return storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "isamap-local"),
                              credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    try:
        return storage.Client()
    except Exception as exc:  # google.auth.exceptions.DefaultCredentialsError and friends
        raise StorageError(
            f"cannot create a Cloud Storage client ({exc}); run "
            "'gcloud auth application-default login' or set GOOGLE_APPLICATION_CREDENTIALS "
            "to a service-account JSON file"
        ) from exc


@dataclass(frozen=True)
class BucketInfo:
    """Where and how a Cloud Storage bucket keeps its objects.

    Consumers (the Earth Engine COG-asset check in inference) decide from these whether a bucket
    can serve them, without reaching for the storage client themselves.

    Attributes:
        name: the bucket's name.
        location: ``"US"``, ``"EU"``, ``"US-CENTRAL1"``, ``"NAM4"`` ... (upper case).
        location_type: ``"multi-region"``, ``"dual-region"`` or ``"region"``.
        storage_class: ``"STANDARD"``, ``"NEARLINE"``, ``"COLDLINE"``, ``"ARCHIVE"``.
        data_locations: the regions of a configurable dual-region (empty otherwise).
    """

    name: str
    location: str
    location_type: str
    storage_class: str
    data_locations: tuple[str, ...] = ()


class GcsStore(Store):
    """A ``gs://bucket/prefix`` on Cloud Storage (or on the emulator at STORAGE_EMULATOR_HOST)."""

    is_remote = True

    def __init__(self, url: str, client: Any | None = None, attempts: int = 6):
        if not url.startswith("gs://"):
            raise StorageError(f"{url!r} is not a gs:// URL")
        bucket, _, prefix = url[len("gs://"):].partition("/")
        if not bucket:
            raise StorageError(f"{url!r} names no bucket; use gs://bucket/prefix")
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self.attempts = attempts
        # what every client call gets: our loop (_retry) is the only one, each request bounded
        self._once: dict[str, Any] = {"retry": None, "timeout": TIMEOUT}
        self._client = client or _gcs_client()
        self._bucket = self._client.bucket(bucket)

    def __repr__(self) -> str:
        return f"GcsStore({self.root!r})"

    @property
    def root(self) -> str:
        return f"gs://{self.bucket_name}/{self.prefix}".rstrip("/")

    def key(self, rel: str) -> str:
        rel = clean_rel(rel)
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _retry(self, call: Callable[[], T], what: str) -> T:
        from google.api_core import exceptions as gexc

        try:
            return with_retries(call, what=what, attempts=self.attempts)
        except gexc.NotFound as exc:
            raise StorageError(f"{what}: not found ({exc.message})") from exc
        except gexc.Forbidden as exc:
            raise StorageError(
                f"{what}: permission denied ({exc.message}); check the bucket's IAM roles"
            ) from exc

    def exists(self, rel: str) -> bool:
        blob = self._bucket.blob(self.key(rel))
        found: bool = self._retry(lambda: blob.exists(**self._once), f"checking {self.url(rel)}")
        return found

    def read_bytes(self, rel: str) -> bytes:
        blob = self._bucket.blob(self.key(rel))
        data: bytes = self._retry(lambda: blob.download_as_bytes(**self._once),
                                  f"reading {self.url(rel)}")
        return data

    def _generation(self, key: str) -> int:
        """Current generation of ``key``, 0 when absent (the value that means 'must not exist')."""
        blob = self._bucket.get_blob(key, **self._once)
        return int(blob.generation) if blob is not None else 0

    def _put(self, rel: str, upload: Callable[[Any, int], None], want_md5: str,
             overwrite: bool) -> None:
        """Upload with a generation precondition, then check the server's MD5 against ours."""
        from google.api_core import exceptions as gexc

        key = self.key(rel)

        def attempt() -> Any:
            generation = self._generation(key)
            if generation and not overwrite:
                # checked here too: emulators ignore it (the ignore: google.api_core leaves
                # its exceptions' __init__ unannotated)
                raise gexc.PreconditionFailed("exists")  # type: ignore[no-untyped-call]
            generation = generation if overwrite else 0
            blob = self._bucket.blob(key)
            upload(blob, generation)
            return blob

        try:
            blob = self._retry(attempt, f"writing {self.url(rel)}")
        except gexc.PreconditionFailed as exc:
            current = (self._retry(lambda: self._bucket.get_blob(key, **self._once),
                                   f"reading metadata of {self.url(rel)}") if overwrite else None)
            if current is not None and current.md5_hash == want_md5:
                return  # an earlier attempt landed but its response was lost: same bytes, done
            raise StorageError(
                f"{self.url(rel)} " + ("already exists and overwrite=False" if not overwrite
                                       else "was changed by another writer during the upload")
            ) from exc
        if blob.md5_hash is None:
            self._retry(lambda: blob.reload(**self._once), f"reading metadata of {self.url(rel)}")
        if blob.md5_hash != want_md5:
            generation = blob.generation
            self._retry(lambda: self._bucket.blob(key).delete(if_generation_match=generation,
                                                              **self._once),
                        f"deleting corrupt {self.url(rel)}")
            raise ChecksumMismatchError(
                f"{self.url(rel)} arrived with md5 {blob.md5_hash}, expected {want_md5}; the "
                "corrupt object was deleted, upload it again"
            )

    def write_bytes(self, rel: str, data: bytes, *, overwrite: bool = True,
                    expected_md5: str | None = None) -> None:
        want = expected_md5 or md5_b64(data)

        def upload(blob: Any, generation: int) -> None:
            blob.upload_from_string(data, content_type="application/octet-stream",
                                    if_generation_match=generation, **self._once)

        self._put(rel, upload, want, overwrite)

    def upload_file(self, local_path: str | os.PathLike[str], rel: str) -> None:
        source = Path(local_path)
        if not source.is_file():
            raise StorageError(f"cannot upload {source}: no such file")
        want = file_md5_b64(source)

        def upload(blob: Any, generation: int) -> None:
            blob.upload_from_filename(str(source), if_generation_match=generation, **self._once)

        self._put(rel, upload, want, overwrite=True)

    def download_file(self, rel: str, local_path: str | os.PathLike[str]) -> None:
        blob = self._bucket.blob(self.key(rel))
        with atomic_path(local_path) as tmp:
            self._retry(lambda: blob.download_to_filename(str(tmp), **self._once),
                        f"downloading {self.url(rel)}")
            self._retry(lambda: blob.reload(**self._once), f"reading metadata of {self.url(rel)}")
            if blob.md5_hash and file_md5_b64(tmp) != blob.md5_hash:
                raise ChecksumMismatchError(
                    f"download of {self.url(rel)} differs from the stored object; try again"
                )

    def bucket_info(self) -> BucketInfo:
        """The bucket's location and storage class (one metadata read, retried like the rest)."""
        bucket = self._retry(lambda: self._client.get_bucket(self.bucket_name, **self._once),
                             f"reading metadata of gs://{self.bucket_name}")
        return BucketInfo(
            name=self.bucket_name,
            location=(bucket.location or "").upper(),
            location_type=(bucket.location_type or "").lower(),
            storage_class=(bucket.storage_class or "").upper(),
            data_locations=tuple(m.upper() for m in (bucket.data_locations or ())),
        )

    def md5(self, rel: str) -> str:
        blob = self._retry(lambda: self._bucket.get_blob(self.key(rel), **self._once),
                           f"reading metadata of {self.url(rel)}")
        if blob is None:
            raise StorageError(f"{self.url(rel)} does not exist")
        return blob.md5_hash or md5_b64(self.read_bytes(rel))

    def list(self, prefix: str = "") -> list[str]:
        full = self.key(prefix) if prefix.strip("/") else (self.prefix + "/" if self.prefix else "")
        if prefix.endswith("/") and not full.endswith("/"):
            full += "/"
        strip = len(self.prefix) + 1 if self.prefix else 0

        def names() -> list[str]:
            return [b.name for b in self._client.list_blobs(self.bucket_name, prefix=full,
                                                             **self._once)]

        found = self._retry(names, f"listing {self.url(prefix)}")
        return sorted(n[strip:] for n in found if TEMP_MARK not in n and not n.endswith("/"))

    def delete(self, rel: str) -> None:
        from google.api_core import exceptions as gexc

        blob = self._bucket.blob(self.key(rel))
        try:
            self._retry(lambda: blob.delete(**self._once), f"deleting {self.url(rel)}")
        except StorageError as exc:
            if not isinstance(exc.__cause__, gexc.NotFound):
                raise

    def read_with_generation(self, rel: str) -> tuple[bytes | None, int]:
        """An object's bytes and generation ((None, 0) when absent), for compare-and-delete."""
        from google.api_core import exceptions as gexc

        def read() -> tuple[bytes | None, int]:
            blob = self._bucket.get_blob(self.key(rel), **self._once)
            if blob is None:
                return None, 0
            generation = int(blob.generation or 0)  # emulators may not report generations
            try:
                return (blob.download_as_bytes(if_generation_match=generation or None,
                                               **self._once), generation)
            except (gexc.NotFound, gexc.PreconditionFailed):
                return None, 0

        return self._retry(read, f"reading {self.url(rel)}")

    def delete_generation(self, rel: str, generation: int) -> bool:
        """Delete ``rel`` only if it is still at ``generation``; False when it changed or is gone.

        Two processes replacing the same stale object cannot delete each other's new one.
        A generation of 0 (a server that reports none, such as an emulator) deletes
        unconditionally.
        """
        from google.api_core import exceptions as gexc

        blob = self._bucket.blob(self.key(rel))
        try:
            self._retry(lambda: blob.delete(if_generation_match=generation or None, **self._once),
                        f"deleting {self.url(rel)}")
        except gexc.PreconditionFailed:
            return False
        except StorageError as exc:
            if isinstance(exc.__cause__, gexc.NotFound):
                return False
            raise
        return True

    def url(self, rel: str = "") -> str:
        return f"gs://{self.bucket_name}/{self.key(rel)}" if rel else self.root

    def gdal_path(self, rel: str) -> str:
        """``/vsigs/bucket/key``, with GDAL given the credentials to read it in any thread."""
        ready_for_remote()
        return f"/vsigs/{self.bucket_name}/{self.key(rel)}"


