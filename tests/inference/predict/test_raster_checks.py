"""isamap-predict: inputs checked before the model runs, bands by name, true figures."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from cli.predict import predict_main
from contract.geotiff import write_geotiff
from core.errors import ModelError
from tests.support.faults import run_on_small_disk
from tests.support.rasters import BANDS, smooth_stack, write_stack
from training.modelfile import ModelMeta, save_model_file
from training.models import create_model

COMMON = ["--tile", "64", "--overlap", "16", "--quiet", "--precision", "fp32"]


#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("inference.predict.test_raster_checks")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    kwargs = {"widths": [4, 8, 8, 16, 16]}
    model = create_model("unet", len(BANDS), 2, **kwargs)
    meta = ModelMeta("unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6, model_kwargs=kwargs)
    return save_model_file(tmp_path_factory.mktemp("m") / "unet.pt", model, meta)


def _predict(model_file, stack, out, *extra):
    return predict_main(["--model", str(model_file), "--input", str(stack), "--out", str(out),
                         *COMMON, *extra])


def test_unnamed_bands_in_their_stated_order_map_as_named_ones(model_file, tmp_path):
    """The order --bands states (cli/test_predict.py's test_refusals: refused without it, and
    where it contradicts the file's own names)."""
    data = smooth_stack(60, 70)
    named = write_stack(tmp_path / "named.tif", data)
    unnamed = write_geotiff(tmp_path / "unnamed.tif", data, Affine(10, 0, 5e5, 0, -10, 3.4e6),
                            "EPSG:32650", float("nan"))
    assert _predict(model_file, unnamed, tmp_path / "u" / "isa", "--bands",
                    ",".join(BANDS)) == 0
    assert _predict(model_file, named, tmp_path / "n" / "isa") == 0
    with rasterio.open(tmp_path / "u" / "isa_prob.tif") as a, \
            rasterio.open(tmp_path / "n" / "isa_prob.tif") as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))


def test_a_garbage_model_files_detail_is_under_debug(tmp_path):
    """Its one line: cli/test_predict.py's test_refusals; --debug shows torch's cause."""
    stack = write_stack(tmp_path / "s.tif", smooth_stack(60, 70))
    garbage = tmp_path / "model.pt"
    garbage.write_bytes(b"hello garbage" * 50)
    with pytest.raises(ModelError) as raised:  # --debug: the traceback, with torch's cause
        _predict(garbage, stack, tmp_path / "o" / "isa", "--debug")
    assert isinstance(raised.value.__cause__, KeyError)


def test_summary_area_and_zones_outside_the_map(model_file, tmp_path, capsys):
    deg = 8.983e-5  # ~10 m at the equator, as Sen1floods11's EPSG:4326 chips
    stack = write_geotiff(tmp_path / "geo.tif", smooth_stack(100, 120),
                          Affine(deg, 0, -1.0, 0, -deg, 38.1), "EPSG:4326", float("nan"),
                          descriptions=list(BANDS))
    zones = tmp_path / "zones.geojson"
    far = [[[10.0, 10.0], [10.1, 10.0], [10.1, 10.1], [10.0, 10.1], [10.0, 10.0]]]
    assert _predict(model_file, stack, tmp_path / "o" / "isa") == 0
    summary = _summary(capsys.readouterr().out)
    rows = json.loads((tmp_path / "o" / "isa_area.json").read_text())
    whole = rows[0]["valid_km2"] + rows[0]["nodata_km2"]
    assert summary["area_km2"] == pytest.approx(whole, rel=1e-3) and whole > 0.5
    # one zone beside the map among others on it (none at all: cli/test_predict.py's
    # test_refusals): its row says no data
    near = [[[-1.0, 38.09], [-0.995, 38.09], [-0.995, 38.095], [-1.0, 38.095], [-1.0, 38.09]]]
    zones.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "elsewhere"},
         "geometry": {"type": "Polygon", "coordinates": far}},
        {"type": "Feature", "properties": {"name": "on the map"},
         "geometry": {"type": "Polygon", "coordinates": near}}]}))
    assert _predict(model_file, stack, tmp_path / "z" / "isa", "--zones", str(zones)) == 0
    assert "no data" in capsys.readouterr().out
    rows = json.loads((tmp_path / "z" / "isa_area.json").read_text())
    assert rows[0]["zone"] == "elsewhere" and rows[0]["isa_fraction"] is None
    assert rows[1]["zone"] == "on the map" and rows[1]["isa_fraction"] is not None


def _summary(stdout: str) -> dict:
    """The JSON summary isamap-predict prints after its area table."""
    return json.loads(stdout[stdout.index("\n{") + 1:])


@pytest.mark.slow
@pytest.mark.parametrize("size_kb,readonly,needle", [
    (48, False, "no space left on the device"),  # the COGs (GDAL returned a broken file)
    (64, True, "read-only"),
])
def test_full_or_read_only_disk_is_one_line_and_leaves_no_broken_map(
        model_file, tmp_path, size_kb, readonly, needle):
    stack = write_stack(tmp_path / "s.tif", smooth_stack(120, 150))
    mount = tmp_path / "mnt"
    exe = Path(sys.executable).parent / "isamap-predict"
    check = ("import glob, rasterio; [rasterio.open(f).read(1) for f in "
             f"glob.glob({str(mount / 'isa_*.tif')!r})]")
    script = (f"{shlex.quote(str(exe))} --model {model_file} --input {stack} --out "
              f"{mount / 'isa'} --tile 64 --overlap 16 -q; rc=$?; "
              f"{shlex.quote(sys.executable)} -c {shlex.quote(check)} || exit 99; exit $rc")
    proc = run_on_small_disk(["sh", "-c", script], mount, size_kb, readonly=readonly)
    assert proc.returncode == 1, proc.stderr  # 99 would be an unreadable map left in place
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    # libtiff may print its own "_tiffSeekProc: No space left on device." first (C code)
    assert proc.stderr.strip().splitlines()[-1].startswith("isamap-predict: error:")


def test_zone_names_that_read_as_formulas_are_escaped_in_the_area_csv(model_file, tmp_path,
                                                                     capsys):
    """A zone named ``=HYPERLINK(...)`` or ``+cmd|...`` went as it was into the area CSV, where
    a spreadsheet runs it: such text cells now start with a single quote (OWASP)."""
    import csv

    deg = 8.983e-5
    stack = write_geotiff(tmp_path / "geo.tif", smooth_stack(100, 120),
                          Affine(deg, 0, -1.0, 0, -deg, 38.1), "EPSG:4326", float("nan"),
                          descriptions=list(BANDS))
    box = [[[-1.0, 38.1], [-0.995, 38.1], [-0.995, 38.095], [-1.0, 38.095], [-1.0, 38.1]]]
    names = ['=HYPERLINK("http://example.com/x","click")', "+cmd|' /C calc'!A0", "-2+3",
             "@SUM(A1)", "\tTab", "Old Town"]
    zones = tmp_path / "zones.geojson"
    zones.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": name},
         "geometry": {"type": "Polygon", "coordinates": box}} for name in names]}))
    assert _predict(model_file, stack, tmp_path / "z" / "isa", "--zones", str(zones)) == 0
    capsys.readouterr()
    with open(tmp_path / "z" / "isa_area.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["zone"] for r in rows] == ["'" + n for n in names[:-1]] + ["Old Town"]
    assert float(rows[0]["valid_km2"]) > 0  # numbers stay numbers
    # the JSON table keeps the names as given (no spreadsheet reads it)
    assert [r["zone"] for r in json.loads((tmp_path / "z" / "isa_area.json").read_text())] \
        == names
