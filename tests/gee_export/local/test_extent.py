"""Where local scenes lie: the box around every scene of a month (points checked against it)."""

from __future__ import annotations

from rasterio.warp import transform

from gee_export.local.extent import region_name, scenes_extent
from gee_export.local.synthetic import generate_scene


def test_the_box_holds_the_scenes_of_the_month_and_says_nothing_of_another(tmp_path):
    scene = generate_scene(tmp_path / "a", width=64, height=64, progress=False,
                           month="2019-06")
    west, south, east, north = scenes_extent(tmp_path, ["2019-06"])
    left, bottom, right, top = scene.grid.bounds
    lons, lats = transform(scene.grid.crs, "EPSG:4326", [left, right, left, right],
                           [bottom, bottom, top, top])
    assert all(west <= lon <= east for lon in lons) and all(south <= lat <= north for lat in lats)
    assert east - west < 0.02 and north - south < 0.02  # 640 m of scene, not more
    # a month without scenes: no box (the stack's own refusal names the month)
    assert scenes_extent(tmp_path, ["2020-06"]) is None


def test_a_glob_of_scenes_is_named_by_the_folder_its_pattern_starts_in(tmp_path, monkeypatch):
    """The glob docs/mapping.md shows named every region 'tif' (its last part, '*.tif'): the
    map's STAC collection and --publish asset were 'isamap-tif' (a new user's walk)."""
    assert region_name(str(tmp_path / "wuhan" / "scene*" / "**" / "*.tif")) == "wuhan"
    assert region_name(tmp_path / "my scenes") == "my_scenes"
    monkeypatch.chdir(tmp_path)
    assert region_name("*.tif") == region_name(tmp_path)
