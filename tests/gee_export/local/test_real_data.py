"""The local recipe on real Sentinel samples in ../shared/data (read-only, via ``shared_data``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import warnings

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from contract.grid import Grid
from core.errors import InputDataError
from gee_export.local.scenes import BandRef, SceneCollection, discover_scenes, open_scene
from gee_export.local.sentinel2 import clear_from_scl, monthly_median
from gee_export.local.stack import build_local_stack

BEN_PAIRS = {"87_48": "2017-06", "36_85": "2017-06", "69_24": "2017-09"}


# ------------------------------------------------------------------ eo-learn Slovenia
def test_eolearn_slovenia_scl_masked_monthly_median(shared_data):
    """July 2017 NDVI composite masked by the matching SCL layers (numpy entry point).

    The sample's reflectance arrays are L1C TOA on other dates, so the adapter composites the
    NDVI series (68 dates) with the SCL series (36 dates) on the dates both have.
    """
    root = shared_data / "eolearn_slovenia"
    ndvi = np.load(root / "NDVI.npy")[..., 0]
    scl = np.load(root / "SCL_2016-12_2017-12.npy")[..., 0]
    ndvi_dates = [t[:10] for t in json.loads((root / "timestamps.json").read_text())]
    scl_dates = [t[:10] for t in
                 json.loads((root / "SCL_2016-12_2017-12.timestamps.json").read_text())]
    july = [d for d in scl_dates if d.startswith("2017-07") and d in ndvi_dates]
    assert len(july) >= 4
    values = np.stack([ndvi[ndvi_dates.index(d)] for d in july])[:, None]
    clear = clear_from_scl(np.stack([scl[scl_dates.index(d)] for d in july]).astype(int))
    assert 0 < clear.mean() < 1  # the month has both clear and masked observations

    composite, count = monthly_median(values, clear)
    # Masked observations never enter the median: poisoning them changes nothing.
    poisoned = np.where(clear[:, None], values, 99.0)
    again, _ = monthly_median(poisoned, clear)
    np.testing.assert_array_equal(again, composite)
    np.testing.assert_array_equal(count, clear.sum(axis=0))
    assert np.isnan(composite[0][count == 0]).all()
    some = np.argwhere(count >= 2)[:50]
    for r, c in some:
        assert composite[0, r, c] == pytest.approx(np.median(values[clear[:, r, c], 0, r, c]))
    lulc = np.load(root / "LULC.npy")[..., 0]
    artificial = np.nanmean(composite[0][lulc == 8])
    forest = np.nanmean(composite[0][lulc == 2])
    assert (lulc == 8).sum() > 100
    assert artificial < forest - 0.1


# ------------------------------------------------------------------ BigEarthNet pairs
def _ben_dirs(shared_data, pair):
    root = shared_data / "bigearthnet_examples"
    s2 = next((root / "BigEarthNet-S2-Example").glob(f"*_{pair}"))
    s1 = next((root / "BigEarthNet-S1-Example").glob(f"*_{pair}"))
    return s2, s1


@pytest.mark.parametrize("pair", sorted(BEN_PAIRS))
def test_bigearthnet_pair_stacked_on_one_10m_grid(shared_data, tmp_path, pair):
    s2_dir, s1_dir = _ben_dirs(shared_data, pair)
    with rasterio.open(next(s2_dir.glob("*_B02.tif"))) as src:
        grid = Grid.from_bounds(tuple(src.bounds), src.crs.to_string(), 10.0)
        b02 = src.read(1)
    with rasterio.open(next(s2_dir.glob("*_B05.tif"))) as src:
        b05 = src.read(1).astype(np.float64) / 1e4
        assert src.res == (20.0, 20.0)
    with rasterio.open(next(s1_dir.glob("*_VV.tif"))) as src:
        vv_db = src.read(1)
    scenes = discover_scenes([s2_dir, s1_dir])
    assert [s.sensor for s in scenes.s2 + scenes.s1] == ["S2", "S1"]
    bands = ("B2", "B3", "B4", "B8", "B5", "B11", "VV", "VH", "s2_clear_count", "s1_scene_count")
    with pytest.warns(UserWarning) as caught:
        stack = build_local_stack(scenes, grid, BEN_PAIRS[pair], bands, speckle="none",
                                  out_dir=tmp_path, progress=False)
    messages = " ".join(str(w.message) for w in caught)
    assert "no label" in messages and "neither SCL nor a cloud mask" in messages
    with rasterio.open(stack.image) as src:
        assert src.descriptions == bands and (src.height, src.width) == (120, 120)
        assert src.crs.to_string() == grid.crs and src.transform == grid.transform
        img = src.read()
    # 10 m band on its own grid: the resampling is the identity, DN / 10000 exactly.
    np.testing.assert_allclose(img[0], b02 / 1e4, rtol=1e-6)
    # 20 m band resampled to 10 m: every 2x2 block averages back to the source pixel.
    b5 = img[4].astype(np.float64)
    back = b5.reshape(60, 2, 60, 2).mean(axis=(1, 3))
    assert np.corrcoef(back[2:-2, 2:-2].ravel(), b05[2:-2, 2:-2].ravel())[0, 1] > 0.97
    assert abs(b5.mean() / b05.mean() - 1) < 0.01
    assert np.isfinite(img).all()
    # S1 in dB on the same grid stays dB (no filter asked): identity on this grid.
    np.testing.assert_allclose(img[6], vv_db, atol=1e-3)
    np.testing.assert_array_equal(img[8], 1.0)  # no SCL: every observation is clear
    np.testing.assert_array_equal(img[9], 1.0)
    with rasterio.open(stack.label) as src:
        assert src.nodata == 255 and (src.read(1) == 255).all()


def test_bigearthnet_blocks_with_halos_equal_one_block(shared_data, tmp_path):
    _, s1_dir = _ben_dirs(shared_data, "87_48")
    with rasterio.open(next(s1_dir.glob("*_VV.tif"))) as src:
        grid = Grid.from_bounds(tuple(src.bounds), src.crs.to_string(), 10.0)
    scenes = discover_scenes(s1_dir)
    outs = []
    for block in (1024, 37):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            stack = build_local_stack(scenes, grid, "2017-06", ("VV", "VH"), out_dir=tmp_path /
                                      str(block), block=block, progress=False)
        with rasterio.open(stack.image) as src:
            outs.append(src.read())
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)
    # refined Lee in linear power smooths the speckle of the dB composite
    with rasterio.open(next(s1_dir.glob("*_VV.tif"))) as src:
        assert outs[0][0].std() < src.read(1).std()


# ------------------------------------------------------------------ Sen1Floods11 Spain
def test_sen1floods11_epsg4326_db_chip_onto_utm_grid(shared_data, tmp_path):
    root = shared_data / "sen1floods11_spain"
    # A copy with a NaN hole (the chip itself has none) to check nodata handling.
    chip = tmp_path / "Spain_7370579_S1Hand.tif"
    with rasterio.open(root / "Spain_7370579_S1Hand.tif") as src:
        profile, data, bounds = src.profile, src.read(), src.bounds
    data[:, 200:300, 200:300] = np.nan
    with rasterio.open(chip, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = ("VV", "VH")
    scene = open_scene(chip, sensor="S1", date=dt.date(2019, 9, 17))
    assert scene.unit is None  # no tag: the unit is detected from the values
    label = shutil.copy(root / "Spain_7370579_LabelHand.tif", tmp_path / "label.tif")
    grid = Grid.from_lonlat_bounds(tuple(bounds), resolution=10.0)
    assert grid.crs == "EPSG:32630"
    stack = build_local_stack(SceneCollection(s1=(scene,)), grid, "2019-09",
                              ("VV", "VH", "s1_scene_count"), label=label, speckle="none",
                              out_dir=tmp_path / "out", progress=False)
    with rasterio.open(stack.image) as src:
        img = src.read()
    with rasterio.open(stack.label) as src:
        lab = src.read(1)
    # dB preserved: sample grid-pixel centres in the source (nearest) and compare.
    rows, cols = np.mgrid[20:grid.height - 20:7, 20:grid.width - 20:7]
    xs = grid.x0 + (cols + 0.5) * grid.resolution
    ys = grid.y0 - (rows + 0.5) * grid.resolution
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    inv = ~profile["transform"]
    sc, sr = inv @ (lon, lat)
    src_vv = data[0][sr.astype(int), sc.astype(int)]
    out_vv = img[0][rows, cols]
    both = np.isfinite(src_vv) & np.isfinite(out_vv)
    assert both.mean() > 0.9
    assert np.median(np.abs(out_vv[both] - src_vv[both])) < 1.0  # dB, bilinear vs nearest
    assert -30 < np.nanmedian(img[0]) < 0  # still dB, not linear power
    # NaN honoured: the hole is NaN (and not 0 or -inf), its surroundings are values.
    hole_lon = profile["transform"] @ (250, 250)
    hx, hy = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True).transform(*hole_lon)
    hr, hc = int((grid.y0 - hy) / 10), int((hx - grid.x0) / 10)
    assert np.isnan(img[:2, hr - 20:hr + 20, hc - 20:hc + 20]).all()
    assert img[2, hr, hc] == 0  # no scene counted in the hole
    assert not np.isinf(img).any()
    assert np.isfinite(img[0]).mean() > 0.9
    # the label's -1 is nodata; 0/1 are kept
    assert set(np.unique(lab)) <= {0, 1, 255} and (lab == 1).any() and (lab == 255).any()


def test_sen1floods11_l1c_s2_is_refused_or_warned(shared_data, tmp_path):
    root = shared_data / "sen1floods11_spain"
    scene = open_scene(root / "Spain_7370579_S2Hand.tif", sensor="S2", date=dt.date(2019, 9, 18))
    assert scene.level == "L1C"  # 13 bands with B10
    with rasterio.open(root / "Spain_7370579_S2Hand.tif") as src:
        grid = Grid.from_lonlat_bounds(tuple(src.bounds), resolution=10.0)
    grid = dataclasses.replace(grid, width=64, height=64)  # its north-west 64 x 64 pixels
    with pytest.raises(InputDataError, match="Level-1C"):
        build_local_stack(SceneCollection(s2=(scene,)), grid, "2019-09", ("B2", "B4"),
                          out_dir=tmp_path, progress=False)
    from gee_export.local.stack import LocalRecipe

    with pytest.warns(UserWarning, match="allow_l1c=True"):
        stack = build_local_stack(SceneCollection(s2=(scene,)), grid, "2019-09", ("B2", "B4"),
                                  label=BandRef(root / "Spain_7370579_LabelHand.tif"),
                                  recipe=LocalRecipe(allow_l1c=True), out_dir=tmp_path,
                                  progress=False)
    with rasterio.open(stack.image) as src:
        assert 0 < np.nanmedian(src.read(1)) < 0.5
