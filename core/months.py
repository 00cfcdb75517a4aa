"""Calendar months written ``YYYY-MM``: the one month module of every command, backend and file.

A month names a composite period (the export, the local stack, patch folders, map assets), so
every place that accepts one must refuse the same things with the same message: ``2019-6``,
``June``, ``2019-13`` and ``2019-06-01`` are all refused here, before any work starts.
"""

from __future__ import annotations

import datetime as dt
import re

from core.errors import ConfigError

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def check_month(month: object) -> str:
    """Return ``month`` unchanged if it is ``YYYY-MM``; raise :class:`ConfigError` otherwise."""
    if not isinstance(month, str) or not _MONTH.match(month):
        raise ConfigError(f"month {month!r} is not YYYY-MM (for example 2019-06)")
    return month


def month_dates(month: str) -> tuple[dt.date, dt.date]:
    """First day of ``month`` and first day of the next month (an exclusive end)."""
    year, mon = (int(v) for v in check_month(month).split("-"))
    start = dt.date(year, mon, 1)
    return start, dt.date(year + mon // 12, mon % 12 + 1, 1)


def earlier_month(month: str, months_before: int) -> str:
    """The month ``months_before`` months before ``month`` (``2019-02``, 3 -> ``2018-11``)."""
    year, mon = (int(v) for v in check_month(month).split("-"))
    index = year * 12 + mon - 1 - months_before
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_range(month: str) -> tuple[str, str]:
    """RFC 3339 start (inclusive) and end (exclusive) of ``month``, UTC.

    The time range of a monthly map wherever it is described: an Earth Engine asset's
    ``startTime``/``endTime`` and a STAC Item's ``start_datetime``/``end_datetime`` agree.
    """
    start, stop = month_dates(month)
    return start.strftime("%Y-%m-%dT00:00:00Z"), stop.strftime("%Y-%m-%dT00:00:00Z")


def parse_months(text: str) -> tuple[str, ...]:
    """Comma-separated months (``2019-06,2019-07``), each checked, in the order given.

    The one month-list parser (``isamap-export --months``, ``isamap-map --months``). A month
    given twice is kept once: the list names a set of composites, and asking for one twice is
    a slip that should cost nothing, not a second export or map of the same month.

    Raises:
        ConfigError: an element is not ``YYYY-MM`` or the list is empty.
    """
    months: list[str] = []
    for part in str(text).split(","):
        part = part.strip()
        if part and check_month(part) not in months:
            months.append(part)
    if not months:
        raise ConfigError(f"no month in {text!r}; give YYYY-MM, e.g. 2019-06")
    return tuple(months)
