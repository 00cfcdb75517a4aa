"""Inputs no real scene looks like are refused before the first tile, each with its fix.

Sigma0 in linear power for a dB model, VV and VH swapped, the +0.1 reflectance offset left in
and zero fill without a nodata tag each used to map (with at most a warning) into a wrong
impervious area. The rules are checked on the real tiles of the shared data (none of them is
refused) and through ``isamap-predict`` on stacks of the tests' scenes and a real L2A tile.
"""

from __future__ import annotations

import glob

import numpy as np
import rasterio
from affine import Affine

from cli.predict import predict_main
from contract.band_values import offset_left_in, sigma0_swapped
from contract.geotiff import write_geotiff
from tests.support.rasters import BANDS, scene_stack, write_stack

COMMON = ["--tile", "64", "--overlap", "16", "--quiet", "--precision", "fp32"]


def _predict(model, stack, out, *extra):
    return predict_main(["--model", str(model), "--input", str(stack), "--out", str(out),
                         *COMMON, *extra])


def _refused(capsys, status, out, *words):
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "Traceback" not in err[0], err
    for word in words:
        assert word in err[0], err
    assert not out.exists()  # refused before anything was written
    return err[0]


def test_real_scenes_pass_the_rules_and_the_offset_is_seen_in_one(shared_data):
    s1 = sorted(glob.glob(str(shared_data / "terramesh_s1s2" / "*_S1RTC.tif")))
    s1 += [str(shared_data / "sen1floods11_spain" / "Spain_7370579_S1Hand.tif"),
           str(shared_data / "sen12ms_patch_p30" / "ROIs1158_spring_s1_1_p30.tif")]
    for path in s1:
        with rasterio.open(path) as ds:
            vv, vh = ds.read(1).astype(np.float64), ds.read(2).astype(np.float64)
        assert sigma0_swapped(vv, vh) is None, path
        assert sigma0_swapped(vh, vv) is not None, path
    for tile in ("java", "ghana_a", "ghana_b"):  # baseline 02.12: no offset; Ghana is hazy
        with rasterio.open(shared_data / "dynamicworld_s2" / f"{tile}_s2l2a.tif") as ds:
            dn = ds.read([2, 3, 4, 8]).astype(np.float64)
        dn[dn == 0] = np.nan
        samples = dict(zip(("B2", "B3", "B4", "B8"), dn / 10000, strict=True))
        assert offset_left_in(samples) is None, tile
        problem = offset_left_in({k: v + 0.1 for k, v in samples.items()})
        assert problem and "the +0.1 BOA offset" in problem, tile


def test_linear_sigma0_is_refused_for_a_db_model(trained_unet, tmp_path, capsys):
    data = scene_stack(96, 112)
    data[4:] = 10 ** (data[4:] / 10)
    status = _predict(trained_unet, write_stack(tmp_path / "lin.tif", data),
                      tmp_path / "o" / "isa")
    _refused(capsys, status, tmp_path / "o", "VV holds sigma0 in linear power",
             "trained on sigma0 in dB", "10 * log10(value) of each value")


def test_swapped_vv_vh_are_refused_unless_allowed(trained_unet, tmp_path, capsys):
    data = scene_stack(96, 112)
    stack = write_stack(tmp_path / "sw.tif", data[[0, 1, 2, 3, 5, 4]])
    status = _predict(trained_unet, stack, tmp_path / "o" / "isa")
    _refused(capsys, status, tmp_path / "o", "VV and VH are swapped", "--allow-implausible")
    assert _predict(trained_unet, stack, tmp_path / "a" / "isa", "--allow-implausible") == 0
    assert "mapped anyway (--allow-implausible)" in capsys.readouterr().err


def test_the_offset_left_in_a_real_tile_is_refused(trained_unet, shared_data, tmp_path,
                                                   capsys):
    with rasterio.open(shared_data / "dynamicworld_s2" / "java_s2l2a.tif") as ds:
        dn = ds.read([2, 3, 4, 8], window=((0, 96), (0, 112))).astype(np.float32)
    data = scene_stack(96, 112)
    data[:4] = dn / 10000
    assert _predict(trained_unet, write_stack(tmp_path / "ok.tif", data),
                    tmp_path / "k" / "isa") == 0
    capsys.readouterr()
    data[:4] += 0.1
    status = _predict(trained_unet, write_stack(tmp_path / "off.tif", data),
                      tmp_path / "o" / "isa")
    _refused(capsys, status, tmp_path / "o", "the +0.1 BOA offset", "--allow-implausible")


def test_zero_fill_without_a_nodata_tag_is_refused(trained_unet, tmp_path, capsys):
    data = scene_stack(96, 112)
    data[:, :, :30] = 0.0
    transform = Affine(10, 0, 5e5, 0, -10, 3.4e6)
    bare = write_geotiff(tmp_path / "z.tif", data, transform, "EPSG:32650", None,
                         descriptions=list(BANDS))
    status = _predict(trained_unet, bare, tmp_path / "o" / "isa")
    _refused(capsys, status, tmp_path / "o", "are 0 in every band", "rio edit-info --nodata 0 FILE")
    tagged = write_geotiff(tmp_path / "t.tif", data, transform, "EPSG:32650", 0.0,
                           descriptions=list(BANDS))
    assert _predict(trained_unet, tagged, tmp_path / "t" / "isa") == 0

