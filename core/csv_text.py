"""CSV text: the one writer of the CSV files isamap writes, safe to open in a spreadsheet.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to
Excel, LibreOffice and Google Sheets: a zone named ``=HYPERLINK("http://x", "click")`` or
``+cmd|' /C calc'!A0`` would run when an area table is opened. As OWASP recommends for CSV
injection, such a text cell is written with a leading single quote, which the spreadsheet
shows as text and hides; numbers (a negative area, a longitude) are written as they are.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: the first characters that make a spreadsheet read a cell as a formula
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """``value``, or a text starting like a formula with a single quote before it."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str],
             lineterminator: str = "\r\n") -> str:
    """``rows`` as CSV text with a header of ``columns`` (other keys left out), cells made safe.

    Args:
        rows: one mapping of column: value per line.
        columns: the header, in order.
        lineterminator: the line end: CR LF (the csv module's and RFC 4180's) or LF.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator=lineterminator,
                            extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: spreadsheet_safe(v) for k, v in row.items()} for row in rows)
    return buffer.getvalue()
