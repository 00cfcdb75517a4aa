"""isamap-export refuses what cannot work before any work, the same way in a dry run."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from cli.export import main
from contract.dataset import read_manifest
from gee_export.local.synthetic import generate_scene
from tests.support.faults import run_on_small_disk, run_without_write_permission

#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("cli.test_export_checks")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 64 px SYNTHETIC scene and the bbox that covers it (patches of 32 px fit)."""
    s = generate_scene(tmp_path_factory.mktemp("scene") / "scene", width=64, height=64,
                       fine_scale=2, progress=False)
    to_ll = Transformer.from_crs(s.grid.crs, "EPSG:4326", always_xy=True)
    bbox = ",".join(f"{v:.6f}" for v in to_ll.transform_bounds(*s.grid.bounds))
    return s, bbox


def _local(scene_root, bbox, out, *extra):
    return ["--backend", "local", "--scenes", str(scene_root), "--bbox", bbox, "--out",
            str(out), "--patch-size", "32", "--stride", "32", "--speckle", "boxcar",
            "--min-valid-fraction", "0.5", "--no-progress", *extra]


def test_negative_bbox_without_equals_sign(capsys):
    assert main(["--bbox", "-7.45,52.63,-7.43,52.65", "--dry-run"]) == 0
    assert "EPSG:32629" in capsys.readouterr().out  # UTM 29N: west of Greenwich works


