"""Local-or-gs:// paths of single inference files, on top of the storage seam.

predict/publish name files by full path (``out/isa_prob.tif`` or ``gs://b/maps/isa_prob.tif``);
this module maps such a path to a :class:`core.storage.Store` plus a relative name, so
atomic writes, MD5-verified uploads and retries come from the one storage implementation.
Outputs are always produced as a local file first (the COG driver needs random access) and
then moved or uploaded.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.errors import InputDataError, IsamapError, StorageError
from core.storage import BucketInfo, GcsStore, Store, atomic_path, open_store
from core.storage.gdal_auth import gdal_env, ready_for_remote


def is_gcs(path: str | os.PathLike[str]) -> bool:
    return str(path).startswith("gs://")


def split_gcs(uri: str) -> tuple[str, str]:
    """``gs://bucket/key`` -> ``(bucket, key)``."""
    text = str(uri)
    if not is_gcs(text) or "/" not in text[5:] or text[5:].startswith("/"):
        raise StorageError(f"{uri!r} is not a gs://bucket/object URI")
    bucket, key = text[5:].split("/", 1)
    return bucket, key


def bucket_name_problem(name: str) -> str | None:
    """What makes ``name`` no Cloud Storage bucket name, with the rule it breaks (None: none).

    Cloud Storage's naming rules (https://cloud.google.com/storage/docs/buckets#naming):
    3-63 characters, up to 222 when it holds dots with at most 63 between two dots; only
    lower-case letters, digits, ``-``, ``_`` and ``.``; a letter or digit first and last; no
    IP address; no ``goog`` prefix and no ``google`` in it.
    """
    chars = "lower-case letters, digits, '-', '_' and '.'"
    longest = 222 if "." in name else 63
    if not re.fullmatch(r"[a-z0-9._-]*", name):
        odd = "".join(dict.fromkeys(c for c in name if not re.fullmatch(r"[a-z0-9._-]", c)))
        return f"bucket name {name!r} holds {odd!r}; bucket names hold only {chars}"
    if not 3 <= len(name) <= longest or any(len(part) > 63 for part in name.split(".")):
        return (f"bucket name {name!r} is {len(name)} character{'s' * (len(name) != 1)} long; "
                "bucket names are 3-63 characters (up to 222 with dots, at most 63 between two "
                "dots)")
    if not (name[0].isalnum() and name[-1].isalnum()):
        return f"bucket name {name!r} must begin and end with a letter or digit"
    if re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", name):
        return f"bucket name {name!r} is an IP address, which bucket names may not be"
    if name.startswith("goog") or "google" in name:
        return f"bucket name {name!r} may not begin with 'goog' nor hold 'google'"
    return None


def store_of(path: str | os.PathLike[str]) -> tuple[Store, str]:
    """The store holding ``path`` (its parent folder) and the file's name inside it."""
    text = os.fspath(path)
    if is_gcs(text):
        split_gcs(text)
        parent, name = text.rsplit("/", 1)
        return open_store(parent), name
    target = Path(text).absolute()
    return open_store(target.parent), target.name


def gdal_path(path: str | os.PathLike[str]) -> str:
    """The path GDAL opens: ``/vsigs/bucket/key`` for ``gs://bucket/key``, else unchanged.

    For a ``gs://`` path GDAL is first given the Cloud Storage credentials, process-wide
    (:func:`core.storage.gdal_auth.ready_for_remote`), so whichever thread opens or
    reads the returned path is authenticated.

    Raises:
        StorageError: a ``gs://`` path and no credentials to read it with.
    """
    text = os.fspath(path)
    if is_gcs(text):
        bucket, key = split_gcs(text)
        ready_for_remote()
        return f"/vsigs/{bucket}/{key}"
    return text


@contextmanager
def unmade_if_refused(*folders: str | os.PathLike[str]) -> Iterator[None]:
    """Remove the local ``folders`` the block created when it fails or is stopped, if empty.

    A refused run leaves no new folder behind (an empty ``--out`` after a refusal looked like
    a run's output), nor the new folders above them (``--out a/b/out`` where ``a`` was not
    there), and neither does a run stopped (Ctrl-C, SIGTERM) before it wrote anything; one
    that existed before, or that the run wrote into, stays.
    """
    made: set[Path] = set()
    for given in folders:
        if is_gcs(given):
            continue
        folder = Path(given).absolute()
        while not folder.exists() and folder != folder.parent:
            made.add(folder)
            folder = folder.parent
    try:
        yield
    except BaseException:
        for folder in sorted(made, key=lambda p: len(p.parts), reverse=True):  # inner first
            with contextlib.suppress(OSError):  # not empty: the run wrote there, it stays
                folder.rmdir()
        raise


