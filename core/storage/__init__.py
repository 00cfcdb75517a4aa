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

May import: the rest of ``core``; nothing else of the project.
"""

from __future__ import annotations

import os

from core.errors import StorageError
from core.storage.base import TEMP_MARK, Store, file_md5_b64, md5_b64
from core.storage.gcs import BucketInfo, GcsStore, with_retries
from core.storage.local import (
    LocalStore,
    atomic_path,
    atomic_write,
    check_file_targets,
    temporaries_of,
    temporary_name,
    work_folder,
)

__all__ = ["TEMP_MARK", "BucketInfo", "GcsStore", "LocalStore", "Store", "atomic_path",
           "atomic_write", "check_file_targets", "file_md5_b64", "md5_b64", "open_store",
           "temporaries_of", "temporary_name", "with_retries", "work_folder"]


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
