"""Where local scenes lie: the box around every scene of a month (points checked against it)."""

from __future__ import annotations

from rasterio.warp import transform

from gee_export.local.extent import region_name, scenes_extent, scenes_region
from gee_export.local.scenes import discover_scenes
from gee_export.local.synthetic import generate_scene


def test_the_box_holds_the_scenes_of_the_month_and_says_nothing_of_another(tmp_path):
    scene = generate_scene(tmp_path / "a", width=64, height=64, progress=False,
                           month="2019-06")
    west, south, east, north = scenes_extent(discover_scenes(tmp_path), ["2019-06"])
    left, bottom, right, top = scene.grid.bounds
    lons, lats = transform(scene.grid.crs, "EPSG:4326", [left, right, left, right],
                           [bottom, bottom, top, top])
    assert all(west <= lon <= east for lon in lons) and all(south <= lat <= north for lat in lats)
    assert east - west < 0.02 and north - south < 0.02  # 640 m of scene, not more
    # a month without scenes: no box (the stack's own refusal names the month)
    assert scenes_extent(discover_scenes(tmp_path), ["2020-06"]) is None


def test_a_glob_of_scenes_is_named_by_the_folder_its_pattern_starts_in(tmp_path, monkeypatch):
    """The glob docs/mapping.md shows named every region 'tif' (its last part, '*.tif'): the
    map's STAC collection and --publish asset were 'isamap-tif' (a new user's walk)."""
    assert region_name(str(tmp_path / "wuhan" / "scene*" / "**" / "*.tif")) == "wuhan"
    assert region_name(tmp_path / "my scenes") == "my_scenes"
    monkeypatch.chdir(tmp_path)
    assert region_name("*.tif") == region_name(tmp_path)


def test_the_scenes_extent_grid_holds_only_pixels_the_scenes_fill(tmp_path, capsys):
    """The area taken from scenes whose edges fall inside grid pixels (x 238002, y 3385003)
    reached past them: the grid snapped outward, so its north row and east column had
    their centres off the scene (3 and 5 m past), and the stack wrote them as nodata. A
    pixel is filled where its centre is: the grid keeps the pixels whose centres the
    scenes cover, at most half a pixel past them."""
    import json

    import numpy as np
    import rasterio

    from cli.export import main

    scene = generate_scene(tmp_path / "scene", width=64, height=64, fine_scale=2,
                           origin=(238002.0, 3385003.0), progress=False)
    out = tmp_path / "ds"
    assert main(["--backend", "local", "--scenes", str(tmp_path / "scene"), "--month",
                 "2019-06", "--patch-size", "32", "--stride", "32", "--out", str(out),
                 "-q"]) == 0
    grid = json.loads((out / "manifest.json").read_text())["grid"]
    left, bottom, right, top = scene.grid.bounds
    res = grid["resolution"]
    east, south = grid["x0"] + grid["width"] * res, grid["y0"] - grid["height"] * res
    assert left <= grid["x0"] + res / 2 and east - res / 2 <= right  # every pixel centre
    assert bottom <= south + res / 2 and grid["y0"] - res / 2 <= top  # lies on the scene
    assert grid["width"] >= 63 and grid["height"] >= 63  # and no more than that is lost
    (image,) = out.glob("stacks/stack_2019-06_image.tif")
    with rasterio.open(image) as src:
        b2 = src.read(1)
    for edge in (b2[0], b2[-1], b2[:, 0], b2[:, -1]):
        assert np.isfinite(edge).mean() > 0.9  # no row or column of nodata at the edges
    capsys.readouterr()


def test_a_dataset_on_the_earlier_scenes_extent_grid_is_refused_with_the_bbox_that_keeps_it(
        tmp_path, capsys):
    """Earlier versions snapped the scenes' extent outward (65 x 65 px here, now 64 x 64).

    A rerun into such a dataset (adding a month) was refused 'already holds a dataset made
    with other grid' without saying that the grid of a scenes' extent changed or what keeps
    the dataset's. The --bbox it names does: the rerun with it is accepted.
    """
    import json
    import re

    from cli.export import main
    from contract.grid import Grid

    generate_scene(tmp_path / "scene", width=64, height=64, fine_scale=2,
                   origin=(238002.0, 3385003.0), progress=False)
    box = scenes_region(tmp_path / "scene", ["2019-06"]).bbox
    out = tmp_path / "ds"
    common = ["--backend", "local", "--scenes", str(tmp_path / "scene"), "--month", "2019-06",
              "--patch-size", "32", "--stride", "32", "--out", str(out), "-q"]
    # the grid an earlier isamap made from the scenes' extent: that box snapped outward
    assert main([*common, "--bbox", ",".join(repr(v) for v in box)]) == 0
    earlier = json.loads((out / "manifest.json").read_text())["grid"]
    now = Grid.from_lonlat_bounds(box, earlier["crs"], inside=True, patch_size=32, stride=32)
    assert (earlier["width"], earlier["height"]) != (now.width, now.height)
    capsys.readouterr()
    assert main(common) == 2
    err = capsys.readouterr().err
    assert "an earlier isamap took from the scenes' extent" in err
    assert "keeps the pixels whose centres the scenes cover" in err and "\n" not in err.strip()
    bbox = re.search(r"pass --bbox (\S+) to keep the dataset's grid", err)
    assert bbox is not None
    assert main([*common, "--bbox", bbox.group(1)]) == 0  # as it says
    assert json.loads((out / "manifest.json").read_text())["grid"] == earlier
