"""The keep rule on the experiment's scenes.

The rule itself: tests/inference/predict/keep/test_rule.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from contract.label_schemes import LANDCOVER_CLASSES
from experiments.landcover_keep import IMPERVIOUS, keep_check, keep_decision, ndvi
from experiments.naip import NAIP_FOLDER

WOOD = LANDCOVER_CLASSES.index("woodland")
GRASS = LANDCOVER_CLASSES.index("grassland")
WATER = LANDCOVER_CLASSES.index("water")


def _image(red, nir):
    red, nir = np.asarray(red, np.float32), np.asarray(nir, np.float32)
    return np.stack([red, red, red, nir])


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


def test_classes_the_model_never_learnt_come_from_the_product_and_impervious_is_decided():
    k = len(LANDCOVER_CLASSES)
    probs = np.zeros((k, 1, 3), np.float32)
    probs[WOOD] = 0.9
    images = [_image([[0.1, 0.1, 0.5]], [[0.9, 0.9, 0.5]])]  # green, green, not
    product = np.array([[WATER, GRASS, IMPERVIOUS]], np.uint8)
    # impervious unlearnt too: still decided by greenness; the cut is (0.8 + 0) / 2
    out = keep_decision([probs], images, [product], [WOOD, GRASS])
    assert out[0].tolist() == [[WATER, WOOD, IMPERVIOUS]]


def test_ndvi_reads_naips_red_and_near_infrared():
    g = ndvi(_image([[0.2, 0.0, 0.5]], [[0.6, 0.0, 0.5]]))
    assert g == pytest.approx(np.array([[0.5, 0.0, 0.0]]))


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
