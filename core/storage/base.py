"""The storage interface: a root (local folder or ``gs://bucket/prefix``) of files by relative path.

Paths inside a store (``rel``) are always POSIX-style and relative to the store's root. What
the two implementations guarantee (atomic writes, verified uploads, retries) is described in
the package docstring; this module holds what they share.
"""

from __future__ import annotations

import base64
import hashlib
import os
from abc import ABC, abstractmethod
from pathlib import PurePosixPath
from typing import TypeVar

from core.digest import update_from_file
from core.errors import StorageError

T = TypeVar("T")

TEMP_MARK = ".isamap-tmp-"
"""Temporary files carry this in their name; :meth:`Store.list` never returns them."""


def md5_b64(data: bytes) -> str:
    """Base64 MD5 digest, the form Cloud Storage reports in ``md5Hash``."""
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


def file_md5_b64(path: str | os.PathLike[str]) -> str:
    """Base64 MD5 of a file, read in chunks so large files never sit in memory."""
    digest = hashlib.md5()
    update_from_file(digest, path)
    return base64.b64encode(digest.digest()).decode("ascii")


def clean_rel(rel: str) -> str:
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
