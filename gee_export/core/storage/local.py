"""A store in a local folder, and the one atomic writer of local files.

Every local file isamap writes (patches, stacks, index and manifest, checkpoints, model files,
COGs, tables, PNGs, scripts) goes through :func:`atomic_write`, so readers never see half a
file and a killed writer leaves only temporaries that :func:`remove_temporaries` recognises.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gee_export.core.errors import ChecksumMismatchError, StorageError
from gee_export.core.storage.base import CHUNK, TEMP_MARK, Store, clean_rel, file_md5_b64, md5_b64


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
        return self._root / clean_rel(rel)

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
            atomic_write(target, lambda handle: shutil.copyfileobj(src, handle, CHUNK))
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


