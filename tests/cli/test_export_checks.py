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
from tests.support.refusals import case

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


HELP = "isamap-export --help lists every option, with examples"
EE_ONLY = "Level-2A collection (COPERNICUS/S2_SR_HARMONIZED): drop --allow-l1c"


@pytest.fixture(scope="module")
def refusal_inputs(scene, tmp_path_factory) -> dict[str, str]:
    """What the rows of :func:`test_refusals` name, built once: region files, an empty scene
    folder, and the module's scene beside a scene elsewhere (``apart``)."""
    s, bbox = scene
    root = tmp_path_factory.mktemp("refusals")
    for name, content in (("aoi.txt", "not json"), ("aoi_list.json", "[1, 2]"),
                          ("aoi_point.geojson",
                           '{"type": "Point", "coordinates": [114.3, 30.6]}')):
        (root / name).write_text(content)
    (root / "empty").mkdir()
    shutil.copytree(s.root, root / "apart")
    generate_scene(root / "apart" / "elsewhere", width=64, height=64, seed=1, fine_scale=2,
                   origin=(700000.0, 3385000.0), progress=False)
    names = ("aoi.txt", "aoi_list.json", "aoi_point.geojson", "empty", "apart")
    return {"bbox": bbox, "scene": str(s.root), "aoi_absent": str(root / "aoi.geojson"),
            **{name.split(".")[0]: str(root / name) for name in names}}


@pytest.mark.parametrize("argv, says", [
    # values out of their range, in a dry run as in a run
    *[case(f"range{flag}", f"--region wuhan --dry-run {flag}", says) for flag, says in (
        ("--min-valid-fraction 2", "--min-valid-fraction must be between 0.0 and 1.0"),
        ("--fine-scale 0", "--fine-scale must be one of 2, 4, 5, 8, 10"),
        ("--workers 100", "--workers must be between 1 and 40"),
        ("--workers 0", "--workers must be between 1 and 40"),
        ("--workers -1", "--workers must be between 1 and 40"),
        ("--stride 200", "--stride must be between 1 and 128"),
        ("--cloud-threshold 5", "--cloud-threshold must be between 0.0 and 1.0"),
        ("--s2-max-widen-days -3", "--s2-max-widen-days must be >= 0, got -3"))],
    *[case(f"budget{extra}", f"--bbox 114.2,30.5,114.3,30.6 --dry-run {extra}", says)
      for extra, says in (
          ("--latency 0", "--latency must be a positive number of seconds"),
          ("--max-eecu-hours -1", "--max-eecu-hours: must be a positive number up to 1e+12"),
          ("--max-eecu-hours inf", "--max-eecu-hours: must be a positive number up to 1e+12, "
           "got inf; leave it out to set no bound"),  # was an OverflowError traceback
          ("--max-eecu-hours nan", "--max-eecu-hours: must be a positive number up to 1e+12"),
          ("--max-eecu-hours 5 --backend local --scenes scenes",
           "leave it out with --backend local"))],
    # the area, the dates, the bands, the labels
    case("region-atlantis", "--region atlantis --dry-run", "Known regions"),
    case("month-13", "--month 2019-13 --dry-run", "2019-06"),
    case("band-b99", "--bands B2,B99 --dry-run", "unknown band"),
    case("labels-osm", "--labels osm --dry-run", "worldcover"),
    case("before-sentinel-1", "--month 2014-06 --dry-run",
         "before the first Sentinel-1 scenes (2014-10)"),
    case("before-sentinel-2", "--months 2015-03,2019-06 --dry-run",
         "before the first Sentinel-2 scenes"),
    case("future", "--month 2099-06 --dry-run", "2099-06 are in the future"),
    *[case(f"region-file-{name}", f"--region-file {{{name}}} --dry-run",
           f"isamap-export: error: --region-file {{{name}}} {says}; give a GeoJSON "
           "FeatureCollection of polygons (or one Polygon)") for name, says in (
               ("aoi_absent", "does not exist"),
               ("aoi", "is not GeoJSON: Expecting value: line 1 column 1 (char 0)"),
               ("aoi_list", "is not GeoJSON: its JSON is a list, not an object"),
               ("aoi_point", "holds no Polygon or MultiPolygon geometry"))],
    case("crs-in-degrees", "--bbox 10,50,10.5,50.3 --crs EPSG:4326 --dry-run",
         "not a projected CRS in metres", pytest.mark.slow),  # as the test it comes from
    # how the export runs
    *[case(f"runner-direct{extra.split()[0]}", f"--region wuhan --dry-run --runner direct "
           f"{extra}", says) for extra, says in (
               ("--backend local --scenes .", "the local backend runs in this process"),
               ("--method tasks", "already run on Earth Engine's machines"),
               ("--runner dataflow --out data/x", "give --out gs://bucket/..."),
               ("--runner dataflow --out gs://b/x", "needs --project, --dataflow-region"),
               ("--max-workers 50", "use --max-workers 40 or fewer"),
               ("--max-workers 0",
                "argument --max-workers: must be a whole number >= 1, got 0"))],
    # Earth Engine's collections: Level-2A, no local scene files
    *[case(f"allow-l1c-with-ee{mode.split()[0]}",
           f"--region wuhan --allow-l1c --project p {mode}", EE_ONLY)
      for mode in ("--dry-run", "--code-editor", "--out {out}")],
    *[case(f"ee{flag.split()[0]}", f"--region wuhan {flag} --project p --out {{out}}",
           f"{flag.split()[0]} describes local scene files: use it with --backend local")
      for flag in ("--s1-unit dB", "--trust-band-names", "--scene-date 2019-06-01")],
    # local scenes
    case("backend-local-without-scenes", "--backend local", "--scenes"),
    case("grid-smaller-than-a-patch", "--backend local --scenes {empty} --bbox "
         "114.27,30.55,114.275,30.555 --out {out}", "smaller than one 128 px patch"),
    case("scenes-apart", "--backend local --scenes {apart} --month 2019-06 --dry-run",
         "do not overlap (no area is covered by every scene"),
])
def test_refusals(refusal_inputs, tmp_path, monkeypatch, capsys, argv, says):
    """Each row: ``isamap-export`` with the row's words, run in an empty folder (``{out}`` is
    one in it), refused with exit 2 in one line holding ``says`` (a flag argparse refuses:
    and a line pointing to --help), leaving the folder empty."""
    monkeypatch.chdir(tmp_path)
    paths = {**refusal_inputs, "out": str(tmp_path / "out")}
    words = [word.format(**paths) for word in argv.split()]
    try:
        status = main(words)
    except SystemExit as stop:  # argparse's own refusals exit while parsing
        status = stop.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line != f"  ({HELP})"]  # argparse's refusals
    assert status == 2 and len(lines) == 1, err
    assert err.startswith("isamap-export: error: ") and says.format(**paths) in err, err
    assert list(tmp_path.iterdir()) == []


