"""One definition of impervious: the area table and the change table agree on real COGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from inference.cog import maps
from inference.cog.maps import NODATA, PROB_SCALE
from inference.predict import stats
from inference.predict.change.arrays import margin_change
from inference.predict.stats import agreeing_codes, impervious

WHOLE = [stats.Zone("all", None)]
PIXEL_KM2 = 100 / 1e6


def _cog(path: Path, data: np.ndarray, kind: maps.Kind) -> str:
    plain = path.with_suffix(".plain.tif")
    profile = {"driver": "GTiff", "width": data.shape[1], "height": data.shape[0], "count": 1,
               "dtype": "uint8", "crs": "EPSG:32650", "nodata": NODATA,
               "transform": Affine(10.0, 0, 500000, 0, -10.0, 3400000)}
    with rasterio.open(plain, "w", **profile) as dst:
        dst.write(data, 1)
    maps.write_cog(plain, path, kind, {"classes": "pervious,impervious"})
    return str(path)


def _date(folder: Path, name: str, classes: np.ndarray, prob: np.ndarray) -> tuple[str, str]:
    return (_cog(folder / f"{name}_class.tif", classes.astype(np.uint8), "class"),
            _cog(folder / f"{name}_prob.tif", np.round(prob * PROB_SCALE).astype(np.uint8),
                 "probability"))


def test_codes_follow_the_class_maps_and_the_rule_only_confirms():
    was = np.array([1, 1, 0, 0, 1, 0, 1, 255])
    now = np.array([1, 0, 1, 0, 0, 1, 1, 1])
    rule = np.array([0, 3, 2, 1, 1, 0, 2, 1])  # mean-probability stables, a gain on I -> I
    assert agreeing_codes(rule, was, now, 1).tolist() == [1, 3, 2, 0, 0, 0, 1, 255]
    assert impervious(np.array([1, 0, 255]), 1).tolist() == [True, False, False]


def test_stable_impervious_is_what_both_area_tables_count(tmp_path):
    """The issue's case: class maps that agree, probabilities whose mean says more ISA."""
    rng = np.random.default_rng(0)
    classes = (rng.random((300, 340)) < 0.3).astype(np.uint8)
    classes[:20, :30] = NODATA
    # a post-processed class map: pervious pixels at p 0.55-0.65, impervious ones at 0.9
    p_from = np.where(classes == 1, 0.9, rng.uniform(0.55, 0.65, classes.shape))
    p_to = np.where(classes == 1, 0.9, rng.uniform(0.55, 0.65, classes.shape))
    p_from[classes == NODATA] = p_to[classes == NODATA] = NODATA / PROB_SCALE
    a, b = _date(tmp_path, "a", classes, p_from), _date(tmp_path, "b", classes, p_to)
    out = str(tmp_path / "change.tif")
    # the rule alone (no class maps) calls every pixel stable impervious
    stats.change_map(a[1], b[1], out, margin=0.2)
    (rule_row,) = stats.change_area(out, WHOLE)
    (area_a,) = stats.isa_area(a[0], WHOLE)
    assert rule_row.stable_isa_km2 > 2 * area_a.isa_km2
    # with the class maps, the change table is the area tables' own count
    stats.change_map(a[1], b[1], out, margin=0.2, classes=(a[0], b[0]))
    (row,) = stats.change_area(out, WHOLE, (a[0], b[0]))
    (area_b,) = stats.isa_area(b[0], WHOLE)
    assert row.stable_isa_km2 == area_a.isa_km2 == area_b.isa_km2
    assert (row.gain_km2, row.loss_km2) == (0.0, 0.0)
    assert (row.isa_from_km2, row.isa_to_km2) == (area_a.isa_km2, area_b.isa_km2)
    with rasterio.open(out) as ds:
        assert ds.tags()["impervious"] == stats.IMPERVIOUS_TAG


def test_confirmed_change_closes_both_dates_and_an_unconfirmed_flip_is_shown(tmp_path):
    p_from = np.full((200, 260), 0.1)
    p_from[:80] = 0.9  # built at both dates
    p_from[150:160, :30] = 0.45
    p_to = p_from.copy()
    p_to[100:120, :100] = 0.95  # gain, confirmed by the margin
    p_to[:10, :50] = 0.05  # loss, confirmed
    p_to[150:160, :30] = 0.6  # a flip inside the margin: not confirmed
    class_from, class_to = (p_from >= 0.5).astype(np.uint8), (p_to >= 0.5).astype(np.uint8)
    a, b = _date(tmp_path, "a", class_from, p_from), _date(tmp_path, "b", class_to, p_to)
    out = str(tmp_path / "change.tif")
    stats.change_map(a[1], b[1], out, margin=0.2, classes=(a[0], b[0]))
    (row,) = stats.change_area(out, WHOLE, (a[0], b[0]))
    (area_a,), (area_b,) = stats.isa_area(a[0], WHOLE), stats.isa_area(b[0], WHOLE)
    assert row.gain_km2 == pytest.approx(2000 * PIXEL_KM2)
    assert row.loss_km2 == pytest.approx(500 * PIXEL_KM2)
    assert row.stable_isa_km2 + row.loss_km2 == pytest.approx(area_a.isa_km2, abs=1e-9)
    unconfirmed = 300 * PIXEL_KM2  # in the later area, in no change class
    assert row.stable_isa_km2 + row.gain_km2 + unconfirmed == pytest.approx(area_b.isa_km2,
                                                                            abs=1e-9)
    assert (row.isa_from_km2, row.isa_to_km2) == (area_a.isa_km2, area_b.isa_km2)
    with rasterio.open(out) as ds:
        codes = ds.read(1)
    assert (codes[150:160, :30] == 0).all()
    # the margin rule alone called them stable impervious (mean probability 0.525)
    assert (margin_change(p_from, p_to, 0.2)[150:160, :30] == 1).all()
