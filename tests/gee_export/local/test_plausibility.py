"""Pixels over names and tags: what the local backend refuses or corrects, and why."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import rasterio

from core.errors import InputDataError
from gee_export.local import plausibility
from gee_export.local.labels import SCHEME_CODES, impervious_codes
from gee_export.local.scenes import BandRef, discover_scenes
from gee_export.local.stack import LocalRecipe, build_local_stack
from tests.support.rasters import write_band


def _build(source, grid, month, bands, tmp_path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "no label" is not what these test
        return build_local_stack(source, grid, month, bands, out_dir=tmp_path / "out",
                                 progress=False, **kw)


def _s1(tmp_path, values, tags=None):
    product = "S1A_IW_GRDH_1SDV_20210603T050000_X"
    write_band(tmp_path / "s1" / product / f"{product}_VV.tif", values.astype(np.float32),
               nodata=None, tags=tags)
    return tmp_path / "s1"


LINEAR = (0.08 * np.random.default_rng(0).gamma(4.4, 1 / 4.4, (32, 32))).astype(np.float32)


def test_s1_tagged_db_with_linear_values_is_read_as_linear(tmp_path, small_grid, caplog):
    source = _s1(tmp_path, LINEAR, {"SIGMA0_UNIT": "dB"})  # the case: median ~0.08
    with caplog.at_level(logging.WARNING, "gee_export"):
        stack = _build(source, small_grid, "2021-06", ("VV",), tmp_path, speckle="none")
    assert "tagged SIGMA0_UNIT=dB but its values" in caplog.text
    assert "rio edit-info --tag SIGMA0_UNIT=linear" in caplog.text
    with rasterio.open(stack.image) as src:  # 10*log10(linear), not 10*log10(10^(x/10))
        np.testing.assert_allclose(src.read(1), 10 * np.log10(LINEAR), atol=1e-4)


def test_s1_stated_unit_that_the_values_contradict_is_refused(tmp_path, small_grid):
    source = _s1(tmp_path, LINEAR)
    with pytest.raises(InputDataError, match="--s1-unit dB contradicts the values"):
        _build(source, small_grid, "2021-06", ("VV",), tmp_path, speckle="none",
               recipe=LocalRecipe(s1_unit="dB"))


def test_s1_uncalibrated_numbers_are_refused(tmp_path, small_grid):
    source = _s1(tmp_path, LINEAR * 2000)  # amplitude DN, median ~150
    with pytest.raises(InputDataError, match="uncalibrated digital numbers"):
        _build(source, small_grid, "2021-06", ("VV",), tmp_path, speckle="none")


def test_s1_unit_evidence_from_values():
    assert plausibility.s1_unit_evidence(np.array([-12.0, -18.0, 1.0])).unit == "dB"
    assert plausibility.s1_unit_evidence(np.array([0.02, 0.3, np.nan])).unit == "linear"
    assert plausibility.s1_unit_evidence(np.array([120.0, 80.0])).unit == "uncalibrated"
    assert plausibility.s1_unit_evidence(np.array([np.nan])).unit is None


def test_l2a_named_product_with_b10_is_level_1c(write_s2, small_grid, tmp_path):
    write_s2("20210603", bands=("B02", "B04", "B08", "B10"))  # named MSIL2A, carries B10
    scene = discover_scenes(tmp_path / "scenes").s2[0]
    assert scene.level == "L1C" and "B10" in scene.level_reason
    with pytest.raises(InputDataError, match=r"name or tags say L2A.*--allow-l1c"):
        _build(tmp_path / "scenes", small_grid, "2021-06", ("B2",), tmp_path)
    with pytest.warns(UserWarning, match="--allow-l1c"):
        build_local_stack(tmp_path / "scenes", small_grid, "2021-06", ("B2",),
                          out_dir=tmp_path / "out", progress=False,
                          recipe=LocalRecipe(allow_l1c=True))


def test_reflectance_that_cannot_be_reflectance_is_refused(write_s2, small_grid, tmp_path):
    write_s2("20230603", dn=500, name_extra="N0500")  # harmonized DN, yet baseline says -1000
    with pytest.raises(InputDataError, match="BOA_ADD_OFFSET=0"):
        _build(tmp_path / "scenes", small_grid, "2023-06", ("B2",), tmp_path)


def test_reflectance_scaled_differently_is_refused(tmp_path, small_grid):
    data = np.full((1, 32, 32), 40000.0, np.float32)  # float file of DN x 4
    write_band(tmp_path / "s" / "S2A_MSIL2A_20210603T101031.tif", data, nodata=None,
               descriptions=("B02",))
    with pytest.raises(InputDataError, match="do not scale to reflectance"):
        _build(tmp_path / "s", small_grid, "2021-06", ("B2",), tmp_path)


def test_label_codes_of_another_scheme_are_refused(write_s2, small_grid, tmp_path):
    write_s2("20210603")
    codes = np.full((32, 32), 10, np.uint8)
    codes[:, 16:] = 50  # ESA WorldCover: 10 tree cover, 50 built-up
    label = write_band(tmp_path / "scenes" / "labels" / "label.tif", codes, nodata=255)
    with pytest.raises(InputDataError, match="pass --label-scheme worldcover"):
        _build(tmp_path / "scenes", small_grid, "2021-06", ("B2",), tmp_path)
    stack = _build(tmp_path / "scenes", small_grid, "2021-06", ("B2",), tmp_path,
                   label=label, label_scheme="worldcover")
    with rasterio.open(stack.label) as src:
        np.testing.assert_array_equal(np.unique(src.read(1)), [0, 1])


def test_label_check_names_no_scheme_when_none_fits():
    with pytest.raises(InputDataError, match="map it to 0 pervious"):
        plausibility.check_label_codes(np.array([0.0, 1.0, 300.0]), "binary", SCHEME_CODES, "x",
                                       impervious=IMPERVIOUS)
    plausibility.check_label_codes(np.array([0.0, 1.0, 255.0, -1.0, np.nan]), "binary",
                                   SCHEME_CODES, "x", impervious=IMPERVIOUS)  # nodata passes


IMPERVIOUS = {name: impervious_codes(name) for name in SCHEME_CODES}


def test_a_scheme_that_reads_no_code_as_impervious_is_never_suggested():
    """Dynamic World's training codes (built = 7, 10 cloud) fit eo-learn's code set, whose
    artificial surface is 8: suggesting it gave a dataset without one positive."""
    with pytest.raises(InputDataError) as err:
        plausibility.check_label_codes(np.array([0.0, 2.0, 5.0, 7.0, 10.0]), "dynamic_world",
                                       SCHEME_CODES, "x", impervious=IMPERVIOUS)
    assert "--label-scheme eolearn_lulc" not in str(err.value)
    assert "reads none of them as impervious" in str(err.value)
    assert "--label-map" in str(err.value)
    with pytest.raises(InputDataError, match="pass --label-scheme eolearn_lulc"):
        plausibility.check_label_codes(np.array([0.0, 2.0, 8.0, 10.0]), "dynamic_world",
                                       SCHEME_CODES, "x", impervious=IMPERVIOUS)


def test_codes_within_a_schemes_set_are_answered_with_a_label_map_of_those_codes():
    """SEN12MS's MODIS IGBP codes 4, 5, 8, 9 lie within eo-learn's set: 'pass --label-scheme
    eolearn_lulc' was the advice, which reads IGBP 8 (woody savanna) as artificial surface."""
    with pytest.raises(InputDataError) as err:
        plausibility.check_label_codes(np.array([4.0, 5.0, 8.0, 9.0]), "binary", SCHEME_CODES,
                                       "x", impervious=IMPERVIOUS)
    text = str(err.value)
    assert "state what each code means with --label-map 4=C,5=C,8=C,9=C" in text
    assert "it fits" not in text and "only if the label holds 'eolearn_lulc' classes" in text


