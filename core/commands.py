"""How every isamap command starts and ends: logging flags, one-line errors, exit codes.

Each console script builds its parser, adds :func:`add_logging_arguments`, and hands its work
to :func:`run_command`, so all of them behave alike: progress and results go through
``logging`` (``-v`` for timings, ``-vv`` for isamap's debug messages, ``-q`` for warnings
only; :func:`log_levels`), an error the user can act on is one line on stderr with exit
status 2 (bad input) or 1 (environment: disk, permissions, network, a remote service),
Ctrl-C says how to resume and exits 130 (SIGTERM: 143; a second signal during the wind-down
is ignored, see :func:`stop_signals`), and a traceback appears only with ``--debug``.

Environment failures often reach the command wrapped by a library (GDAL's ``CPLE_*`` errors,
torch's writer, a thread pool) with the ``OSError`` as their cause or only its text in their
message, so :func:`environment_message` looks through the cause chain and the messages before
a failure is treated as a bug. Python warnings (``warnings.warn`` in library code) are routed
through logging as one ``warning:`` line instead of Python's two-line source echo.

Two argument helpers live here because every command needs them alike:
:func:`attach_values` lets ``--bbox -7.45,52.63,-7.43,52.65`` through argparse (which would
take the value for an option), and :func:`check_range` is the one bound check of numeric flags,
used by a dry run and a real run alike.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar

from core.errors import ConfigError, IsamapError

EXIT_OK = 0
EXIT_ENVIRONMENT = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
#: exit status of a command stopped by SIGTERM (128 + 15, what a shell reports for it)
EXIT_TERMINATED = 143


class Stopped(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM reached a command: it unwinds, its clean-ups run, it exits.

    A ``KeyboardInterrupt``, so code that already cleans up on Ctrl-C does so on SIGTERM too.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Stopped` in the main thread, once.

    The first signal starts the command's wind-down; from then on both are ignored, so a
    second Ctrl-C (or a signal that arrives while the interpreter shuts down) cannot cut a
    clean-up short or turn the exit status into a death by signal. Without a signal the
    previous handlers are put back (a command run inside another program leaves it as it was).
    Outside the main thread (where Python cannot set handlers) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stopped = False

    def handler(signum: int, frame: object) -> None:
        nonlocal stopped
        if stopped:
            return
        stopped = True
        for s in previous:
            signal.signal(s, signal.SIG_IGN)
        raise Stopped(signum)

    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        if not stopped:
            for s, h in previous.items():
                signal.signal(s, h if h is not None else signal.SIG_DFL)

_FORMAT = "%(message)s"
_DEBUG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Quiet(argparse.Action):
    """``-q``: quiet logging and no progress bars, in every command.

    It switches off the command's own ``--no-progress`` flag too, whatever its name
    (``progress`` or ``no_progress``), so no command repeats the rule. argparse sets every
    default on the namespace before it runs any action, so the flag is there to switch off.
    """

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, True)
        if hasattr(namespace, "progress"):
            namespace.progress = False
        if hasattr(namespace, "no_progress"):
            namespace.no_progress = True


#: isamap's detail level, between INFO and DEBUG: stage timings, autotune tables, which kernel
#: or compiled graph runs; ``-v`` shows it, the default level does not.
DETAIL = 15
logging.addLevelName(DETAIL, "DETAIL")
#: the loggers that are isamap's own (the packages' ``logging.getLogger(__name__)``)
ISAMAP_LOGGERS = ("core", "contract", "gee_export", "engine", "training", "inference", "cli",
                  "experiments")


def add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    """``-v/--verbose`` (repeatable), ``-q/--quiet`` and ``--debug`` with one meaning everywhere."""
    group = parser.add_argument_group("output")
    group.add_argument("-v", "--verbose", action="count", default=0,
                       help="more detail: -v adds timings and tuning tables, -vv isamap's "
                            "debug messages (other libraries stay at warnings)")
    group.add_argument("-q", "--quiet", action=_Quiet,
                       help="only warnings and errors (also hides progress bars)")
    group.add_argument("--debug", action="store_true",
                       help="debug messages of isamap and every library it uses, and a full "
                            "traceback on errors")


def log_levels(verbose: int = 0, quiet: bool = False, debug: bool = False) -> dict[str, int]:
    """The level of each logger the flags set: isamap's packages, ``rasterio`` and the root.

    The one mapping of the flags: the default shows what a user acts on (steps, progress,
    outputs, warnings); ``-v`` adds isamap's :data:`DETAIL` (timings, tuning tables);
    ``-vv`` isamap's DEBUG; only ``--debug`` lets other libraries (urllib3, matplotlib,
    GDAL through rasterio) below WARNING, since their debug output buries isamap's.
    GDAL's own messages (libtiff's "No space left on device" per block, driver warnings)
    repeat what the one error line says, so ``rasterio`` is silent below CRITICAL unless
    ``-v`` asks for more.
    """
    if debug:
        return {**dict.fromkeys(ISAMAP_LOGGERS, logging.DEBUG), "rasterio": logging.DEBUG,
                "": logging.DEBUG}
    own = logging.WARNING if quiet else (logging.INFO, DETAIL, logging.DEBUG)[min(verbose, 2)]
    return {**dict.fromkeys(ISAMAP_LOGGERS, own),
            "rasterio": logging.WARNING if verbose else logging.CRITICAL,
            "": logging.WARNING}


def configure_logging(verbose: int = 0, quiet: bool = False, debug: bool = False) -> int:
    """Send log records to stderr at the levels :func:`log_levels` gives; returns isamap's."""
    levels = log_levels(verbose, quiet, debug)
    level = levels[ISAMAP_LOGGERS[0]]
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_isamap", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._isamap = True  # type: ignore[attr-defined]
    handler.setFormatter(_Formatter(_DEBUG_FORMAT if level == logging.DEBUG else _FORMAT))
    root.addHandler(handler)
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)
    warnings.showwarning = _log_warning
    return level


