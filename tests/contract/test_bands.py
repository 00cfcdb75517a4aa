import math

import pytest

from contract import bands
from core.errors import UnknownBandError


def test_defaults_are_the_papers_inputs():
    assert bands.DEFAULT_IMAGE_BANDS == ("B2", "B3", "B4", "B8", "VV", "VH")
    assert bands.get_band("B8").scale == 1e-4 and bands.get_band("VV").unit == "dB"
    assert bands.get_band("label").nodata == 255 and bands.get_band("label").dtype == "uint8"
    assert math.isnan(bands.get_band("B2").nodata)


def test_aliases_and_categorical():
    assert bands.get_band("B08").name == "B8"
    assert bands.get_band("label").is_categorical and not bands.get_band("B11").is_categorical
    assert bands.get_band("B11").native_resolution == 20.0


def test_unknown_and_duplicate_bands_are_refused_with_the_list():
    with pytest.raises(UnknownBandError, match="known bands: B2"):
        bands.get_band("B99")
    with pytest.raises(UnknownBandError, match="twice"):
        bands.resolve(["B2", "B02"])


def test_parse_band_list_and_by_sensor():
    names = bands.parse_band_list(" B02, B3,B4 ,B8,VV,VH")
    assert names == bands.DEFAULT_IMAGE_BANDS
    assert bands.by_sensor(names, "S1") == ("VV", "VH")
