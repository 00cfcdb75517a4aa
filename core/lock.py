"""One run per output root: a lock file naming its holder, taken before anything is written.

Two runs writing one dataset (or one map folder) would delete each other's in-flight temporary
files and interleave index rewrites. Every writer of an output root therefore holds
:func:`hold_output` for its whole run: the export backends (local stack + patching, Earth
Engine pixels and tasks, the Beam export's launcher), region mapping (``isamap-map``, whose
per-date predictions write under its root), ``isamap-train`` around its whole run (a
training's member and preliminary folders under its root take no lock of their own; under
torchrun rank 0 alone holds it), and every other command that writes a folder (``isamap-fit``,
``-evaluate``, ``-assess``, ``-prune``, ``-demo``) through
:func:`core.commands.claim_output_folder`, from its check of the folder to the command's end.

- A local root is locked with ``flock`` on ``<root>/.isamap.lock``: the kernel releases the lock
  when its holder dies (even by SIGKILL), so a lock left by a dead run is simply taken over; the
  file's content (pid, host, command, start time) names the holder in the refusal message.
- A ``gs://`` root (and a local file system without ``flock``) uses a create-only lock object
  with the same content. One left by a process of this host that no longer runs is recognised
  as stale and replaced; one from another host cannot be checked, so the message says how to
  remove it by hand.

The lock is re-entrant within a process: the CLI holds it around stack building and patching,
and ``patch_stack`` taking it again inside is a no-op.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import logging
import os
import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import OutputLockedError, StorageError
from core.storage import GcsStore, LocalStore, Store, open_store

try:  # POSIX only; elsewhere the create-only lock file is used
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".isamap.lock"
log = logging.getLogger(__name__)

_held: dict[str, int] = {}
_held_guard = threading.Lock()


def holder_info() -> dict[str, Any]:
    """What this process writes into a lock it takes."""
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else "",
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "token": uuid.uuid4().hex}


def describe(holder: dict[str, Any] | None) -> str:
    """``pid 123 on host x since <time> (command)`` for messages; 'an unknown run' if unreadable."""
    if not holder:
        return "an unknown run"
    text = f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"
    return text + (f" ({holder['command']})" if holder.get("command") else "")


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` runs on this host (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    try:  # a killed child not yet reaped by its parent still answers kill(0)
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def is_stale(holder: dict[str, Any] | None) -> bool:
    """A lock whose holder ran on this host and no longer runs."""
    if not holder or holder.get("host") != socket.gethostname():
        return False
    try:
        return not pid_alive(int(holder.get("pid", -1)))
    except (TypeError, ValueError):
        return False


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _refuse(where: str, holder: dict[str, Any] | None, remote: bool = False) -> OutputLockedError:
    hint = (f"; if no run is active there, delete {where}/{LOCK_NAME}" if remote else "")
    return OutputLockedError(f"{where} is in use by another isamap run ({describe(holder)}); "
                             f"wait for it to finish or stop it, then run again{hint}")


# ---------------------------------------------------------------------- local: flock
class _FlockLock:
    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self, holder: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(20):  # the holder may unlink the file between our open and our flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                previous = _parse(os.pread(fd, 4096, 0))
                os.close(fd)
                raise _refuse(str(self.path.parent), previous) from None
            except BaseException:
                os.close(fd)
                raise
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            mine = os.fstat(fd)
            if current is None or (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev):
                os.close(fd)
                continue
            previous = _parse(os.pread(fd, 4096, 0))
            if previous and previous.get("pid") != os.getpid():
                log.info("taking over the lock of %s left by %s, which is no longer running",
                         self.path.parent, describe(previous))
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode("utf-8"), 0)
            os.fsync(fd)
            self.fd = fd
            return
        raise StorageError(f"could not lock {self.path}: it keeps being replaced")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # still locked: nobody else can hold this inode
        finally:
            os.close(self.fd)
            self.fd = None


# ---------------------------------------------------------------------- create-only object
class _ObjectLock:
    """A lock object created only if absent (Cloud Storage, or a local FS without flock)."""

    def __init__(self, store: Store):
        self.store = store
        self.token: str | None = None

    def _create(self, data: bytes) -> bool:
        if isinstance(self.store, LocalStore):
            path = self.store.path(LOCK_NAME)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            return True
        try:
            self.store.write_bytes(LOCK_NAME, data, overwrite=False)
        except StorageError as exc:
            if "already exists" in str(exc):
                return False
            raise
        return True

    def _read(self) -> tuple[dict[str, Any] | None, Any]:
        """The holder and a version token (the object's generation on Cloud Storage)."""
        if isinstance(self.store, GcsStore):
            data, generation = self.store.read_with_generation(LOCK_NAME)
            return (_parse(data) if data is not None else None), generation
        try:
            return _parse(self.store.read_bytes(LOCK_NAME)), None
        except StorageError:
            return None, None

    def _remove_stale(self, generation: Any) -> None:
        if isinstance(self.store, GcsStore):
            self.store.delete_generation(LOCK_NAME, generation)
        else:
            self.store.delete(LOCK_NAME)

    def acquire(self, holder: dict[str, Any]) -> None:
        data = json.dumps(holder).encode("utf-8")
        for _ in range(3):
            if self._create(data):
                self.token = holder["token"]
                return
            previous, generation = self._read()
            if not is_stale(previous):
                raise _refuse(self.store.url(), previous, remote=self.store.is_remote)
            log.info("removing the stale lock of %s left by %s", self.store.url(),
                     describe(previous))
            self._remove_stale(generation)
        raise _refuse(self.store.url(), None, remote=self.store.is_remote)

    def release(self) -> None:
        if self.token is None:
            return
        previous, generation = self._read()
        if previous and previous.get("token") == self.token:
            self._remove_stale(generation)
        self.token = None


@contextlib.contextmanager
def hold_output(root: str | os.PathLike[str] | Store) -> Iterator[None]:
    """Hold the lock of an output root (local folder or ``gs://`` prefix) for the block.

    Raises:
        OutputLockedError: another live run holds it (the message names its pid and host).
    """
    store = open_store(root)
    key = store.url()
    with _held_guard:
        if _held.get(key):
            _held[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    lock: _FlockLock | _ObjectLock = (
        _FlockLock(store.path(LOCK_NAME)) if isinstance(store, LocalStore) and fcntl is not None
        else _ObjectLock(store))
    try:
        lock.acquire(holder_info())
    except OSError as exc:
        if isinstance(lock, _FlockLock) and exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP,
                                                          errno.ENOSYS):
            lock = _ObjectLock(store)  # a file system without flock (some network mounts)
            lock.acquire(holder_info())
        else:
            raise
    with _held_guard:
        _held[key] = 1
    try:
        yield
    finally:
        with _held_guard:
            _held.pop(key, None)
        lock.release()
