"""Request graphs carry a region's box, never its outline; the clear-count check is bounded."""

from __future__ import annotations

import json
import math

import pytest

from contract.grid import Grid
from contract.regions import Region
from gee_export.ee import labels, sentinel2
from gee_export.ee.code_editor import render
from gee_export.ee.recipe import EERecipe, build_stack
from gee_export.ee.request_region import (
    MAX_OUTLINE_BYTES,
    outline_bytes,
    outline_for_script,
    request_geometry,
)
from tests.support import ee_graph


def province(vertices: int) -> Region:
    """A wiggly outline of ``vertices`` points, as a detailed province border is."""
    ring = [[114.0 + 1.5 * math.cos(2 * math.pi * i / vertices) * (1 + 0.05 * (i % 7)),
             30.5 + 1.0 * math.sin(2 * math.pi * i / vertices)] for i in range(vertices)]
    ring.append(ring[0])
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    return Region("province", (min(xs), min(ys), max(xs), max(ys)),
                  {"type": "Polygon", "coordinates": [ring]})


def test_the_graph_size_does_not_grow_with_the_outline(ee_offline):
    grid = Grid("EPSG:32650", 400000.0, 3380000.0, 1000, 800)
    recipe = EERecipe(bands=("B2", "B3", "B4", "B8", "VV", "VH"),
                      label=labels.parse_label_source("worldcover"))
    window = sentinel2.month_window("2019-06")
    sizes = []
    for vertices in (10, 200_000):
        region = province(vertices)
        graph = json.dumps(ee_graph.encode(build_stack(grid, window, recipe,
                                                       request_geometry(region))))
        sizes.append(len(graph))
        assert f"{region.to_geojson()['coordinates'][0][3][0]!r}" not in graph
    assert abs(sizes[0] - sizes[1]) < 100 and sizes[1] < 200_000  # only the box digits differ
    assert outline_bytes(province(200_000)) > 5 * 2**20  # what each request would have sent


def test_the_preview_script_keeps_small_outlines_and_boxes_large_ones():
    grid = Grid("EPSG:32650", 400000.0, 3380000.0, 100, 100)
    window = sentinel2.month_window("2019-06")
    small, large = province(50), province(100_000)
    assert outline_for_script(small) == (small.to_geojson(), None)
    assert outline_bytes(large) > MAX_OUTLINE_BYTES
    text = render(large, grid, window, window, None)
    assert len(text) < 20_000 and "is too large to travel in every request" in text
    assert "too large" not in render(small, grid, window, window, None)


def test_the_clear_count_check_reduces_a_bounded_number_of_pixels(ee_offline):
    region = request_geometry(province(10))
    number = sentinel2.clear_count_statistic(region, "2019-06-01", "2019-07-01",
                                             sentinel2.S2Recipe())
    (reduce,) = ee_graph.find(number, "Image.reduceRegion")
    args = reduce["arguments"]
    assert ee_graph.constant(args["maxPixels"]) == sentinel2.CLEAR_COUNT_PIXELS <= 250_000
    assert ee_graph.constant(args["bestEffort"]) is True
    assert ee_graph.constant(args["tileScale"]) == sentinel2.CLEAR_COUNT_TILE_SCALE


@pytest.mark.parametrize("labels,needle", [
    ("landcover:nlcd", "USGS/NLCD_RELEASES/2019_REL/NLCD"),
    ("landcover:worldcover", "ESA/WorldCover/v100"),  # 2020, nearest 2019
    ("landcover:dynamicworld", "GOOGLE/DYNAMICWORLD/V1"),
    ("landcover:nlcd:projects/my-project/assets/nlcd_2019:b1",
     "ee.Image('projects/my-project/assets/nlcd_2019').select('b1')"),
])
def test_the_preview_of_land_cover_labels_loads_their_product(tmp_path, capsys, labels,
                                                              needle):
    """``--labels landcover:*`` previews loaded ``ee.Image('')``: the script failed to run."""
    import shutil
    import subprocess

    from cli.export import main

    assert main(["--bbox", "-77.1,38.8,-77.0,38.9", "--month", "2019-06", "--labels", labels,
                 "--code-editor", "--out", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    assert "ee.Image('')" not in text and needle in text
    assert ".remap([" in text and ".eq(4).clip(region)" in text  # class 4: impervious
    node = shutil.which("node")
    if node:
        script = tmp_path / "preview.js"
        script.write_text(text)
        done = subprocess.run([node, "--check", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
