"""Sentinel-1 linear power to dB: the one conversion, and ``isamap-import-patches --s1-unit
linear`` on real Sentinel-1/2 GeoTIFF pairs (VV/VH stored in linear power)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from contract.dataset import read_index, read_manifest
from contract.sigma0 import linear_to_db, to_db
from tests.gee_export.imported.test_patches_values import NAMES, _cut, _run
from training.band_ranges import value_problems


def _power(db: np.ndarray) -> np.ndarray:
    """dB as linear power, with a border of zero fill (GRD's no-data) in the first row."""
    power = 10 ** (db / 10)
    power[:, 0, :3] = 0.0
    return power


def test_the_export_and_the_import_convert_with_one_function():
    import gee_export.local.sentinel1 as local_s1

    assert local_s1.linear_to_db is linear_to_db
    power = np.array([[[0.1, 1.0, 0.0, -1.0, np.nan, np.inf]]], np.float32)
    np.testing.assert_allclose(linear_to_db(power[0, 0, :2]), [-10.0, 0.0], atol=1e-6)
    image = np.concatenate([power, power])
    out = to_db(image, ("B2", "VV"), "linear")
    np.testing.assert_array_equal(out[0], power[0])  # reflectance untouched
    np.testing.assert_allclose(out[1, 0, :2], [-10.0, 0.0], atol=1e-6)
    assert np.isnan(out[1, 0, 2:]).all()  # <= 0, NaN, inf: nodata, as the import writes it
    assert to_db(power.copy(), ("VV",), "dB")[0, 0, 5] == np.inf  # dB: read as it is


def test_linear_power_imported_with_s1_unit_linear_holds_10_log10_of_it(shared_data, tmp_path,
                                                                        capsys):
    """Linear VV/VH could only be refused, with advice to convert the files themselves; now
    ``--s1-unit linear`` writes 10*log10 of them, the model-facing value check passes on the
    dataset, and the recipe records the unit, so another setting is refused on that dataset."""
    src = _cut(shared_data, tmp_path / "theirs", s1=_power, s2_scale=1e-4)
    out = tmp_path / "dataset"
    assert _run(src, out, "--s1-unit", "linear") == 0, capsys.readouterr().err
    records = read_index(out)
    assert len(records) == 9
    assert read_manifest(out)["recipe"]["imported"]["s1_unit"] == "linear"
    pooled: dict[str, list[np.ndarray]] = {b: [] for b in NAMES}
    for record in records:
        with rasterio.open(src / "images" / f"t_{64 * record['row']}_{64 * record['col']}.tif") \
                as ds:
            theirs = ds.read().astype(np.float64)
        with rasterio.open(out / record["image"]) as ds:
            ours = ds.read()
            assert ds.descriptions == NAMES
        with np.errstate(divide="ignore"):
            want = np.where(theirs[4:] > 0, 10 * np.log10(theirs[4:]), np.nan)
        np.testing.assert_allclose(ours[4:], want, rtol=0, atol=1e-4)
        assert np.isnan(ours[4:, 0, :3]).all()  # power 0: nodata, not -inf
        np.testing.assert_array_equal(ours[:4], theirs[:4].astype(np.float32))
        for band, array in zip(NAMES, ours, strict=True):
            pooled[band].append(array.ravel())
    samples = {b: np.concatenate(v) for b, v in pooled.items()}
    assert -15 < np.nanmedian(samples["VV"]) < -8 and -22 < np.nanmedian(samples["VH"]) < -14
    assert value_problems(samples, {}) == []  # the rule a model without ranges applies
    db = _cut(shared_data, tmp_path / "theirs_db", s2_scale=1e-4)
    capsys.readouterr()
    assert _run(db, out, "--month", "2020-05") == 2  # a month added without the option
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error:" in err and "other recipe" in err, err
    # the option it stands for can be read (it was "s1_unit recorded only there")
    assert "recipe.imported.s1_unit: linear there, unset now" in err, err
    assert "run with the options it was made with" in err, err
    assert read_manifest(out)["months"] == ["2020-04"]
    assert _run(src, out, "--s1-unit", "linear") == 0  # the same run again: nothing to do


def test_s1_unit_linear_on_db_values_is_refused_and_writes_nothing(shared_data, tmp_path,
                                                                   capsys):
    """dB values given ``--s1-unit linear`` would have been log10 of negative numbers: NaN."""
    src = _cut(shared_data, tmp_path / "theirs", s2_scale=1e-4)
    out: Path = tmp_path / "dataset"
    assert _run(src, out, "--s1-unit", "linear") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "VV (median" in err and "already hold dB" in err
    assert "drop --s1-unit linear" in err and not out.exists()


def test_s1_unit_linear_on_images_without_sentinel1_bands_is_refused():
    """Given to optical-only images, the option would convert nothing: said, not ignored."""
    import pytest

    from contract.sigma0 import check_s1_unit
    from core.errors import InputDataError

    optical = {b: np.full(64, 0.1, np.float32) for b in ("B2", "B3", "B4", "B8")}
    with pytest.raises(InputDataError, match=r"images' bands \(B2, B3, B4, B8\) hold none; "
                                             r"drop --s1-unit"):
        check_s1_unit(optical, "linear")
    check_s1_unit(optical, "dB")  # the default asks nothing of them


def test_linear_power_stored_as_integers_x_10000_is_told_so_not_the_band_order(shared_data,
                                                                               tmp_path,
                                                                               capsys):
    """VV/VH of an integer export (linear power x 10000) were told to fix the band order
    (--bands) or the reflectance scale; with --s1-unit linear they became +28 dB and were told
    the same. Both now say what the values look like and to divide them by 10000."""
    src = _cut(shared_data, tmp_path / "theirs", s1=lambda db: np.round(10 ** (db / 10) * 1e4),
               s2_scale=1e-4)
    for extra in ((), ("--s1-unit", "linear")):
        out = tmp_path / f"dataset{len(extra)}"
        assert _run(src, out, *extra) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert "VV (median 640.5), VH (median 178) look like sigma0 in linear power x 10000" \
            in err, err
        assert "divide them by 10000 in the files, then import them with --s1-unit linear" \
            in err and "--bands" not in err, err
        assert not out.exists()
    # linear power as floats is still told to give --s1-unit linear, nothing more
    floats = _cut(shared_data, tmp_path / "floats", s1=_power, s2_scale=1e-4)
    assert _run(floats, tmp_path / "f") == 2
    err = capsys.readouterr().err
    assert "give --s1-unit linear" in err and "x 10000" not in err
