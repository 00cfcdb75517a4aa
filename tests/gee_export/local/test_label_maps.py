"""Label codes stated on the command line (``--label-map``) and labels their scheme contradicts."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError, InputDataError
from gee_export.local import plausibility
from gee_export.local.labels import (
    SCHEME_CODES,
    check_codes,
    get_scheme,
    label_map_scheme,
    parse_label_map,
)
from gee_export.local.scenes import BandRef
from tests.support.rasters import crop_raster, write_band

DW_MAP = "7=1,0=255,10=255,*=0"


def test_label_map_parses_codes_and_the_default():
    assert parse_label_map(DW_MAP) == ({7: 1, 0: 255, 10: 255}, 0)
    assert parse_label_map("map:5=1,1=0") == ({5: 1, 1: 0}, None)
    assert label_map_scheme(" 7=1, 0=255,*=0 ,10=255") == "map:0=255,7=1,10=255,*=0"


@pytest.mark.parametrize("spec", ["7", "7=x", "a=1", "", "7=2", "*=9"])
def test_a_malformed_label_map_is_one_clear_line(spec):
    with pytest.raises(ConfigError, match=r"--label-map|label classes must map"):
        label_map_scheme(spec)


def test_label_map_maps_as_written_and_unlisted_codes_follow_the_star():
    mapping = get_scheme("map:" + DW_MAP)
    codes = np.array([0, 1, 2, 5, 7, 9, 10, 255, -1])
    assert mapping.apply(codes).tolist() == [255, 0, 0, 0, 1, 0, 255, 255, 255]
    strict = get_scheme("map:5=1,1=0")  # no '*': anything else is ignored, never guessed
    assert strict.apply(np.array([5, 1, 3])).tolist() == [1, 0, 255]


def test_dynamic_world_label_crop_maps_built_to_one(shared_data, tmp_path):
    """A crop of the real Java label: class 7 is built, 0 and 10 are ignored, the rest 0."""
    src = shared_data / "dynamicworld_s2" / "java_label.tif"
    crop = crop_raster(src, tmp_path / "java_label.tif", 200, 300, 40, 60)
    import rasterio

    codes = rasterio.open(crop).read(1)
    mapped = get_scheme("map:" + DW_MAP).apply(codes)
    assert (mapped == 1).sum() == (codes == 7).sum() > 0
    assert (mapped == 255).sum() == np.isin(codes, (0, 10)).sum()
    assert (mapped == 0).sum() == np.isin(codes, (1, 2, 3, 4, 5, 6, 8, 9)).sum() > 0
    check_codes(BandRef(crop), "map:" + DW_MAP)  # the star covers every code: accepted


def test_a_strict_label_map_refuses_a_code_it_does_not_list(tmp_path):
    path = write_band(tmp_path / "label.tif", np.array([[5, 1], [3, 1]] * 8, np.uint8))
    with pytest.raises(InputDataError, match="3 is not in the 'map:1=0,5=1' label scheme"):
        check_codes(BandRef(path), "map:1=0,5=1")


def test_binary_label_read_as_chesapeake_land_cover_is_refused(tmp_path):
    """0/1 impervious labels read as Chesapeake would be 'no data' and 'water': refused."""
    label = np.zeros((32, 32), np.uint8)
    label[8:20, 4:30] = 1
    path = write_band(tmp_path / "label.tif", label, nodata=None)
    with pytest.raises(InputDataError) as err:
        check_codes(BandRef(path), "landcover:chesapeake")
    message = str(err.value)
    assert "only the codes 0 and 1" in message and "0 as class 255, 1 as class 3" in message
    assert "--label-scheme binary" in message and "\n" not in message
    check_codes(BandRef(path), "binary")  # the scheme it is: accepted
    check_codes(BandRef(path), "map:0=0,1=1")  # stated code by code: the user's word


def test_a_scheme_that_ignores_nearly_all_of_a_label_is_refused():
    values = np.full((64, 64), 90, np.float32)  # WorldCover herbaceous wetland: ignored
    values[0, 0] = 50
    apply = get_scheme("landcover:worldcover").apply
    with pytest.raises(InputDataError, match=r"ignores 100\.0 % of its coded pixels"):
        plausibility.check_label_balance(values, apply, "landcover:worldcover",
                                         SCHEME_CODES["binary"], "label x")
    values[:8] = 40  # an eighth cropland: a real, if wet, land-cover label
    plausibility.check_label_balance(values, apply, "landcover:worldcover",
                                     SCHEME_CODES["binary"], "label x")