def test_a_label_of_several_bands_names_the_band_it_reads(write_s2, small_grid, tmp_path):
    """SEN12MS's land cover holds four schemes in four bands; band 1 was read silently."""
    write_s2("20210603")
    codes = np.zeros((4, 32, 32), np.uint8)
    codes[:, :, 16:] = 1
    label = tmp_path / "scenes" / "labels" / "label.tif"
    write_band(label, codes, nodata=255)
    with pytest.warns(UserWarning, match=r"label\.tif has 4 bands: band 1 is read as the "
                      "label") as caught:
        build_local_stack(tmp_path / "scenes", small_grid, "2021-06", ("B2",),
                          out_dir=tmp_path / "out", progress=False)
    aside = label.with_name("label_bandN.tif")
    text = str(next(w.message for w in caught if "4 bands" in str(w.message)))
    # was `gdal_translate -b N label.tif label.tif`: the output overwrote its own input
    assert (f"save it aside (gdal_translate -b N {label} {aside}), move {label} out of "
            f"--scenes and put {aside} in its place ({label})") in text


def test_sample_is_bounded_whatever_the_raster_size(tmp_path):
    big = write_band(tmp_path / "big.tif", np.ones((2048, 3000), np.uint16), nodata=0)
    sample = plausibility.read_sample(BandRef(big))
    assert sample.shape[0] <= plausibility.SAMPLE_SIDE
    assert sample.shape[1] <= plausibility.SAMPLE_SIDE


