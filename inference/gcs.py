"""Local-or-gs:// paths for inference outputs, with checksum-verified uploads.

A small boundary so that predict/publish never care where a file lives: GDAL reads ``gs://``
through ``/vsigs/``; outputs are always written to a local file first (the COG driver needs
random access) and then uploaded with the google-cloud-storage client, whose CRC32C/MD5 must
match the local bytes before the upload counts as done.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from gee_export.errors import ChecksumMismatchError, StorageError


def is_gcs(path: str | os.PathLike) -> bool:
    return str(path).startswith("gs://")


def split_gcs(uri: str) -> tuple[str, str]:
    """``gs://bucket/key`` -> ``(bucket, key)``."""
    if not is_gcs(uri) or "/" not in uri[5:] or uri[5:].startswith("/"):
        raise StorageError(f"{uri!r} is not a gs://bucket/object URI")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def gdal_path(path: str | os.PathLike) -> str:
    """The path GDAL opens: ``/vsigs/bucket/key`` for ``gs://bucket/key``, else unchanged."""
    text = str(path)
    return "/vsigs/" + text[5:] if is_gcs(text) else text


def _client():
    try:
        from google.cloud import storage
    except ImportError as exc:  # pragma: no cover - the ee extra installs it
        raise StorageError(
            "gs:// paths need google-cloud-storage: pip install 'isamap[ee]'") from exc
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project="isamap-emulated", credentials=AnonymousCredentials())
    return storage.Client()


def exists(path: str) -> bool:
    if not is_gcs(path):
        return Path(path).exists()
    bucket, key = split_gcs(path)
    return _client().bucket(bucket).blob(key).exists()


def md5_base64(path: Path) -> str:
    digest = hashlib.md5()  # GCS reports MD5 for non-composite objects; used only as checksum
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()


def upload_file(local: Path, uri: str) -> str:
    """Upload ``local`` to ``uri`` and verify the stored MD5; returns the object's generation.

    Raises:
        ChecksumMismatchError: the server holds different bytes (the object is deleted).
        StorageError: the upload itself failed.
    """
    bucket_name, key = split_gcs(uri)
    local_md5 = md5_base64(local)
    try:
        blob = _client().bucket(bucket_name).blob(key)
        blob.upload_from_filename(str(local), checksum="md5")
        blob.reload()
    except Exception as exc:
        if isinstance(exc, ChecksumMismatchError):
            raise
        raise StorageError(f"uploading {local} to {uri} failed: {exc}") from exc
    if blob.md5_hash != local_md5:
        blob.delete()
        raise ChecksumMismatchError(
            f"{uri}: stored MD5 {blob.md5_hash} != local {local_md5}; the upload was deleted, "
            "retry it")
    return str(blob.generation)


def put_output(write: Callable[[Path], None], dest: str, work: Path) -> None:
    """Produce ``dest`` atomically: ``write`` fills a local temp file, then it is moved/uploaded."""
    if is_gcs(dest):
        local = work / "upload" / dest.rsplit("/", 1)[-1]
        local.parent.mkdir(parents=True, exist_ok=True)
        write(local)
        upload_file(local, dest)
        local.unlink()
        return
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    write(tmp)
    os.replace(tmp, target)
