"""Keeping the product's impervious class in a fine map: the green cut and the decision."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.landcover_keep import (
    IMPERVIOUS,
    green_cut,
    keep_check,
    keep_decision,
    keep_impervious,
    keep_unlearnt,
    ndvi,
)
from experiments.naip import NAIP_FOLDER
from gee_export.contract.label_schemes import LANDCOVER_CLASSES

WOOD = LANDCOVER_CLASSES.index("woodland")
GRASS = LANDCOVER_CLASSES.index("grassland")
WATER = LANDCOVER_CLASSES.index("water")


def _image(red, nir):
    red, nir = np.asarray(red, np.float32), np.asarray(nir, np.float32)
    return np.stack([red, red, red, nir])


def test_ndvi_is_the_normalised_difference_and_zero_without_signal():
    g = ndvi(_image([[0.2, 0.0, 0.5]], [[0.6, 0.0, 0.5]]))
    assert g == pytest.approx(np.array([[0.5, 0.0, 0.0]]))


def test_the_green_cut_is_half_way_between_the_medians_of_vegetation_and_impervious():
    greenness = [np.array([0.6, 0.4, 0.5, -0.1, 0.1, 0.9]), np.array([0.8, -0.3])]
    products = [np.array([WOOD, GRASS, WOOD, IMPERVIOUS, IMPERVIOUS, WATER]),
                np.array([WOOD, IMPERVIOUS])]
    # vegetation 0.6 0.4 0.5 0.8 (median 0.55), impervious -0.1 0.1 -0.3 (median -0.1);
    # water says nothing
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


def test_the_decision_uses_one_cut_for_every_scene_and_the_models_other_class():
    k = len(LANDCOVER_CLASSES)
    probs = np.zeros((k, 1, 4), np.float32)
    probs[IMPERVIOUS] = 0.6  # the model calls everything impervious
    probs[GRASS, 0, :2] = 0.3
    probs[WOOD, 0, 2:] = 0.3
    images = [_image([[0.1, 0.5, 0.1, 0.5]], [[0.9, 0.5, 0.9, 0.5]])]  # ndvi 0.8 0 0.8 0
    product = np.array([[WOOD, IMPERVIOUS, IMPERVIOUS, IMPERVIOUS]], np.uint8)
    out = keep_decision([probs], images, [product], range(len(LANDCOVER_CLASSES)))
    # cut (0.8 + 0) / 2: the green product-impervious pixel takes the model's next class,
    # the product's woodland pixel keeps the model's argmax
    assert out[0].tolist() == [[IMPERVIOUS, IMPERVIOUS, WOOD, IMPERVIOUS]]


def test_classes_the_model_never_learnt_come_from_the_product():
    classes = np.array([[WOOD, WOOD, GRASS, WOOD]], np.uint8)
    product = np.array([[WATER, WOOD, 255, GRASS]], np.uint8)
    out = keep_unlearnt(classes, product, {WOOD, GRASS})
    # water was never a training label: the product's; nodata is not a class
    assert out.tolist() == [[WATER, WOOD, GRASS, WOOD]]
    k = len(LANDCOVER_CLASSES)
    probs = np.zeros((k, 1, 3), np.float32)
    probs[WOOD] = 0.9
    images = [_image([[0.1, 0.1, 0.5]], [[0.9, 0.9, 0.5]])]  # green, green, not
    product = np.array([[WATER, GRASS, IMPERVIOUS]], np.uint8)
    # impervious unlearnt too: still decided by greenness; the cut is (0.8 + 0) / 2
    out = keep_decision([probs], images, [product], [WOOD, GRASS])
    assert out[0].tolist() == [[WATER, WOOD, IMPERVIOUS]]


def test_on_real_tiles_the_rule_beats_the_nlcd_defined_product_it_keeps(shared_data):
    check = keep_check(shared_data / NAIP_FOLDER)
    tiles = check["tiles"]
    assert len(tiles) == 5 and check["cell"] == 30
    developed = [t for t in tiles.values() if t["product_impervious_pixels"]]
    assert len(developed) == 4  # one tile is water with a few impervious pixels, no cell
    for t in developed:  # it drops lawns and trees from developed cells, not roofs or roads
        assert t["kept"]["precision"] > t["product"]["precision"]
        assert t["kept"]["f1"] > t["product"]["f1"]
        assert t["kept"]["recall"] >= 0.85 * t["product"]["recall"]
    assert check["pooled"]["kept"]["f1"] > check["pooled"]["product"]["f1"] + 0.1
