"""The one seam to storage: a local directory or a ``gs://bucket/prefix``, behind one interface.

Everything that writes datasets (the patcher, the Earth Engine export, inference outputs) goes
through a :class:`Store`, so the same code writes to a laptop folder and to Cloud Storage, and
the guarantees live in one place:

- writes are atomic: locally a temporary file in the same directory then ``os.replace``; on
  Cloud Storage an object only appears once its upload is complete, and every upload carries a
  generation precondition so two writers cannot silently overwrite each other;
- uploads are verified: the MD5 the server computed from the bytes it received is compared with
  the MD5 of the bytes we meant to send, and a mismatch raises :class:`ChecksumMismatchError`
  after deleting the corrupt object;
- transient Cloud Storage errors (429, 5xx, dropped connections) are retried with exponential
  backoff and jitter.

Paths inside a store (``rel``) are always POSIX-style and relative to the store's root.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import os
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from tqdm.auto import tqdm

from gee_export.errors import ChecksumMismatchError, ConfigError, StorageError
from gee_export.retry import RetryPolicy, retry_call

T = TypeVar("T")

TEMP_MARK = ".isamap-tmp-"
"""Temporary files carry this in their name; :meth:`Store.list` never returns them."""

_CHUNK = 1 << 20


def md5_b64(data: bytes) -> str:
    """Base64 MD5 digest, the form Cloud Storage reports in ``md5Hash``."""
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


def file_md5_b64(path: str | os.PathLike[str]) -> str:
    """Base64 MD5 of a file, read in chunks so large files never sit in memory."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode("ascii")


def _clean_rel(rel: str) -> str:
    """Normalise a store-relative path and refuse ones that would escape the root."""
    text = str(rel).replace("\\", "/").strip("/")
    parts = PurePosixPath(text).parts
    if not text or any(p in ("..", ".") for p in parts):
        raise StorageError(f"{rel!r} is not a path inside the store; use 'dir/file.ext'")
    return "/".join(parts)


