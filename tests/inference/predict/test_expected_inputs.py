"""isamap-predict compares its input with the model's training data before the first tile.

The model files are real: one trained by ``isamap-train`` on a small patch dataset (the
session's ``trained_unet``: it records its grid and band percentiles), one of an older isamap
(no ranges: band-name rules only).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import rasterio
from affine import Affine

from cli.predict import predict_main
from contract.geotiff import write_geotiff
from tests.support.rasters import BANDS, scene_stack, write_stack
from training.modelfile import ModelMeta, read_model_file, save_model_file
from training.models import create_model

COMMON = ["--tile", "64", "--overlap", "16", "--quiet", "--precision", "fp32"]
TINY = {"widths": [4, 8, 8, 16, 16]}


#: the session's trained_unet and the module fixtures below are built once: their readers
#: run on one worker
pytestmark = pytest.mark.xdist_group("trained_unet")


@pytest.fixture(scope="module")
def older(tmp_path_factory):
    """A model file without recorded ranges or grid, as older isamap versions wrote them."""
    model = create_model("unet", len(BANDS), 2, **TINY)
    meta = ModelMeta("unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6, model_kwargs=TINY)
    return save_model_file(tmp_path_factory.mktemp("old") / "unet.pt", model, meta)


def _predict(model, stack, out, *extra):
    return predict_main(["--model", str(model), "--input", str(stack), "--out", str(out),
                         *COMMON, *extra])


def _int16(data: np.ndarray) -> np.ndarray:
    """Reflectance x 10000 and dB x 100, as an integer export writes them."""
    scaled = np.where(np.array([b.startswith("V") for b in BANDS])[:, None, None],
                      data * 100, data * 10000)
    return np.round(scaled).astype(np.int16)


def test_the_model_file_records_its_grid_and_band_ranges(trained_unet):
    meta, _ = read_model_file(trained_unet)
    assert meta.pixel_size == 10.0 and set(meta.band_ranges) == set(BANDS)
    p1, p50, p99 = meta.band_ranges["VV"]
    assert p1 < p50 < p99 < 0  # sigma0 in dB
    assert 0 < meta.band_ranges["B2"][1] < 0.3  # reflectance


def test_an_integer_stack_is_refused_and_the_float_one_maps(trained_unet, tmp_path, capsys):
    data = scene_stack(96, 112)
    floats = write_stack(tmp_path / "f.tif", data)
    assert _predict(trained_unet, floats, tmp_path / "f" / "isa") == 0
    ints = write_geotiff(tmp_path / "i.tif", _int16(data), Affine(10, 0, 5e5, 0, -10, 3.4e6),
                         "EPSG:32650", None, descriptions=list(BANDS))
    capsys.readouterr()
    assert _predict(trained_unet, ints, tmp_path / "i" / "isa") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "does not hold what the model was trained on: B2 has a median of" in err
    assert "(x 10000 of values the model knows?)" in err and "(and 5 more)" in err
    assert not (tmp_path / "i").exists()  # refused before anything was written


def test_an_integer_stack_is_refused_by_band_names_for_an_older_model(older, tmp_path, capsys,
                                                                      caplog):
    ints = write_geotiff(tmp_path / "i.tif", _int16(scene_stack(96, 112)),
                         Affine(10, 0, 5e5, 0, -10, 3.4e6), "EPSG:32650", None,
                         descriptions=list(BANDS))
    with caplog.at_level(logging.INFO, logger="training.band_ranges"):  # the rule's owner
        assert _predict(older, ints, tmp_path / "i" / "isa") == 2
    assert "records no value ranges" in caplog.text
    err = capsys.readouterr().err
    assert "B2 has a median of" in err and "reflectance x 10000 (an integer export)?" in err


def test_a_30_m_stack_is_refused_for_a_10_m_model(trained_unet, tmp_path, capsys):
    coarse = write_stack(tmp_path / "c.tif", scene_stack(64, 64), res=30.0)
    assert _predict(trained_unet, coarse, tmp_path / "c" / "isa") == 2
    err = capsys.readouterr().err
    assert "has pixels of 30 m, but the model was trained on 10 m pixels" in err
    assert "gdalwarp -tr 10 10 -r bilinear" in err


@pytest.mark.parametrize("which", ["trained_unet", "older"])
def test_the_order_an_error_suggested_is_checked_on_a_reordered_file(which, request, tmp_path,
                                                                     capsys):
    """A file stored VV,VH,B2,B3,B4,B8 without names, given the order the refusal proposes."""
    model = request.getfixturevalue(which)
    data = scene_stack(96, 112)
    stored = data[[4, 5, 0, 1, 2, 3]]
    unnamed = write_geotiff(tmp_path / "u.tif", stored, Affine(10, 0, 5e5, 0, -10, 3.4e6),
                            "EPSG:32650", float("nan"))
    assert _predict(model, unnamed, tmp_path / "u" / "isa") == 2
    assert "--bands B2,B3,B4,B8,VV,VH" in capsys.readouterr().err  # the suggestion
    assert _predict(model, unnamed, tmp_path / "u" / "isa", "--bands", ",".join(BANDS)) == 2
    err = capsys.readouterr().err
    assert "B2 has a median of" in err and "--bands must name the file's bands in the order" in err
    assert _predict(model, unnamed, tmp_path / "u" / "isa", "--bands",
                    "VV,VH,B2,B3,B4,B8") == 0  # the true order maps


def test_vegetation_in_the_stated_band_order_maps(older, tmp_path):
    """Red well below near infrared over vegetation: no refusal (the swapped bands are
    refused: cli/test_predict.py's test_refusals)."""
    rng = np.random.default_rng(3)
    veg = rng.random((96, 112)) < 0.7
    data = np.empty((6, 96, 112), np.float32)
    data[0] = 0.03 + 0.01 * rng.random(veg.shape)
    data[1] = 0.06 + 0.01 * rng.random(veg.shape)
    data[2] = np.where(veg, 0.04, 0.2) + 0.01 * rng.random(veg.shape)  # red
    data[3] = np.where(veg, 0.4, 0.25) + 0.02 * rng.random(veg.shape)  # near infrared
    data[4] = -12 + rng.normal(0, 1, veg.shape)
    data[5] = -19 + rng.normal(0, 1, veg.shape)
    fine = write_geotiff(tmp_path / "ok.tif", data, Affine(10, 0, 5e5, 0, -10, 3.4e6),
                         "EPSG:32650", float("nan"))
    assert _predict(older, fine, tmp_path / "ok" / "isa", "--bands", ",".join(BANDS)) == 0


def test_compare_with_an_untagged_copy_of_a_class_map_is_read_by_its_pixels(older, tmp_path):
    """Without isamap's tags a class map's codes still make a change map (another map's
    codes are refused: cli/test_predict.py's test_refusals)."""
    stack = write_stack(tmp_path / "s.tif", scene_stack(64, 80))
    assert _predict(older, stack, tmp_path / "a" / "isa") == 0
    with rasterio.open(tmp_path / "a" / "isa_class.tif") as src:
        profile = {k: src.profile[k] for k in ("width", "height", "transform", "crs", "nodata")}
    with rasterio.open(tmp_path / "copy.tif", "w", driver="GTiff", count=1, dtype="uint8",
                       **profile) as dst:
        dst.write((np.arange(64 * 80).reshape(64, 80) % 2).astype("uint8"), 1)
    assert _predict(older, stack, tmp_path / "c" / "isa", "--compare-with",
                    str(tmp_path / "copy.tif"), "--change-margin", "0") == 0
    assert (tmp_path / "c" / "isa_change.tif").exists()


def test_clahe_maps_a_binary_model_when_forced(older, tmp_path):
    """Refused unless forced: cli/test_predict.py's test_refusals."""
    stack = write_stack(tmp_path / "s.tif", scene_stack(64, 80))
    clahe = ["--postprocess", "clahe", "--clahe-block", "32"]
    assert _predict(older, stack, tmp_path / "a" / "isa", *clahe, "--force-postprocess") == 0


@pytest.mark.parametrize("which", ["trained_unet", "older"])
def test_a_real_stack_of_digital_numbers_is_refused(which, request, shared_data, tmp_path,
                                                    capsys):
    """Sen1Floods11's Spain chip stacked as delivered: S2 L1C DN (x 10000) beside S1 dB."""
    import rasterio

    folder = shared_data / "sen1floods11_spain"
    with rasterio.open(folder / "Spain_7370579_S2Hand.tif") as s2, \
            rasterio.open(folder / "Spain_7370579_S1Hand.tif") as s1:
        dn = s2.read([2, 3, 4, 8]).astype(np.float32)  # B2, B3, B4, B8 as delivered
        db = s1.read([1, 2]).astype(np.float32)  # VV, VH in dB
        transform, crs = s2.transform, s2.crs
    stack = write_geotiff(tmp_path / "spain.tif", np.concatenate([dn, db]), transform,
                          crs.to_string(), float("nan"), descriptions=list(BANDS))
    assert _predict(request.getfixturevalue(which), stack, tmp_path / "o" / "isa") == 2
    err = capsys.readouterr().err
    assert "B2 has a median of" in err and "x 10000" in err
    assert not (tmp_path / "o").exists()


def test_sparse_data_the_sample_misses_is_found_by_the_scan(tmp_path):
    import rasterio

    from core.errors import InputDataError
    from inference.predict.expected_inputs import check_some_valid

    data = np.full((len(BANDS), 40, 50), -9999.0, np.float32)
    stack = write_stack(tmp_path / "sparse.tif", data, nodata=-9999.0)
    empty = np.full((len(BANDS), 4, 5), np.nan, np.float32)  # a sample that saw no data
    with rasterio.open(stack) as src, pytest.raises(InputDataError, match="all are nodata"):
        check_some_valid("--input s", src, range(1, len(BANDS) + 1), empty, BANDS)
    data[:, 37, 41] = 0.1  # one pixel with data
    write_stack(stack, data, nodata=-9999.0)
    with rasterio.open(stack) as src:
        check_some_valid("--input s", src, range(1, len(BANDS) + 1), empty, BANDS)