def test_negative_bbox_without_equals_sign(capsys):
    assert main(["--bbox", "-7.45,52.63,-7.43,52.65", "--dry-run"]) == 0
    assert "EPSG:32629" in capsys.readouterr().out  # UTM 29N: west of Greenwich works


@pytest.mark.slow
def test_wide_or_polar_areas_warn_and_suggest_a_crs(capsys):
    assert main(["--bbox", "60,40,80,40.02", "--dry-run"]) == 0
    assert "spans 4 UTM zones" in capsys.readouterr().err
    assert main(["--bbox", "10,84.1,10.5,84.3", "--dry-run"]) == 0
    assert "--crs EPSG:32661" in capsys.readouterr().err
    assert main(["--bbox", "10,84.1,10.5,84.3", "--crs", "EPSG:32661", "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "EPSG:32661" in captured.out and "warning" not in captured.err


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


@pytest.mark.parametrize("flag", ["--allow-l1c", "--s1-unit dB", "--trust-band-names",
                                  "--scene-date 2019-06-01"])
def test_isamap_fit_refuses_what_earth_engine_cannot_take_in_the_exports_words(tmp_path, capsys,
                                                                            flag):
    """One rule each (contract.s2_level; the local scene flags): isamap-fit with --backend ee
    refuses them with the line isamap-export gives (its rows of test_refusals)."""
    from cli.fit import main as fit_main

    out = tmp_path / "out"
    assert main(["--region", "wuhan", *flag.split(), "--project", "p", "--out", str(out)]) == 2
    line = capsys.readouterr().err.split("error: ", 1)[1]
    assert fit_main(["--points", str(tmp_path / "p.csv"), "--backend", "ee", "--month",
                     "2019-06", *flag.split(), "--out", str(out)]) == 2
    assert capsys.readouterr().err.split("error: ", 1)[1] == line
    assert not out.exists()


def test_a_label_half_a_pixel_off_the_grid_is_one_line_before_any_patch(scene, tmp_path,
                                                                       capsys):
    """Not a row of test_refusals: the plan's warning of a small area comes first."""
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
