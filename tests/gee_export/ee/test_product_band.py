"""The ``product`` band on the Earth Engine backend: the label source's codes, not remapped.

Graphs are built offline; the export runs against the fake server, which serves the local
backend's stack of the same scene (its ``product`` band read from the same NLCD raster), and the
request's expression must be the recipe's image.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile

from contract.dataset import DatasetSpec, read_index, read_manifest
from core.errors import ConfigError
from core.storage import open_store
from gee_export.ee.export import ExportJob, export_pixels
from gee_export.ee.labels import parse_label_source
from gee_export.ee.prediction_stack import prediction_image, recipe_for_month
from gee_export.ee.recipe import EERecipe, build_stack
from gee_export.ee.sentinel2 import month_window
from testing.fake_server import StackTransport
from tests.support import ee_graph
from tests.support.killed_export import MONTH, session_for
from tests.support.nlcd import CODES, nlcd_scene

BANDS = ("B2", "B4", "product")
NLCD = parse_label_source("landcover:nlcd")


@pytest.fixture(scope="module")
def nlcd_stack(tmp_path_factory):
    """A local stack of a synthetic scene whose label raster holds 30 m NLCD codes."""
    from contract.grid import Grid
    from gee_export.local.stack import build_local_stack

    root = tmp_path_factory.mktemp("nlcd")
    scene, _ = nlcd_scene(root / "scene", size=64)
    t = scene.grid.transform
    grid = Grid(scene.grid.crs, t.c, t.f, 64, 64, 10.0, patch_size=32, stride=32)
    return build_local_stack(root / "scene", grid, MONTH, BANDS, label_scheme="landcover:nlcd",
                             out_dir=root / "stack", progress=False)


def test_the_product_band_is_the_sources_codes_on_the_grid(region):
    stack = build_stack(_grid(), month_window(MONTH), EERecipe(bands=BANDS, label=NLCD),
                        region)
    assert "USGS/NLCD_RELEASES/2019_REL/NLCD" in ee_graph.loaded_ids(stack)
    renames = [ee_graph.constant(r["arguments"]["names"])
               for r in ee_graph.find(stack, "Image.rename")]
    assert ["product"] in renames and ["label"] in renames
    assert len(ee_graph.find(stack, "Image.remap")) == 1  # the label's: the product keeps codes
    reducers = [json.dumps(r["arguments"]["reducer"])
                for r in ee_graph.find(stack, "Image.reduceResolution")]
    assert len(reducers) == 2 and all("Reducer.mode" in r for r in reducers)


def test_the_product_band_needs_a_land_cover_source():
    with pytest.raises(ConfigError, match="--labels landcover:<source>"):
        EERecipe(bands=BANDS, label=parse_label_source("worldcover"))
    with pytest.raises(ConfigError, match="--labels landcover:<source>"):
        EERecipe(bands=BANDS)


def test_a_map_date_reads_the_product_from_the_recorded_source_without_the_label(region):
    recipe = EERecipe(bands=BANDS, label=NLCD).to_dict()
    date = recipe_for_month(recipe, BANDS, MONTH,
                            {MONTH: {"s2_window": month_window(MONTH).to_dict()}})
    image = prediction_image(_grid(), date, region)
    renames = [ee_graph.constant(r["arguments"]["names"])
               for r in ee_graph.find(image, "Image.rename")]
    assert ["product"] in renames and ["label"] not in renames
    with pytest.raises(ConfigError, match="records no Earth Engine land-cover label source"):
        recipe_for_month({"s2": {}, "label": {"kind": "worldcover"}}, BANDS, MONTH)
    local = recipe_for_month({"label_scheme": "landcover:nlcd"}, BANDS, MONTH)  # a local export
    assert local.recipe.label == NLCD
    with pytest.raises(ConfigError, match="landcover:chesapeake:projects/"):
        recipe_for_month({"label_scheme": "landcover:chesapeake"}, BANDS, MONTH)


def test_pixels_export_carries_the_product_band(ee_offline, nlcd_stack, tmp_path):
    region = ee_offline.Geometry.Rectangle([114.2, 30.5, 114.25, 30.55])
    image = build_stack(nlcd_stack.grid, month_window(MONTH), EERecipe(bands=BANDS, label=NLCD),
                        region)
    transport = StackTransport(nlcd_stack, recipe=(image, None))
    spec = DatasetSpec(nlcd_stack.grid, BANDS, backend="ee", region="synthetic",
                       recipe=EERecipe(bands=BANDS, label=NLCD).to_dict(),
                       min_valid_fraction=0.0, classes=NLCD.classes,
                       label_scheme=NLCD.label_scheme)
    summary = export_pixels(session_for(transport), image, ExportJob(spec, MONTH),
                            str(tmp_path / "ds"), workers=2, progress=False)
    assert summary.written > 0
    store = open_store(tmp_path / "ds")
    with rasterio.open(nlcd_stack.image) as src:
        product = src.read(3)
    assert set(np.unique(product)) <= set(CODES)
    for rec in read_index(store):
        with MemoryFile(store.read_bytes(rec["image"])) as mem, mem.open() as src:
            assert src.descriptions[-1] == "product"
            w = nlcd_stack.grid.patch_window(rec["row"], rec["col"])
            np.testing.assert_array_equal(src.read(3),
                                          product[w.row_off:w.row_end, w.col_off:w.col_end])
    assert read_manifest(store)["bands"] == list(BANDS)


def _grid():
    from contract.grid import Grid

    return Grid("EPSG:32650", 400000.0, 3380000.0, 64, 64, 10.0)
