"""The land-cover experiment's figures: mean ± std over seeds, and the tables as printed."""

from __future__ import annotations

import numpy as np
import pytest

from contract.label_schemes import LANDCOVER_CLASSES
from experiments.landcover_report import (
    BRIGHTNESS,
    NO_SPREAD_NOTE,
    brightness_ranking,
    impervious_ranking,
    metric_summary,
    point_headline,
    point_summary,
    ranking_table,
    report_table,
    seed_stats,
)
from experiments.scoring import roc_auc
from inference.assess.estimators import stratified_estimates


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


def test_impervious_ranking_scores_all_pixels_and_the_developed_cells_apart():
    imp = LANDCOVER_CLASSES.index("impervious")
    truth = np.array([imp, imp, 1, 1, imp, 1, 1, 1])
    developed = np.array([True, True, True, True, False, False, False, False])
    # right order inside the developed cells, the wrong one outside them
    score = np.array([0.9, 0.8, 0.1, 0.2, 0.0, 0.5, 0.6, 0.7])
    r = impervious_ranking(score, truth, developed)
    assert r["auc_developed"] == 1.0
    assert r["auc"] == pytest.approx(roc_auc(score, (truth == imp).astype(int)))
    assert r["auc"] < 1.0
    assert impervious_ranking(score, truth, None)["auc_developed"] is None


def test_the_ranking_table_puts_brightness_before_the_arms_with_their_spread():
    ranking = {"brightness": {"auc": 0.966, "auc_developed": 0.892},
               "arms": {"hrnet IN": {"auc": seed_stats([0.70, 0.72]),
                                     "auc_developed": seed_stats([0.26, 0.28])},
                        "hrnet BN": {"auc": seed_stats([0.9]),
                                     "auc_developed": seed_stats([None])}}}
    lines = ranking_table(ranking)
    rows = [line for line in lines if line.startswith("| ")]
    assert rows[0] == "| score | AUC, all pixels | AUC, developed cells |"
    assert rows[1] == f"| {BRIGHTNESS} | 96.6 (n.i.) | 89.2 (n.i.) |"
    assert rows[2] == "| hrnet IN: impervious probability | 71.0 ± 1.4 | 27.0 ± 1.4 |"
    assert rows[3] == "| hrnet BN: impervious probability | 90.0 (n.i.) | n/a |"
    assert not any("best on these pixels" in line for line in lines)  # not computed: no line
    ranking["brightness"].update(best_f1=0.3312, precision_at_best=0.4349, best_threshold=0.7)
    assert lines[-1] != (last := ranking_table(ranking)[-1])
    assert "F1 33.1 %, precision 43.5 %" in last


def test_brightness_ranking_cuts_at_its_best_f1_on_the_scored_pixels():
    imp = LANDCOVER_CLASSES.index("impervious")
    image = np.zeros((4, 2, 4), np.float32)
    image[:3] = np.array([[0.9, 0.8, 0.7, 0.1], [0.6, 0.2, 0.3, 0.4]])  # the same in R, G, B
    truth = np.array([[imp, 1, imp, 1], [1, 1, 1, 1]], np.uint8)

    class Held:  # the scene's fields brightness_ranking reads
        scored = np.ones((2, 4), bool)
        developed = None

    Held.image, Held.truth = image, truth
    r = brightness_ranking([Held()])
    # best cut 0.7: three pixels called impervious, two of them are: F1 2*2 / (3 + 2)
    assert r["best_threshold"] == pytest.approx(0.7)
    assert r["best_f1"] == pytest.approx(0.8) and r["precision_at_best"] == pytest.approx(2 / 3)
    assert r["auc"] == pytest.approx(roc_auc(image[0].ravel(), (truth == imp).ravel()))
    assert r["auc_developed"] is None
