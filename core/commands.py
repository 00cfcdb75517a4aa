"""How every isamap command starts and ends: logging flags, one-line errors, exit codes.

Each console script builds its parser, adds :func:`add_logging_arguments`, and hands its work
to :func:`run_command`, so all of them behave alike: progress goes through ``logging``
(``-v`` for timings, ``-vv`` for isamap's debug messages, ``-q`` for warnings only;
:func:`log_levels`) while the command's result (a table, a summary, the outputs' paths) is
printed on stdout at every level, an error the user can act on is one line on stderr with exit
status 2 (bad input) or 1 (environment: disk, permissions, network, a remote service),
Ctrl-C says how to resume and exits 130 (SIGTERM: 143; a second signal during the wind-down
is ignored, see :func:`stop_signals`; :func:`stops_deferred` holds a stop back while a
step that is done whole or not at all ends), and a traceback appears only with ``--debug``.

Environment failures often reach the command wrapped by a library (GDAL's ``CPLE_*`` errors,
torch's writer, a thread pool) with the ``OSError`` as their cause or only its text in their
message, so :func:`environment_message` looks through the cause chain and the messages before
a failure is treated as a bug. Python warnings (``warnings.warn`` in library code) are routed
through logging as one ``warning:`` line instead of Python's two-line source echo.

A command that writes a folder claims it with :func:`claim_output_folder`: the folder is checked
and its lock (:func:`core.lock.hold_output`) held until :func:`run_command` returns, so a second
run into it is refused in one line naming the holder and a finished folder never mixes two runs.

Two argument helpers live here because every command needs them alike:
:func:`attach_values` lets ``--bbox -7.45,52.63,-7.43,52.65`` through argparse (which would
take the value for an option), and :func:`check_range` is the one bound check of numeric flags,
used by a dry run and a real run alike.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TextIO, TypeVar

from core.environment import (
    check_output_folder,
    check_writable,
    environment_message,
    os_error_message,
)
from core.errors import IsamapError, OptionError
from core.lock import hold_output
from core.storage import files

__all__ = ["DETAIL", "EXIT_BAD_INPUT", "EXIT_ENVIRONMENT", "EXIT_INTERRUPTED", "EXIT_OK",
           "EXIT_TERMINATED", "ISAMAP_LOGGERS", "Stopped",
           "add_logging_arguments", "attach_values", "check_output_folder",
           "check_range", "check_writable", "claim_output_folder", "configure_logging",
           "environment_message", "log_levels", "run_command", "stop_signals",
           "stops_deferred"]

EXIT_OK = 0
EXIT_ENVIRONMENT = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
#: exit status of a command stopped by SIGTERM (128 + 15, what a shell reports for it)
EXIT_TERMINATED = 143
#: how long another local rank under torchrun, refused on bad input, waits for the launcher to
#: stop it: local rank 0 refuses the same input and says so, and the launcher stops the other
#: ranks as soon as one has failed, so the first to fail must be the one that says it
OTHER_RANK_WAIT_S = 60.0


class Stopped(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM reached a command: it unwinds, its clean-ups run, it exits.

    A ``KeyboardInterrupt``, so code that already cleans up on Ctrl-C does so on SIGTERM too.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Stops:
    """What a running command's signal handler knows: the stop it raised, one held back."""

    def __init__(self) -> None:
        self.raised: Stopped | None = None
        self.held: int | None = None  # a signal that came inside stops_deferred
        self.deferred = 0  # how many stops_deferred blocks are open