@pytest.mark.parametrize("argv,needle", [
    (["--min-valid-fraction", "2"], "--min-valid-fraction must be between 0.0 and 1.0"),
    (["--fine-scale", "0"], "--fine-scale must be one of 2, 4, 5, 8, 10"),
    (["--workers", "100"], "--workers must be between 1 and 40"),
    (["--workers", "0"], "--workers must be between 1 and 40"),
    (["--workers", "-1"], "--workers must be between 1 and 40"),
    (["--stride", "200"], "--stride must be between 1 and 128"),
    (["--cloud-threshold", "5"], "--cloud-threshold must be between 0.0 and 1.0"),
    (["--s2-max-widen-days", "-3"], "--s2-max-widen-days must be >= 0, got -3"),
])
def test_dry_run_refuses_what_the_real_run_refuses(argv, needle, capsys):
    assert main(["--region", "wuhan", "--dry-run", *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_import_patches_bounds_the_valid_fraction_in_the_exports_words(tmp_path, capsys):
    """The same flag of isamap-import-patches said "must be in [0, 1]", its own wording."""
    from cli.import_patches import main as import_main

    (tmp_path / "src").mkdir()
    assert import_main([str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--month",
                        "2019-06", "--min-valid-fraction", "2"]) == 2
    err = capsys.readouterr().err
    assert ("--min-valid-fraction must be between 0.0 and 1.0, got 2.0; it is the share of "
            "valid pixels a patch needs") in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content,needle", [
    (None, "does not exist"),
    ("not json", "is not GeoJSON: Expecting value"),
    ("[1, 2]", "is not GeoJSON: its JSON is a list, not an object"),
    ('{"type": "Point", "coordinates": [114.3, 30.6]}', "holds no Polygon or MultiPolygon"),
])
def test_a_bad_region_file_is_named_by_its_flag(tmp_path, monkeypatch, capsys, content, needle):
    """The errors said "region file X", not the --region-file the user typed."""
    monkeypatch.chdir(tmp_path)
    if content is not None:
        Path("aoi.geojson").write_text(content)
    assert main(["--region-file", "aoi.geojson", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"isamap-export: error: --region-file aoi.geojson {needle}")
    assert err.rstrip().endswith("give a GeoJSON FeatureCollection of polygons (or one Polygon)")
    assert len(err.strip().splitlines()) == 1


def test_grid_smaller_than_a_patch_is_refused_before_any_work(tmp_path, capsys):
    out, scenes = tmp_path / "never", tmp_path / "scenes"
    scenes.mkdir()
    code = main(["--backend", "local", "--scenes", str(scenes), "--bbox",
                 "114.27,30.55,114.275,30.555", "--out", str(out)])
    assert code == 2 and "smaller than one 128 px patch" in capsys.readouterr().err
    assert not out.exists()  # refused before a stack folder was made


@pytest.mark.slow
def test_wide_or_polar_areas_warn_and_suggest_a_crs(capsys):
    assert main(["--bbox", "60,40,80,40.02", "--dry-run"]) == 0
    assert "spans 4 UTM zones" in capsys.readouterr().err
    assert main(["--bbox", "10,84.1,10.5,84.3", "--dry-run"]) == 0
    assert "--crs EPSG:32661" in capsys.readouterr().err
    assert main(["--bbox", "10,84.1,10.5,84.3", "--crs", "EPSG:32661", "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "EPSG:32661" in captured.out and "warning" not in captured.err
    assert main(["--bbox", "10,50,10.5,50.3", "--crs", "EPSG:4326", "--dry-run"]) == 2
    assert "not a projected CRS in metres" in capsys.readouterr().err


def test_local_dry_run_plans_the_local_run(scene, tmp_path, capsys):
    s, bbox = scene
    assert main([*_local(s.root, bbox, tmp_path / "ds"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Local export plan" in out and "computePixels" not in out
    assert "4 Sentinel-2 and 5 Sentinel-1 scenes found" in out
    assert "2019-06     Sentinel-2 4 on the grid" in out and "labels/label.tif" in out
    assert not (tmp_path / "ds").exists()
    assert main([*_local(s.root, bbox, tmp_path / "ds"), "--months", "2019-06,2019-07",
                 "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert "PROBLEM     2019-07: no Sentinel-2 scene" in captured.out
    assert "the real run would stop" in captured.err


@pytest.mark.slow
def test_local_l1c_and_label_scheme_have_cli_fixes(scene, tmp_path, capsys):
    s, bbox = scene
    root = tmp_path / "scene"
    shutil.copytree(s.root, root)
    for files in s.s2_files.values():  # an L1C band set under L2A names
        b02 = Path(str(files["B02"]).replace(str(s.root), str(root)))
        shutil.copy(b02, b02.with_name(b02.name.replace("_B02", "_B10")))
    assert main(_local(root, bbox, tmp_path / "a")) == 2
    assert "pass --allow-l1c" in capsys.readouterr().err
    assert main([*_local(root, bbox, tmp_path / "a"), "--allow-l1c"]) == 0
    assert "continuing because of --allow-l1c" in capsys.readouterr().err
    with rasterio.open(root / "labels" / "label.tif", "r+") as ds:  # WorldCover codes
        ds.write(np.where(ds.read(1) == 1, 50, 10).astype("uint8"), 1)
    assert main([*_local(root, bbox, tmp_path / "b"), "--allow-l1c"]) == 2
    assert "pass --label-scheme worldcover" in capsys.readouterr().err
    assert main([*_local(root, bbox, tmp_path / "b"), "--allow-l1c", "--label-scheme",
                 "worldcover"]) == 0
    assert read_manifest(tmp_path / "b")["counts"]["patches"] > 0


def test_allow_l1c_with_earth_engine_is_refused_before_any_request(tmp_path, capsys):
    """The ee backend reads Earth Engine's Level-2A collection: --allow-l1c was taken and
    ignored (the dry run planned, the real run went on to Earth Engine). isamap-fit refuses
    it with the same line (one rule, contract.s2_level)."""
    from cli.fit import main as fit_main

    out = tmp_path / "out"
    lines = []
    for extra in (["--dry-run"], ["--code-editor"], ["--out", str(out)]):
        assert main(["--region", "wuhan", "--allow-l1c", "--project", "p", *extra]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "Level-2A collection (COPERNICUS/S2_SR_HARMONIZED): drop --allow-l1c" in line
        lines.append(line.split("error: ", 1)[1])
    assert not out.exists()  # refused before the output folder is made
    assert fit_main(["--points", str(tmp_path / "p.csv"), "--backend", "ee", "--month",
                     "2019-06", "--allow-l1c", "--out", str(tmp_path / "fit")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert {line.split("error: ", 1)[1], *lines} == {lines[0]}


@pytest.mark.parametrize("flag", [["--s1-unit", "dB"], ["--trust-band-names"],
                                  ["--scene-date", "2019-06-01"]])
def test_local_scene_flags_with_earth_engine_are_refused_before_any_request(tmp_path, capsys,
                                                                            flag):
    """How local scene files are read means nothing to Earth Engine's collections:
    --s1-unit and --trust-band-names were taken and ignored by --backend ee. isamap-fit,
    which takes them for its local stack, refuses them alike."""
    from cli.fit import main as fit_main

    out = tmp_path / "out"
    assert main(["--region", "wuhan", *flag, "--project", "p", "--out", str(out)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"{flag[0]} describes local scene files: use it with --backend local" in line
    assert not out.exists()
    assert fit_main(["--points", str(tmp_path / "p.csv"), "--backend", "ee", "--month",
                     "2019-06", *flag, "--out", str(out)]) == 2
    (fit_line,) = capsys.readouterr().err.strip().splitlines()
    assert fit_line.split("error: ", 1)[1] == line.split("error: ", 1)[1]
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["full", "read-only", "no-permission"])
def test_unwritable_output_is_one_line(scene, tmp_path, kind):
    s, bbox = scene
    out = tmp_path / "mnt"
    argv = [sys.executable, "-m", "cli.export", *_local(s.root, bbox, out / "ds")]
    if kind == "no-permission":
        proc = run_without_write_permission(argv, out)
    else:
        proc = run_on_small_disk(argv, out, 48, readonly=kind == "read-only")
    expected = {"full": "no space left on the device", "read-only": "read-only",
                "no-permission": "permission denied"}[kind]
    assert proc.returncode == 1, proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("isamap-export: error:")


def test_quiet_local_export_draws_no_progress_bar(scene, tmp_path, capsys):
    """-q hides progress bars (its help says so); the stack and patch bars showed anyway."""
    s, bbox = scene
    argv = [a for a in _local(s.root, bbox, tmp_path / "ds") if a != "--no-progress"]
    assert main([*argv, "-q"]) == 0
    err = capsys.readouterr().err
    assert "it/s" not in err and "%|" not in err and "patches 2019-06" not in err
    assert read_manifest(tmp_path / "ds")["counts"]["patches"] > 0


def test_a_label_half_a_pixel_off_the_grid_is_one_line_before_any_patch(scene, tmp_path,
                                                                       capsys):
    s, bbox = scene
    root = tmp_path / "scene"
    shutil.copytree(s.root, root)
    with rasterio.open(root / "labels" / "label.tif", "r+") as ds:  # half a pixel east
        t = ds.transform
        ds.transform = rasterio.Affine(t.a, t.b, t.c + t.a / 2, t.d, t.e, t.f)
    assert main(_local(root, bbox, tmp_path / "ds")) == 2
    err = [line for line in capsys.readouterr().err.splitlines()
           if not line.startswith("warning:")]
    assert len(err) == 1 and "its pixel edges lie +5 m east" in err[0], err
    assert err[0].startswith("isamap-export: error: label ") and "rio warp LABEL OUT" in err[0]
    assert not (tmp_path / "ds" / "manifest.json").exists()
