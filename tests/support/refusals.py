"""What a one-line refusal must be: exit 2, one line, no traceback, options the command has."""

from __future__ import annotations

import argparse
import re
from typing import Any

import pytest

#: options of other tools a refusal may quote in a command to run (rio edit-info ...)
OTHER_TOOLS = frozenset({"--nodata", "--bidx", "--description", "--tag", "--crs"})
_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def named_options(line: str) -> set[str]:
    """The command-line options a message names (other tools' options left out)."""
    return set(_OPTION.findall(line)) - OTHER_TOOLS


def assert_refused(status: int, err: str, parser: argparse.ArgumentParser,
                   *words: str) -> str:
    """``err`` is one line without a traceback, holding ``words``, whose options exist."""
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and "Traceback" not in lines[0], (status, lines)
    for word in words:
        assert word in lines[0], lines[0]
    known = {o for action in parser._actions for o in action.option_strings}
    missing = named_options(lines[0]) - known
    assert not missing, f"{parser.prog} has no {sorted(missing)}, which the refusal names"
    return lines[0]


def case(name: str, argv: str, says: str, *marks: Any) -> Any:
    """A row of a command's ``test_refusals`` table: its words and what the refusal says,
    shown as ``name``; ``marks`` (``pytest.mark.slow``: a row of the slow tier)."""
    return pytest.param(argv, says, id=name, marks=marks)
