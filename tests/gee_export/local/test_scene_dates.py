"""Sentinel-2 scenes are dated by their sensing time, never by the production time that
old-format names (used until December 2016) begin with."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from core.errors import InputDataError
from gee_export.local.scenes import open_scene, product_date
from tests.support.rasters import write_band

OLD_PRODUCT = ("S2A_OPER_PRD_MSIL2A_PDMC_20160708T141520_R108_V20150815T103020_"
               "20150815T103020")
OLD_TILE = "S2A_OPER_MSI_L2A_TL_SGS__20160708T141520_A000734_T32UNU_N02.04"


def test_old_format_names_give_their_sensing_date_or_none():
    assert product_date(OLD_PRODUCT) == dt.date(2015, 8, 15)  # not the 2016-07 production
    assert product_date(OLD_TILE) is None  # a tile's name holds no sensing time
    assert product_date("S2B_MSIL2A_20190603T103021_N0212_R108_T32UNU_20190603T134511") == \
        dt.date(2019, 6, 3)


def test_an_old_format_tile_needs_its_date_given(tmp_path):
    path = write_band(tmp_path / f"{OLD_TILE}.tif", np.full((4, 4), 1200, np.uint16))
    with pytest.raises(InputDataError, match="old-format name holds only the production time"):
        open_scene(path, sensor="S2", band_names=["B4"])
    scene = open_scene(path, sensor="S2", band_names=["B4"], undated=dt.date(2015, 8, 15))
    assert scene.date == dt.date(2015, 8, 15)
