"""The product's class shares per window, placed by the model's probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from contract.label_schemes import LANDCOVER_CLASSES
from inference.predict.keep.shares import TOLERANCE, match_shares, window_shares

WOOD = LANDCOVER_CLASSES.index("woodland")
GRASS = LANDCOVER_CLASSES.index("grassland")
CROP = LANDCOVER_CLASSES.index("cropland")
K = len(LANDCOVER_CLASSES)


def _probs(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random ``(K, h, w)`` probabilities: a softmax of blurred noise."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(K, h, w)).cumsum(1).cumsum(2) / 4
    e = np.exp(logits - logits.max(0))
    return (e / e.sum(0)).astype(np.float32)


def test_each_window_gets_the_products_shares_and_no_class_it_does_not_name():
    h, w, win = 40, 48, 16  # the last row of windows is 8 px tall
    probs = _probs(h, w)
    rows, cols = np.mgrid[0:h, 0:w]
    product = np.where((rows // 5 + cols // 7) % 3 == 0, GRASS, WOOD).astype(np.uint8)
    free = np.ones((h, w), bool)
    out = match_shares(probs, product, free, win)
    assert out.dtype == np.float32 and out.shape == probs.shape
    assert np.allclose(out.sum(0), 1.0, atol=1e-5)
    shares = window_shares(product, free, K, win)
    for y in range(0, h, win):
        for x in range(0, w, win):
            block = out[:, y:y + win, x:x + win].reshape(K, -1)
            assert block.mean(1) == pytest.approx(shares[y // win, x // win], abs=2 * TOLERANCE)
            named = shares[y // win, x // win] > 0
            assert (block[~named] < 1e-5).all()  # classes the product does not name: none


def test_the_model_places_the_share_the_product_gives():
    # the product says: a quarter of the window is grassland, in its top rows; the model sees
    # grassland (weakly) in the left columns; the map puts a quarter of grassland on the left
    h = w = 16
    product = np.full((h, w), WOOD, np.uint8)
    product[:4] = GRASS
    probs = np.full((K, h, w), 0.01, np.float32)
    probs[WOOD] = 0.8
    probs[GRASS, :, :4] = 0.3
    probs[GRASS, :, 4:] = 0.05
    probs /= probs.sum(0)
    assert (probs.argmax(0) == WOOD).all()  # on its own, the model maps no grassland
    classes = match_shares(probs, product, np.ones((h, w), bool), 16).argmax(0)
    assert (classes[:, :4] == GRASS).all() and (classes[:, 4:] == WOOD).all()


def test_a_window_with_one_class_takes_it_and_other_pixels_keep_the_models():
    h, w = 32, 32
    probs = _probs(h, w, 1)
    product = np.full((h, w), WOOD, np.uint8)
    product[16:, 16:] = CROP
    product[20:24, 20:24] = GRASS
    free = np.ones((h, w), bool)
    free[:4] = False  # decided by another rule, or no product
    out = match_shares(probs, product, free, 16)
    classes = out.argmax(0)
    assert (classes[4:16] == WOOD).all() and (classes[16:, :16] == WOOD).all()
    assert (out[:, :4] == probs[:, :4]).all()  # not free: the model's, untouched
    assert set(np.unique(classes[16:, 16:])) <= {CROP, GRASS}


def test_the_order_within_a_window_is_the_models():
    # one weight per class and window: the pixels mapped grassland are those with the highest
    # ratio of grassland to woodland probability
    h = w = 16
    rng = np.random.default_rng(3)
    probs = np.full((K, h, w), 1e-3, np.float32)
    probs[WOOD] = rng.uniform(0.2, 0.8, (h, w))
    probs[GRASS] = 1 - probs[WOOD]
    product = np.full((h, w), WOOD, np.uint8)
    product[:, :5] = GRASS
    classes = match_shares(probs, product, np.ones((h, w), bool), 16).argmax(0)
    ratio = (probs[GRASS] / probs[WOOD]).ravel()
    mapped = classes.ravel() == GRASS
    assert 0 < mapped.sum() < h * w
    assert ratio[mapped].min() >= ratio[~mapped].max()


def test_strips_of_whole_window_rows_give_the_whole_rasters_pixels():
    h, w, win = 64, 40, 16
    probs = _probs(h, w, 2)
    rows, cols = np.mgrid[0:h, 0:w]
    product = np.where((rows // 9 + cols // 11) % 2 == 0, GRASS, WOOD).astype(np.uint8)
    free = (rows + cols) % 13 != 0
    whole = match_shares(probs, product, free, win)
    strips = np.concatenate([match_shares(probs[:, r:r + 32], product[r:r + 32],
                                          free[r:r + 32], win) for r in (0, 32)], axis=1)
    assert (whole == strips).all()


def test_a_window_is_at_least_one_pixel():
    probs = _probs(4, 4)
    with pytest.raises(ValueError, match="at least 1"):
        match_shares(probs, np.zeros((4, 4), np.uint8), np.ones((4, 4), bool), 0)


def test_a_fixed_class_keeps_the_models_probability_and_the_others_share_the_rest():
    h = w = 16
    probs = _probs(h, w, 4)
    imp = LANDCOVER_CLASSES.index("impervious")
    probs[imp, 2:5, 2:5] = 50.0  # the model is sure of a small building the product lacks
    probs /= probs.sum(0)
    product = np.full((h, w), WOOD, np.uint8)
    product[8:] = GRASS
    free = np.ones((h, w), bool)
    out = match_shares(probs, product, free, 16, fixed=(imp,))
    assert np.allclose(out[imp], np.maximum(probs[imp], 1e-6) / np.maximum(probs, 1e-6).sum(0),
                       atol=1e-6)
    assert (out.argmax(0)[2:5, 2:5] == imp).all()  # the model's call, not erased
    assert np.allclose(out.sum(0), 1.0, atol=1e-5)
    left = 1 - out[imp].mean()  # the other classes: half woodland, half grassland of the rest
    assert out[WOOD].mean() == pytest.approx(left / 2, abs=2 * TOLERANCE)
    assert out[GRASS].mean() == pytest.approx(left / 2, abs=2 * TOLERANCE)
    # a window whose product holds only fixed classes is the model's, renormalised
    only = match_shares(probs, np.full((h, w), imp, np.uint8), free, 16, fixed=(imp,))
    assert np.allclose(only, probs, atol=1e-6)
