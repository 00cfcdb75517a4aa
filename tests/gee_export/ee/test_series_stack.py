"""A series stack on Earth Engine: earlier months composited by the same recipe, renamed ``_mK``."""

from __future__ import annotations

import json
import re

from contract.bands import stack_series_bands
from contract.grid import Grid
from gee_export.ee import sentinel2
from gee_export.ee.recipe import EERecipe, build_stack
from tests.support import ee_graph


def _dates(image) -> set[str]:
    """The dates an image's graph (or a resolved node of one) holds."""
    graph = image if isinstance(image, dict) else ee_graph.encode(image)
    return set(re.findall(r'"(\d{4}-\d\d-\d\d)"', json.dumps(graph)))


def test_earlier_months_are_their_calendar_months_renamed(ee_offline, region):
    grid = Grid("EPSG:32650", 400000.0, 3380000.0, 100, 80)
    bands = stack_series_bands(("B2", "B4", "VV", "s2_clear_count"), 3)
    assert bands == ("B2", "B4", "VV", "s2_clear_count", "B2_m1", "B4_m1", "VV_m1",
                     "B2_m2", "B4_m2", "VV_m2")
    widened = sentinel2.TimeWindow("2019-03", "2019-02-24", "2019-04-06", 5)
    img = build_stack(grid, widened, EERecipe(bands=bands), region,
                      sentinel2.month_window("2019-03"))
    # the month's own widened S2 window and calendar S1 month, then each earlier calendar
    # month (never widened: the series' months do not overlap), nothing else
    assert _dates(img) == {"2019-02-24", "2019-04-06", "2019-03-01", "2019-04-01",
                           "2019-02-01", "2019-01-01"}
    # each _mK band is renamed from the composite of its own calendar month: _m1 February's
    # dates alone, _m2 January's (a month swapped or shared would show here)
    sources: dict[str, set[str]] = {}
    for rename in ee_graph.find(img, "Image.rename"):
        names = rename["arguments"]["names"].get("constantValue")
        if isinstance(names, list) and len(names) == 1 and "_m" in names[0]:
            sources[names[0]] = _dates(rename["arguments"]["input"])
    february, january = {"2019-02-01", "2019-03-01"}, {"2019-01-01", "2019-02-01"}
    assert sources == {"B2_m1": february, "B4_m1": february, "VV_m1": february,
                       "B2_m2": january, "B4_m2": january, "VV_m2": january}
    # one composite per sensor and month (3 months): Sentinel-2's median, Sentinel-1's mean
    # in linear power; each on the grid like the month's own bands
    assert len(ee_graph.find(img, "reduce.median")) == 3
    assert len(ee_graph.find(img, "reduce.mean")) == 3
    on_grid = [r for r in ee_graph.find(img, "Image.reproject")
               if "crsTransform" in r["arguments"]]
    assert len(on_grid) == len(bands)
    assert all(ee_graph.constant(r["arguments"]["crsTransform"]) == grid.crs_transform
               for r in on_grid)
    assert ee_graph.array_rank_errors(img) == []


def test_one_month_stack_is_unchanged(ee_offline, region):
    grid = Grid("EPSG:32650", 400000.0, 3380000.0, 100, 80)
    img = build_stack(grid, sentinel2.month_window("2019-06"),
                      EERecipe(bands=("B2", "B4", "VV")), region)
    assert _dates(img) == {"2019-06-01", "2019-07-01"}
