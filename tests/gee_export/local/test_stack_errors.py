"""Clear errors and edge cases of the local stack on small GeoTIFFs written by the tests."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio

from core.errors import EmptyCompositeError, InputDataError
from gee_export.local.scenes import discover_scenes
from gee_export.local.stack import build_local_stack
from tests.support.rasters import write_band


def _build(source, grid, month, bands, tmp_path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "no label" is not what these test
        return build_local_stack(source, grid, month, bands, out_dir=tmp_path / "out",
                                 progress=False, **kw)


def test_cloud_masked_median_and_baseline_offset(write_s2, small_grid, tmp_path):
    write_s2("20210603", scl_value=4, dn=1000)
    write_s2("20210613", scl_value=9, dn=9000)  # cloud: must not enter the median
    write_s2("20210623", scl_value=5, dn=1200)
    write_s2("20210628", scl_value=4, dn=2400, name_extra="N0400")  # baseline 04.00: -1000
    stack = _build(tmp_path / "scenes", small_grid, "2021-06", ("B2", "s2_clear_count"),
                   tmp_path)
    with rasterio.open(stack.image) as src:
        b2, count = src.read()
    # clear reflectances 0.10, 0.12, (2400 - 1000) / 1e4 = 0.14 -> median 0.12
    np.testing.assert_allclose(b2, 0.12, rtol=1e-6)
    np.testing.assert_array_equal(count, 3)


def test_rerun_does_no_work(write_s2, small_grid, tmp_path):
    write_s2("20210603")
    first = _build(tmp_path / "scenes", small_grid, "2021-06", ("B2",), tmp_path)
    mtime = (tmp_path / "out" / "stack_2021-06_image.tif").stat().st_mtime_ns
    second = _build(tmp_path / "scenes", small_grid, "2021-06", ("B2",), tmp_path)
    assert first == second
    assert (tmp_path / "out" / "stack_2021-06_image.tif").stat().st_mtime_ns == mtime


def test_empty_month_names_month_and_grid(write_s2, small_grid, tmp_path):
    write_s2("20210603")
    with pytest.raises(EmptyCompositeError, match=r"2021-07.*EPSG:32633"):
        _build(tmp_path / "scenes", small_grid, "2021-07", ("B2",), tmp_path)


def test_all_cloud_month_is_an_empty_composite(write_s2, small_grid, tmp_path):
    write_s2("20210603", scl_value=8)
    write_s2("20210613", scl_value=10)
    with pytest.raises(EmptyCompositeError, match=r"every Sentinel-2 observation of 2021-06"):
        _build(tmp_path / "scenes", small_grid, "2021-06", ("B2",), tmp_path)
    assert not list((tmp_path / "out").glob("*.tif"))  # nothing half-written left behind


def test_missing_band_is_named(write_s2, small_grid, tmp_path):
    write_s2("20210603", bands=("B02", "B04"))
    with pytest.raises(InputDataError, match=r"no band 'B8'.*B2, B4"):
        _build(tmp_path / "scenes", small_grid, "2021-06", ("B2", "B8"), tmp_path)


def test_corrupt_file_is_reported(write_s2, small_grid, tmp_path):
    folder = write_s2("20210603")
    bad = next(folder.glob("*_B04.tif"))
    bad.write_bytes(b"II*\x00 this is not a GeoTIFF")
    with pytest.raises(InputDataError, match=r"corrupt"):
        _build(tmp_path / "scenes", small_grid, "2021-06", ("B2", "B4"), tmp_path)


def test_file_without_crs_is_refused(tmp_path, small_grid):
    product = "S1A_IW_GRDH_1SDV_20210603T050000_X"
    write_band(tmp_path / product / f"{product}_VV.tif", np.ones((8, 8), np.float32), crs=None,
               nodata=None)
    with pytest.raises(InputDataError, match="no CRS"):
        discover_scenes(tmp_path)


def test_scene_in_the_wrong_place_is_an_empty_composite(tmp_path, small_grid):
    product = "S1A_IW_GRDH_1SDV_20210603T050000_X"
    # A UTM-33 array mislabelled as UTM 50 lands in China, far away from the grid.
    write_band(tmp_path / product / f"{product}_VV.tif", np.ones((8, 8), np.float32),
               crs="EPSG:32650", nodata=None)
    with pytest.raises(EmptyCompositeError, match="check the scenes' CRS"):
        _build(tmp_path, small_grid, "2021-06", ("VV",), tmp_path)


def test_s1_linear_and_db_give_the_same_db_composite(tmp_path, small_grid):
    rng = np.random.default_rng(0)
    linear = (0.1 * rng.gamma(4.4, 1 / 4.4, (2, 32, 32))).astype(np.float32)
    for i, (unit, values) in enumerate((("linear", linear), ("dB", 10 * np.log10(linear)))):
        product = f"S1A_IW_GRDH_1SDV_2021060{i + 1}T050000_X"
        write_band(tmp_path / unit / product / f"{product}_VV.tif", values[i], nodata=None,
                   tags={"SIGMA0_UNIT": unit} if unit == "linear" else None)
    # one linear (tagged) and one dB (detected from values) scene of the same month
    stack = _build([tmp_path / "linear", tmp_path / "dB"], small_grid, "2021-06",
                   ("VV", "s1_scene_count"), tmp_path, speckle="none")
    with rasterio.open(stack.image) as src:
        vv, count = src.read()
    expected = 10 * np.log10(linear.mean(axis=0))  # mean in linear power, then dB
    np.testing.assert_allclose(vv, expected, atol=1e-4)
    np.testing.assert_array_equal(count, 2)


def test_cloud_mask_band_and_float_reflectance(tmp_path, small_grid):
    # Stacked float reflectance files (already 0-1) with a cloud mask band instead of SCL.
    for day, value, cloud in (("03", 0.10, 0), ("13", 0.80, 1), ("23", 0.20, 0)):
        data = np.stack([np.full((32, 32), value, np.float32),
                         np.full((32, 32), cloud, np.float32)])
        write_band(tmp_path / "scenes" / f"S2A_MSIL2A_202106{day}T101031.tif", data,
                   nodata=None, descriptions=("B04", "CLM"))
    stack = _build(tmp_path / "scenes", small_grid, "2021-06", ("B4", "s2_clear_count"),
                   tmp_path)
    with rasterio.open(stack.image) as src:
        b4, count = src.read()
    np.testing.assert_allclose(b4, 0.15, rtol=1e-6)  # the cloudy 0.80 never counts
    np.testing.assert_array_equal(count, 2)


def test_offset_inferred_from_date_warns(write_s2, small_grid, tmp_path):
    write_s2("20230603", dn=2500, name_extra="X")  # no baseline in name or tags, after 2022
    with pytest.warns(UserWarning, match="assuming offset -1000"):
        stack = build_local_stack(tmp_path / "scenes", small_grid, "2023-06", ("B2",),
                                  out_dir=tmp_path / "out", progress=False)
    with rasterio.open(stack.image) as src:
        np.testing.assert_allclose(src.read(1), 0.15, rtol=1e-6)


def test_scene_folders_that_are_symbolic_links_are_found(tmp_path, small_grid):
    """Linked download folders were skipped: 'no rasters found', or a month without scenes."""
    product = "S1A_IW_GRDH_1SDV_20210603T050000_X"
    real = tmp_path / "downloads" / product
    for pol, value in (("VV", -12.0), ("VH", -18.0)):
        write_band(real / f"{product}_{pol}.tif", np.full((8, 8), value, np.float32),
                   nodata=None)
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    (scenes / product).symlink_to(real, target_is_directory=True)
    (scenes / "loop").symlink_to(scenes, target_is_directory=True)  # a cycle is entered once
    assert [s.product for s in discover_scenes(scenes).s1] == [product]
    (real / f"{product}_XX.tif").symlink_to(tmp_path / "unmounted" / "x.tif")
    with pytest.raises(InputDataError, match=r"_XX\.tif is a symbolic link to .*unmounted.*"
                                             r"which does not exist"):
        discover_scenes(scenes)
