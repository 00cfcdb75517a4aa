"""The one CSV writer: formulas are quoted, numbers (as numbers or as text) are not."""

from __future__ import annotations

import csv
import io

from core.csv_text import csv_text, spreadsheet_safe


def test_numbers_formatted_as_text_are_written_as_they_are():
    """``f"{lon:.7f}"`` of a longitude west of Greenwich came out as ``'-46.6170990``."""
    for text in ("-8.1192824", "-46.6170990", "+3", "-0.5", "-.5", "-1.5e-06", "-12"):
        assert spreadsheet_safe(text) == text
    rows = [{"lon": "-46.6170990", "lat": f"{-23.5:.7f}", "area": -1.25, "name": "-2+3"}]
    back = next(csv.DictReader(io.StringIO(csv_text(rows, list(rows[0])))))
    assert float(back["lon"]) == -46.617099 and float(back["lat"]) == -23.5
    assert float(back["area"]) == -1.25 and back["name"] == "'-2+3"


def test_text_that_only_starts_like_a_number_is_still_a_formula():
    for text in ("-2+3", "-1e5+cmd|' /C calc'!A0", "-3 ", "- 3", "-1,5", "-", "+-1", "-٣",
                 "=1", "@SUM(A1)", "\t1", "\r1", "-inf", "-1\n=cmd"):
        assert spreadsheet_safe(text) == "'" + text, text
