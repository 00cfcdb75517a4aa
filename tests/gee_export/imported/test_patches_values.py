"""isamap-import-patches on real Sentinel-1/2 GeoTIFF pairs: what --scale touches, what the
values and the refusals say, the names a dataset records (found by a new-user walk)."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from cli.import_patches import main
from contract.band_values import band_value_problem
from contract.dataset import read_index, read_manifest
from tests.support.rasters import write_pair

CELL = "terramesh_s1s2/433D_629L_3_1"  # S2 L2A DN (B01..B12, unnamed) + S1 dB, 224 px
NAMES = ("B2", "B3", "B4", "B8", "VV", "VH")


def _cut(shared_data: Path, out: Path, s1=lambda db: db, s2_scale: float = 1.0,
         names=NAMES) -> Path:
    """Nine 64 px image/mask pairs of one real cell, as another project stacks S2 DN + S1 dB."""
    cell = shared_data / CELL
    with rasterio.open(f"{cell}_S2L2A.tif") as s2, rasterio.open(f"{cell}_S1RTC.tif") as sar, \
            rasterio.open(f"{cell}_LULC.tif") as lc:
        for r in range(0, 192, 64):
            for c in range(0, 192, 64):
                w = Window(c, r, 64, 64)
                stack = np.concatenate([s2.read([2, 3, 4, 8], window=w) * s2_scale,
                                        s1(sar.read(window=w))])
                write_pair(out, f"t_{r}_{c}", stack, lc.read(1, window=w), s2.crs,
                           s2.window_transform(w), names)
    return out


def _run(src: Path, out: Path, *extra: str) -> int:
    # the cell has no dark pixel (its darkest 0.1 % of B2, B3, B4, B8: 0.108-0.116), as a
    # +0.1 offset left in shows: the input check doubts it, and these tests are of other rules
    return main([str(src), "--out", str(out), "--month", "2020-04", "--impervious-values", "5",
                 "--pervious-values", "1,2,3,4,6,7,9", "--ignore-values", "0,8",
                 "--split-block", "1", "--quiet", "--allow-implausible", *extra])


def test_scale_multiplies_the_reflectance_bands_and_leaves_sentinel1_db_as_it_is(
        shared_data, tmp_path, capsys):
    """``--scale 0.0001`` turned VV/VH medians of -10.8/-16.3 dB into -0.00108/-0.00162,
    exit 0: the radar signal wiped out of the dataset."""
    src = _cut(shared_data, tmp_path / "theirs")
    out = tmp_path / "dataset"
    assert _run(src, out, "--scale", "0.0001") == 0
    records = read_index(out)
    assert len(records) == 9
    stacks = []
    for record in sorted(records, key=lambda r: r["id"]):
        with rasterio.open(out / record["image"]) as ds:
            stacks.append(ds.read())
    median = np.median(np.stack(stacks), axis=(0, 2, 3))
    assert median[:4].min() > 0.01 and median[:4].max() < 0.5  # reflectance 0-1
    assert -15 < median[4] < -8 and -22 < median[5] < -14, median  # was -0.0012, -0.0018
    with rasterio.open(src / "images" / "t_0_0.tif") as ds:
        theirs = ds.read()
    with rasterio.open(out / next(r["image"] for r in records
                                  if (r["row"], r["col"]) == (0, 0))) as ds:
        np.testing.assert_array_equal(ds.read()[4:], theirs[4:])


def test_sigma0_db_scaled_down_in_the_file_is_refused_and_real_db_windows_pass(shared_data,
                                                                                  tmp_path,
                                                                                  capsys):
    """dB values all near 0 passed the dB rule (their median is negative); every 64 px window
    of the real S1 of the test data passes the new bound (their 99th percentile of |dB| is
    11.6 or more; the bound is 1)."""
    files = [*sorted(glob.glob(str(shared_data / "terramesh_s1s2" / "*_S1RTC.tif"))),
             str(shared_data / "sen12ms_patch_p30" / "ROIs1158_spring_s1_1_p30.tif"),
             str(shared_data / "sen1floods11_spain" / "Spain_7370579_S1Hand.tif")]
    judged = 0
    for path in files:
        with rasterio.open(path) as ds:
            sar = ds.read().astype(np.float64)
        for r in range(0, sar.shape[1] - 63, 64):
            for c in range(0, sar.shape[2] - 63, 64):
                for name, band in zip(("VV", "VH"), sar[:, r:r + 64, c:c + 64], strict=True):
                    assert band_value_problem(name, band) is None, (path, r, c, name)
                    assert "scaled down" in band_value_problem(name, band * 1e-4)
                    judged += 1
    assert judged > 100
    src = _cut(shared_data, tmp_path / "theirs", s1=lambda db: db * 1e-4, s2_scale=1e-4)
    assert _run(src, tmp_path / "dataset") == 2  # was 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "VV has a median of -0.00" in err, err
    assert "dB scaled down" in err and not (tmp_path / "dataset").exists()


def test_sentinel1_in_linear_power_is_told_to_be_converted_to_db(shared_data, tmp_path, capsys):
    """Linear VV/VH were told "give the bands in file order with --bands ... or --scale
    0.0001", neither of which can fix them; then to convert them in the files themselves,
    though the import converts them with ``--s1-unit linear`` (tests/contract/test_sigma0.py)."""
    src = _cut(shared_data, tmp_path / "theirs", s1=lambda db: 10 ** (db / 10), s2_scale=1e-4)
    assert _run(src, tmp_path / "dataset") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "VV, VH look like sigma0 in linear power" in err
    assert "give --s1-unit linear to convert them to dB (10*log10 of the power)" in err
    assert "--bands" not in err and "--scale" not in err and not (tmp_path / "dataset").exists()


def test_zero_padded_band_names_are_recorded_as_isamap_names_them(shared_data, tmp_path,
                                                                    capsys):
    """Descriptions B02..B08 went into manifest.json as such: isamap-evaluate and
    isamap-train then refused models and datasets named B2..B8."""
    src = _cut(shared_data, tmp_path / "theirs", s2_scale=1e-4,
               names=("B02", "B03", "B04", "B08", "VV", "VH"))
    out = tmp_path / "dataset"
    assert _run(src, out) == 0
    assert read_manifest(out)["bands"] == list(NAMES)
    record = read_index(out)[0]
    with rasterio.open(out / record["image"]) as ds:
        assert ds.descriptions == NAMES


def test_a_month_of_no_valid_patch_is_refused_and_not_tagged_complete(shared_data, tmp_path,
                                                                       capsys):
    """One band all NaN: every patch invalid, exit 0 and ``complete: {month: true}`` for an
    empty month. Now refused in one line naming the band; nothing is written, neither into a
    new folder nor over a dataset's earlier month."""
    good = _cut(shared_data, tmp_path / "good", s2_scale=1e-4)
    nan = _cut(shared_data, tmp_path / "nan", s2_scale=1e-4,
               s1=lambda db: np.where(np.arange(2)[:, None, None] == 1, np.nan, db))
    fresh = tmp_path / "fresh"
    assert _run(nan, fresh) == 2  # was 0, "patches": 0, "invalid": 9
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the band order's warning
    assert err.startswith("isamap-import-patches: error: ")
    assert "no patch of nan has 90% valid pixels (every band finite, the label not ignored): " \
           "all 9 were left out, so nothing was written and 2020-04 is not tagged complete; " \
           "VH holds no finite value in any image" in err, err
    assert not fresh.exists()
    out = tmp_path / "dataset"
    assert _run(good, out) == 0
    capsys.readouterr()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    month = ["--month", "2020-05"]  # a later month of the same dataset
    assert main([str(nan), "--out", str(out), *month, "--impervious-values", "5",
                 "--pervious-values", "1,2,3,4,6,7,9", "--ignore-values", "0,8",
                 "--split-block", "1", "--quiet", "--allow-implausible"]) == 2
    assert "2020-05 is not tagged complete" in capsys.readouterr().err
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert json.loads((out / "manifest.json").read_text())["complete"] == {"2020-04": True}


