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
    label, b11 = bands.get_band("label"), bands.get_band("B11")
    assert (label.resampling, b11.resampling) == ("mode", "bilinear")
    assert bands.get_band("B11").native_resolution == 20.0


def test_case_is_no_part_of_a_band_name():
    """Another project's ``vv``/``vh`` were no band: --scale 0.0001 turned their dB into
    -0.00108 and the import recorded them as unknown bands."""
    assert bands.get_band("vv").name == "VV" and bands.get_band("vv").unit == "dB"
    assert bands.canonical_band("b08") == "B8" and bands.canonical_band("b8a") == "B8A"
    assert bands.get_band("vh_m1").name == "VH_m1" and bands.earlier_name("vv", 2) == "VV_m2"
    assert bands.canonical_band("NDVI") == "NDVI" and bands.find_band("ndvi") is None


def test_unknown_and_duplicate_bands_are_refused_with_the_list():
    with pytest.raises(UnknownBandError, match="known bands: B2"):
        bands.get_band("B99")
    with pytest.raises(UnknownBandError, match="twice"):
        bands.resolve(["B2", "B02"])


def test_parse_band_list():
    names = bands.parse_band_list(" B02, B3,B4 ,B8,VV,VH")
    assert names == bands.DEFAULT_IMAGE_BANDS


def test_earlier_months_are_the_same_band_named_with_how_far_back():
    spec = bands.get_band("B04_m2")
    assert (spec.name, spec.base, spec.months_before) == ("B4_m2", "B4", 2)
    assert spec.source_name == "B4" and spec.wavelength_nm == 665.0 and spec.scale == 1e-4
    assert bands.get_band("VH_m1").sensor == "S1" and bands.get_band("B4").base == "B4"
    assert bands.series_bands(["B4", "VV"], 3) == ("B4", "VV", "B4_m1", "VV_m1", "B4_m2",
                                                   "VV_m2")
    assert bands.parse_band_list("B2,B2_m1") == ("B2", "B2_m1")
    for name in ("label_m1", "A00_m1", "B4_m0", "B4_m24", "B4_m01", "s2_clear_count_m1"):
        with pytest.raises(UnknownBandError, match="B4_m1-style"):
            bands.get_band(name)
    with pytest.raises(UnknownBandError, match="twice"):
        bands.resolve(["B4_m1", "B04_m1"])


def test_the_series_rules_have_one_owner():
    """Which bands are a month's own (own_month) and which sensors a series repeats
    (SERIES_SENSORS) are spelled in contract.bands alone."""
    from tests.support.sources import where

    assert where(r"if not [\w.]*get_band\(\w+\)\.months_before") == {}
    assert where(r'in \("S[12]", "S[12]"\)') == {}
    assert bands.SERIES_SENSORS == ("S2", "S1")


def test_a_band_named_twice_is_refused_in_one_line_wherever_a_band_list_is_read(
        tmp_path, monkeypatch, capsys):
    """``isamap-train --bands B2,B2,B3`` trained a model reading B2 as two inputs (exit 0); the
    one band-list reader (:func:`contract.bands.band_list`) refuses it for every command."""
    from cli.import_patches import main as import_main
    from cli.predict import predict_main
    from cli.train import train_main
    from tests.support.rasters import write_patch_dataset

    monkeypatch.chdir(tmp_path)
    write_patch_dataset(tmp_path / "ds")
    (tmp_path / "train.yaml").write_text("data: ds\nout: run\nbands: [B2, B2, B3]\n")
    line = "error: --bands B2,B2,B3 names B2 twice; give each band once"
    for prog, run in (
            ("isamap-train", lambda: train_main(["--data", "ds", "--model", "unet", "--bands",
                                                 "B2,B2,B3", "--out", "run", "--epochs", "1"])),
            ("isamap-train", lambda: train_main(["--config", "train.yaml"])),
            ("isamap-import-patches", lambda: import_main(["ds", "--out", "imported", "--month",
                                                           "2021-06", "--bands", "B2,B2,B3"])),
            ("isamap-predict", lambda: predict_main(["--model", "run/model.pt", "--input",
                                                     "ds/x.tif", "--bands", "B2,B2,B3",
                                                     "--out", "maps"]))):
        assert run() == 2
        assert capsys.readouterr().err.splitlines() == [f"{prog}: {line}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "train.yaml"]
