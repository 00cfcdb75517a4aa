"""The spectral change rule on real GeoTIFFs: the stacks say whether, the model which way."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine

from contract.geotiff import write_geotiff
from core.errors import InputDataError
from inference.cog import maps
from inference.cog.maps import NODATA, PROB_SCALE
from inference.predict import stats
from inference.predict.change import arrays as change
from inference.predict.change.spectral import spectral_stacks
from tests.support.rasters import BANDS, smooth_stack, write_stack

H, W = 150, 170
BUILT = (slice(40, 70), slice(60, 100))  # truly changed between the dates: 30 x 40 px
ROOFS = (slice(100, 130), slice(10, 50))  # impervious at both dates, bands unchanged
HOLE = (3, slice(5, 9), slice(150, 160))  # a band missing in the later stack
TRANSFORM = Affine(10, 0, 500000, 0, -10, 3400000)


def _prob(path, values: np.ndarray) -> str:
    stored = np.round(values * PROB_SCALE).astype(np.uint8)
    return str(write_geotiff(path, stored[None], TRANSFORM, "EPSG:32650", NODATA))


@pytest.fixture
def pair(tmp_path):
    """Two dates: the later is the earlier under a shared gain and offset, but for a block
    built in between; the model's probability rises a little everywhere (it flickers) and a
    lot on the block."""
    earlier = smooth_stack(H, W, seed=4)
    later = earlier * 0.9 + 0.05
    later[(slice(None), *BUILT)] += 2.5  # a new roof: every band far from its old value
    later[HOLE] = np.nan
    p_from, p_to = np.full((H, W), 0.2), np.full((H, W), 0.35)
    p_to[BUILT] = 0.85
    p_from[ROOFS], p_to[ROOFS] = 0.8, 0.9
    return {"earlier": str(write_stack(tmp_path / "earlier.tif", earlier)),
            "later": str(write_stack(tmp_path / "later.tif", later)),
            "p_from": _prob(tmp_path / "a_prob.tif", p_from),
            "p_to": _prob(tmp_path / "b_prob.tif", p_to), "arrays": (earlier, later)}


def _checked(pair, **kw):
    return spectral_stacks(pair["earlier"], pair["later"], BANDS, (H, W), TRANSFORM,
                           rasterio.crs.CRS.from_string("EPSG:32650"), **kw)


def test_the_built_block_is_gain_and_nothing_else_changed(pair, tmp_path, monkeypatch):
    monkeypatch.setattr(maps, "BLOCK", 64)  # the map is written in 3 x 3 blocks
    stacks = _checked(pair).fitted()
    out = str(tmp_path / "maps" / "isa_change.tif")
    stats.change_map(pair["p_from"], pair["p_to"], out, spectral=stacks)
    with rasterio.open(out) as ds:
        codes, tags, block = ds.read(1), ds.tags(), ds.block_shapes[0]
    assert block == (64, 64)
    expected = np.zeros((H, W), np.uint8)
    expected[BUILT], expected[ROOFS] = change.GAIN, change.STABLE_ISA
    expected[HOLE[1:]] = NODATA
    assert np.array_equal(codes, expected)  # the flicker elsewhere is no change
    # block by block equals the rule on the whole scene with the one fit
    earlier, later = pair["arrays"]
    with rasterio.open(pair["p_from"]) as a, rasterio.open(pair["p_to"]) as b:
        p_from, p_to = a.read(1) / PROB_SCALE, b.read(1) / PROB_SCALE
    whole = change.spectral_change(p_from, p_to, change.spectral_magnitude(
        later.astype(np.float32), earlier.astype(np.float32), stacks.fit))
    assert np.array_equal(codes, whole)
    assert stacks.fit == change.fit_spectral_change(later.astype(np.float32),
                                                    earlier.astype(np.float32))
    assert tags["change_rule"] == change.SPECTRAL_RULE and tags["spectral_threshold"] == (
        f"{change.DEFAULT_SPECTRAL_THRESHOLD:g}")
    assert json.loads(tags["spectral_fit"]) == stacks.fit.to_dict()
    assert (tags["from_stack"], tags["to_stack"]) == ("earlier.tif", "later.tif")  # no path
    # a higher threshold than the block's change: nothing changed at all
    stats.change_map(pair["p_from"], pair["p_to"], out, spectral=_checked(pair, threshold=1e6))
    with rasterio.open(out) as ds:
        assert not np.isin(ds.read(1), (change.GAIN, change.LOSS)).any()


def test_stacks_off_the_grid_or_without_a_band_are_refused(pair, tmp_path):
    earlier, _ = pair["arrays"]
    small = str(write_stack(tmp_path / "small.tif", earlier[:, :100]))
    with pytest.raises(InputDataError, match=r"--earlier-stack .*small\.tif is not on the grid"):
        spectral_stacks(small, pair["later"], BANDS, (H, W), TRANSFORM, "EPSG:32650")
    four = str(write_stack(tmp_path / "four.tif", earlier[:4]))
    with pytest.raises(InputDataError, match=r"--input .*four.tif: .*lacks band\(s\)"):
        spectral_stacks(pair["earlier"], four, BANDS, (H, W), TRANSFORM, "EPSG:32650")
    with pytest.raises(InputDataError, match="does not exist"):
        spectral_stacks(str(tmp_path / "none.tif"), pair["later"], BANDS, (H, W), TRANSFORM,
                        "EPSG:32650")
    with pytest.raises(InputDataError, match="--spectral-threshold must be a number > 0"):
        _checked(pair, threshold=0.0)
    # the change map checks the stacks against the probability maps themselves too
    moved = str(write_geotiff(tmp_path / "moved.tif", earlier, TRANSFORM @ Affine.translation(
        1, 0), "EPSG:32650", float("nan"), descriptions=BANDS))
    stacks = _checked(pair).fitted()
    off = type(stacks)(moved, stacks.later, stacks.earlier_bands, stacks.later_bands,
                       stacks.threshold, stacks.fit)
    with pytest.raises(InputDataError, match=r"moved\.tif is not on the grid"):
        stats.change_map(pair["p_from"], pair["p_to"], str(tmp_path / "c.tif"), spectral=off)
    assert not (tmp_path / "c.tif").exists()


def test_a_series_pair_is_judged_by_the_months_own_bands(pair, tmp_path):
    """Series stacks (B2..VH then the same bands a month before): the rule reads the month's
    own bands. A block cloudy the month before (NaN _m1 bands) in the later stack is mapped,
    not nodata, and an earlier month that differs between the dates changes no pixel."""
    from contract.bands import series_bands
    earlier, later = pair["arrays"]
    before_a = smooth_stack(H, W, seed=9)
    before_b = before_a + 3.0  # the month before differs a lot between the dates: no change
    before_b[:, 10:30, 10:40] = np.nan  # and is cloudy there in the later stack
    names = series_bands(BANDS, 2)
    a = str(write_stack(tmp_path / "a.tif", np.concatenate([earlier, before_a]), bands=names))
    b = str(write_stack(tmp_path / "b.tif", np.concatenate([later, before_b]), bands=names))
    crs = rasterio.crs.CRS.from_string("EPSG:32650")
    stacks = spectral_stacks(a, b, names, (H, W), TRANSFORM, crs).fitted()
    assert stacks.earlier_bands == stacks.later_bands == (1, 2, 3, 4, 5, 6)
    series_out, one_out = str(tmp_path / "series.tif"), str(tmp_path / "one.tif")
    stats.change_map(pair["p_from"], pair["p_to"], series_out, spectral=stacks)
    stats.change_map(pair["p_from"], pair["p_to"], one_out, spectral=_checked(pair).fitted())
    with rasterio.open(series_out) as s, rasterio.open(one_out) as o:
        codes = s.read(1)
        assert np.array_equal(codes, o.read(1))  # the one-month pair's map, bit for bit
    assert (codes[10:30, 10:40] != NODATA).all()
