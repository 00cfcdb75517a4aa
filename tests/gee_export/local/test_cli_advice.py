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
    assert (f"{name} says nothing of Sentinel-1/2 (neither its name nor the descriptions of "
            f"its {count} band(s))") in text
    assert "move it out of --scenes" in text and "labels/label.tif" in text
    assert "if it is a scene, start its name with S1 or S2 or name its bands" in text


def test_a_scene_with_an_unusual_name_is_not_said_to_be_no_scene(tmp_path):
    """An S1 scene saved with neither S1 in its name nor band descriptions was said to be 'not
    a Sentinel-1/2 scene'; what is known is that it says nothing of it."""
    write_band(tmp_path / "sigma0 20210603.tif", np.ones((2, 8, 8), np.float32))
    with pytest.raises(InputDataError) as err:
        discover_scenes(tmp_path)
    text = str(err.value)
    assert "is not a Sentinel-1/2 scene" not in text
    assert "sigma0 20210603.tif says nothing of Sentinel-1/2" in text


def test_s2_band_names_name_an_unnamed_file_of_as_many_bands(tmp_path):
    """--s2-band-names was ignored for a stacked file whose name says no sensor: refused as
    no scene, though the flag names the bands of such stacked S2 files."""
    names = ("B2", "B3", "B4", "B8")
    write_band(tmp_path / "tile_2021-06-03.tif", np.ones((4, 8, 8), np.uint16))
    found = discover_scenes(tmp_path, s2_band_names=names)
    (scene,) = found.s2
    assert scene.band_names == names and scene.date.isoformat() == "2021-06-03"
    with pytest.raises(InputDataError, match="says nothing of Sentinel-1/2"):
        discover_scenes(tmp_path, s2_band_names=("B2", "B3", "B4"))  # 3 names, 4 bands