#: the signal state of each running command, innermost last
_stops: list[_Stops] = []


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Stopped` in the main thread, and the stop is never lost.

    The first signal starts the command's wind-down; while it unwinds, later signals are
    ignored, so a second Ctrl-C cannot cut a clean-up short. A stop that the work swallowed
    (C code that clears the error its signal check got: numpy's string scalars did, and the
    command ran on to exit 0) still stands: the next signal raises it again, and a block that
    ends normally after a stop raises it at its end. Inside :func:`stops_deferred` a signal
    is held and raised when that block ends. After a stop both signals stay ignored (one that
    lands while the interpreter shuts down cannot turn the exit status into a death by
    signal); without one the previous handlers are put back (a command run inside another
    program leaves it as it was). Outside the main thread (where Python cannot set handlers)
    nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    state = _Stops()

    def handler(signum: int, frame: object) -> None:
        if state.deferred:
            state.held = state.held or signum
            return
        if state.raised is not None and state.raised.__traceback__ is not None:
            return  # the stop is unwinding (a clean-up caught it): let it run to its end
        state.raised = Stopped(signum)  # the first, or one that the work swallowed
        raise state.raised

    for s in previous:
        signal.signal(s, handler)
    _stops.append(state)
    try:
        yield
        if state.raised is not None:  # raised in the work, swallowed there: it stands
            raise Stopped(state.raised.signum)
    finally:
        _stops.remove(state)
        stopped = state.raised is not None or state.held is not None
        for s, h in previous.items():
            signal.signal(s, signal.SIG_IGN if stopped else
                          h if h is not None else signal.SIG_DFL)


@contextlib.contextmanager
def stops_deferred() -> Iterator[None]:
    """A block that SIGINT and SIGTERM do not cut: a stop that comes in it is raised at its end.

    For a step done whole or not at all, such as a set of files written together: prepare
    the files before it, so the stop waits only for the writing. Outside a command's
    :func:`stop_signals` (or its main thread) it changes nothing.
    """
    state = _stops[-1] if _stops and threading.current_thread() is threading.main_thread() \
        else None
    if state is None:
        yield
        return
    state.deferred += 1
    try:
        yield
    finally:
        state.deferred -= 1
    if not state.deferred and state.held is not None and state.raised is None:
        state.raised = Stopped(state.held)
        raise state.raised


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
                       help="log only warnings and errors, and no progress bars; the "
                            "command's result (its table, summary, output paths) is still "
                            "printed")
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


Number = TypeVar("Number", int, float)


def check_range(flag: str, value: Number | None, low: Number | None = None,
                high: Number | None = None, hint: str = "") -> Number | None:
    """``value`` if ``low <= value <= high`` (None passes), else a one-line OptionError.

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
        raise OptionError(flag.removeprefix("--").replace("-", "_"),
                          f"must be {bounds}, got {value}" + (f"; {hint}" if hint else ""), flag)
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


def _interrupted(log: logging.Logger, prog: str, exc: BaseException) -> int:
    """Say how to resume a stopped command; its exit status (130, 143 for SIGTERM)."""
    if getattr(exc, "signum", signal.SIGINT) == signal.SIGTERM:
        log.error("%s: terminated (SIGTERM); what was finished is kept: run the same "
                  "command again to resume where it stopped", prog)
        return EXIT_TERMINATED
    log.error("%s: interrupted; run the same command again to resume where it stopped", prog)
    return EXIT_INTERRUPTED


def _stop_within(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM ``exc`` was raised while handling, if any.

    torch.save's writer raises a RuntimeError of its own when the stop reaches it mid-file.
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


#: the output folders each running command holds, innermost command last
#: (:func:`claim_output_folder` adds to the last; :func:`run_command` releases them at its end)
_claimed: list[contextlib.ExitStack] = []


def claim_output_folder(flag: str, path: str | os.PathLike[str] | None, *,
                        remote: bool = False) -> None:
    """Check an output folder and hold its lock until the command ends: one run per folder.

    The folder is checked as :func:`check_output_folder` does, then locked
    (:func:`core.lock.hold_output`) until :func:`run_command` returns, so a second run into it
    is refused in one line naming the holder (exit 1) before it writes anything, and a
    finished folder never holds files of two runs. A run refused after the claim removes the
    folder it created (:func:`core.storage.files.unmade_if_refused`). None passes.

    Args:
        flag: the flag as the user types it (``--out``), named in messages.
        path: the folder the command creates or fills.
        remote: the command writes ``gs://`` folders too (locked by a lock object there).

    Raises:
        OutputLockedError: another live run holds the folder.
        RuntimeError: called outside :func:`run_command`, where nothing would release the lock.
    """
    check_output_folder(flag, path, remote=remote)
    if path is None:
        return
    if not _claimed:
        raise RuntimeError("claim_output_folder is called in a command's work (run_command)")
    _claimed[-1].enter_context(files.unmade_if_refused(path))
    _claimed[-1].enter_context(hold_output(path))


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
        with stop_signals(), contextlib.ExitStack() as claimed:
            _claimed.append(claimed)
            try:
                for check in checks:  # a bad setting is refused before any work
                    check()
                status = action()
            finally:
                _claimed.pop()
        return EXIT_OK if status is None else int(status)
    except BrokenPipeError:  # the reader of stdout went away (``| head``): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt as exc:
        if debug:
            raise
        return _interrupted(log, prog, exc)
    except IsamapError as exc:
        if debug:
            raise
        return _error(log, prog, str(exc), exc.exit_code)
    except OSError as exc:
        if debug:
            raise
        return _error(log, prog, environment_message(exc, outputs) or os_error_message(exc),
                      EXIT_ENVIRONMENT)
    except MemoryError:
        if debug:
            raise
        return _error(log, prog, "out of memory; lower the batch or tile size (--batch-size, "
                      "--tile) where the command has them, or use a machine with more memory",
                      EXIT_ENVIRONMENT)
    except Exception as exc:  # a library's wrapper around a disk/permission failure
        stopped = _stop_within(exc)
        if stopped is not None and not debug:  # a library replaced the stop with its own error
            return _interrupted(log, prog, stopped)
        message = None if debug else environment_message(exc, outputs)
        if message is None:
            raise
        return _error(log, prog, message, EXIT_ENVIRONMENT)


def _error(log: logging.Logger, prog: str, message: str, status: int) -> int:
    """Say what ended the command in one line; its exit ``status``.

    Under ``torchrun`` every rank runs the same command: bad input (status 2) is refused alike
    by each, so one line per machine says it (local rank 0's; the launcher sets
    ``TORCHELASTIC_RUN_ID``, ``LOCAL_RANK`` alone is no launcher); an environment failure may be
    one rank's own, so each says its own. Every rank also writes its line to the error file
    torch's launcher gives it (``TORCHELASTIC_ERROR_FILE``), so that the launcher's report of
    failed ranks shows the line instead of a link to torch's documentation. The launcher
    itself ends with its own traceback and exit status 1 whenever a rank fails
    (``torch.distributed.launcher.api.launch_agent`` raises ``ChildFailedError``): no rank can
    change that (docs/training.md). The launcher stops the other ranks within 0.1 s of the first
    failure, so a quiet rank refused on bad input waits (:data:`OTHER_RANK_WAIT_S` at most) to
    be stopped instead of exiting first: were it first, local rank 0 could be stopped before
    its line.
    """
    line = f"{prog}: error: {message}"
    other_rank = bool(os.environ.get("TORCHELASTIC_RUN_ID")) and \
        os.environ.get("LOCAL_RANK", "0") != "0"
    if status != EXIT_BAD_INPUT or not other_rank:
        log.error("%s", line)
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file:  # the format torch's own ErrorHandler.record_exception writes
        record = {"message": line, "extraInfo": {"py_callstack": line,
                                                 "timestamp": str(int(time.time()))}}
        with contextlib.suppress(OSError), open(error_file, "w", encoding="utf-8") as handle:
            json.dump({"message": record}, handle)
    if status == EXIT_BAD_INPUT and other_rank:
        time.sleep(OTHER_RANK_WAIT_S)  # the launcher's SIGTERM ends this sooner
    return status