def test_sentinel1_db_x_100_is_told_to_be_divided_by_100_not_to_fix_the_bands(shared_data,
                                                                                tmp_path, capsys):
    """VV/VH of an int16-style export (dB x 100) were told to fix --bands, which are right;
    --scale multiplies reflectance only, so the advice is to divide them in the files."""
    src = _cut(shared_data, tmp_path / "theirs", s1=lambda db: db * 100, s2_scale=1e-4)
    assert _run(src, tmp_path / "dataset") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "VV, VH look like dB x 100 (an integer export): divide them by 100 in the files" \
        in err, err
    assert "--bands" not in err and not (tmp_path / "dataset").exists()
    assert _run(src, tmp_path / "scaled", "--scale", "0.01") == 2  # --scale never multiplies dB
    assert "divide them by 100 in the files" in capsys.readouterr().err


def test_lower_case_sentinel1_names_are_vv_and_vh_and_never_scaled(shared_data, tmp_path,
                                                                   capsys):
    """Bands described ``vv``/``vh`` were no band isamap knew: ``--scale 0.0001`` multiplied
    them (VV median -0.00108), exit 0, and the manifest named them ``vv``/``vh``."""
    src = _cut(shared_data, tmp_path / "theirs", names=("b2", "b3", "b4", "b8", "vv", "vh"))
    out = tmp_path / "dataset"
    assert _run(src, out, "--scale", "0.0001") == 0
    assert read_manifest(out)["bands"] == list(NAMES)
    record = read_index(out)[0]
    with rasterio.open(out / record["image"]) as ds:
        assert -15 < float(np.nanmedian(ds.read(5))) < -8  # was -0.00108


