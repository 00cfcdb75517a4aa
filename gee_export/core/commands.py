"""How every isamap command starts and ends: logging flags, one-line errors, exit codes.

Each console script builds its parser, adds :func:`add_logging_arguments`, and hands its work
to :func:`run_command`, so all of them behave alike: progress and results go through
``logging`` (``-v`` for more, ``-q`` for warnings only), an error the user can act on is one
line on stderr with exit status 2 (bad input) or 1 (environment: disk, permissions, network,
a remote service), Ctrl-C says how to resume and exits 130, and a traceback appears only with
``--debug``.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Callable

from gee_export.core.errors import IsamapError

EXIT_OK = 0
EXIT_ENVIRONMENT = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

_FORMAT = "%(message)s"
_DEBUG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    """``-v/--verbose`` (repeatable), ``-q/--quiet`` and ``--debug`` with one meaning everywhere."""
    group = parser.add_argument_group("output")
    group.add_argument("-v", "--verbose", action="count", default=0,
                       help="more detail (-vv for debug messages)")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="only warnings and errors (also hides progress bars)")
    group.add_argument("--debug", action="store_true",
                       help="debug messages and a full traceback on errors")


def configure_logging(verbose: int = 0, quiet: bool = False, debug: bool = False) -> int:
    """Send isamap's log records to stderr at the level the flags ask for; returns the level."""
    if debug or verbose >= 2:
        level = logging.DEBUG
    elif quiet:
        level = logging.WARNING
    else:
        level = logging.INFO
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_isamap", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._isamap = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(_DEBUG_FORMAT if level == logging.DEBUG else _FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in ("gee_export", "training", "inference"):
        logging.getLogger(name).setLevel(level)
    return level


def _os_error_message(exc: OSError) -> str:
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    if exc.errno == errno.ENOSPC:
        return (f"no space left on the device{where}; free space or write to another folder, "
                "then run the same command again to resume")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (f"permission denied{where}; choose a folder you can write to or fix its "
                "permissions")
    if exc.errno == errno.EROFS:
        return f"the file system is read-only{where}; write to another folder"
    return f"{exc.strerror or exc}{where}"


def run_command(prog: str, action: Callable[[], int | None], *, debug: bool = False) -> int:
    """Run a command's work and turn how it ended into an exit status.

    Args:
        prog: the command's name, the first word of every error line.
        action: the work; returns an exit status (None means 0).
        debug: let exceptions propagate with their traceback instead of one line.
    """
    log = logging.getLogger(prog)
    try:
        status = action()
        return EXIT_OK if status is None else int(status)
    except KeyboardInterrupt:
        if debug:
            raise
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
        log.error("%s: error: %s", prog, _os_error_message(exc))
        return EXIT_ENVIRONMENT
    except MemoryError:
        if debug:
            raise
        log.error("%s: error: out of memory; use a smaller --batch-size/--tile or a machine "
                  "with more memory", prog)
        return EXIT_ENVIRONMENT