@contextmanager
def open_raster(path: str | os.PathLike[str], **options: Any) -> Iterator[Any]:
    """``rasterio.open`` of a local path or ``gs://`` object, with the Cloud Storage credentials.

    The one way library code opens a raster that may live on Cloud Storage
    (:func:`core.storage.gdal_auth.gdal_env` hands GDAL the credentials the storage
    client uses); ``options`` go to ``rasterio.open``.
    """
    import rasterio

    with gdal_env(path), rasterio.open(gdal_path(path), **options) as ds:
        yield ds


def file_problem(flag: str, path: str | os.PathLike[str], give: str) -> str | None:
    """Why a local path a flag takes as a file is none: it is missing, or a folder.

    None for a file, or a ``gs://`` path (read later). ``give`` says what the flag takes.
    """
    return _kind_problem(flag, path, give, folder=False)


def require(flag: str, path: str | os.PathLike[str], give: str, *, folder: bool = False,
            error: type[IsamapError] = InputDataError) -> None:
    """Raise ``error`` naming why ``path`` is no file (``folder``: no folder) the flag takes.

    Missing, or of the other kind; a ``gs://`` path passes (read later). ``give`` says what
    the flag takes.
    """
    problem = _kind_problem(flag, path, give, folder)
    if problem:
        raise error(problem)


def _kind_problem(flag: str, path: str | os.PathLike[str], give: str,
                  folder: bool) -> str | None:
    if is_gcs(path):
        return None
    if not Path(path).exists():
        return f"{flag} {os.fspath(path)} does not exist; give {give}"
    if Path(path).is_dir() != folder:
        found, wanted = ("a file", "a folder") if folder else ("a folder", "a file")
        return f"{flag} {os.fspath(path)} is {found}, not {wanted}; give {give}"
    return None


def raster_refusal(flag: str, path: str | os.PathLike[str], exc: BaseException | None,
                   give: str) -> str:
    """The one-line refusal of a raster input that cannot be opened or read, naming its flag.

    A missing path, a folder, a file that is no raster (GDAL knows no format of it) and one
    that is (probably) truncated or corrupt each get their own advice; ``give`` says what the
    flag takes ("the stack GeoTIFF/VRT").
    """
    given = f"{flag} {os.fspath(path)}"
    problem = file_problem(flag, path, give)
    if problem:
        return problem
    if exc is not None and "previous exception" in str(exc) and exc.__cause__ is not None:
        exc = exc.__cause__  # rasterio's "Read failed. See previous exception": GDAL's words
    text = str(exc).strip() if exc is not None else ""
    first = text.splitlines()[0] if text else type(exc).__name__
    if "not recognized as" in text and "supported file format" in text:
        return f"{given} cannot be read ({first}): it is not a raster; give {give}"
    return (f"{given} cannot be read ({first}); it is probably truncated or corrupt: copy or "
            "export it again")


def exists(path: str | os.PathLike[str]) -> bool:
    store, name = store_of(path)
    return store.exists(name)


def upload_file(local: Path, uri: str) -> None:
    """Copy ``local`` to ``uri`` through the storage seam (atomic, MD5-verified)."""
    store, name = store_of(uri)
    store.upload_file(local, name)


def bucket_info(uri: str, client: Any | None = None) -> BucketInfo:
    """Location and storage class of the bucket of ``uri``, read through the storage seam."""
    bucket, _ = split_gcs(uri)
    return GcsStore(f"gs://{bucket}", client=client).bucket_info()


def put_output(write: Callable[[Path], None], dest: str, work: Path) -> None:
    """Produce ``dest`` atomically: ``write`` fills a local temp file, then it is moved/uploaded."""
    if is_gcs(dest):
        local = work / "upload" / dest.rsplit("/", 1)[-1]
        local.parent.mkdir(parents=True, exist_ok=True)
        write(local)
        upload_file(local, dest)
        local.unlink()
        return
    with atomic_path(dest) as tmp:
        write(tmp)
