"""The land-cover experiment's figures: mean ± std over seeds, and the tables as printed."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.landcover_report import metric_summary, report_table


def _matrix(correct: int, wrong: int) -> np.ndarray:
    m = np.zeros((7, 7), np.int64)
    m[0, 0], m[1, 1], m[0, 1] = correct, correct, wrong
    return m


def test_summary_is_mean_and_sample_std_over_seeds():
    s = metric_summary([_matrix(90, 20), _matrix(80, 40)], ["woodland", "grassland"])
    oa = [180 / 200, 160 / 200]
    assert s["OA"]["mean"] == pytest.approx(np.mean(oa))
    assert s["OA"]["std"] == pytest.approx(np.std(oa, ddof=1))
    assert s["OA"]["per_seed"] == pytest.approx(oa)
    assert set(s["F1"]) == {"woodland", "grassland"}


def test_the_table_lists_products_then_arms_with_every_present_class():
    summary = metric_summary([_matrix(90, 20)], ["woodland", "grassland"])
    report = {"settings": {"nlcd": {
        "classes_present": ["woodland", "grassland"],
        "test_pixels": {"woodland": 110, "grassland": 90},
        "products": {"NLCD": summary}, "arms": {"hrnet IN": summary},
        "filter": {"0": {"hrnet IN + filter": {"dropped_chips": 1, "scored_chips": 9}}}}}}
    table = report_table(report)
    assert "**nlcd** (held-out pixels: woodland 110, grassland 90)" in table
    assert "| map | OA | F1 woodland | F1 grassland |" in table
    assert "| NLCD (the product) | 90.0 ± 0.0 |" in table
    assert table.index("NLCD (the product)") < table.index("| hrnet IN |")
    assert "seed 0, hrnet IN + filter: 1 of 9 chips dropped" in table
