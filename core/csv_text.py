"""CSV text: the one writer of the CSV files isamap writes, safe to open in a spreadsheet.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to
Excel, LibreOffice and Google Sheets: a zone named ``=HYPERLINK("http://x", "click")`` or
``+cmd|' /C calc'!A0`` would run when an area table is opened. As OWASP recommends for CSV
injection, such a text cell is written with a leading single quote, which the spreadsheet
shows as text and hides; numbers (a negative area, a longitude) are written as they are,
whether they come as numbers or as text formatted from one (``f"{lon:.7f}"``: ``-8.1192824``),
which a spreadsheet reads as the number it is and a reader's ``float`` parses.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: the first characters that make a spreadsheet read a cell as a formula
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: a number written as text (``-8.1192824``, ``+3``, ``-1.5e-06``): no formula, left as it is
PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def spreadsheet_safe(value: Any) -> Any:
    """``value``, or a text starting like a formula with a single quote before it.

    A text that is a plain decimal number (``-8.1192824``) is a number, not a formula: it is
    written as it is, so a negative coordinate formatted to a fixed precision reads back.
    """
    if isinstance(value, str) and value.startswith(FORMULA_START) \
            and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def unquoted(text: str) -> str:
    """``text`` without the single quote :func:`spreadsheet_safe` put before a number.

    isamap before 0.1.0 wrote a negative coordinate as ``'-8.1192824`` (and a spreadsheet
    may keep such a quote when it saves): a reader takes it back as the number it is.
    """
    text = text.strip()
    if text.startswith("'") and PLAIN_NUMBER.fullmatch(text[1:]):
        return text[1:]
    return text


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
