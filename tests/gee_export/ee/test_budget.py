"""``--max-eecu-hours``: one option, one budget, charged where the work is sent."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import ComputeBudgetError, ConfigError
from gee_export.ee.budget import ComputeBudget, compute_budget, format_budget, kept_in
from gee_export.ee.compute import estimate
from gee_export.ee.session import EESession, RetryPolicy


class Counting:
    """A transport that answers computePixels with zeros and counts what it was sent."""

    def __init__(self) -> None:
        self.sent = 0

    def compute_pixels(self, request):
        self.sent += 1
        dims = request["grid"]["dimensions"]
        return np.zeros((dims["height"], dims["width"]), [("B2", "<f4")])


def request() -> dict:
    return {"grid": {"dimensions": {"width": 4, "height": 4}}, "bandIds": ["B2"]}


def session(transport, budget) -> EESession:
    return EESession(transport=transport, sleep=lambda s: None, budget=budget,
                     retry=RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0))


def test_the_session_refuses_the_request_that_would_pass_the_bound_without_sending_it():
    transport = Counting()
    s = session(transport, ComputeBudget(3 * 2.0 / 3600.0, 2.0))  # three requests of 2 EECU-s
    for _ in range(3):
        s.compute_pixels(request())
    with pytest.raises(ComputeBudgetError, match="the next computePixels request would pass "
                                                 "it") as info:
        s.compute_pixels(request())
    assert transport.sent == 3 and info.value.exit_code == 1 and "\n" not in str(info.value)


def test_prepaid_requests_are_not_charged_twice():
    budget = ComputeBudget(10 * 1.0 / 3600.0, 1.0)
    s = session(Counting(), budget)
    assert budget.take(2)  # a patch of two planned requests, charged before it is asked for
    with budget.prepaid(2):
        s.compute_pixels(request())
        s.compute_pixels(request())
        s.compute_pixels(request())  # a halved window's extra request
    assert budget.spent_s == pytest.approx(3.0)
    s.compute_pixels(request())  # outside: charged
    assert budget.spent_s == pytest.approx(4.0)


def test_what_earlier_runs_spent_counts_when_the_output_keeps_no_other_record(tmp_path):
    ledger = tmp_path / "map" / "eecu.json"
    first = ComputeBudget(1.0, 10.0)
    with pytest.raises(ComputeBudgetError), kept_in(first, ledger):
        first.charge(30)
        raise first.stopped("a stop")  # recorded even when the run stops
    assert json.loads(ledger.read_text())["eecu_s"] == 300.0
    second = ComputeBudget(1.0, 10.0)
    with kept_in(second, ledger):
        assert second.spent_s == 300.0
        second.charge(1)
    assert json.loads(ledger.read_text())["eecu_s"] == 310.0
    with kept_in(None, tmp_path / "none.json"):
        pass
    assert not (tmp_path / "none.json").exists()


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\xff\xfe"])
def test_a_damaged_compute_record_is_refused_in_one_line_and_kept(tmp_path, text):
    """An Earth Engine map reads its eecu.json even without a bound: a damaged one was a
    traceback."""
    ledger = tmp_path / "eecu.json"
    ledger.write_text(text, encoding="latin-1")
    with pytest.raises(ConfigError, match=r"eecu\.json is not the compute record isamap "
                                          r"writes \(damaged or edited\): delete it"), \
            kept_in(ComputeBudget(1.0, 10.0), ledger):
        pass
    assert ledger.read_text(encoding="latin-1") == text  # a refused run overwrites nothing


def test_the_budget_is_built_and_printed_from_the_plans_estimate():
    est = estimate(1000, 1000 * 128 * 128)
    budget = compute_budget(0.01, est)
    assert budget is not None and budget.per_request == est.eecu_s_per_request
    assert "the plan's estimate, isamap's assumption" in budget.source
    assert compute_budget(None, est) is None
    (line,) = format_budget(0.01, est, "requests")
    assert "the run stops after about 311 of 1,000 requests" in line
    assert "the whole job fits (1,000 requests)" in format_budget(10.0, est, "requests")[0]
    assert format_budget(None, est, "requests") == []


def test_export_and_map_add_the_same_option():
    from cli.export import build_parser as export_parser
    from cli.map import build_parser as map_parser

    def option(parser):
        (action,) = [a for a in parser._actions if "--max-eecu-hours" in a.option_strings]
        return action.type, action.help

    assert option(export_parser()) == option(map_parser())
