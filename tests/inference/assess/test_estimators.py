"""The stratified estimators reproduce Olofsson et al. (2014); their intervals cover the truth."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError
from inference.assess.estimators import (
    allocate,
    area_sd,
    point_confusion,
    sample_points,
    sample_size_area,
    sample_size_oa,
    stratified_area_accuracy,
    stratified_estimates,
)
from tests.support import REPO_ROOT
from training.metrics import from_map_rows

# Olofsson et al. (2014), section 5: deforestation, forest gain, stable forest, stable non-forest.
OLOFSSON_WEIGHTS = [0.02, 0.015, 0.32, 0.645]
OLOFSSON_UA = [0.7, 0.6, 0.9, 0.95]


def test_point_sample_is_stratified_and_reproducible():
    rng = np.random.default_rng(1)
    ref = (rng.random((50, 50)) < 0.2).astype(np.uint8)
    pred = ref.copy()
    pred[:5] = 1 - pred[:5]
    pred[0, 0] = 255
    idx = sample_points(pred, 100, seed=3, num_classes=2)
    assert (idx[0] == sample_points(pred, 100, seed=3, num_classes=2)[0]).all()
    cm = point_confusion(pred, ref, idx, 2)
    assert cm.sum() == 100
    assert list(cm.sum(0)) == [50, 50]  # 50 points per map class
    assert not ((idx[0] == 0) & (idx[1] == 0)).any()


def test_olofsson_2014_worked_example():
    """Olofsson et al. (2014), section 5 example: deforestation, gain, forest, non-forest."""
    cm = from_map_rows([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])
    r = stratified_area_accuracy(cm, [200000, 150000, 3200000, 6450000], pixel_area=0.09)
    assert [round(a) for a in r.area] == [21158, 11686, 285770, 581386]  # ha
    assert [round(c) for c in r.area_ci] == [6158, 3756, 15510, 16282]
    assert [round(u, 2) for u in r.ua] == [0.88, 0.73, 0.93, 0.96]
    assert [round(p, 2) for p in r.pa] == [0.75, 0.85, 0.93, 0.96]
    assert round(r.oa, 2) == 0.95 and round(r.oa_ci, 2) == 0.02
    with pytest.raises(ConfigError, match="at least 2 sample"):
        stratified_area_accuracy(np.array([[1, 0], [0, 5]]), [10, 10])


def test_general_estimator_with_other_strata_equals_olofsson_when_strata_are_the_map():
    """Strata = the assessed map: Stehman's general form is Olofsson's eqs. 2-11 exactly."""
    cm = from_map_rows([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])
    r = stratified_area_accuracy(cm, [200000, 150000, 3200000, 6450000], pixel_area=0.09)
    assert r.n == 640
    # error matrix in area proportions, Olofsson Table 4 (rows = map)
    assert round(r.error_matrix[0][0], 4) == 0.0176 and round(r.error_matrix[3][2], 4) == 0.0179
    assert np.isclose(sum(map(sum, r.error_matrix)), 1.0)
    assert r.mapped_area == pytest.approx([18000, 13500, 288000, 580500])
    # F1 is the harmonic mean of the estimated UA and PA
    f1 = [2 * u * p / (u + p) for u, p in zip(r.ua, r.pa, strict=True)]
    assert r.f1 == pytest.approx(f1)


def test_olofsson_sample_size_and_allocation():
    """Eq. 13 with the paper's expected user's accuracies and S(O) = 0.01 gives 641 points."""
    n = sample_size_oa(OLOFSSON_WEIGHTS, OLOFSSON_UA, 0.01)
    assert n == 641
    alloc = allocate(n, OLOFSSON_WEIGHTS, minimum=75)
    assert alloc[:2] == (75, 75) and sum(alloc) == n
    assert alloc[2] / alloc[3] == pytest.approx(0.32 / 0.645, rel=0.01)
    assert allocate(10, [0.5, 0.5], minimum=20) == (20, 20)  # the minimum wins over n
    assert allocate(100, [0.9, 0.1], minimum=20, available=[1000, 5]) == (95, 5)
    # a tighter SE of the rare class's area needs more points than a loose one
    assert sample_size_area(OLOFSSON_WEIGHTS, OLOFSSON_UA, 0, 0.002) > \
        sample_size_area(OLOFSSON_WEIGHTS, OLOFSSON_UA, 0, 0.004)
    with pytest.raises(ConfigError, match="expected user's accuracy"):
        sample_size_oa(OLOFSSON_WEIGHTS, [0.9, 0.9], 0.01)


def _synthetic_truth(rng: np.random.Generator, shape=(300, 300)):
    """A map with 12 % ISA, a truth that differs from it, and a worse product."""
    truth = (rng.random(shape) < 0.12).astype(np.int64)
    flip = rng.random(shape)
    good = np.where(flip < 0.06, 1 - truth, truth)  # 6 % of pixels wrong
    worse = np.where(flip < 0.25, 1 - truth, truth)  # 25 % wrong, the same 6 % among them
    return truth.ravel(), good.ravel(), worse.ravel()


def test_95_percent_intervals_cover_the_true_isa_area_in_about_95_percent_of_designs():
    """800 seeded designs: coverage of the ISA area and of the worse product's UA in [0.92, 0.975].

    With 800 designs the binomial standard deviation of a true 95 % coverage is 0.8 points; the
    band allows 3 below (normal-approximation intervals slightly under-cover) and 2.5 above.
    """
    rng = np.random.default_rng(7)
    truth, good, worse = _synthetic_truth(rng)
    sizes = np.bincount(good, minlength=2)
    true_area = float((truth == 1).sum())
    true_ua_worse = float(((worse == 1) & (truth == 1)).sum() / (worse == 1).sum())
    members = [np.flatnonzero(good == c) for c in (0, 1)]
    alloc = allocate(150, sizes / sizes.sum(), minimum=50)
    covered_area = covered_ua = 0
    designs = 800
    for seed in range(designs):
        design = np.random.default_rng(seed)
        points = np.concatenate([design.choice(m, a, replace=False)
                                 for m, a in zip(members, alloc, strict=True)])
        strata = good[points]
        r = stratified_estimates(strata, sizes, strata, truth[points], ("pervious", "isa"))
        covered_area += abs(r.area[1] - true_area) <= r.area_ci[1]
        o = stratified_estimates(strata, sizes, worse[points], truth[points], ("pervious", "isa"))
        covered_ua += abs(o.ua[1] - true_ua_worse) <= o.ua_ci[1]
    assert 0.92 <= covered_area / designs <= 0.975
    assert 0.92 <= covered_ua / designs <= 0.975


def test_a_worse_product_scores_worse_on_the_same_points():
    rng = np.random.default_rng(3)
    truth, good, worse = _synthetic_truth(rng)
    sizes = np.bincount(good, minlength=2)
    points = np.concatenate([rng.choice(np.flatnonzero(good == c), 200, replace=False)
                             for c in (0, 1)])
    a = stratified_estimates(good[points], sizes, good[points], truth[points], ("p", "isa"))
    b = stratified_estimates(good[points], sizes, worse[points], truth[points], ("p", "isa"))
    assert b.oa < a.oa and b.f1[1] < a.f1[1]
    # both estimate the same ISA area: it depends on the reference, not on the product
    assert a.area == pytest.approx(b.area)
    assert abs(b.oa - 0.75) < 3 * b.oa_ci / 1.96 and abs(a.oa - 0.94) < 3 * a.oa_ci / 1.96


def test_estimator_refuses_a_stratum_with_one_point():
    with pytest.raises(ConfigError, match="at least 2 sample points"):
        stratified_estimates(np.array([0, 0, 1]), [5, 5], np.array([0, 0, 1]),
                             np.array([0, 1, 1]), ("a", "b"))


def test_a_stratum_whose_every_pixel_is_a_point_is_a_census_not_a_short_sample():
    """The demo's map had one "loss" pixel, the design its one point, and the score refused:
    a stratum sampled whole has no sampling variance (the finite population correction)."""
    stratum, truth = np.array([0, 0, 0, 0, 1]), np.array([0, 1, 0, 0, 1])
    mapped = np.array([0, 0, 0, 0, 1])
    with pytest.raises(ConfigError, match="at least 2 sample points"):
        stratified_estimates(stratum, [400.0, 1.0], mapped, truth, ("a", "b"))
    census = stratified_estimates(stratum, [400.0, 1.0], mapped, truth, ("a", "b"),
                                  stratum_units=[400, 1])
    alone = stratified_estimates(stratum[:4], [400.0], mapped[:4], truth[:4], ("a", "b"))
    assert census.area[1] == pytest.approx(1.0 + 400 * 0.25)  # the census pixel + stratum 0's
    assert census.area_ci[1] == pytest.approx(alone.area_ci[1])  # the census adds no variance
    with pytest.raises(ConfigError, match="at least 2 sample points"):  # 1 of 3 pixels: a sample
        stratified_estimates(stratum, [400.0, 3.0], mapped, truth, ("a", "b"),
                             stratum_units=[400, 3])


def test_the_sample_size_examples_on_the_page_are_the_librarys():
    """The sizing table and the change examples of docs/accuracy.md, recomputed."""
    page = (REPO_ROOT / "docs" / "accuracy.md").read_text(encoding="utf-8")
    w, ua = [0.85, 0.15], [0.95, 0.85]

    def row(n: int, alloc: tuple[int, ...]) -> str:
        return f"| {n:,} | " + " / ".join(f"{a:,}" for a in alloc) + " |"

    for se in (0.02, 0.01):
        n = sample_size_oa(w, ua, se)
        assert row(n, allocate(n, w, 50)) in page
    for se_km2 in (1.0, 0.5):  # on a 100 km² map
        n = sample_size_area(w, ua, 1, se_km2 / 100)
        assert row(n, allocate(n, np.asarray(w) * area_sd(w, ua, 1), 50)) in page
    w4, ua4 = [0.8, 0.15, 0.04, 0.01], [0.95, 0.9, 0.7, 0.5]
    n = sample_size_oa(w4, ua4, 0.01)
    assert f"needs {n} points, allocated\n" + " / ".join(map(str, allocate(n, w4, 75))) in page
    n = sample_size_area(w4, ua4, 2, 0.5 / 100)
    neyman = allocate(n, np.asarray(w4) * area_sd(w4, ua4, 2), 50)
    assert f"it needs {n} points, allocated {' / '.join(map(str, neyman))}" in page
    assert f"gain only the minimum, {allocate(n, w4, 50)[2]})" in page
