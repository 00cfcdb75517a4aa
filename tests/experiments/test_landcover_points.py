"""The land-cover experiment's point sample: stratified by the product, reproducible, unbiased."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from contract.bands import LABEL_NODATA
from contract.label_schemes import LANDCOVER_CLASSES
from core.errors import ConfigError
from experiments.landcover import Scene
from experiments.landcover_points import draw_points, estimates, scored_values

WOOD, GRASS, WATER, IMP = (LANDCOVER_CLASSES.index(c)
                           for c in ("woodland", "grassland", "water", "impervious"))


def _truth(size: int, seed: int) -> np.ndarray:
    """Smooth blobs of four classes (impervious the rarest), as land cover looks."""
    field = gaussian_filter(np.random.default_rng(seed).random((size, size)), 4)
    cuts = np.quantile(field, [0.45, 0.75, 0.92])
    return np.choose(np.digitize(field, cuts), [WOOD, GRASS, WATER, IMP]).astype(np.uint8)


def _confused(truth: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """``truth`` with a share ``rate`` of its pixels moved to the next class of the four."""
    rng = np.random.default_rng(seed)
    order = np.array([WOOD, GRASS, WATER, IMP])
    nxt = np.zeros(256, np.uint8)
    nxt[order] = np.roll(order, -1)
    return np.where(rng.random(truth.shape) < rate, nxt[truth], truth).astype(np.uint8)


def _scenes(size: int = 96) -> list[Scene]:
    """A training scene, a scene held out in a quadrant, and one held out whole."""
    out = []
    for i, held in enumerate((None, size // 2, 0)):
        truth = _truth(size, i)
        test = np.zeros(truth.shape, bool)
        if held is not None:
            test[held:, held:] = True
        out.append(Scene(f"s{i}", np.zeros((4, size, size), np.float32), truth,
                         {"product": _confused(truth, 0.2, 10 + i), "exact": truth.copy()},
                         test))
    out[2].truth[:8, :8] = LABEL_NODATA  # unlabelled reference: never a point
    out[2].products["product"][-8:, -8:] = LABEL_NODATA  # the product says nothing there
    return out


def test_the_sample_is_stratified_by_the_product_on_scored_pixels_and_reproducible():
    scenes = _scenes()
    points = draw_points(scenes, "product", 30, seed=3)
    again = draw_points(scenes, "product", 30, seed=3)
    other = draw_points(scenes, "product", 30, seed=4)
    assert np.array_equal(points.sample.index, again.sample.index)
    assert not np.array_equal(points.sample.index, other.sample.index)
    strata = scored_values(scenes, [s.products["product"] for s in scenes])
    assert strata.size == sum(int(s.scored.sum()) for s in scenes)  # the held-out pixels only
    assert np.array_equal(strata[points.sample.index], points.sample.stratum)
    assert np.array_equal(points.sample.pixels, np.bincount(strata, minlength=7))
    used = [h for h, n in enumerate(points.sample.pixels) if n]
    assert set(used) == {WOOD, GRASS, WATER, IMP}
    assert points.n == 30 * len(used) == sum(points.sample.allocation)
    assert all(points.sample.allocation[h] >= 30 for h in used)
    assert len(set(points.sample.index.tolist())) == points.n  # no pixel twice
    truth = scored_values(scenes, [s.truth for s in scenes])
    assert np.array_equal(points.reference, truth[points.sample.index])
    assert (points.reference != LABEL_NODATA).all()
    design = points.record()
    assert design["strata"] == "product" and design["n"] == points.n and design["seed"] == 3
    assert set(design["allocation"]) == {LANDCOVER_CLASSES[h] for h in used}


def test_a_map_equal_to_the_truth_scores_one_with_a_zero_width_interval():
    scenes = _scenes()
    points = draw_points(scenes, "product", 30, seed=0)
    products, arms = estimates(points, scenes, ["exact", "product"],
                               {"perfect": [points.values(scenes, [s.truth for s in scenes])]})
    for e in (products["exact"], arms["perfect"][0]):
        assert e.oa == 1.0 and e.oa_ci == 0.0
        assert e.f1[IMP] == 1.0 and e.f1_ci[IMP] == 0.0
    assert products["product"].oa < 0.9 and products["product"].oa_ci > 0


def test_the_estimate_is_unbiased_and_its_interval_covers_the_pixel_accuracy():
    """A model erring on 25 % of the pixels, sampled by the product's strata (not its own)."""
    scenes = _scenes(160)
    model = [_confused(s.truth, 0.25, 99) for s in scenes]
    truth = scored_values(scenes, [s.truth for s in scenes])
    pixel = {"model": float((scored_values(scenes, model) == truth).mean()),
             "product": float((scored_values(scenes, [s.products["product"] for s in scenes])
                               == truth).mean())}
    assert 0.7 < pixel["model"] < 0.8 and 0.75 < pixel["product"] < 0.85
    oa, covered = {"model": [], "product": []}, {"model": [], "product": []}
    for seed in range(100):  # 100 designs of 200 points
        points = draw_points(scenes, "product", 50, seed=seed)
        products, arms = estimates(points, scenes, ["product"],
                                   {"model": [points.values(scenes, model)]})
        for name, e in (("model", arms["model"][0]), ("product", products["product"])):
            oa[name].append(e.oa)
            covered[name].append(abs(e.oa - pixel[name]) <= e.oa_ci)
    for name in oa:  # the mean of 100 estimates: within 3 of its standard errors (~0.01)
        assert np.mean(oa[name]) == pytest.approx(pixel[name], abs=3 * np.std(oa[name]) / 10)
        assert np.mean(covered[name]) >= 0.88  # a 95 % interval
    points = draw_points(scenes, "product", 1500, seed=1)  # a large sample: a narrow interval
    model_at = points.values(scenes, model)
    e = points.estimate(model_at)
    assert abs(e.oa - pixel["model"]) <= e.oa_ci <= 0.03
    with pytest.raises(ConfigError, match="other points"):
        points.estimate(model_at[:-1])


def test_a_single_pixel_stratum_is_left_out_and_recorded():
    scenes = _scenes()
    held = scenes[2]
    held.products["product"][held.products["product"] == IMP] = GRASS
    held.products["product"][20, 20] = IMP  # one impervious product pixel among the held out
    quadrant = scenes[1]
    quadrant.products["product"][quadrant.products["product"] == IMP] = WATER
    points = draw_points(scenes, "product", 20, seed=0)
    assert points.left_out == 1 and points.sample.pixels[IMP] == 0
    assert IMP not in points.sample.stratum
    assert points.estimate(points.reference).oa == 1.0
    with pytest.raises(ConfigError, match="at least 2"):
        draw_points(scenes, "product", 1, seed=0)
