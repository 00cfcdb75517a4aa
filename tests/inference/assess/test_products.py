"""Products compared on the points: rasters read in place, Earth Engine products sampled."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from core.errors import ConfigError, InputDataError
from inference.assess.design import design_sample
from inference.assess.products import parse_comparison, sample_product
from inference.cog.maps import NODATA
from testing.fake_server import PointTransport
from tests.support.assess import CLASSES, synthetic_scene
from tests.support.mapping import session_for
from tests.support.rasters import write_band


def test_parse_comparisons(tmp_path):
    wc = parse_comparison("wc=worldcover")
    assert (wc.kind, wc.source, wc.band) == ("worldcover", "ESA/WorldCover/v200/2021", "Map")
    assert wc.isa_rule(np.array([50, 40])).tolist() == [True, False]
    dw = parse_comparison("dw=dynamicworld:2021")
    assert dw.isa_rule(np.array([6, 7])).tolist() == [True, False] and dw.year == 2021
    gh = parse_comparison("ghsl=ghsl:2020:0.3")
    assert gh.scale == 100 and gh.isa_rule(np.array([3000.0, 2999.0])).tolist() == [True, False]
    asset = parse_comparison("mine=ee:users/me/isa:b1:2,3")
    assert (asset.source, asset.band) == ("users/me/isa", "b1")
    assert asset.isa_rule(np.array([1, 2, 3])).tolist() == [False, True, True]
    raster = parse_comparison("old=gs://bucket/old.tif:50")
    assert raster.source == "gs://bucket/old.tif" and raster.isa_rule(np.array([50])).all()
    (tmp_path / "b.tif").touch()
    assert parse_comparison(f"same={tmp_path / 'b.tif'}").isa_rule is None
    # a missing file, or codes given as names (read as part of the path), named at once
    for given in ("/nope.tif", f"{tmp_path / 'b.tif'}:a,b"):
        with pytest.raises(ConfigError, match=r"--compare x: .* does not exist; give a class "
                                              r"raster, with its impervious codes as numbers"):
            parse_comparison(f"x={given}")
    for bad in ("noequals", "x=ghsl:2021", "x=dynamicworld", "x=worldcover:2019", "x=ee:"):
        with pytest.raises(ConfigError):
            parse_comparison(bad)


def test_raster_products_are_read_at_the_points(tmp_path):
    scene = synthetic_scene(tmp_path)
    design = design_sample(str(scene.map_path), n=60, seed=0, minimum=20)
    ids = [str(i) for i in range(60)]
    same = sample_product(parse_comparison(f"w={scene.worse_path}"), CLASSES, 1,
                          design.lon, design.lat, ids)
    with rasterio.open(scene.worse_path) as ds:
        rows, cols = rasterio.transform.rowcol(ds.transform, design.x, design.y)
        expected = ds.read(1)[rows, cols]
    assert same.values.tolist() == expected.tolist()
    coded = write_band(tmp_path / "wc.tif", np.where(scene.truth == 1, 50, 10).astype(np.uint8),
                       nodata=NODATA)
    wc = sample_product(parse_comparison(f"wc={coded}:50"), CLASSES, 1, design.lon,
                        design.lat, ids)
    assert wc.values.tolist() == scene.truth[rows, cols].tolist()
    with pytest.raises(InputDataError, match="not the map's class codes"):
        sample_product(parse_comparison(f"wc={coded}"), CLASSES, 1, design.lon, design.lat, ids)


def test_earth_engine_products_are_sampled_through_the_session(tmp_path, ee_offline):
    scene = synthetic_scene(tmp_path)
    design = design_sample(str(scene.map_path), n=60, seed=0, minimum=20)
    ids = [f"p{i}" for i in range(60)]
    wc = write_band(tmp_path / "wc.tif", np.where(scene.truth == 1, 50, 30).astype(np.uint8),
                    nodata=0)
    dw_raw = np.where(scene.truth == 1, 6, 1).astype(np.uint8)
    dw_raw[:, :10] = 0  # masked: no value there
    dw = write_band(tmp_path / "dw.tif", dw_raw, nodata=0)
    transport = PointTransport({"ESA/WorldCover/v200/2021": str(wc),
                                "GOOGLE/DYNAMICWORLD/V1": str(dw)})
    session = session_for(transport)
    with rasterio.open(scene.map_path) as ds:
        rows, cols = rasterio.transform.rowcol(ds.transform, design.x, design.y)
    got = sample_product(parse_comparison("wc=worldcover"), CLASSES, 1, design.lon,
                         design.lat, ids, lambda: session)
    assert got.values.tolist() == scene.truth[rows, cols].tolist()
    three = ("pervious", "impervious", "water")
    dyn = sample_product(parse_comparison("dw=dynamicworld:2021"), three, 1, design.lon,
                         design.lat, ids, lambda: session)
    masked = np.asarray(cols) < 10
    assert (dyn.values[masked] == -1).all()
    assert dyn.values[~masked].tolist() == scene.truth[rows, cols][~masked].tolist()
    assert dyn.classes == ("other", "impervious") and dyn.reference_code.tolist() == [0, 1, 0]
    graph = str(transport.requests[-1]["graph"])
    assert "Collection.filter" in graph and "reduce.mode" in graph
    assert "2021-01-01" in graph and "2022-01-01" in graph  # the year's mode
    with pytest.raises(ConfigError, match="--project"):
        sample_product(parse_comparison("wc=worldcover"), CLASSES, 1, design.lon, design.lat,
                       ids, None)