class Store(ABC):
    """A root folder (local or ``gs://``) that files are written to and read from."""

    is_remote: bool = False

    @property
    @abstractmethod
    def root(self) -> str:
        """The root as the user wrote it (local absolute path or ``gs://bucket/prefix``)."""

    @abstractmethod
    def exists(self, rel: str) -> bool:
        """Whether a file exists at ``rel``."""

    @abstractmethod
    def read_bytes(self, rel: str) -> bytes:
        """The content of ``rel``; :class:`StorageError` when it is missing."""

    @abstractmethod
    def write_bytes(self, rel: str, data: bytes, *, overwrite: bool = True,
                    expected_md5: str | None = None) -> None:
        """Write ``data`` to ``rel`` atomically.

        Args:
            rel: path inside the store.
            data: the whole content.
            overwrite: when False, an existing file makes the write fail instead of replacing it.
            expected_md5: base64 MD5 of the bytes the caller meant to write (computed where the
                data came from); when given, what was stored is checked against it.
        """

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Sorted relative paths of every file under ``prefix`` (temporary files excluded)."""

    @abstractmethod
    def delete(self, rel: str) -> None:
        """Remove ``rel`` if it exists."""

    @abstractmethod
    def upload_file(self, local_path: str | os.PathLike[str], rel: str) -> None:
        """Copy a local file into the store at ``rel`` (atomic, verified)."""

    @abstractmethod
    def download_file(self, rel: str, local_path: str | os.PathLike[str]) -> None:
        """Copy ``rel`` to a local file (atomic on the local side, verified)."""

    @abstractmethod
    def url(self, rel: str = "") -> str:
        """Where ``rel`` is, for humans and manifests (absolute path or ``gs://`` URL)."""

    @abstractmethod
    def gdal_path(self, rel: str) -> str:
        """A path rasterio/GDAL can open directly (local path or ``/vsigs/bucket/key``)."""

    def md5(self, rel: str) -> str:
        """Base64 MD5 of the stored content of ``rel``."""
        return md5_b64(self.read_bytes(rel))

    def verify(self, rel: str, local_path: str | os.PathLike[str]) -> None:
        """Raise :class:`ChecksumMismatchError` unless ``rel`` has the content of ``local_path``."""
        want, got = file_md5_b64(local_path), self.md5(rel)
        if want != got:
            raise ChecksumMismatchError(
                f"{self.url(rel)} (md5 {got}) differs from {local_path} (md5 {want}); "
                "upload the file again"
            )

    def upload_many(self, pairs: Iterable[tuple[str | os.PathLike[str], str]], workers: int = 8,
                    desc: str = "upload") -> builtins.list[str]:
        """Upload ``(local_path, rel)`` pairs in parallel; returns the rels in input order.

        Cloud Storage throughput comes from concurrency, not from large single streams, so many
        small files (patches) are sent from a bounded thread pool. The first failure is raised
        after the pool has drained, so no upload is left half-way in the background.
        """
        items = list(pairs)
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        errors: list[BaseException] = []
        with ThreadPoolExecutor(max_workers=workers) as pool, \
                tqdm(total=len(items), desc=desc, unit="file", leave=False) as bar:
            futures = {pool.submit(self.upload_file, local, rel): rel for local, rel in items}
            for future in as_completed(futures):
                exc = future.exception()
                if exc is not None:
                    errors.append(exc)
                bar.update(1)
        if errors:
            raise errors[0]
        return [rel for _, rel in items]


# ---------------------------------------------------------------------------- local
def atomic_write(target: str | os.PathLike[str], fill: Callable[[Any], None]) -> Path:
    """Write a local file atomically: ``fill(handle)`` writes a temp file beside it, then rename.

    The one implementation of "readers never see half a file" for local outputs (store files,
    checkpoints, model files, metrics, plots): the temporary name carries :data:`TEMP_MARK`,
    is fsynced before the rename, and is removed if ``fill`` fails.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}{TEMP_MARK}", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


class LocalStore(Store):
    """A directory on the local file system."""

    is_remote = False

    def __init__(self, root: str | os.PathLike[str]):
        self._root = Path(root).expanduser().resolve()
        if self._root.exists() and not self._root.is_dir():
            raise StorageError(f"{self._root} is a file; a store needs a directory")

    def __repr__(self) -> str:
        return f"LocalStore({str(self._root)!r})"

    @property
    def root(self) -> str:
        return str(self._root)

    def path(self, rel: str) -> Path:
        return self._root / _clean_rel(rel)

    def exists(self, rel: str) -> bool:
        return self.path(rel).is_file()

    def read_bytes(self, rel: str) -> bytes:
        try:
            return self.path(rel).read_bytes()
        except FileNotFoundError:
            raise StorageError(f"{self.path(rel)} does not exist") from None

    def write_bytes(self, rel: str, data: bytes, *, overwrite: bool = True,
                    expected_md5: str | None = None) -> None:
        target = self.path(rel)
        if not overwrite and target.exists():
            raise StorageError(f"{target} already exists and overwrite=False")
        if expected_md5 is not None and md5_b64(data) != expected_md5:
            raise ChecksumMismatchError(
                f"data for {target} has md5 {md5_b64(data)}, expected {expected_md5}; "
                "it changed after its checksum was taken, produce it again"
            )
        atomic_write(target, lambda handle: handle.write(data))

    def list(self, prefix: str = "") -> list[str]:
        base = self._root / prefix.strip("/") if prefix.strip("/") else self._root
        start = base if base.is_dir() else base.parent
        if not start.is_dir():
            return []
        want = prefix.strip("/")
        out = []
        for dirpath, _, files in os.walk(start):
            for name in files:
                if TEMP_MARK in name:
                    continue
                rel = Path(dirpath, name).relative_to(self._root).as_posix()
                if rel.startswith(want):
                    out.append(rel)
        return sorted(out)

    def delete(self, rel: str) -> None:
        self.path(rel).unlink(missing_ok=True)

    def remove_temporaries(self, prefix: str = "") -> int:
        """Delete temporary files a killed writer left under ``prefix``; returns how many."""
        base = self._root / prefix.strip("/")
        if not base.is_dir():
            return 0
        count = 0
        for path in base.rglob(f"*{TEMP_MARK}*"):
            path.unlink(missing_ok=True)
            count += 1
        return count

    def upload_file(self, local_path: str | os.PathLike[str], rel: str) -> None:
        source = Path(local_path)
        if not source.is_file():
            raise StorageError(f"cannot upload {source}: no such file")
        want = file_md5_b64(source)
        target = self.path(rel)
        with open(source, "rb") as src:
            atomic_write(target, lambda handle: shutil.copyfileobj(src, handle, _CHUNK))
        if file_md5_b64(target) != want:
            target.unlink(missing_ok=True)
            raise ChecksumMismatchError(f"copy of {source} to {target} differs from its source")

    def download_file(self, rel: str, local_path: str | os.PathLike[str]) -> None:
        source = self.path(rel)
        if not source.is_file():
            raise StorageError(f"{source} does not exist")
        LocalStore(Path(local_path).parent).upload_file(source, Path(local_path).name)

    def url(self, rel: str = "") -> str:
        return str(self.path(rel)) if rel else self.root

    def gdal_path(self, rel: str) -> str:
        return str(self.path(rel))


# ---------------------------------------------------------------------------- Cloud Storage
def _transient_errors() -> tuple[type[BaseException], ...]:
    import requests
    from google.api_core import exceptions as gexc

    return (gexc.TooManyRequests, gexc.InternalServerError, gexc.BadGateway,
            gexc.ServiceUnavailable, gexc.GatewayTimeout, requests.ConnectionError,
            requests.Timeout, ConnectionError, TimeoutError)


def with_retries(call: Callable[[], T], *, what: str, attempts: int = 6, base_delay: float = 0.5,
                 max_delay: float = 30.0, transient: tuple[type[BaseException], ...] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``call``, retrying transient failures with exponential backoff and full jitter.

    Cloud Storage asks clients to back off on 429 and 5xx; jitter keeps a pool of uploaders from
    retrying in lock-step. After ``attempts`` tries the last error surfaces as
    :class:`StorageError` naming the operation.
    """
    transient = transient if transient is not None else _transient_errors()

    def fail(exc: Exception, attempt: int, exhausted: bool) -> BaseException:
        if not exhausted:
            return exc  # not transient: the caller's own translation applies
        return StorageError(f"{what} failed {attempt} times with transient errors (last: "
                            f"{exc}); Cloud Storage may be overloaded, try again later")

    return retry_call(call, RetryPolicy(attempts, base_delay, max_delay), sleep=sleep,
                      retryable=lambda exc: isinstance(exc, transient), fail=fail)


def _gcs_client():
    try:
        from google.cloud import storage
    except ImportError:
        raise ConfigError(
            "gs:// paths need google-cloud-storage; install the 'ee' extra: "
            "pip install 'isamap[ee]'"
        ) from None
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "isamap-local"),
                              credentials=AnonymousCredentials())
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
        self._client = client or _gcs_client()
        self._bucket = self._client.bucket(bucket)

    def __repr__(self) -> str:
        return f"GcsStore({self.root!r})"

    @property
    def root(self) -> str:
        return f"gs://{self.bucket_name}/{self.prefix}".rstrip("/")

    def key(self, rel: str) -> str:
        rel = _clean_rel(rel)
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
        return self._retry(blob.exists, f"checking {self.url(rel)}")

    def read_bytes(self, rel: str) -> bytes:
        blob = self._bucket.blob(self.key(rel))
        return self._retry(blob.download_as_bytes, f"reading {self.url(rel)}")

    def _generation(self, key: str) -> int:
        """Current generation of ``key``, 0 when absent (the value that means 'must not exist')."""
        blob = self._bucket.get_blob(key)
        return int(blob.generation) if blob is not None else 0

    def _put(self, rel: str, upload: Callable[[Any, int], None], want_md5: str,
             overwrite: bool) -> None:
        """Upload with a generation precondition, then check the server's MD5 against ours."""
        from google.api_core import exceptions as gexc

        key = self.key(rel)

        def attempt() -> Any:
            generation = self._generation(key)
            if generation and not overwrite:
                raise gexc.PreconditionFailed("exists")  # checked here too: emulators ignore it
            generation = generation if overwrite else 0
            blob = self._bucket.blob(key)
            upload(blob, generation)
            return blob

        try:
            blob = self._retry(attempt, f"writing {self.url(rel)}")
        except gexc.PreconditionFailed as exc:
            current = self._bucket.get_blob(key) if overwrite else None
            if current is not None and current.md5_hash == want_md5:
                return  # an earlier attempt landed but its response was lost: same bytes, done
            raise StorageError(
                f"{self.url(rel)} " + ("already exists and overwrite=False" if not overwrite
                                       else "was changed by another writer during the upload")
            ) from exc
        if blob.md5_hash is None:
            blob.reload()
        if blob.md5_hash != want_md5:
            generation = blob.generation
            self._retry(lambda: self._bucket.blob(key).delete(if_generation_match=generation),
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
                                    if_generation_match=generation)

        self._put(rel, upload, want, overwrite)

    def upload_file(self, local_path: str | os.PathLike[str], rel: str) -> None:
        source = Path(local_path)
        if not source.is_file():
            raise StorageError(f"cannot upload {source}: no such file")
        want = file_md5_b64(source)

        def upload(blob: Any, generation: int) -> None:
            blob.upload_from_filename(str(source), if_generation_match=generation)

        self._put(rel, upload, want, overwrite=True)

    def download_file(self, rel: str, local_path: str | os.PathLike[str]) -> None:
        target = Path(local_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        blob = self._bucket.blob(self.key(rel))
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}{TEMP_MARK}", dir=target.parent)
        os.close(fd)
        try:
            self._retry(lambda: blob.download_to_filename(tmp), f"downloading {self.url(rel)}")
            blob.reload()
            if blob.md5_hash and file_md5_b64(tmp) != blob.md5_hash:
                raise ChecksumMismatchError(
                    f"download of {self.url(rel)} differs from the stored object; try again"
                )
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def bucket_info(self) -> BucketInfo:
        """The bucket's location and storage class (one metadata read, retried like the rest)."""
        bucket = self._retry(lambda: self._client.get_bucket(self.bucket_name),
                             f"reading metadata of gs://{self.bucket_name}")
        return BucketInfo(
            name=self.bucket_name,
            location=(bucket.location or "").upper(),
            location_type=(bucket.location_type or "").lower(),
            storage_class=(bucket.storage_class or "").upper(),
            data_locations=tuple(m.upper() for m in (bucket.data_locations or ())),
        )

    def md5(self, rel: str) -> str:
        blob = self._retry(lambda: self._bucket.get_blob(self.key(rel)),
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
            return [b.name for b in self._client.list_blobs(self.bucket_name, prefix=full)]

        found = self._retry(names, f"listing {self.url(prefix)}")
        return sorted(n[strip:] for n in found if TEMP_MARK not in n and not n.endswith("/"))

    def delete(self, rel: str) -> None:
        from google.api_core import exceptions as gexc

        blob = self._bucket.blob(self.key(rel))
        try:
            self._retry(blob.delete, f"deleting {self.url(rel)}")
        except StorageError as exc:
            if not isinstance(exc.__cause__, gexc.NotFound):
                raise

    def url(self, rel: str = "") -> str:
        return f"gs://{self.bucket_name}/{self.key(rel)}" if rel else self.root

    def gdal_path(self, rel: str) -> str:
        return f"/vsigs/{self.bucket_name}/{self.key(rel)}"


def open_store(root: str | os.PathLike[str] | Store) -> Store:
    """The store for a local directory or a ``gs://bucket/prefix`` (a Store passes through)."""
    if isinstance(root, Store):
        return root
    text = os.fspath(root)
    if text.startswith("gs://"):
        return GcsStore(text)
    if "://" in text:
        raise StorageError(f"{text!r}: only local paths and gs:// URLs are supported")
    return LocalStore(text)


def join(*parts: str) -> str:
    """Join store-relative path parts with '/' (never the OS separator)."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))