def test_two_names_of_one_band_are_refused_in_one_line(shared_data, tmp_path, capsys):
    """Descriptions B08 and B8 are both isamap's B8: a ValueError traceback (the samples of
    two bands under one name), now one line naming them, exit 2."""
    src = _cut(shared_data, tmp_path / "theirs", s2_scale=1e-4,
               names=("B2", "B3", "B4", "B08", "B8", "VH"))
    assert _run(src, tmp_path / "dataset") == 2  # was a ValueError
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "band B8 is named 2 times in t_0_0.tif's band descriptions (B08, B8)" in err, err
    assert not (tmp_path / "dataset").exists()
    assert _run(src, tmp_path / "dataset", "--bands", "B2,B3,B4,B8,vv,VV") == 2
    assert "band VV is named 2 times in --bands (vv, VV)" in capsys.readouterr().err


def test_an_empty_import_names_no_earlier_months_band(shared_data, tmp_path, capsys):
    """An earlier month's band may be all NaN (cloudy; the valid-pixel rule leaves it out),
    yet the refusal of an import that wrote nothing blamed VV_m1 for it."""
    src = _cut(shared_data, tmp_path / "theirs", s2_scale=1e-4,
               names=("B2", "B3", "B4", "B8", "VV", "VV_m1"),
               s1=lambda db: np.where(np.arange(2)[:, None, None] == 1, np.nan, db))
    assert main([str(src), "--out", str(tmp_path / "dataset"), "--month", "2020-04",
                 "--impervious-values", "5", "--pervious-values", "1",
                 "--ignore-values", "0,2,3,4,6,7,8,9", "--split-block", "1", "--quiet",
                 "--min-valid-fraction", "0.99", "--allow-implausible"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "nothing was written" in err and "VV_m1" not in err, err  # was "VV_m1 holds no"
    assert "lower --min-valid-fraction" in err and not (tmp_path / "dataset").exists()
