"""Every file name docs/local-backend.md documents is read as the scene and band it names."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from gee_export.local.scenes import discover_scenes
from tests.support.rasters import write_band

S2 = "S2A_MSIL1C_20150909T100017_N0204_R122_T33TVM"
S1 = "S1A_IW_GRDH_1SDV_20150909T050217_20150909T050242_007649_00A8F6_1F5A"


@pytest.mark.parametrize(("suffix", "band"), [
    ("B02", "B2"), ("B2", "B2"), ("B8A", "B8A"), ("b8a", "B8A"), ("SCL", "SCL"),
    ("CLM", "CLOUD_MASK"), ("CLOUD_MASK", "CLOUD_MASK"), ("cloud_mask", "CLOUD_MASK"),
    ("CLOUDMASK", "CLOUD_MASK"), ("MASK", "CLOUD_MASK"), ("VV", "VV"), ("VH", "VH")])
def test_one_file_per_band(tmp_path, suffix, band):
    """``<product>_<BAND>.tif``: one scene of that product, holding that band."""
    product = S1 if band in ("VV", "VH") else S2
    partner = "VH" if band == "VV" else "VV" if band == "VH" else "B04"
    pixels = np.full((8, 8), 1200, np.uint16)
    write_band(tmp_path / f"{product}_{partner}.tif", pixels)
    write_band(tmp_path / f"{product}_{suffix}.tif", pixels)
    found = discover_scenes(tmp_path)
    (scene,) = found.s1 + found.s2
    assert scene.product == product and scene.date == dt.date(2015, 9, 9)
    assert band in scene.band_names and len(scene.band_names) == 2


@pytest.mark.parametrize(("stacked", "mask", "band"), [
    (f"{S2}_stack", f"{S2}_SCL", "SCL"), (f"{S2}_stack", f"{S2}_CLOUD_MASK", "CLOUD_MASK"),
    (f"{S2}_stack", f"{S2}_CLM", "CLOUD_MASK"), ("java_s2l2a", "java_scl", "SCL")])
def test_mask_file_beside_a_stacked_file(tmp_path, stacked, mask, band):
    """``<product>_SCL.tif`` (or ``_CLOUD_MASK``) joins the stacked ``<product>_<anything>.tif``."""
    write_band(tmp_path / f"{stacked}.tif", np.full((2, 8, 8), 1200, np.uint16),
               descriptions=("B02", "B04"), tags={"ACQUISITION_DATE": "2015-09-09"})
    write_band(tmp_path / f"{mask}.tif", np.full((8, 8), 4, np.uint8))
    (scene,) = discover_scenes(tmp_path).s2
    assert scene.product == stacked and scene.band_names == ("B2", "B4", band)
