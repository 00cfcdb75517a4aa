"""The suite's tiers (setup.cfg): ``make test`` runs ``-m "not slow"``, every mechanism once;
``make test-all`` adds the ``slow`` tier. A pytest plugin, loaded by tests/conftest.py.

- The lab's tests (tests/experiments) are marked ``slow`` as they are collected, before ``-m``
  deselects: the library never imports the lab.
- An unmarked test whose call outlasts ``max_unmarked_seconds`` (ini, 10 by default; 0 turns
  the rule off) fails, naming its time and the two ways out.
"""

from __future__ import annotations

from pathlib import Path

import pytest

LAB_TESTS = Path(__file__).resolve().parent.parent / "experiments"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("max_unmarked_seconds", "an unmarked test whose call takes longer fails "
                  "(0: no limit)", default="10")


def pytest_itemcollected(item: pytest.Item) -> None:
    if LAB_TESTS in Path(str(item.path)).parents:
        item.add_marker(pytest.mark.slow)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    limit = float(item.config.getini("max_unmarked_seconds") or 0)
    if (report.when == "call" and report.passed and limit > 0 and report.duration > limit
            and item.get_closest_marker("slow") is None):
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} took {report.duration:.1f} s, over the default tier's "
                           f"{limit:g} s (setup.cfg max_unmarked_seconds): mark it "
                           "@pytest.mark.slow (make test-all runs it) or make it cheaper")
