"""Seven-class land-cover labels on the Earth Engine backend: the contract's table, remapped."""

from __future__ import annotations

import json

import pytest

from contract.dataset import DatasetSpec, read_manifest
from contract.grid import Grid
from contract.label_schemes import LANDCOVER_CLASSES, SCHEMES
from core.errors import ConfigError
from core.storage import open_store
from gee_export.ee import labels
from gee_export.ee.export import ExportJob
from gee_export.ee.export_job import open_job
from gee_export.ee.recipe import EERecipe, build_fine_label, build_stack
from gee_export.ee.sentinel2 import month_window
from tests.support import ee_graph

JUNE = ("2019-06-01", "2019-07-01")




@pytest.mark.parametrize("text,source,collection", [
    ("landcover:worldcover", "worldcover", "ESA/WorldCover/v100"),
    ("landcover:dynamicworld", "dynamicworld", "GOOGLE/DYNAMICWORLD/V1"),
    ("landcover:fromglc10:projects/p/assets/fromglc10:b1", "fromglc10",
     "projects/p/assets/fromglc10"),
    ("landcover:chesapeake:projects/p/assets/cpk_lc", "chesapeake", "projects/p/assets/cpk_lc"),
    ("landcover:nlcd", "nlcd", "USGS/NLCD_RELEASES/2019_REL/NLCD"),  # in the catalogue
    ("landcover:nlcd:projects/p/assets/nlcd_ak", "nlcd", "projects/p/assets/nlcd_ak"),
])
def test_remap_uses_the_contract_table(region, text, source, collection):
    parsed = labels.parse_label_source(text)
    assert (parsed.kind, parsed.scheme, parsed.label_scheme) == ("landcover", source,
                                                                  "landcover")
    assert list(parsed.classes.values()) == list(LANDCOVER_CLASSES)
    img = labels.label_image(parsed, region, *JUNE, 2019)
    assert collection in ee_graph.loaded_ids(img)
    remap = ee_graph.first_call(img, "Image.remap")
    frm, to = SCHEMES[source].remap_lists()
    assert ee_graph.constant(remap["arguments"]["from"]) == frm
    assert ee_graph.constant(remap["arguments"]["to"]) == to
    assert ee_graph.constant(remap["arguments"]["defaultValue"]) == 255  # unlisted codes
    unmask = ee_graph.first_call(img, "Image.unmask")
    assert 255 in list(ee_graph.constants(unmask["arguments"]["value"]))  # masked pixels
    if source == "dynamicworld":
        assert "Reducer.mode" in ee_graph.names(img)


def test_coarse_label_onto_a_finer_grid_is_nearest(region):
    """On a 2 m grid (and its x5 fine grid) the 10 m map is reprojected on the grid's lattice;
    Earth Engine's default resampling is nearest, and the mode reducer over one covering
    pixel keeps that pixel: no class is blended or invented."""
    grid = Grid("EPSG:32650", 400000.0, 3380000.0, 100, 100, 2.0)
    recipe = EERecipe(bands=("B2",), label=labels.parse_label_source("landcover:worldcover"),
                      fine_scale=5)
    window = month_window("2019-06")
    stack = build_stack(grid, window, recipe, region)
    fine = build_fine_label(grid, window, recipe, region)
    assert not ee_graph.find(fine, "Image.resample")  # bilinear is declared for S2 only
    for img, g in ((stack, grid), (fine, grid.scaled(5))):
        on_grid = [r for r in ee_graph.find(img, "Image.reproject")
                   if ee_graph.constant(r["arguments"]["crsTransform"]) == g.crs_transform]
        assert on_grid
        reducers = [json.dumps(r["arguments"]["reducer"])
                    for r in ee_graph.find(img, "Image.reduceResolution")]
        assert reducers and all("Reducer.mode" in r for r in reducers)


def test_nlcd_comes_from_the_catalogue_epoch_nearest_the_month(region):
    assert [labels.nlcd_epoch(y) for y in (2015, 2017, 2018, 2020, 2023)] == [
        2016, 2016, 2019, 2021, 2021]
    img = labels.label_image(labels.parse_label_source("landcover:nlcd"), region,
                             "2022-06-01", "2022-07-01", 2022)
    assert "USGS/NLCD_RELEASES/2021_REL/NLCD" in ee_graph.loaded_ids(img)
    assert "2021-01-01" in json.dumps(ee_graph.find(img, "Collection.filter"))


def test_sources_outside_the_catalogue_need_an_asset():
    with pytest.raises(ConfigError, match="landcover:chesapeake:projects/"):
        labels.parse_label_source("landcover:chesapeake")
    with pytest.raises(ConfigError, match="landcover:worldcover"):
        labels.parse_label_source("landcover:corine")


def test_manifest_records_the_seven_classes(tmp_path):
    grid = Grid("EPSG:32650", 400000.0, 3380000.0, 256, 256)
    source = labels.parse_label_source("landcover:worldcover")
    job = ExportJob(DatasetSpec(grid, ("B2",), backend="ee", region="test",
                                classes=source.classes, label_scheme=source.label_scheme),
                    "2019-06")
    book = open_job(open_store(tmp_path / "ds"), job)
    assert book.writer.isa_class == LANDCOVER_CLASSES.index("impervious")
    book.commit(complete=False)
    label = read_manifest(tmp_path / "ds")["label"]
    assert label["scheme"] == "landcover"
    assert label["classes"] == {str(i): n for i, n in enumerate(LANDCOVER_CLASSES)}
