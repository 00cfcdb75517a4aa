"""Progress bars that suit where they are read: a live bar on a terminal, log lines elsewhere.

Every isamap progress bar is made by :func:`progress_bar`. On a terminal (or in a notebook)
it is tqdm's own bar. When stderr is a file or a pipe (a batch job, ``2> run.log``, CI), a
redrawn bar would write a carriage-return frame per update into the log, so the bar becomes a line
logged at INFO every :data:`LOG_EVERY_S` seconds (``patches 2019-06: 40/68 [00:30<00:20,
1.3patch/s]``) and one last line when it closes; a bar that finishes sooner logs nothing.
The object is a ``tqdm`` either way, so callers use ``update``, ``set_postfix_str``,
``close``, iteration and ``with`` alike.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

from tqdm.std import tqdm as _std_tqdm

log = logging.getLogger(__name__)

#: seconds between two log lines of one bar when stderr is not a terminal
LOG_EVERY_S = 30.0


def live_terminal(stream: Any = None) -> bool:
    """Whether ``stream`` (default: stderr) redraws a bar: a terminal or a notebook's output."""
    stream = sys.stderr if stream is None else stream
    if type(stream).__module__.startswith("ipykernel"):
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class _Discard:
    """A file that drops what tqdm writes (the log lines are written by :class:`LoggedBar`)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return None


# tqdm ships no type information, so its class is Any to mypy: subclassing it is deliberate.
class LoggedBar(_std_tqdm):  # type: ignore[misc]
    """A tqdm whose display is a log line every ``every_s`` seconds instead of a redrawn bar."""

    def __init__(self, *args: Any, every_s: float = LOG_EVERY_S, **kwargs: Any) -> None:
        self._every_s = every_s
        self._last_line = time.monotonic()
        self._last_n: float = 0  # a line only when the count moved since the last one
        self._logged = False
        kwargs["file"] = _Discard()
        kwargs.setdefault("mininterval", min(every_s, 1.0))
        super().__init__(*args, **kwargs)

    def _line(self) -> str:
        line: str = self.format_meter(**{**self.format_dict, "ncols": 0})
        return line

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg is not None:  # tqdm clearing its line: nothing to log
            return True
        now = time.monotonic()
        if now - self._last_line >= self._every_s and self.n != self._last_n:
            self._last_line, self._last_n = now, self.n
            self._logged = True
            log.info("%s", self._line())
        return True

    def close(self) -> None:
        if not hasattr(self, "disable"):  # tqdm's __init__ stopped early (a Ctrl-C): nothing
            return  # was shown, and tqdm's own close would fail on the missing attribute
        if not self.disable and self._logged and self.n != self._last_n:  # else said already
            self._logged = False
            log.info("%s", self._line())
            self._last_line = time.monotonic()  # tqdm's own final display logs nothing more
        super().close()


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> _std_tqdm:
    """A tqdm bar (same arguments) that degrades to periodic log lines off a terminal."""
    if live_terminal(kwargs.get("file")):
        from tqdm.auto import tqdm

        return tqdm(iterable, **kwargs)
    kwargs.pop("file", None)
    return LoggedBar(iterable, **kwargs)
