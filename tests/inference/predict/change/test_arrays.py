"""Two-date change as arrays: relative radiometric normalisation and change with a margin."""

from __future__ import annotations

import numpy as np
import pytest

from inference.predict.change import arrays as change


def _dates(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An earlier date, the later one (gain 0.8, offset +0.05 per band, a fifth truly changed)."""
    rng = np.random.default_rng(seed)
    earlier = rng.uniform(0.02, 0.4, (4, 40, 50))
    changed = rng.random((40, 50)) < 0.2
    later = earlier * 0.8 + 0.05
    later[:, changed] = rng.uniform(0.3, 0.6, (4, int(changed.sum())))
    return earlier, later, changed


def test_the_fit_recovers_the_shift_despite_the_changed_pixels():
    earlier, later, changed = _dates()
    fit = change.fit_relative_normalisation(later, earlier)
    assert fit.gain == pytest.approx((1 / 0.8,) * 4, rel=1e-6)
    assert fit.offset == pytest.approx((-0.05 / 0.8,) * 4, abs=1e-6)
    assert fit.valid_pixels == 2000 and fit.invariant_pixels == 600 and fit.iterations == 3
    back = later * np.array(fit.gain)[:, None, None] + np.array(fit.offset)[:, None, None]
    assert np.allclose(back[:, ~changed], earlier[:, ~changed], atol=1e-5)
    # one plain least-squares fit on every pixel is pulled away by the changed ones
    plain = change.fit_relative_normalisation(later, earlier, invariant_share=1.0, iterations=1)
    assert abs(plain.gain[0] - 1 / 0.8) > 0.05
    assert set(fit.to_dict()) == {"gain", "offset", "invariant_pixels", "valid_pixels",
                                  "iterations"}


def test_a_shared_shift_is_no_change_and_nan_pixels_are_left_out():
    earlier, later, _ = _dates(1)
    magnitude = change.change_magnitude(earlier + 0.1, earlier)
    assert magnitude.shape == (40, 50) and np.allclose(magnitude, 0)
    later[2, :5, :5] = np.nan
    fit = change.fit_relative_normalisation(later, earlier)
    assert fit.valid_pixels == 2000 - 25 and np.isfinite(fit.gain).all()
    with pytest.raises(ValueError, match="differ in shape"):
        change.fit_relative_normalisation(later[:, :10], earlier)
    with pytest.raises(ValueError, match="invariant_share"):
        change.fit_relative_normalisation(later, earlier, invariant_share=0)


def test_change_needs_both_probabilities_to_clear_the_margin():
    p_from = np.array([0.1, 0.45, 0.1, 0.9, 0.9, 0.55, 0.6, np.nan])
    p_to = np.array([0.9, 0.55, 0.6, 0.1, 0.9, 0.45, 0.3, 0.9])
    assert change.margin_change(p_from, p_to, 0.0).tolist() == [2, 2, 2, 3, 1, 3, 3, 255]
    assert change.margin_change(p_from, p_to, 0.2).tolist() == [2, 1, 0, 3, 1, 1, 0, 255]
    # margin 0 is the two per-date class maps differenced
    rng = np.random.default_rng(0)
    a, b = rng.random(500), rng.random(500)
    ca, cb = a > 0.5, b > 0.5
    differenced = np.where(ca, np.where(cb, 1, 3), np.where(cb, 2, 0))
    assert (change.margin_change(a, b, 0.0) == differenced).all()
    with pytest.raises(ValueError, match="margin"):
        change.margin_change(a, b, 0.5)


def test_the_spectral_fit_scores_every_tile_as_the_whole_scene_would():
    earlier, later, changed = _dates(3)
    fit = change.fit_spectral_change(later, earlier)
    assert fit.pixels == 2000 and len(fit.centre) == len(fit.spread) == 4
    whole = change.spectral_magnitude(later, earlier, fit)
    assert np.array_equal(whole, change.change_magnitude(later, earlier))
    # a tile scored with the scene's fit matches the scene's scores there
    tile = change.spectral_magnitude(later[:, 10:20, 5:30], earlier[:, 10:20, 5:30], fit)
    assert np.array_equal(tile, whole[10:20, 5:30])
    # the truly changed fifth are the outliers; the shared gain and offset are not
    assert np.median(whole[changed]) > 3 > np.quantile(whole[~changed], 0.95)
    assert set(fit.to_dict()) == {"centre", "spread", "pixels"}
    with pytest.raises(ValueError, match="bands"):
        change.spectral_magnitude(later[:3], earlier[:3], fit)
    with pytest.raises(ValueError, match="finite"):
        change.fit_spectral_change(np.full((2, 3, 3), np.nan), np.zeros((2, 3, 3)))
    assert np.isnan(change.change_magnitude(np.full((2, 3, 3), np.nan), np.zeros((2, 3, 3)))).all()


def test_spectral_change_asks_the_bands_whether_and_the_model_which_way():
    p_from = np.array([0.1, 0.1, 0.1, 0.45, 0.9, 0.9, 0.6, 0.3, 0.2, np.nan])
    p_to = np.array([0.2, 0.2, 0.05, 0.9, 0.3, 0.3, 0.95, 0.2, 0.3, 0.9])
    magnitude = np.array([5.0, 2.0, 5.0, 4.0, 5.0, 1.0, 5.0, 5.0, np.nan, 5.0])
    codes = change.spectral_change(p_from, p_to, magnitude, 3.0)
    # a small rise on changed ground is gain; no change below the threshold; loss only from
    # impervious; a rise from impervious is not gain; NaN anywhere is nodata
    assert codes.tolist() == [2, 0, 0, 2, 3, 1, 1, 0, 255, 255]
    with pytest.raises(ValueError, match="threshold"):
        change.spectral_change(p_from, p_to, magnitude, 0.0)
    with pytest.raises(ValueError, match="magnitude"):
        change.spectral_change(p_from, p_to, magnitude[:3])


def test_dates_identical_on_most_pixels_call_only_real_differences_change():
    earlier, _, _ = _dates(4)
    later = earlier.copy()
    later[:, :2, :] *= 1.004  # within the bands' precision (MAD is 0 here)
    later[:, 30:34, 30:34] = earlier[:, 30:34, 30:34] + 0.3  # a real change
    magnitude = change.change_magnitude(later, earlier)
    assert (magnitude[:2] < 1).all() and (magnitude[30:34, 30:34] > 10).all()
    fit = change.fit_spectral_change(later, earlier)
    level = np.median(np.abs(earlier.reshape(4, -1)), axis=1)
    assert fit.spread == pytest.approx(tuple(change.MIN_RELATIVE_SPREAD * level))
