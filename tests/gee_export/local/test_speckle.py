"""Speckle filters: behaviour on synthetic gamma speckle, the papers' formulas, the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from core.errors import ConfigError
from gee_export.local import speckle as sp
from testing.refined_lee import refined_lee_generic

FILTERS = ("boxcar", "lee", "gamma_map", "refined_lee", "lee_sigma")
ENL = 4.4


def _speckle(shape, seed=0, enl=ENL):
    return np.random.default_rng(seed).gamma(enl, 1.0 / enl, shape).astype(np.float32)


def _cv(a):
    return float(a.std() / a.mean())


@pytest.fixture(scope="module")
def constant_field():
    return 0.2 * _speckle((128, 128))


@pytest.mark.parametrize("method", FILTERS)
def test_filter_reduces_cv_and_preserves_mean(constant_field, method):
    out = sp.despeckle(constant_field, method, enl=ENL)
    inner = (slice(8, -8), slice(8, -8))
    assert out.dtype == np.float32 and out.shape == constant_field.shape
    assert _cv(out[inner]) < 0.6 * _cv(constant_field[inner])
    assert abs(out.mean() / constant_field.mean() - 1.0) < 0.02


def _transition_width(profile, low, high):
    frac = (profile - low) / (high - low)
    return int(((frac > 0.1) & (frac < 0.9)).sum())


def test_refined_lee_keeps_edge_sharper_than_boxcar():
    truth = np.full((96, 96), 0.05, dtype=np.float32)
    truth[:, 48:] = 0.5
    noisy = truth * _speckle(truth.shape, seed=1)
    widths = {}
    for method in ("boxcar", "refined_lee"):
        profile = np.median(sp.despeckle(noisy, method)[8:-8], axis=0)[30:66]
        widths[method] = _transition_width(profile, 0.05, 0.5)
    # boxcar 7x7 smears the step over ~6 columns; refined Lee picks the half-window on the
    # centre's side of the edge and keeps it within ~1-2 columns.
    assert widths["boxcar"] >= 5
    assert widths["refined_lee"] <= 2
    assert widths["refined_lee"] < widths["boxcar"]


def test_vectorised_refined_lee_equals_generic_filter_reference():
    img = 0.1 * _speckle((40, 44), seed=2)
    img[:, 20:] *= 6.0  # vertical edge
    img[np.triu_indices(40, 5)[0], np.triu_indices(40, 5)[1]] *= 0.3  # diagonal edge
    ref = refined_lee_generic(img)
    fast = sp.refined_lee(img)
    blocked = sp.refined_lee(img, block=16)  # halos must make blocks seamless
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(blocked, fast)


def test_nodata_is_kept_and_never_spreads():
    img = 0.2 * _speckle((40, 40), seed=3)
    img[10:14, 10:14] = np.nan
    for method in FILTERS:
        out = sp.despeckle(img, method)
        assert np.isnan(out[10:14, 10:14]).all(), method
        assert np.isfinite(out[~np.isnan(img)]).all(), method


def test_lee_weight_formula():
    m = np.array([1.0, 1.0, 2.0, 1.0])
    var = np.array([1.0 / ENL, 0.5 / ENL, 4.0, 0.0])
    b = sp.lee_weight(m, var, ENL)
    cu2 = 1.0 / ENL
    expected = (4.0 - 4.0 * cu2) / ((1 + cu2) * 4.0)
    # pure speckle -> 0; less variable than speckle -> clipped at 0; texture -> formula; flat -> 0
    np.testing.assert_allclose(b, [0.0, 0.0, expected, 0.0], atol=1e-12)


def test_gamma_map_regimes_and_root():
    L = ENL
    cu = 1 / math.sqrt(L)
    m, z = 0.3, 0.45
    ci = np.array([0.5 * cu, cu, 1.2 * cu, 1.39 * cu, math.sqrt(2) * cu, 3 * cu])
    est = sp.gamma_map_estimate(np.full(6, z), np.full(6, m), ci, L)
    assert est[0] == pytest.approx(m) and est[1] == pytest.approx(m)  # homogeneous: the mean
    assert est[4] == pytest.approx(z) and est[5] == pytest.approx(z)  # point target: the pixel
    for x, c in zip(est[2:4], ci[2:4], strict=True):
        alpha = (1 + cu**2) / (c**2 - cu**2)
        # x is the positive root of alpha x^2 - m (alpha - L - 1) x - L m z = 0 (Lopes 1990)
        assert x > 0
        assert alpha * x * x - m * (alpha - L - 1) * x - L * m * z == pytest.approx(0, abs=1e-12)
        assert min(m, z) <= x <= max(m, z)


def test_sigma_range_matches_lee_2009_and_its_definition():
    i1, i2, eta = sp.sigma_range(1.0, 0.5)
    assert (i1, i2, eta) == pytest.approx((0.436, 1.920, 0.4057), abs=3e-3)  # Lee 2009 table
    i1, i2, eta = sp.sigma_range(ENL, 0.9)
    mass = special.gammainc(ENL, ENL * i2) - special.gammainc(ENL, ENL * i1)
    mean = special.gammainc(ENL + 1, ENL * i2) - special.gammainc(ENL + 1, ENL * i1)
    assert mass == pytest.approx(0.9, abs=1e-9)
    assert mean / mass == pytest.approx(1.0, abs=1e-9)  # unbiased inside the range
    assert 0 < eta < 1 / math.sqrt(ENL)


def test_lee_sigma_range_test_is_a_real_and():
    prior = np.ones(5)
    values = np.array([0.1, 0.5, 1.0, 1.8, 5.0])
    mask = sp.sigma_range_mask(values, prior, 0.4, 2.0)
    np.testing.assert_array_equal(mask, [False, True, True, True, False])
    # An isolated bright pixel (not a point target: alone in its 3x3) must not leak into the
    # estimates of pixels 2-3 away, whose 7x7 window holds it but whose 3x3 prior does not;
    # with the gee_s1_ard Or every such pixel would average it in. (The 8 direct neighbours'
    # 3x3 priors include it, so the paper's algorithm lets them deviate; not tested here.)
    img = np.full((21, 21), 0.2, dtype=np.float32) * _speckle((21, 21), seed=4, enl=200)
    img[10, 10] = 20.0
    out = sp.lee_sigma(img, enl=ENL)
    ring = out[7:14, 7:14].copy()
    ring[2:5, 2:5] = np.nan
    assert np.nanmax(ring) < 0.25  # with Or: ~0.2 + 19.8/49 ~ 0.6


def test_lee_sigma_keeps_point_targets():
    img = 0.1 * _speckle((31, 31), seed=5)
    img[14:17, 14:17] = 30.0  # a 3x3 bright target: 9 pixels above the 98th percentile
    out = sp.lee_sigma(img)
    np.testing.assert_array_equal(out[14:17, 14:17], img[14:17, 14:17])


def test_unknown_filter_and_bad_kernel_are_refused():
    with pytest.raises(ConfigError, match="unknown speckle filter"):
        sp.despeckle(np.ones((8, 8)), "median")
    with pytest.raises(ConfigError, match="odd"):
        sp.boxcar(np.ones((8, 8)), size=4)
