"""Months ``YYYY-MM``: the one parser of a month and of a month list, for every command."""

from __future__ import annotations

import ast

import pytest

from core.errors import ConfigError
from core.months import check_month, month_dates, month_range, parse_months
from tests.support.sources import project_sources, where


def test_a_month_is_yyyy_mm():
    assert check_month("2019-06") == "2019-06"
    for bad in ("2019-6", "June", "2019-13", "2019-06-01", 201906):
        with pytest.raises(ConfigError, match="is not YYYY-MM"):
            check_month(bad)
    assert [d.isoformat() for d in month_dates("2019-12")] == ["2019-12-01", "2020-01-01"]


def test_a_month_as_an_rfc3339_time_range():
    assert month_range("2023-12") == ("2023-12-01T00:00:00Z", "2024-01-01T00:00:00Z")
    with pytest.raises(ConfigError, match="YYYY-MM"):
        month_range("June")


def test_a_month_list_keeps_the_given_order_and_a_repeated_month_once():
    assert parse_months(" 2019-07,2019-06 ,2019-07,") == ("2019-07", "2019-06")
    with pytest.raises(ConfigError, match="no month"):
        parse_months(" , ")
    with pytest.raises(ConfigError, match="is not YYYY-MM"):
        parse_months("2019-06,2019-6")


def test_month_lists_are_split_only_here():
    """A function that splits on commas and checks months is a second month-list parser."""
    parsers = []
    for rel, text in project_sources():
        if rel == "core/months.py" or "check_month" not in text:
            continue
        for func in ast.walk(ast.parse(text)):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            calls = [n for n in ast.walk(func) if isinstance(n, ast.Call)]
            checks = any(getattr(c.func, "id", getattr(c.func, "attr", None)) == "check_month"
                         for c in calls)
            splits = any(getattr(c.func, "attr", None) == "split" and c.args
                         and isinstance(c.args[0], ast.Constant) and c.args[0].value == ","
                         for c in calls)
            if checks and splits:
                parsers.append(f"{rel}:{func.lineno} {func.name}")
    assert parsers == [], "parse month lists with core.months.parse_months"


def test_month_functions_are_defined_only_here():
    """Months are a core concept: no layer above defines its own month helpers."""
    assert set(where(r"^def (check_month|month_dates|month_range|parse_months)\(")) == {
        "core/months.py"}
