"""``isamap-predict --postprocess keep``: a coarse product on another grid, real GeoTIFFs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import transform as warp_points

from cli.predict import predict_main
from contract.geotiff import write_geotiff
from contract.label_schemes import LANDCOVER_CLASSES, LANDCOVER_SCHEME
from inference.cog.maps import PROB_SCALE
from tests.support.rasters import write_stack
from training.modelfile import ModelMeta, save_model_file
from training.models import create_model

BANDS = ("B2", "B3", "B4", "B8")
K = len(LANDCOVER_CLASSES)
IMP, WOOD, GRASS, WATER = (LANDCOVER_CLASSES.index(c) for c in
                           ("impervious", "woodland", "grassland", "water"))
#: NLCD codes of the product's cells: developed medium (impervious), forest, pasture, water
NLCD = {IMP: 23, WOOD: 41, GRASS: 81, WATER: 11}
SIZE, RES = 64, 3.0  # the stack: 64 px of 3 m, EPSG:32650 (tests.support.rasters.write_stack)
X0, Y0 = 500_000.0, 3_400_000.0
CELL_DEG = 30.0 / 111_320.0  # the product: about 30 m cells in EPSG:4326


def _product_grid() -> tuple[float, float, int]:
    """West, north and cells a side of a 4326 grid over the stack (two cells of margin)."""
    xs = [X0, X0 + SIZE * RES]
    ys = [Y0, Y0 - SIZE * RES]
    lon, lat = warp_points("EPSG:32650", "EPSG:4326", [xs[0], xs[1], xs[0], xs[1]],
                           [ys[0], ys[0], ys[1], ys[1]])
    west, north = min(lon) - 2 * CELL_DEG, max(lat) + 2 * CELL_DEG
    cells = int(np.ceil(max(max(lon) - west, north - min(lat)) / CELL_DEG)) + 2
    return west, north, cells


def _cell_classes(cells: int) -> np.ndarray:
    pattern = [IMP, WOOD, IMP, GRASS, WATER, IMP]
    return np.array([[pattern[(3 * i + j) % len(pattern)] for j in range(cells)]
                     for i in range(cells)], np.uint8)


def _under_pixels(west: float, north: float, classes: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The product's class under each 3 m pixel's centre, and whether it is clear of an edge."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    lon, lat = warp_points("EPSG:32650", "EPSG:4326", (X0 + cols * RES).ravel(),
                           (Y0 - rows * RES).ravel())
    fc = (np.asarray(lon) - west) / CELL_DEG
    fr = (north - np.asarray(lat)) / CELL_DEG
    clear = (np.abs(fc - np.rint(fc)) > 0.05) & (np.abs(fr - np.rint(fr)) > 0.05)
    under = classes[fr.astype(int), fc.astype(int)]
    return under.reshape(SIZE, SIZE), clear.reshape(SIZE, SIZE)


#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("inference.predict.keep.test_inputs")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 3 m stack, an NLCD-coded product in EPSG:4326 at about 30 m, and what lies where.

    Vegetation is green, water and three rows in four of the impervious cells are not. The model
    (per pixel) says impervious where B3 is bright (then woodland second), woodland elsewhere;
    its training labels held every class but water.
    """
    folder = tmp_path_factory.mktemp("keep")
    west, north, cells = _product_grid()
    classes = _cell_classes(cells)
    codes = np.vectorize(NLCD.get)(classes).astype(np.uint8)
    product = write_geotiff(folder / "nlcd.tif", codes[None],
                            Affine(CELL_DEG, 0, west, 0, -CELL_DEG, north), "EPSG:4326", None)
    under, clear = _under_pixels(west, north, classes)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    green = np.isin(under, [WOOD, GRASS]) | ((under == IMP) & (rows % 4 == 0))
    bright = (cols // 8) % 2 == 0
    data = np.stack([np.full((SIZE, SIZE), 0.02), np.where(bright, 0.3, 0.02),
                     np.where(green, 0.04, 0.2), np.where(green, 0.4, 0.24)]).astype(np.float32)
    stack = write_stack(folder / "stack.tif", data, bands=BANDS, res=RES, nodata=None)
    weight = np.zeros((K, len(BANDS)))
    weight[IMP, 1] = 20.0  # bright in green (blue spreads less than red, as in any scene)
    bias = np.zeros(K)
    bias[IMP], bias[WOOD], bias[GRASS] = -3.0, 1.0, 0.5
    net = create_model("test-linear", len(BANDS), K, module="tests.support.models",
                       weight=weight.tolist(), bias=bias.tolist())
    meta = ModelMeta("test-linear", len(BANDS), K, BANDS, (0.0,) * 4, (1.0,) * 4,
                     class_scheme=LANDCOVER_SCHEME, class_names=LANDCOVER_CLASSES,
                     module="tests.support.models",
                     learnt_classes=tuple(c for c in LANDCOVER_CLASSES if c != "water"))
    model = save_model_file(folder / "model.pt", net, meta)
    return {"folder": folder, "stack": stack, "product": product, "model": model,
            "under": under, "clear": clear, "green": green, "bright": bright}


def _predict(scene, name, *extra):
    out = scene["folder"] / name / "lc"
    args = ["--model", str(scene["model"]), "--input", str(scene["stack"]), "--out", str(out),
            "--precision", "fp32", "--quiet", *extra]
    return predict_main(args), out


def _keep(scene, name, tile="32", window="0"):
    code, out = _predict(scene, name, "--tile", tile, "--overlap", "8", "--postprocess",
                         "keep", "--keep-product", str(scene["product"]), "--keep-table",
                         "nlcd", "--keep-window", window)
    assert code == 0
    with rasterio.open(f"{out}_class.tif") as c, rasterio.open(f"{out}_prob.tif") as p:
        return c.read(1), p.read(1), json.loads(c.tags()["postprocess"]), p.tags()


def test_the_products_impervious_stays_unless_green_and_the_rest_is_the_models(scene):
    classes, prob, rule, prob_tags = _keep(scene, "keep")
    under, clear, green, bright = (scene[k] for k in ("under", "clear", "green", "bright"))
    model = np.where(bright, IMP, WOOD)  # the model's own map
    expected = np.where(under == WATER, WATER, model)  # water: never learnt, the product's
    expected = np.where(under == IMP, np.where(green, WOOD, IMP), expected)
    assert clear.mean() > 0.7 and (under == IMP).any() and (under == WATER).any()
    assert (classes[clear] == expected[clear]).all()
    assert ((under == IMP) & ~green & ~bright & clear).any()  # impervious the model missed
    assert ((under == IMP) & green & bright & clear).any()  # impervious the model saw, green
    # the probability COG: the decision where the rule decided, the model's elsewhere
    decided = clear & np.isin(under, [IMP, WATER])
    assert (prob[decided] == np.where(expected[decided] == IMP, PROB_SCALE, 0)).all()
    free = clear & ~np.isin(under, [IMP, WATER])
    assert len(np.unique(prob[free])) == 2 and 0 < prob[free].min() < PROB_SCALE
    assert rule["table"] == "nlcd" and (rule["red"], rule["nir"]) == ("B4", "B8")
    assert rule["product"] == "nlcd.tif"  # named, not a path of this machine
    assert rule["learnt"] == [c for c in LANDCOVER_CLASSES if c != "water"]
    ndvi_bare, ndvi_green = 0.04 / 0.44, 0.36 / 0.44
    assert ndvi_bare < rule["green_cut"] < ndvi_green
    assert json.loads(prob_tags["postprocess"]) == rule


def test_the_green_cut_and_the_map_do_not_depend_on_the_tile(scene):
    small = _keep(scene, "tile32", "32")
    large = _keep(scene, "tile64", "64")
    assert small[2] == large[2]  # the same cut, recorded with the rule
    assert (small[0] == large[0]).all() and (small[1] == large[1]).all()


def test_with_a_window_the_products_shares_decide_the_rest(scene):
    """4 px windows (12 m) inside one 30 m cell take its class where the model disagrees,
    but where the model is sure of impervious ground."""
    plain = _keep(scene, "window0")
    classes, prob, rule, _ = _keep(scene, "window4", window="4")
    assert rule["window"] == 4 and "window" not in plain[2]
    under, clear = scene["under"], scene["clear"]
    decided = np.isin(under, [IMP, WATER])
    assert (classes[clear & decided] == plain[0][clear & decided]).all()  # as without
    # windows wholly inside one woodland or grassland cell, away from its edges
    inside = np.zeros_like(clear)
    for y in range(0, SIZE, 4):
        for x in range(0, SIZE, 4):
            block = under[y:y + 4, x:x + 4]
            if clear[y:y + 4, x:x + 4].all() and (block == block[0, 0]).all():
                inside[y:y + 4, x:x + 4] = block[0, 0] in (WOOD, GRASS)
    bright = scene["bright"]  # where the model is sure of impervious ground: kept, its call
    assert ((under == GRASS) & inside & ~bright).any() and (inside & bright).any()
    assert (classes[inside] == np.where(bright, IMP, under)[inside]).all()  # the product's
    assert (plain[0][inside & (under == GRASS)] != GRASS).all()  # class, the model missed
    # the impervious probability stays the model's (to the COG's rounding)
    assert np.abs(prob[inside].astype(int) - plain[1][inside].astype(int)).max() <= 1
    again = _keep(scene, "window4_tile64", "64", window="4")  # nor does it depend on the tile
    assert (again[0] == classes).all() and (again[1] == prob).all()


def test_a_window_that_splits_an_output_strip_is_refused(scene, capsys):
    err = _refused(scene, capsys, "window60", "--keep-product", str(scene["product"]),
                   "--keep-table", "nlcd", "--keep-window", "60")
    assert "--keep-window 60" in err and "divisor" in err


def _refused(scene, capsys, name, *extra, model=None):
    args = ["--postprocess", "keep", *extra]
    if model is not None:
        scene = {**scene, "model": model}
    code, out = _predict(scene, name, *args)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert not out.parent.exists() or not any(out.parent.iterdir())  # no tile, no strip
    return err


def test_a_run_that_cannot_keep_is_refused_before_any_tile(scene, capsys, tmp_path):
    product = ("--keep-product", str(scene["product"]), "--keep-table", "nlcd")
    assert "--keep-product" in _refused(scene, capsys, "none")
    assert "--keep-table" in _refused(scene, capsys, "table", "--keep-product",
                                      str(scene["product"]))
    assert "does not exist" in _refused(scene, capsys, "missing", "--keep-product",
                                        str(tmp_path / "no.tif"), "--keep-table", "nlcd")
    # a model without a near-infrared band
    net = create_model("test-linear", 3, K, module="tests.support.models")
    meta = ModelMeta("test-linear", 3, K, BANDS[:3], (0.0,) * 3, (1.0,) * 3,
                     class_scheme=LANDCOVER_SCHEME, class_names=LANDCOVER_CLASSES,
                     module="tests.support.models")
    no_nir = save_model_file(tmp_path / "no_nir.pt", net, meta)
    assert "near-infrared" in _refused(scene, capsys, "nir", *product, model=no_nir)
    # a binary impervious model: no land-cover classes to keep
    net = create_model("test-linear", 4, 2, module="tests.support.models")
    binary = save_model_file(tmp_path / "isa.pt", net, ModelMeta(
        "test-linear", 4, 2, BANDS, (0.0,) * 4, (1.0,) * 4, module="tests.support.models"))
    assert "land-cover" in _refused(scene, capsys, "isa", *product, model=binary)


def test_the_sample_meets_the_product_where_its_pixels_lie(tmp_path):
    """On a stack wider than the sample (every third column read), each sampled pixel meets
    the product cell under it: every fourth column is forest (green), the rest developed
    (bare); a sample one column off would pair bare pixels with forest codes."""
    from inference.predict.keep.inputs import sample_product

    width, height = 2100, 6
    forest = (np.arange(width) % 4 == 0)[None].repeat(height, 0)
    red, nir = np.where(forest, 0.05, 0.2), np.where(forest, 0.45, 0.2)  # NDVI 0.8 and 0
    stack = write_stack(tmp_path / "wide.tif", np.stack([red, red, red, nir]), bands=BANDS,
                        res=RES, nodata=None)
    with rasterio.open(stack) as ds:
        transform, crs = ds.transform, ds.crs
    product = write_geotiff(tmp_path / "p.tif", np.where(forest, 41, 23)[None].astype(np.uint8),
                            transform, crs, None)
    greenness, codes, covered = sample_product(str(stack), str(product), 3, 4)
    assert covered.all() and greenness.shape[1] < width and set(np.unique(codes)) == {23, 41}
    np.testing.assert_allclose(greenness, np.where(codes == 41, 0.8, 0.0), atol=1e-6)


def test_a_window_far_from_two_product_cells_is_warned_about(scene, caplog):
    """The product's 30 m cells are about 10 px of the 3 m stack: 64 px is six cells."""
    from inference.predict.keep.inputs import check_window, product_cell
    from inference.predict.keep.rule import KeepRule

    assert product_cell(str(scene["product"]), "EPSG:32650", RES) == pytest.approx(10, rel=0.1)
    with caplog.at_level("WARNING", logger="inference.predict.keep.inputs"):
        check_window(KeepRule(str(scene["product"]), "nlcd", window=16), "EPSG:32650", RES)
        assert not caplog.records  # 1.6 cells
        check_window(KeepRule(str(scene["product"]), "nlcd", window=64), "EPSG:32650", RES)
    (record,) = caplog.records
    assert "--keep-window 64 spans 6." in record.getMessage()
    assert "consider --keep-window 16" in record.getMessage()


def test_the_rule_maps_at_the_whole_width(scene, monkeypatch):
    """The product is read through GDAL's warper, whose approximate transformation depends on
    the window read: the rule's strips stay whole rows, so however narrow the panels of a
    map without it would be, its map is the one the rule always made."""
    from inference.predict import sliding_window

    made, original = [], sliding_window.panels

    def counted(*args, **kwargs):
        made.append(original(*args, **kwargs))
        return made[-1]

    maps = {}
    for name, block in (("wide", 4096), ("narrow", 8)):
        monkeypatch.setattr(sliding_window, "COLUMN_BLOCK_PX", block)
        monkeypatch.setattr(sliding_window, "panels", counted)
        code, out = _predict(scene, name, "--tile", "32", "--overlap", "8", "--batch-size", "1",
                             "--postprocess", "keep", "--keep-product", str(scene["product"]),
                             "--keep-table", "nlcd")
        assert code == 0
        with rasterio.open(f"{out}_class.tif") as c, rasterio.open(f"{out}_prob.tif") as p:
            maps[name] = c.read(1), p.read(1)
    assert [len(m) for m in made] == [1, 1]
    for a, b in zip(maps["wide"], maps["narrow"], strict=True):
        np.testing.assert_array_equal(a, b)
