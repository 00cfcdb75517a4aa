"""Refusals of local inputs tell a command-line user what to type, with installed tools."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from core.errors import EmptyCompositeError, InputDataError
from gee_export.local.scenes import discover_scenes
from gee_export.local.stack import build_local_stack
from tests.support.rasters import write_band


def test_unnamed_stacked_bands_point_to_rio_edit_info(tmp_path):
    write_band(tmp_path / "S2A_MSIL2A_20210603T101031.tif", np.ones((3, 8, 8), np.uint16))
    with pytest.raises(InputDataError) as err:
        discover_scenes(tmp_path)
    assert "rio edit-info --bidx N --description" in str(err.value)
    assert "<product>_<BAND>.tif" in str(err.value)


def test_missing_crs_and_date_point_to_rio_edit_info(tmp_path):
    write_band(tmp_path / "a" / "S2A_MSIL2A_20210603T101031_B02.tif", np.ones((8, 8), np.uint16),
               crs=None)
    with pytest.raises(InputDataError, match="rio edit-info --crs EPSG:xxxx"):
        discover_scenes(tmp_path / "a")
    write_band(tmp_path / "b" / "S2A_MSIL2A_X_B02.tif", np.ones((8, 8), np.uint16))
    with pytest.raises(InputDataError, match="rio edit-info --tag ACQUISITION_DATE="):
        discover_scenes(tmp_path / "b")


def test_all_cloud_month_suggests_what_the_local_backend_has(write_s2, small_grid, tmp_path):
    write_s2("20210603", scl_value=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(EmptyCompositeError) as err:
            build_local_stack(tmp_path / "scenes", small_grid, "2021-06", ("B2",),
                              out_dir=tmp_path / "out", progress=False)
    text = str(err.value)
    assert "--scenes" in text and "--month" in text and "wider window" not in text


@pytest.mark.parametrize("name, count, descriptions", [
    ("ROIs1158_spring_lc_1_p30.tif", 4, None),  # SEN12MS land cover, copied beside its scenes
    ("dem.tif", 1, ("elevation",)),
])
def test_a_raster_that_is_no_scene_is_told_to_leave_the_scenes_folder(tmp_path, name, count,
                                                                       descriptions):
    """It got 'cannot tell which band is which ... rio edit-info --description B2'."""
    write_band(tmp_path / name, np.ones((count, 8, 8), np.uint8), descriptions=descriptions)
    with pytest.raises(InputDataError) as err:
        discover_scenes(tmp_path)
    text = str(err.value)
    assert f"{name} is not a Sentinel-1/2 scene" in text
    assert "move it out of --scenes" in text and "labels/label.tif" in text
