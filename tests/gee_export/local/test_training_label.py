"""A training export's label is said to hold no impervious pixel on the grid, under the scheme
it is read with, and the advice of a refused scheme leads to a label that has some: Dynamic
World's training labels (built = 7) read as eo-learn's classes (artificial = 8) gave 46 patches
of isa_fraction 0, exit 0 and no word, in a new user's walk, following the advice of the
refusal before it."""

from __future__ import annotations

from pathlib import Path

from cli.export import build_parser, main
from tests.support.refusals import assert_refused

JAVA = ["--backend", "local", "--bbox=111.8181,-8.1367,111.8644,-8.1058", "--crs", "EPSG:32749",
        "--month", "2019-07", "--scene-date", "2019-07-13", "--patch-size", "64", "--stride",
        "32", "--split-block", "4", "--no-progress"]


def java_scenes(shared_data: Path, folder: Path, kinds=("s2l2a", "scl", "label")) -> Path:
    """Java's S2 L2A, SCL and (by default) Dynamic World label, linked into ``folder``."""
    folder.mkdir()
    for kind in kinds:
        (folder / f"java_{kind}.tif").symlink_to(
            shared_data / "dynamicworld_s2" / f"java_{kind}.tif")
    return folder


def test_a_refused_scheme_is_answered_with_none_that_finds_no_impervious_pixel(
        shared_data, tmp_path, capsys):
    scenes = java_scenes(shared_data, tmp_path / "java")
    status = main([*JAVA, "--scenes", str(scenes), "--bands", "B2,B3,B4,B8,product",
                   "--labels", "landcover:dynamicworld", "--out", str(tmp_path / "ds")])
    line = assert_refused(status, capsys.readouterr().err, build_parser(),
                          "10 is not in the 'landcover:dynamicworld' label scheme",
                          "reads none of them as impervious", "--label-map")
    assert "pass --label-scheme eolearn_lulc" not in line


def test_a_label_without_an_impervious_pixel_on_the_grid_is_said_to_teach_none(
        shared_data, tmp_path, capsys):
    """Held-out ground without built surface, or negatives, are exported so: a warning, before
    the composite, not a refusal."""
    scenes = java_scenes(shared_data, tmp_path / "java")
    common = [*JAVA, "--scenes", str(scenes), "--bands", "B2,B3,B4,B8"]
    assert main([*common, "--label-scheme", "eolearn_lulc", "--dry-run", "--out",
                 str(tmp_path / "eo")]) == 0
    assert "holds no impervious pixel on the grid read with the 'eolearn_lulc' label " \
        "scheme: 151,603 labelled pixels" in capsys.readouterr().err
    assert main([*common, "--label-scheme", "eolearn_lulc", "--out", str(tmp_path / "eo")]) == 0
    captured = capsys.readouterr()
    assert "holds no impervious pixel" in captured.err
    assert "so its patches teach no impervious surface" in captured.err
    assert '"written": 46' in captured.out
    # the label's own codes (built = 7) make the dataset the warning asks for
    assert main([*common, "--label-map", "7=1,0=255,10=255,*=0", "--out",
                 str(tmp_path / "dw")]) == 0
    assert '"written": 46' in capsys.readouterr().out


def test_a_label_of_another_place_and_no_label_are_refused_before_the_composite(
        shared_data, tmp_path, capsys):
    """Both wrote 0 patches tagged complete with exit 0, the warning blaming the area."""
    scenes = java_scenes(shared_data, tmp_path / "java", kinds=("s2l2a", "scl"))
    common = [*JAVA, "--scenes", str(scenes), "--bands", "B2,B3,B4,B8", "--label-map",
              "5=1,*=0", "--out", str(tmp_path / "ds")]
    assert_refused(main(common), capsys.readouterr().err.splitlines()[-1], build_parser(),
                   "no label raster given or found among the scenes (labels/label.tif)")
    (scenes / "labels").mkdir()
    (scenes / "labels" / "label.tif").symlink_to(  # a TerraMesh cell in Chile
        shared_data / "terramesh_s1s2" / "433D_629L_3_1_LULC.tif")
    assert_refused(main(common), capsys.readouterr().err, build_parser(),
                   "labels/label.tif does not cover the grid", "EPSG:32718", "EPSG:32749")
    assert not (tmp_path / "ds" / "manifest.json").exists()


def test_a_map_of_scenes_whose_label_lies_elsewhere_is_planned_as_before(shared_data, tmp_path):
    """A map needs no label: the label's cover is an export's question only (a review found
    the refusal in the check a map's stack shares)."""
    import datetime

    import rasterio

    from contract.grid import Grid
    from gee_export.local.scenes import discover_scenes
    from gee_export.local.stack import plan_local_stack

    scenes = java_scenes(shared_data, tmp_path / "java", kinds=("s2l2a", "scl"))
    (scenes / "labels").mkdir()
    (scenes / "labels" / "label.tif").symlink_to(  # a TerraMesh cell in Chile
        shared_data / "terramesh_s1s2" / "433D_629L_3_1_LULC.tif")
    with rasterio.open(scenes / "java_s2l2a.tif") as src:
        left, top = src.bounds.left, src.bounds.top
    grid = Grid("EPSG:32749", round(left) + 100.0, round(top) - 100.0, 256, 256)
    found = discover_scenes(scenes, date=datetime.date(2019, 7, 13))
    plan = plan_local_stack(found, grid, "2019-07", ("B2", "B3", "B4", "B8"),
                            out_dir=tmp_path / "stack", label_scheme="eolearn_lulc")
    assert plan.label_ref is not None and not (tmp_path / "stack").exists()


def test_the_dry_run_refuses_what_the_real_run_refuses_before_its_composite(
        shared_data, tmp_path, capsys):
    """docs/local-backend.md: a month the real run would stop at is a PROBLEM and the dry run
    exits 2. A Level-1C scene and label codes outside the scheme passed the dry run with exit 0
    (a new user's walk); it now runs the real run's own checks."""
    scenes = java_scenes(shared_data, tmp_path / "java")
    java = [*JAVA, "--scenes", str(scenes), "--out", str(tmp_path / "ds"), "--dry-run"]
    status = main([*java, "--bands", "B2,B3,B4,B8,product", "--labels",
                   "landcover:dynamicworld"])
    assert_refused(status, capsys.readouterr().err, build_parser(),
                   "the real run would stop: 2019-07: label",
                   "10 is not in the 'landcover:dynamicworld' label scheme")
    assert main([*java, "--bands", "B2,B3,B4,B8", "--label-map", "7=1,0=255,10=255,*=0"]) == 0
    capsys.readouterr()
    spain = tmp_path / "spain"
    (spain / "labels").mkdir(parents=True)
    source = shared_data / "sen1floods11_spain"
    for kind in ("S1Hand", "S2Hand"):
        (spain / f"Spain_7370579_{kind}.tif").symlink_to(source / f"Spain_7370579_{kind}.tif")
    (spain / "labels" / "label.tif").symlink_to(source / "Spain_7370579_LabelHand.tif")
    status = main(["--backend", "local", "--scenes", str(spain), "--month", "2019-09",
                   "--scene-date", "2019-09-17", "--patch-size", "64", "--stride", "64",
                   "--split-block", "2", "--out", str(tmp_path / "sp"), "--dry-run"])
    assert_refused(status, capsys.readouterr().err.splitlines()[-1], build_parser(),
                   "the real run would stop: 2019-09: Spain_7370579_S2Hand is Sentinel-2 "
                   "Level-1C", "--allow-l1c")
    assert not (tmp_path / "ds").exists() and not (tmp_path / "sp").exists()
