"""A store in a local folder, and the one atomic writer of local files.

Every local file isamap writes (patches, stacks, index and manifest, checkpoints, model files,
COGs, tables, PNGs, scripts) goes through :func:`atomic_path` (or :func:`atomic_write` on top
of it), so readers never see half a file and a killed writer leaves only temporaries that
:meth:`LocalStore.remove_temporaries` recognises.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.digest import CHUNK
from core.errors import ChecksumMismatchError, ConfigError, StorageError
from core.storage.base import TEMP_MARK, Store, clean_rel, file_md5_b64, md5_b64


def temporary_name(target: Path) -> Path:
    """A temporary path beside ``target``, unique per writer, that the clean-up recognises.

    The name starts with a dot (hidden from casual listings), carries :data:`TEMP_MARK` (so
    :meth:`Store.list` never returns it and :func:`remove_temporaries` deletes what a killed
    writer left) and a random part, so two writers of the same target never share a file. It
    keeps the target's extension last (``.map.isamap-tmp-1a2b3c.tif``), so writers that pick
    a format from the name (GDAL, matplotlib, PIL) pick the target's.
    """
    return target.with_name(f".{target.stem}{TEMP_MARK}{uuid.uuid4().hex[:12]}{target.suffix}")


#: The work folders isamap made before their names carried :data:`TEMP_MARK` (an interrupted
#: change map's ``.isamap-change-*``, a consistent series' ``.isamap-consistent-*``):
#: :meth:`LocalStore.remove_temporaries` removes them too.
EARLIER_WORK_FOLDERS = (".isamap-change-*", ".isamap-consistent-*")


def work_folder(kind: str, out: str, work_dir: Path | None = None) -> Path:
    """A new work folder for an unfinished ``out``, named as a temporary (``TEMP_MARK``).

    In ``work_dir`` when given, else beside a local ``out``, else (a ``gs://`` ``out``) in
    the system's temporary folder: never the current folder. The caller removes it on any
    exit; a killed writer's is removed by :meth:`LocalStore.remove_temporaries` of its folder.
    """
    parent = work_dir if work_dir is not None else (
        None if "://" in out else Path(out).parent)
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{TEMP_MARK}{kind}-", dir=parent))


# What GDAL may write beside a dataset under the dataset's own name (PAM metadata, external
# overviews and masks, and their metadata): the atomic writer removes these by name.
GDAL_SIDECARS = (".aux.xml", ".aux", ".ovr", ".ovr.aux.xml", ".msk", ".msk.aux.xml")


def temporaries_of(target: Path) -> list[Path]:
    """The temporaries :func:`temporary_name` makes for ``target`` that exist beside it."""
    return sorted(target.parent.glob(f".{target.stem}{TEMP_MARK}*{target.suffix}"))


def _fsync_path(path: Path) -> None:
    """Flush a file (or a directory entry) to the disk; best effort where the OS refuses."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_file_targets(targets: Iterable[Path]) -> None:
    """Refuse output files whose path is a folder, before any work is done for them.

    Raises:
        ConfigError: a target is an existing folder (it would fail the last rename, naming a
            temporary, after the work).
    """
    for target in targets:
        if Path(target).is_dir():
            raise ConfigError(f"{target} is a folder where isamap writes a file; move the "
                              "folder away or choose another output")


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write ``target`` through; it replaces ``target`` on success.

    The one implementation of "readers never see half a file" for local outputs. Writers that
    need a file name (GDAL, torch.save, PIL) write the yielded path; when the block ends
    without an exception the file is fsynced and renamed into place, and the folder entry is
    fsynced. On an exception the temporary is removed and ``target`` is untouched. Either way
    the GDAL sidecars of the temporary (:data:`GDAL_SIDECARS`) are removed by name: the
    folder is never listed, so a write costs the same beside ten files or a million (a
    month's patch folder grows to hundreds of thousands). A file of another name derived from
    the temporary's is left to :meth:`LocalStore.remove_temporaries`, which writers run once
    per run. Files are created with the process umask (plain ``open``), so shared datasets
    stay readable by others.
    """
    target = Path(target)
    check_file_targets([target])
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(target)
    try:
        yield tmp
        if not tmp.exists():
            raise StorageError(f"nothing was written to {target}")
        _fsync_path(tmp)
        os.replace(tmp, target)
        _fsync_path(target.parent)
    finally:
        for suffix in ("", *GDAL_SIDECARS):
            tmp.with_name(tmp.name + suffix).unlink(missing_ok=True)


def atomic_write(target: str | os.PathLike[str], fill: Callable[[Any], None]) -> Path:
    """Write a local file atomically: ``fill(handle)`` writes bytes through :func:`atomic_path`."""
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        fill(handle)
    return Path(target)


class LocalStore(Store):
    """A directory on the local file system."""

    is_remote = False

    def __init__(self, root: str | os.PathLike[str]):
        # as every other path of the command: "~" is the shell's to expand (a quoted or
        # --out=~/x one is a folder named "~"), so the outputs and their lock stay together
        self._root = Path(root).resolve()
        if self._root.exists() and not self._root.is_dir():
            raise ConfigError(f"{self._root} is a file where a folder is needed; give a folder, "
                              f"such as the one holding it ({self._root.parent})")

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
        """Delete the temporaries (files, work folders) a killed writer left under ``prefix``.

        An earlier isamap's work folders (:data:`EARLIER_WORK_FOLDERS`) included. Returns how
        many.
        """
        base = self._root / prefix.strip("/")
        if not base.is_dir():
            return 0
        count = 0
        earlier = [p for pattern in EARLIER_WORK_FOLDERS for p in base.rglob(pattern)
                   if p.is_dir()]
        # listed first: folders go whole
        for path in sorted({*base.rglob(f"*{TEMP_MARK}*"), *earlier}):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.parent.exists():
                path.unlink(missing_ok=True)
            else:
                continue  # inside a temporary folder removed above
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


