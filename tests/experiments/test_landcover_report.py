"""The land-cover experiment's figures: mean ± std over seeds, and the tables as printed."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.landcover_report import (
    NO_SPREAD_NOTE,
    metric_summary,
    point_headline,
    point_summary,
    report_table,
)
from gee_export.contract.label_schemes import LANDCOVER_CLASSES
from training.area_estimation import stratified_estimates


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
    assert "| NLCD (the product) | 90.0 (n.i.) |" in table  # one seed: no spread, not ± 0.0
    assert "± 0.0 " not in table and table.endswith(NO_SPREAD_NOTE)
    assert table.index("NLCD (the product)") < table.index("| hrnet IN |")
    assert "seed 0, hrnet IN + filter: 1 of 9 chips dropped" in table


def _estimate(wrong: int):
    """Two strata of 50 points; ``wrong`` woodland points are grassland in the reference."""
    stratum = np.repeat([1, 2], 50)
    reference = stratum.copy()
    reference[:wrong] = 2
    return stratified_estimates(stratum, [0, 300, 100, 0, 0, 0, 0], stratum, reference,
                                LANDCOVER_CLASSES)


def test_point_figures_are_means_over_seeds_with_their_half_widths_in_the_table():
    seeds = [_estimate(5), _estimate(10)]
    s = point_summary(seeds, ["woodland", "grassland"])
    assert s["n"] == 100
    assert s["OA"]["mean"] == pytest.approx(np.mean([e.oa for e in seeds]))
    assert s["OA"]["mean"] == pytest.approx(np.mean([1 - 0.75 * 0.1, 1 - 0.75 * 0.2]))
    assert s["OA_ci95"]["mean"] == pytest.approx(np.mean([e.oa_ci for e in seeds]))
    assert s["F1_ci95"]["grassland"]["per_seed"] == pytest.approx([e.f1_ci[2] for e in seeds])
    product = point_summary([_estimate(0)], ["woodland", "grassland"])
    points = {"design": {"strata": "NLCD", "n": 100, "minimum_per_stratum": 50, "seed": 0},
              "products": {"NLCD": product}, "arms": {"hrnet IN": s}}
    head = point_headline(points, "hrnet IN", "NLCD")
    assert head["oa_product"] == 1.0 and head["oa_product_ci95"] == 0.0
    assert head["oa_model_ci95"] == s["OA_ci95"]["mean"] and head["n"] == 100
    assert set(head["f1_model_ci95"]) == {"woodland", "grassland"}
    summary = metric_summary([_matrix(90, 20)], ["woodland", "grassland"])
    report = {"settings": {"nlcd": {
        "classes_present": ["woodland", "grassland"],
        "test_pixels": {"woodland": 110, "grassland": 90},
        "products": {"NLCD": summary}, "arms": {"hrnet IN": summary}, "points": points,
        "filter": {}}}}
    table = report_table(report)
    assert "100 points, stratified by the classes of NLCD (at least 50 per stratum" in table
    assert ("| map | OA pixels ± std | OA points ± CI | F1 woodland points ± CI "
            "| F1 grassland points ± CI |") in table
    assert "| NLCD (the product) | 90.0 (n.i.) | 100.0 (n.i.) |" in table
    oa, ci = 100 * s["OA"]["mean"], 100 * s["OA_ci95"]["mean"]
    assert f"| hrnet IN | 90.0 (n.i.) | {oa:.1f} ± {ci:.1f} |" in table
    assert table.count(NO_SPREAD_NOTE) == 1
