"""Earth Engine recipe graphs, built offline and asserted on as serialized JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from contract.grid import Grid
from core.errors import ConfigError, EmptyCompositeError
from gee_export.ee import labels, sentinel1, sentinel2, speckle, terrain
from gee_export.ee.recipe import EERecipe, build_fine_label, build_stack
from tests.support import ee_graph
from tests.support.ee_graph import evaluate

JUNE = ("2019-06-01", "2019-07-01")




def filters(obj, name: str) -> list[tuple]:
    return [(ee_graph.constant(c["arguments"]["leftField"]),
             ee_graph.constant(c["arguments"]["rightValue"])) for c in ee_graph.find(obj, name)]


@pytest.mark.parametrize("method", speckle.SPECKLE_FILTERS)
@pytest.mark.parametrize("flat", terrain.TERRAIN_MODELS)
def test_s1_every_variant(region, method, flat):
    recipe = sentinel1.S1Recipe(speckle=method, terrain_flattening=flat)
    img = sentinel1.s1_composite(region, *JUNE, recipe)
    ids = ee_graph.loaded_ids(img)
    assert "COPERNICUS/S1_GRD_FLOAT" in ids and "COPERNICUS/S1_GRD" not in ids
    assert ("instrumentMode", "IW") in filters(img, "Filter.equals")
    assert set(filters(img, "Filter.listContains")) == {
        ("transmitterReceiverPolarisation", "VV"), ("transmitterReceiverPolarisation", "VH")}
    assert not [f for f in filters(img, "Filter.equals") if f[0] == "orbitProperties_pass"]
    # border noise: 30.63993 < angle < 45.23993
    gt = [ee_graph.constant(c["arguments"]["image2"]["functionInvocationValue"]["arguments"]
                            ["value"]) for c in ee_graph.find(img, "Image.gt")]
    lt = [ee_graph.constant(c["arguments"]["image2"]["functionInvocationValue"]["arguments"]
                            ["value"]) for c in ee_graph.find(img, "Image.lt")
          if "constantValue" in str(c["arguments"]["image2"])[:200]]
    assert 30.63993 in gt and 45.23993 in lt
    # linear-domain averaging, dB once at the end: log10(mean(collection)) * 10
    (log,) = ee_graph.find(img, "Image.log10")
    inner = log["arguments"]["value"]["functionInvocationValue"]
    assert inner["functionName"] == "reduce.mean"
    assert not ee_graph.find(img, "Image.exp") and not ee_graph.find(img, "Image.pow")
    names = set(ee_graph.names(img))
    assert "reduce.count" in names  # s1_scene_count
    expected_formula = {"boxcar": None, "none": None, "lee": speckle.LEE_WEIGHT,
                        "gamma_map": speckle.GAMMA_MAP_ESTIMATE,
                        "refined_lee": speckle.LEE_WEIGHT, "lee_sigma": speckle.LEE_WEIGHT}
    exprs = ee_graph.expressions(img)
    if expected_formula[method]:
        assert expected_formula[method] in exprs
    if flat == "none":
        assert terrain.DEFAULT_DEM not in ids and "Terrain.slope" not in names
    else:
        assert terrain.DEFAULT_DEM in ids and "Terrain.slope" in names
        model = terrain.VOLUME_SCF if flat == "volume" else terrain.SURFACE_SCF
        assert model in exprs and terrain.NOT_LAYOVER_SHADOW in exprs
    # every array is indexed and reduced with as many axes as it has (the server's check)
    assert ee_graph.array_rank_errors(img) == []
    # the speckle filter runs on the scene's native pixels, then bilinear once
    (resample,) = ee_graph.find(img, "Image.resample")
    assert ee_graph.constant(resample["arguments"]["mode"]) == "bilinear"
    assert resample["arguments"]["image"]["functionInvocationValue"]["functionName"] == \
        "Image.reproject"


def test_default_dem_is_not_a_deprecated_asset(region):
    """The client warns about assets the data catalog marks deprecated (served offline here
    as the catalogue ee.Initialize reads): the default DEM must not be one."""
    import warnings

    assert terrain.DEFAULT_DEM == "COPERNICUS/DEM/GLO30_2024_1"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = sentinel1.s1_composite(region, *JUNE, sentinel1.S1Recipe(
            terrain_flattening="volume"))
        terrain.dem_image("COPERNICUS/DEM/GLO30")  # the catalogue does flag the old id
    deprecated = [str(w.message) for w in caught if "deprecated asset" in str(w.message)]
    assert len(deprecated) == 1 and "COPERNICUS/DEM/GLO30!" in deprecated[0]
    assert "GLO30_2024_1" in deprecated[0]  # ... and names the replacement used here
    dem = [i for i in ee_graph.loaded_ids(img) if i.startswith("COPERNICUS/DEM")]
    assert dem == ["COPERNICUS/DEM/GLO30_2024_1"]
    assert any(ee_graph.constant(c["arguments"]["bandSelectors"]) == ["DEM"]
               for c in ee_graph.find(img, "Image.select"))  # same DEM band as before


def test_s1_orbit_pass_and_dem_option(region):
    img = sentinel1.s1_composite(region, *JUNE, sentinel1.S1Recipe(
        orbit_pass="descending", terrain_flattening="surface", dem="USGS/SRTMGL1_003"))
    assert ("orbitProperties_pass", "DESCENDING") in filters(img, "Filter.equals")
    assert "USGS/SRTMGL1_003" in ee_graph.loaded_ids(img)


def test_s1_empty_month_names_month_and_region():
    recipe = sentinel1.S1Recipe(orbit_pass="ascending")
    assert sentinel1.require_scenes(3, "2019-06", "wuhan", recipe) == 3
    with pytest.raises(EmptyCompositeError, match=r"'wuhan' in month 2019-06"):
        sentinel1.require_scenes(0, "2019-06", "wuhan", recipe)


def test_s1_rejects_db_collection_and_bad_options():
    with pytest.raises(ConfigError, match="S1_GRD_FLOAT"):
        sentinel1.S1Recipe(collection="COPERNICUS/S1_GRD")
    with pytest.raises(ConfigError, match="choose one of"):
        sentinel1.S1Recipe(speckle="median")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="orbit pass"):
        sentinel1.S1Recipe(orbit_pass="north")  # type: ignore[arg-type]


def test_terrain_formulas():
    theta = np.radians(np.array([31.0, 38.0, 45.0]))
    hp = np.pi / 2
    flat = {"theta": theta, "alpha_r": 0 * theta, "alpha_az": 0 * theta, "hp": hp}
    np.testing.assert_allclose(evaluate(terrain.VOLUME_SCF, **flat), 1.0)
    np.testing.assert_allclose(evaluate(terrain.SURFACE_SCF, **flat), 1.0)
    np.testing.assert_allclose(evaluate(terrain.GAMMA0, sigma0=1.0, theta=theta), 1 / np.cos(theta))
    facing = {**flat, "alpha_r": np.radians(10.0) + 0 * theta}
    assert np.all(evaluate(terrain.VOLUME_SCF, **facing) > 1)  # fore-slopes are brightened
    assert np.all(evaluate(terrain.NOT_LAYOVER_SHADOW, **facing))
    layover = {**flat, "alpha_r": theta + 0.01}
    shadow = {**flat, "alpha_r": -(hp - theta) - 0.01}
    assert not np.any(evaluate(terrain.NOT_LAYOVER_SHADOW, **layover))
    assert not np.any(evaluate(terrain.NOT_LAYOVER_SHADOW, **shadow))
    slope, phi = np.radians(20.0), np.radians(30.0)
    ar = evaluate(terrain.ALPHA_R, slope=slope, phi_r=phi)
    assert ar == pytest.approx(np.arctan(np.tan(slope) * np.cos(phi)))


@pytest.mark.parametrize("mask", ["cloudscoreplus", "scl"])
def test_s2_composite(region, mask):
    recipe = sentinel2.S2Recipe(cloud_mask=mask, cs_threshold=0.65)
    img = sentinel2.s2_composite(region, *JUNE, recipe, ("B2", "B3", "B4", "B8", "B11"))
    ids = ee_graph.loaded_ids(img)
    assert "COPERNICUS/S2_SR_HARMONIZED" in ids
    names = set(ee_graph.names(img))
    assert {"reduce.median", "reduce.count", "Image.updateMask"} <= names
    divide = ee_graph.first_call(img, "Image.divide")
    assert 10000 in list(ee_graph.constants(divide["arguments"]["image2"]))
    assert "QA60" not in json.dumps(ee_graph.encode(img))
    assert ee_graph.array_rank_errors(img) == []
    if mask == "cloudscoreplus":
        assert "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED" in ids
        link = ee_graph.first_call(img, "Image.linkCollection")
        assert "cs_cdf" in json.dumps(link["arguments"])
        gte = ee_graph.first_call(img, "Image.gte")
        assert 0.65 in list(ee_graph.constants(gte["arguments"]["image2"]))
    else:
        eqs = {v for c in ee_graph.find(img, "Image.eq")
               for v in ee_graph.constants(c["arguments"]["image2"])}
        assert eqs == set(sentinel2.SCL_CLEAR)
        assert "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED" not in ids


def test_s2_window_widening_and_empty_month():
    recipe = sentinel2.S2Recipe(min_clear=2, widen_step_days=5, max_widen_days=15)
    seen = []

    def counts(start, end):
        seen.append((start, end))
        return {0: 0.0, 5: 1.0, 10: 2.0}.get(len(seen) * 5 - 5, 3.0)

    window = sentinel2.choose_window("2019-06", "wuhan", recipe, counts)
    assert (window.start, window.end, window.widened_days) == ("2019-05-22", "2019-07-11", 10)
    assert seen[0] == ("2019-06-01", "2019-07-01")
    with pytest.raises(EmptyCompositeError, match=r"2019-06.*'wuhan'|'wuhan'.*2019-06"):
        sentinel2.choose_window("2019-06", "wuhan", recipe, lambda s, e: 0.0)
    few = sentinel2.choose_window("2019-06", "wuhan", recipe, lambda s, e: 1.0)
    assert few.widened_days == 0  # fewer than wanted but never better: the narrowest kept


@pytest.mark.parametrize("text,collection,value", [
    ("worldcover", "ESA/WorldCover/v100", 50),
    ("dynamicworld", "GOOGLE/DYNAMICWORLD/V1", 6),
    ("ghsl:0.3", "JRC/GHSL/P2023A/GHS_BUILT_S/2020", 0.3),  # by image id: 2019 -> epoch 2020
    ("asset:projects/p/assets/whu_is:b1", "projects/p/assets/whu_is", None),
])
def test_labels(region, text, collection, value):
    source = labels.parse_label_source(text)
    img = labels.label_image(source, region, *JUNE, 2019)
    assert collection in ee_graph.loaded_ids(img)
    unmask = ee_graph.first_call(img, "Image.unmask")
    assert 255 in list(ee_graph.constants(unmask["arguments"]["value"]))
    assert ee_graph.find(img, "Image.toUint8")
    assert ee_graph.array_rank_errors(img) == []
    if source.kind == "dynamicworld":
        assert "Reducer.mode" in ee_graph.names(img)
    if source.kind == "asset":
        remap = ee_graph.first_call(img, "Image.remap")
        assert ee_graph.constant(remap["arguments"]["defaultValue"]) == 255
    else:
        consts = {v for name in ("Image.eq", "Image.gte") for c in ee_graph.find(img, name)
                  for v in ee_graph.constants(c["arguments"]["image2"])}
        assert value in consts


def test_label_parsing_errors():
    assert labels.worldcover_id(2022) == "ESA/WorldCover/v200"
    assert labels.ghsl_epoch(2019) == 2020
    assert labels.ghsl_image_id(2023) == "JRC/GHSL/P2023A/GHS_BUILT_S/2025"
    for bad in ("osm", "ghsl:2", "asset:"):
        with pytest.raises(ConfigError):
            labels.parse_label_source(bad)


def test_stack_single_grid(region):
    grid = Grid("EPSG:32650", 400000.0, 3380000.0, 1000, 800)
    recipe = EERecipe(bands=("B2", "B3", "B4", "B8", "VV", "VH", "s2_clear_count"),
                      label=labels.parse_label_source("worldcover"), fine_scale=4)
    window = sentinel2.month_window("2019-06")
    img = build_stack(grid, window, recipe, region)
    reprojects = ee_graph.find(img, "Image.reproject")
    on_grid = [r for r in reprojects if "crsTransform" in r["arguments"]]
    assert len(on_grid) == len(recipe.bands) + 1  # every band and the label
    for r in on_grid:
        assert ee_graph.constant(r["arguments"]["crsTransform"]) == grid.crs_transform
        crs = r["arguments"]["crs"]["functionInvocationValue"]["arguments"]["crs"]
        assert ee_graph.constant(crs) == "EPSG:32650"
        assert "scale" not in r["arguments"]
    # the others pin the S1 speckle filter to each scene's own projection
    assert all("crsTransform" not in r["arguments"] for r in reprojects if r not in on_grid)
    reduce_res = ee_graph.first_call(img, "Image.reduceResolution")
    assert "Reducer.mode" in json.dumps(reduce_res["arguments"]["reducer"])
    # continuous sources: bilinear declared once per scene, never on the composite
    for r in ee_graph.find(img, "Image.resample"):
        assert ee_graph.constant(r["arguments"]["mode"]) == "bilinear"
    fine = build_fine_label(grid, window, recipe, region)
    assert ee_graph.array_rank_errors(img) == ee_graph.array_rank_errors(fine) == []
    (fine_rp,) = [r for r in ee_graph.find(fine, "Image.reproject")]
    assert ee_graph.constant(fine_rp["arguments"]["crsTransform"]) == \
        grid.scaled(4).crs_transform == [2.5, 0.0, 400000.0, 0.0, -2.5, 3380000.0]


def test_stack_rejects_label_as_band():
    with pytest.raises(ConfigError, match="--labels"):
        EERecipe(bands=("B2", "label"))
