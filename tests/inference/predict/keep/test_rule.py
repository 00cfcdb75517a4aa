"""The keep rule: the product's impervious pixels unless green, and its unlearnt classes."""

from __future__ import annotations

import numpy as np
import pytest

from contract.label_schemes import LANDCOVER_CLASSES
from core.errors import ConfigError
from inference.predict.keep.rule import (
    IMPERVIOUS,
    check_model,
    decided,
    green_cut,
    keep_classes,
    keep_impervious,
    keep_probabilities,
    keep_unlearnt,
    ndvi,
    other_class,
    red_nir,
)

WOOD = LANDCOVER_CLASSES.index("woodland")
GRASS = LANDCOVER_CLASSES.index("grassland")
WATER = LANDCOVER_CLASSES.index("water")
K = len(LANDCOVER_CLASSES)


def test_ndvi_is_the_normalised_difference_and_zero_without_signal():
    g = ndvi(np.array([[0.2, 0.0, 0.5]]), np.array([[0.6, 0.0, 0.5]]))
    assert g == pytest.approx(np.array([[0.5, 0.0, 0.0]]))


def test_the_green_cut_is_half_way_between_the_medians_of_vegetation_and_impervious():
    greenness = [np.array([0.6, 0.4, 0.5, -0.1, 0.1, 0.9]), np.array([0.8, -0.3, np.nan])]
    products = [np.array([WOOD, GRASS, WOOD, IMPERVIOUS, IMPERVIOUS, WATER]),
                np.array([WOOD, IMPERVIOUS, IMPERVIOUS])]
    # vegetation 0.6 0.4 0.5 0.8 (median 0.55), impervious -0.1 0.1 -0.3 (median -0.1);
    # water says nothing, nodata (NaN) neither
    assert green_cut(greenness, products) == pytest.approx(0.225)
    assert green_cut([np.array([0.5])], [np.array([WOOD])]) is None  # nothing to keep
    assert green_cut([np.array([0.5])], [np.array([IMPERVIOUS])]) is None  # no green side


def test_only_the_products_impervious_pixels_are_decided_and_green_ones_leave():
    classes = np.array([[WOOD, WOOD, IMPERVIOUS, GRASS]], np.uint8)
    other = np.array([[GRASS, WOOD, WATER, GRASS]])
    product = np.array([[IMPERVIOUS, IMPERVIOUS, WOOD, WOOD]], np.uint8)
    greenness = np.array([[0.1, 0.5, 0.1, 0.9]])
    out = keep_impervious(classes, other, product, greenness, 0.3)
    # not green in the product's impervious: impervious; green there: the other class;
    # outside it the map is untouched, its own impervious pixel included
    assert out.tolist() == [[IMPERVIOUS, WOOD, IMPERVIOUS, GRASS]]
    assert (keep_impervious(classes, other, product, greenness, None) == classes).all()


def test_classes_the_model_never_learnt_come_from_the_product():
    classes = np.array([[WOOD, WOOD, GRASS, WOOD]], np.uint8)
    product = np.array([[WATER, WOOD, 255, GRASS]], np.uint8)
    out = keep_unlearnt(classes, product, {WOOD, GRASS})
    # water was never a training label: the product's; nodata is not a class
    assert out.tolist() == [[WATER, WOOD, GRASS, WOOD]]


def _probs() -> np.ndarray:
    """Four pixels: the model says impervious, then grassland, as its two best classes."""
    probs = np.full((K, 1, 4), 0.01, np.float32)
    probs[IMPERVIOUS] = 0.6
    probs[GRASS] = 0.3
    probs[IMPERVIOUS, 0, 3] = 0.1  # the last pixel: grassland first
    return probs


def test_the_decision_is_the_one_the_experiment_made_before_the_rule_moved():
    # the decision of experiments.landcover_keep.keep_decision before the move, written out:
    # argmax, the product's unlearnt classes, then impervious unless green (cut 0.4)
    probs = _probs()
    product = np.array([[IMPERVIOUS, IMPERVIOUS, WATER, WOOD]], np.uint8)
    greenness = np.array([[0.1, 0.8, 0.8, 0.8]])
    learnt = [c for c in range(K) if c != WATER]
    assert keep_classes(probs, product, greenness, 0.4, learnt).tolist() == [
        [IMPERVIOUS, GRASS, WATER, GRASS]]
    # a model file that does not say what it learnt: the impervious part only
    assert keep_classes(probs, product, greenness, 0.4, None).tolist() == [
        [IMPERVIOUS, GRASS, IMPERVIOUS, GRASS]]
    assert other_class(probs, IMPERVIOUS).tolist() == [[GRASS] * 4]


