"""One rule for "value ± spread": a zero spread is no interval, a tiny one is not zero."""

from __future__ import annotations

import pytest

from inference.assess.intervals import NO_INTERVAL, NO_INTERVAL_NOTE, estimate, half_width, notes


@pytest.mark.parametrize(("spread", "digits", "text"), [
    (0.0, 1, NO_INTERVAL), (0.0, 3, NO_INTERVAL),
    (0.04, 1, "± <0.1"), (0.0004, 3, "± <0.001"),
    (0.05, 1, "± 0.1"), (0.05, 2, "± 0.05"), (2.5, 3, "± 2.500"),
])
def test_half_width_never_prints_a_spread_as_zero(spread, digits, text):
    assert half_width(spread, digits) == text


def test_estimate_scales_both_and_says_n_a_for_no_value():
    assert estimate(0.9512, 0.0004, 1, scale=100) == "95.1 ± <0.1"
    assert estimate(1.0, 0.0, 1, scale=100) == "100.0 (n.i.)"
    assert estimate(2.0, None, 2) == "2.00" and estimate(None, 0.1) == "n/a"
    # a change report's loss no point was mapped or found in: NaN, not "nan ± nan"
    assert estimate(float("nan"), float("nan"), scale=100) == "n/a"
    assert estimate(0.5, float("nan"), 1) == "0.5"
    assert notes(["| a | 1.0 (n.i.) |"]) == ["", NO_INTERVAL_NOTE]
    assert notes(["| a | 1.0 ± 0.2 |"]) == [] and notes([NO_INTERVAL], "other") == ["", "other"]