class _Formatter(logging.Formatter):
    """Plain messages; warnings start with ``warning:`` so they stand out from progress."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno == logging.WARNING and self._fmt == _FORMAT:
            return "warning: " + text
        return text


def _log_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
    """``warnings.warn`` from library code as one logged line (no source echo)."""
    logging.getLogger("py.warnings").warning("%s", message)


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


def _os_error_message(exc: OSError) -> str:
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
            return _os_error_message(item)
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


def check_output_folder(flag: str, path: str | os.PathLike[str] | None) -> None:
    """Refuse (ConfigError, exit 2) a folder flag that names a file; then check it is writable.

    :func:`check_writable` accepts a file (a prediction prefix may name one), so a folder flag
    given an existing file, or a path under one, passed it and failed only at the first write,
    after the model had run, with Python's bare "File exists". ``gs://`` paths and None pass.

    Args:
        flag: the flag as the user types it (``--out``), named in the message.
        path: the folder the command will create or fill.
    """
    if path is None or str(path).startswith("gs://"):
        return
    existing = _nearest_existing(path)
    if existing.exists() and not existing.is_dir():
        where = ("is a file" if existing == Path(path).absolute() else
                 f"lies under {existing}, which is a file")
        raise ConfigError(f"{flag} {path} {where}, not a folder; give a folder (it is created "
                          "if missing)")
    check_writable(path)


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


Number = TypeVar("Number", int, float)


def check_range(flag: str, value: Number | None, low: Number | None = None,
                high: Number | None = None, hint: str = "") -> Number | None:
    """``value`` if ``low <= value <= high`` (None passes), else a one-line ConfigError.

    The one bound check of numeric flags, so ``--dry-run`` refuses what the real run refuses.
    """
    if value is None:
        return None
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            bounds = f"between {low} and {high}"
        elif low is not None:
            bounds = f">= {low}"
        else:
            bounds = f"<= {high}"
        raise ConfigError(f"{flag} must be {bounds}, got {value}" + (f"; {hint}" if hint else ""))
    return value


_NEGATIVE_VALUE = re.compile(r"^-\d|^-\.\d")


def attach_values(argv: Sequence[str] | None, options: Iterable[str]) -> list[str]:
    """``--bbox -7.45,52.63,...`` -> ``--bbox=-7.45,52.63,...`` for the given options.

    argparse takes a token that starts with ``-`` for an option unless it is a plain negative
    number, so a west or south bounding box (a comma-separated list starting with a minus)
    needs ``--bbox=``; attaching the value first lets users type the plain form.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    names = set(options)
    out: list[str] = []
    i = 0
    while i < len(args):
        if args[i] in names and i + 1 < len(args) and _NEGATIVE_VALUE.match(args[i + 1]):
            out.append(f"{args[i]}={args[i + 1]}")
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out


def run_command(prog: str, action: Callable[[], int | None], *, debug: bool = False,
                writes_to: Sequence[str | None] = (),
                checks: Sequence[Callable[[], object]] = ()) -> int:
    """Run a command's work and turn how it ended into an exit status.

    Args:
        prog: the command's name, the first word of every error line.
        action: the work; returns an exit status (None means 0).
        debug: let exceptions propagate with their traceback instead of one line.
        writes_to: the command's output paths, so a bare write error there is recognised
            as the full disk it is (see :func:`environment_message`).
        checks: settings to check before any work (each raises an :class:`IsamapError` for a
            bad one), such as the engine's environment variables for commands that run a model.
    """
    outputs = [str(p) for p in writes_to if p]
    log = logging.getLogger(prog)
    try:
        with stop_signals():
            for check in checks:  # a bad setting is refused before any work
                check()
            status = action()
        return EXIT_OK if status is None else int(status)
    except BrokenPipeError:  # the reader of stdout went away (``| head``): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt as exc:
        if debug:
            raise
        if getattr(exc, "signum", signal.SIGINT) == signal.SIGTERM:
            log.error("%s: terminated (SIGTERM); what was finished is kept: run the same "
                      "command again to resume where it stopped", prog)
            return EXIT_TERMINATED
        log.error("%s: interrupted; run the same command again to resume where it stopped",
                  prog)
        return EXIT_INTERRUPTED
    except IsamapError as exc:
        if debug:
            raise
        log.error("%s: error: %s", prog, exc)
        return exc.exit_code
    except OSError as exc:
        if debug:
            raise
        log.error("%s: error: %s", prog,
                  environment_message(exc, outputs) or _os_error_message(exc))
        return EXIT_ENVIRONMENT
    except MemoryError:
        if debug:
            raise
        log.error("%s: error: out of memory; lower the batch or tile size (--batch-size, "
                  "--tile) where the command has them, or use a machine with more memory", prog)
        return EXIT_ENVIRONMENT
    except Exception as exc:  # a library's wrapper around a disk/permission failure
        message = None if debug else environment_message(exc, outputs)
        if message is None:
            raise
        log.error("%s: error: %s", prog, message)
        return EXIT_ENVIRONMENT