def test_the_probabilities_agree_with_the_class_map():
    probs, product = _probs(), np.array([[IMPERVIOUS, IMPERVIOUS, WATER, WOOD]], np.uint8)
    greenness, learnt = np.array([[0.1, 0.8, 0.8, 0.8]]), [c for c in range(K) if c != WATER]
    classes = keep_classes(probs, product, greenness, 0.4, learnt)
    out = keep_probabilities(probs.copy(), product, greenness, 0.4, learnt)
    assert (out.argmax(0) == classes).all()
    # decided: kept impervious (1), taken out (0), the product's water (0); the rest the model's
    assert out[IMPERVIOUS, 0].tolist() == pytest.approx([1.0, 0.0, 0.0, 0.1])
    assert out[:, 0, 3].tolist() == pytest.approx(_probs()[:, 0, 3].tolist())
    assert decided(product, 0.4, learnt).tolist() == [[True, True, True, False]]
    assert decided(product, None, None).tolist() == [[False] * 4]


def test_the_rule_needs_red_near_infrared_and_a_land_cover_impervious_class():
    assert red_nir(("B2", "B3", "B4", "B8")) == ("B4", "B8")
    assert red_nir(("R", "G", "B", "N")) == ("R", "N")
    with pytest.raises(ConfigError, match="near-infrared"):
        red_nir(("B2", "B3", "B4"))
    check_model("landcover", LANDCOVER_CLASSES, ("B4", "B8"))
    with pytest.raises(ConfigError, match="no land-cover model"):
        check_model("isa", ("pervious", "impervious"), ("B4", "B8"))
    with pytest.raises(ConfigError, match="no land-cover model"):
        check_model("landcover", ("woodland", "water"), ("B4", "B8"))


def test_with_a_window_the_other_pixels_take_the_products_shares():
    # one 2 x 4 window: the product's impervious pixels (decided as before), its water (never
    # learnt: the product's), and four woodland / grassland pixels where the product says
    # half of each: the model's grassland-most two become grassland, though it maps none
    probs = np.full((K, 2, 4), 0.01, np.float32)
    probs[WOOD] = [[0.5, 0.5, 0.9, 0.6], [0.7, 0.8, 0.5, 0.5]]
    probs[GRASS] = [[0.1, 0.1, 0.05, 0.35], [0.25, 0.1, 0.1, 0.1]]
    product = np.array([[IMPERVIOUS, WATER, WOOD, GRASS], [WOOD, GRASS, IMPERVIOUS, IMPERVIOUS]],
                       np.uint8)
    greenness = np.array([[0.1, 0.8, 0.8, 0.8], [0.8, 0.8, 0.9, 0.1]])
    learnt = [c for c in range(K) if c != WATER]
    plain = keep_classes(probs, product, greenness, 0.4, learnt)
    shared = keep_classes(probs, product, greenness, 0.4, learnt, window=4)
    free = ~decided(product, 0.4, learnt)
    assert (plain[free] == WOOD).all()
    assert shared[free].tolist() == [WOOD, GRASS, GRASS, WOOD]  # (0,2) (0,3) (1,0) (1,1)
    assert (shared[~free] == plain[~free]).all()  # the decided pixels: as without a window
    out = keep_probabilities(probs.copy(), product, greenness, 0.4, learnt, window=4)
    assert (out.argmax(0) == shared).all()
    # the product's share (one half) of what the model's impervious probability leaves
    assert out[GRASS][free].mean() == pytest.approx(0.5 * (1 - out[IMPERVIOUS][free].mean()),
                                                    abs=1e-3)


def test_the_rule_records_its_window_and_refuses_a_negative_one():
    from inference.predict.keep.rule import KeepRule

    assert "window" not in KeepRule("p.tif", "nlcd").describe()
    assert '"window": 64' in KeepRule("p.tif", "nlcd", window=64).describe()
    with pytest.raises(ConfigError, match="--keep-window"):
        KeepRule("p.tif", "nlcd", window=-1)


def test_with_a_window_impervious_ground_the_product_lacks_stays_the_models():
    # a forest square of the product with a new road the model sees: the shares give the
    # square's other pixels woodland, and the road, whose impervious probability is more than
    # the rest together, stays impervious
    probs = np.full((K, 4, 4), 0.01, np.float32)
    probs[GRASS] = 0.25
    probs[WOOD] = 0.1
    probs[IMPERVIOUS, 1] = 0.6
    product = np.full((4, 4), WOOD, np.uint8)
    classes = keep_classes(probs, product, np.full((4, 4), 0.8), 0.4, None, window=4)
    assert (classes[1] == IMPERVIOUS).all()
    assert (np.delete(classes, 1, axis=0) == WOOD).all()