@pytest.mark.parametrize("codes,nodata,says", [
    ((0, 255), None, "holds only the codes 0 and 255 (50.0 % 255), as a mask saved as 0/255 "
     "does: the binary scheme reads 255 as nodata, so no pixel would be impervious. If 255 "
     "marks impervious surface, pass --label-map 0=0,255=1"),
    ((0, 1), 0, "is tagged nodata=0, which hides its 50.0 % pervious pixels (code 0 of the "
     "binary scheme); remove the tag (rio edit-info --unset-nodata FILE)"),
    ((0, 1), 1, "is tagged nodata=1, which hides its 50.0 % impervious pixels"),
])
def test_a_binary_label_written_so_that_a_class_vanishes_is_refused(
        write_s2, small_grid, tmp_path, codes, nodata, says):
    """A 0/255 mask gave a dataset with no impervious pixel, and a label tagged nodata=0 an
    empty one with advice about the area: both exit 0 before."""
    write_s2("20210603")
    values = np.full((32, 32), codes[0], np.uint8)
    values[:, 16:] = codes[1]
    label = write_band(tmp_path / "scenes" / "labels" / "label.tif", values, nodata=nodata)
    with pytest.raises(InputDataError) as err:
        _build(tmp_path / "scenes", small_grid, "2021-06", ("B2",), tmp_path, label=label)
    assert says in str(err.value), str(err.value)
    if codes == (0, 255):  # as the message says: the mask read with --label-map
        stack = _build(tmp_path / "scenes", small_grid, "2021-06", ("B2",), tmp_path,
                       label=label, label_scheme="map:0=0,255=1")
        with rasterio.open(stack.label) as src:
            np.testing.assert_array_equal(np.unique(src.read(1)), [0, 1])


def test_a_label_tagged_255_that_holds_only_pervious_pixels_is_read_as_tagged(
        write_s2, small_grid, tmp_path):
    write_s2("20210603")
    values = np.zeros((32, 32), np.uint8)
    values[:, 16:] = 255  # a rural tile: pervious, and pixels without a label
    label = write_band(tmp_path / "scenes" / "labels" / "label.tif", values, nodata=255)
    _build(tmp_path / "scenes", small_grid, "2021-06", ("B2",), tmp_path, label=label)
