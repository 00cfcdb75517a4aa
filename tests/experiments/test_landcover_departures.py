"""Where a map departs from its product, how often it is right there, and what the rule adds."""

from __future__ import annotations

import math

import numpy as np

from contract.label_schemes import LANDCOVER_CLASSES
from experiments.landcover_departures import (
    class_departure_table,
    departure_table,
    departures,
    rule_alone,
    summarise,
)

W, G, IMP = (LANDCOVER_CLASSES.index(c) for c in ("woodland", "grassland", "impervious"))


def _pixels():
    """Ten pixels: the product, the truth and a map that departs on four of them."""
    product = np.array([W, W, W, W, G, G, IMP, IMP, W, W])
    truth = np.array([W, W, G, G, G, W, IMP, G, IMP, IMP])
    mapped = np.array([W, W, G, W, G, W, IMP, G, IMP, W])
    return mapped, product, truth


def test_departures_count_what_the_map_changes_and_who_is_right():
    mapped, product, truth = _pixels()
    d = departures(mapped, product, truth)
    # departures at 2 (W->G, right), 5 (G->W, right), 7 (I->G, right), 8 (W->I, right)
    assert d["equal"] == 0.6 and d["right"] == 1.0 and d["product_right"] == 0.0
    assert d["rule_pixels"] == 1 and d["rule_right"] == 1.0  # inside the product's impervious
    assert d["network_pixels"] == 3 and d["network_right"] == 1.0
    assert d["classes"] == {c: {"pixels": 1 if c != "grassland" else 2, "right": 1.0,
                                "product_right": 0.0}
                            for c in ("woodland", "grassland", "impervious")}
    # one impervious pixel added outside the product's class, right; two impervious pixels
    # lie outside it (8, 9): recall beyond the product is one half
    assert d["added"] == 1 and d["added_precision"] == 1.0 and d["recall_beyond"] == 0.5
    assert d["missed_by_product"] == 2 and d["product_precision"] == 0.5


def test_a_map_equal_to_its_product_has_no_departures_to_score():
    _, product, truth = _pixels()
    d = departures(product, product, truth)
    assert d["equal"] == 1.0 and math.isnan(d["right"]) and d["added"] == 0
    assert math.isnan(d["added_precision"]) and d["recall_beyond"] == 0.0 and d["classes"] == {}


def test_seeds_are_summarised_and_tabled():
    mapped, product, truth = _pixels()
    runs = [departures(mapped, product, truth), departures(product, product, truth)]
    s = summarise(runs)
    assert s["equal"] == [0.8, round(float(np.std([0.6, 1.0], ddof=1)), 4)]
    assert s["right"] == [1.0, 0.0]  # the seed with no departure has no share
    assert s["classes"]["grassland"]["pixels"] == [1.0, round(float(np.std([2, 0], ddof=1)), 4)]
    table = departure_table({"m": s}, "NLCD")
    assert table[2].startswith("| map | equal to NLCD |") and table[-1].startswith("| m | 80.0 ± ")
    assert "| m | grassland | 1 | 100.0 | 0.0 |" in class_departure_table({"m": s}, "NLCD")


def test_the_rule_alone_keeps_the_products_impervious_pixels_that_are_not_green():
    _, product, truth = _pixels()
    green = np.zeros(10, bool)
    green[7] = True  # the product's impervious pixel that is grass at 1 m
    r = rule_alone(product, truth, green)
    assert r["product"] == {"pixels": 2, "precision": 0.5, "recall": 1 / 3, "f1": 0.4}
    assert r["rule"]["pixels"] == 1 and r["rule"]["precision"] == 1.0
    assert r["rule"]["f1"] == 0.5
