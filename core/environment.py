"""Failures of the machine a command runs on, and the checks that find them before work starts.

A full disk, a read-only folder or a missing permission is the environment's fault (exit 1),
not the command line's; :func:`environment_message` finds one however a library wrapped it
(GDAL's ``CPLE_*`` errors, torch's writer, a thread pool: the ``OSError`` in the cause chain,
or only its words in a message) and says it in one line. :func:`check_writable` and
:func:`check_output_folder` refuse an output that cannot be written before the first expensive
step, so a refused run leaves nothing behind. :mod:`core.commands` uses both for every command.
:func:`check_apart` refuses an output that is one of the command's own inputs, or lies in a
folder it reads (a run would overwrite the user's file, or leave its outputs to be read as
input by the next run).

May import: the rest of ``core``; nothing else of the project.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from core.errors import ConfigError

_ENV_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM,
               errno.EROFS, errno.EIO)
# The same failures as libraries word them when they drop the errno (GDAL/libtiff, torch).
_ENV_TEXT = ((re.compile(r"no space left on device|disk full|not enough space", re.I),
              errno.ENOSPC),
             (re.compile(r"disk quota exceeded", re.I), errno.EDQUOT),
             (re.compile(r"file too large", re.I), errno.EFBIG),
             (re.compile(r"read-only file system", re.I), errno.EROFS),
             (re.compile(r"permission denied", re.I), errno.EACCES),
             (re.compile(r"write error|write failed|failed writing|cannot write", re.I),
              errno.EIO))


def os_error_message(exc: OSError) -> str:
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    return _errno_message(exc.errno, where) or f"{exc.strerror or exc}{where}"


def _errno_message(code: int | None, where: str = "") -> str | None:
    if code in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on the device{where}; free space or write to another folder, "
                "then run the same command again to resume")
    if code == errno.EFBIG:
        return (f"a file grew past the size this system allows{where} (file-size limit or "
                "file system); raise the limit or write to another folder, then run the same "
                "command again to resume")
    if code in (errno.EACCES, errno.EPERM):
        return (f"permission denied{where}; choose a folder you can write to or fix its "
                "permissions")
    if code == errno.EROFS:
        return f"the file system is read-only{where}; write to another folder"
    if code == errno.EIO:
        return (f"writing or reading a file failed{where}; check free space and the storage, "
                "then run the same command again to resume")
    return None


def environment_message(exc: BaseException, writes_to: Sequence[str] = ()) -> str | None:
    """One line for a failure of the machine (disk full, read-only, permissions), else None.

    Looks at ``exc``, its ``__cause__``/``__context__`` chain, and their messages, because
    GDAL, libtiff and torch report a full disk in their own exception types. libtiff prints
    "No space left on device" itself and GDAL raises a bare "Write error", so a write failure
    while a folder in ``writes_to`` is (nearly) full is reported as the full disk it is.
    """
    seen: set[int] = set()
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    for item in chain:
        if isinstance(item, OSError) and item.errno in _ENV_ERRNOS:
            return os_error_message(item)
    for pattern, code in _ENV_TEXT:  # the most specific cause anywhere in the chain wins
        for item in chain:
            text = str(item)
            if pattern.search(text):
                full = _nearly_full(writes_to) if code == errno.EIO else None
                if full:
                    return _errno_message(errno.ENOSPC, f" ({full})")
                detail = text.strip().splitlines()[0][:200] if text.strip() else ""
                return (_errno_message(code) or "") + (f" [{detail}]" if detail else "")
    return None


def _as_given(found: Path, given: str) -> str:
    """``found`` (absolute) as relative as ``given`` was typed."""
    if Path(given).is_absolute():
        return str(found)
    try:
        return str(found.relative_to(Path.cwd()))
    except ValueError:
        return str(found)


def _nearest_existing(path: str | os.PathLike[str]) -> Path:
    """``path`` (absolute) if it exists, else its nearest existing parent folder."""
    found = Path(path).absolute()
    while not found.exists() and found != found.parent:
        found = found.parent
    return found


def check_writable(*paths: str | os.PathLike[str] | None) -> None:
    """Fail now (OSError: read-only, permission) if a local output path cannot be written.

    Creates and removes a temporary file in the nearest existing folder of each path, so a
    command refuses an unwritable output before its first expensive step, and a refused run
    leaves no empty output folder behind. ``gs://`` paths and None are skipped.
    """
    for item in paths:
        if item is None or str(item).startswith("gs://"):
            continue
        folder = _nearest_existing(item)
        if folder.is_file():
            folder = folder.parent
        try:
            with tempfile.TemporaryFile(dir=folder, prefix=".isamap-write-check-"):
                pass
        except OSError as exc:  # name the folder, not the probe's random file
            raise OSError(exc.errno, exc.strerror, str(folder)) from None


def check_output_folder(flag: str, path: str | os.PathLike[str] | None,
                        given: str | None = None, *, remote: bool = False) -> None:
    """Refuse (ConfigError, exit 2) a folder flag that names a file; then check it is writable.

    :func:`check_writable` accepts a file (a prediction prefix may name one), so a folder flag
    given an existing file, or a path under one, passed it and failed only at the first write,
    after the model had run, with Python's bare "File exists". None passes.

    An address (``gs://...``, ``s3://...``) is refused unless the command writes through the
    storage seam (``remote``: ``gs://`` only): a command that writes local files would
    otherwise make a folder named ``gs:`` in the working directory and exit 0.

    Args:
        flag: the flag as the user types it (``--out``), named in the message.
        path: the folder the command will create or fill.
        given: the flag's value, where ``path`` is derived from it (a prefix's folder).
        remote: the command writes ``gs://`` folders too.
    """
    if path is None:
        return
    text = os.fspath(path)
    if "://" in text:
        if remote and text.startswith("gs://"):
            return
        if remote or not text.startswith("gs://"):
            raise ConfigError(f"{flag} {given or text}: give a local folder"
                              f"{' or gs://bucket/prefix' if remote else ''}")
        raise ConfigError(f"{flag} {given or text}: this command writes local files; give a "
                          f"local folder (and copy it afterwards: gcloud storage cp -r FOLDER "
                          f"{text})")
    existing = _nearest_existing(path)
    if existing.exists() and not existing.is_dir():
        shown = given if given is not None else os.fspath(path)
        where = ("is a file" if existing == Path(shown).absolute() else
                 f"lies under {_as_given(existing, shown)}, which is a file")
        raise ConfigError(f"{flag} {shown} {where}, not a folder; give a folder (it is created "
                          "if missing)")
    check_writable(path)


Given = tuple[str, str | os.PathLike[str] | None]
"""A flag as typed and its value: ``("--scenes", "data/scenes")``; a None value is skipped."""


def _local(value: str | os.PathLike[str]) -> Path | None:
    """A local path (a glob: the folder its pattern starts in), resolved; None for an address."""
    text = os.fspath(value)
    if "://" in text:
        return None
    parts = Path(text).parts
    fixed = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), None)
    return (Path(text) if fixed is None else Path(".", *parts[:fixed])).resolve()


def same_path(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two values name one file: the same local path however typed, or one address."""
    here, there = _local(a), _local(b)
    return os.fspath(a) == os.fspath(b) if here is None or there is None else here == there


def check_apart(output: tuple[str, str | os.PathLike[str]],
                writes: Iterable[str | os.PathLike[str]], inputs: Iterable[Given]) -> None:
    """Refuse (ConfigError, exit 2) an output that is an input, or lies in an input folder.

    A command whose output is one of its inputs overwrites the user's file (a prediction
    prefix whose ``<out>_class.tif`` is the stack itself), and one whose output folder lies
    in a folder it reads (``--out`` inside ``--scenes``, which is searched recursively) leaves
    rasters there that the next run reads as input; both exited 0. An input that lies inside
    the output folder is fine (``--scenes out/scenes``), and so is an input that does not
    exist yet (another check names it). ``gs://`` paths are not compared.

    Args:
        output: the output flag as typed and its value, named in the message.
        writes: the folders and files the command writes from it (a folder flag: its value;
            a prefix: the files it names).
        inputs: the input flags as typed and their values (a file, a folder or a glob).
    """
    flag, given = output
    written = [(os.fspath(w), _local(w)) for w in writes]
    for in_flag, value in inputs:
        place = _local(value) if value is not None else None
        if place is None or not place.exists():
            continue
        for text, path in written:
            if path is None:
                continue
            writes_text = "" if text == os.fspath(given) else f" writes {text}"
            if place.is_file() and path == place:
                raise ConfigError(f"{flag} {given}{writes_text}, which is {in_flag} {value}: "
                                  f"the run would overwrite its own input; give another {flag}")
            if place.is_dir() and path.is_relative_to(place):
                where = "is" if path == place else "lies inside"
                raise ConfigError(f"{flag} {given}{writes_text} {where} {in_flag} {value}, whose "
                                  "files the command reads, so its outputs would be read as "
                                  f"input; give a {flag} outside {value}")


LOW_SPACE_BYTES = 64 << 20  # a write that fails with less than this free was a full disk


def _nearly_full(paths: Sequence[str]) -> str | None:
    """The first local path whose file system has less than LOW_SPACE_BYTES free."""
    for text in paths:
        if not text or str(text).startswith("gs://"):
            continue
        path = Path(text).absolute()
        while not path.exists() and path != path.parent:
            path = path.parent
        try:
            if shutil.disk_usage(path).free < LOW_SPACE_BYTES:
                return str(text)
        except OSError:
            continue
    return None
